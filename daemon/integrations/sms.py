"""SMS: templates per tenant and event, their GSM-7 / UCS-2 length, and the gateway request.

A tenant's ``sms:`` (docs/SMS.md) maps webhook event types to message templates with
``{variables}``; when such an event is queued, the outbox also queues one SMS to the
caller (``daemon.storage.outbox``), unless the number opted out or already got
``rate_limit_per_day`` messages in the last 24 hours (those are stored as ``skipped``
with the reason). The delivery worker sends SMS rows to the settings' HTTP gateway
(``gateway_request``) with the same retries and dead letters as webhooks.

Length (``segments``): a text that fits the GSM 03.38 alphabet is GSM-7 (160 characters
in one message, 153 per part of a longer one; ``^{}\\[~]|€`` count twice), anything else is
UCS-2 (70, then 67 per part). At validate time a template is measured with every variable
at its longest (``VARIABLE_MAX``); a variable that may hold any script (a customer's name)
makes the template UCS-2.
"""
from __future__ import annotations

import json
import string
from typing import Any, Mapping
from urllib.parse import quote

GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = "^{}\\[~]|€\f"
SMS_EVENTS = ("call.abandoned", "callback.requested", "survey.completed")
# variable -> (longest value, may hold any script)
VARIABLE_MAX: dict[str, tuple[int, bool]] = {
    "caller": (16, False), "queue": (32, True), "tenant": (64, True), "number": (16, False),
    "score": (2, False), "customer_name": (32, True),
}


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def segments(text: str) -> tuple[str, int, int]:
    """(encoding, units, messages) of one text: ``("GSM-7", 170, 2)``."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        return "GSM-7", units, 1 if units <= 160 else -(-units // 153)
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)  # UTF-16 code units
    return "UCS-2", units, 1 if units <= 70 else -(-units // 67)


def variables(template: str) -> list[str]:
    """The ``{names}`` a template uses; ValueError if it is not a valid template."""
    names = []
    for _text, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ValueError(f"'{{{name}}}' is not a plain variable")
        names.append(name)
    return names


def worst_case(template: str, known: Mapping[str, str] | None = None) -> tuple[str, int, int]:
    """The encoding, units and messages of a template with every variable at its longest;
    ``known`` gives the longest real value of a variable (the tenant's longest queue name)."""
    sample = dict(known or {})
    for name in variables(template):
        if name not in sample:
            size, any_script = VARIABLE_MAX[name]
            sample[name] = ("李" if any_script else "0") * size
    return segments(template.format_map(sample))


def render(template: str, values: Mapping[str, Any]) -> str:
    return template.format_map({k: "" if v is None else str(v) for k, v in values.items()})


def values_of(event_type: str, data: Mapping[str, Any], tenant_name: str,
              queue_names: Mapping[str, str]) -> dict[str, Any]:
    queue = data.get("queue") or ""
    customer = data.get("customer") or {}
    return {"caller": data.get("caller") or "", "number": data.get("number") or "",
            "queue": queue_names.get(queue, queue.split("@")[0]), "tenant": tenant_name,
            "score": data.get("score") if data.get("score") is not None else "",
            "customer_name": customer.get("name") or ""}


def gateway_request(gateway: Any, to: str, text: str, sender: str | None
                    ) -> tuple[str, dict[str, str], bytes]:
    """(method, headers, body) of one SMS for the settings' gateway: ``{to}``, ``{text}``
    and ``{sender}`` of its body template are filled in escaped for its content type."""
    json_body = "json" in gateway.content_type
    esc = (lambda v: json.dumps(v, ensure_ascii=False)[1:-1]) if json_body else \
        (lambda v: quote(v, safe=""))
    body = gateway.body.replace("{to}", esc(to)).replace("{text}", esc(text)) \
        .replace("{sender}", esc(sender or ""))
    headers = {"Content-Type": gateway.content_type, **dict(gateway.headers)}
    return gateway.method, headers, body.encode("utf-8")
