"""The tenant keys that connect Hotline to its users' systems: webhooks, the caller's country.

``webhooks:`` under a tenant maps a subscription name to its URL, events and secret
(docs/CONFIG.md, "Webhooks"). Read with the same ``_Reader`` as the rest of the YAML, so
every mistake is one ``file:line:col`` sentence.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from daemon.definition import model as m
from daemon.definition.reader import _BAD, _Reader
from daemon.definition.yamlsrc import YNode

WEBHOOK_KEYS = ("url", "events", "secret", "concurrency", "timeout_s", "dead_letter_after_h")


def read_webhook(r: _Reader, name: str, node: YNode, src: m.Source,
                 tenant_what: str) -> m.WebhookSubscription | None:
    """One ``webhooks:`` entry, or None (its problems reported)."""
    what = f"webhook '{name}' of {tenant_what}"
    if r.ident(YNode("scalar", src, name, raw=name), "webhook name") is _BAD:
        return None
    if name == "sms":
        r.error(src, f"webhook name 'sms' of {tenant_what} is reserved for the tenant's SMS "
                     f"(their messages share the outbox); pick another name.")
        return None
    body = r.mapping(node, what, WEBHOOK_KEYS, ("url", "events", "secret"))
    if body is None:
        return None
    ok = True
    url = _url(r, body["url"], f"'url' of {what}") if "url" in body else _BAD
    events: list[str] = []
    if "events" in body:
        items = r.seq(body["events"], f"'events' of {what}")
        if not items and not body["events"].is_null:
            ok = False
        for item in items:
            event = r.choice(item, f"an event of {what}", m.WEBHOOK_EVENTS)
            if event is _BAD:
                ok = False
            elif event in events:
                r.error(item.src, f"event '{event}' is listed twice in {what}.")
            else:
                events.append(event)
        if not items:
            r.error(body["events"].src, f"'events' of {what} must list at least one event "
                                        f"({', '.join(m.WEBHOOK_EVENTS)}).")
            ok = False
    secret = r.secret(body["secret"], f"'secret' of {what}") if "secret" in body else _BAD
    if secret is not _BAD and len(secret) < 16:
        r.error(body["secret"].src, f"'secret' of {what} is {len(secret)} characters long; a "
                                    f"signing secret needs at least 16.")
        secret = _BAD
    extra: dict[str, Any] = {}
    if "concurrency" in body:
        extra["concurrency"] = r.integer(body["concurrency"], f"'concurrency' of {what}", 1, 64)
    if "timeout_s" in body:
        extra["timeout_s"] = r.number(body["timeout_s"], f"'timeout_s' of {what}", 0.1, 60)
    if "dead_letter_after_h" in body:
        hours = r.number(body["dead_letter_after_h"], f"'dead_letter_after_h' of {what}",
                         0.01, 24 * 90)
        extra["dead_letter_after_s"] = _BAD if hours is _BAD else int(hours * 3600)
    if not ok or _BAD in (url, secret, *extra.values()):
        return None
    return m.WebhookSubscription(name=name, url=url, events=tuple(events), secret=secret,
                                 src=src, **extra)


def _url(r: _Reader, node: YNode, what: str) -> Any:
    value = r.secret(node, what)  # a URL may carry a token from the environment
    if value is _BAD:
        return _BAD
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or not port_ok:
        r.error(node.src, f"{what} is '{node.raw}', which is not an http:// or https:// URL "
                          f"with a host.")
        return _BAD
    return value


def read_country(r: _Reader, node: YNode, what: str) -> Any:
    """``country: CN``: the region whose numbering plan callers' numbers are read in
    (leading zeros, national prefixes), as ``phonenumbers`` knows it."""
    import phonenumbers

    value = r.text(node, what)
    if value is _BAD:
        return _BAD
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        r.error(node.src, f"{what} is '{value}', which is not a two-letter ISO 3166 country "
                          f"code (e.g. CN, DE, US).")
        return _BAD
    return region


CRM_KEYS = ("url", "token", "timeout_ms", "cache_ttl_s", "breaker_failures", "breaker_open_s")


def read_crm_lookup(r: _Reader, node: YNode, what: str) -> Any:
    """``crm_lookup:`` of a tenant: where its CRM answers who a caller is."""
    body = r.mapping(node, what, CRM_KEYS, ("url",))
    if body is None or "url" not in body:
        return _BAD
    got: dict[str, Any] = {"url": _url(r, body["url"], f"'url' of {what}")}
    if got["url"] is not _BAD and "{number}" not in got["url"]:
        r.error(body["url"].src, f"'url' of {what} needs a {{number}} where the caller's "
                                 f"number goes.")
        got["url"] = _BAD
    if "token" in body:
        got["token"] = r.secret(body["token"], f"'token' of {what}")
    bounds = {"timeout_ms": (10, 5000), "cache_ttl_s": (0, 86400),
              "breaker_failures": (1, 1000), "breaker_open_s": (1, 3600)}
    for key, (lo, hi) in bounds.items():
        if key in body:
            got[key] = r.integer(body[key], f"'{key}' of {what}", lo, hi)
    if _BAD in got.values():
        return _BAD
    return m.CrmLookup(src=node.src, **got)


SMS_KEYS = ("templates", "sender", "rate_limit_per_day", "max_segments")


def read_sms(r: _Reader, node: YNode, what: str, tenant_name: str,
             queue_names: list[str]) -> Any:
    """``sms:`` of a tenant; each template's worst-case length checked against max_segments."""
    from daemon.integrations.sms import SMS_EVENTS, VARIABLE_MAX, variables, worst_case

    body = r.mapping(node, what, SMS_KEYS, ("templates",))
    if body is None or "templates" not in body:
        return _BAD
    got: dict[str, Any] = {}
    if "sender" in body:
        got["sender"] = r.text(body["sender"], f"'sender' of {what}")
    if "rate_limit_per_day" in body:
        got["rate_limit_per_day"] = r.integer(body["rate_limit_per_day"],
                                              f"'rate_limit_per_day' of {what}", 1, 100)
    if "max_segments" in body:
        got["max_segments"] = r.integer(body["max_segments"], f"'max_segments' of {what}", 1, 10)
    if _BAD in got.values():
        return _BAD
    max_segments = got.get("max_segments", 2)
    known = {"tenant": tenant_name, "queue": max(queue_names, key=len, default="")}
    templates = []
    ok = True
    tnode = body["templates"]
    for event, enode in r.entries(tnode, f"'templates' of {what}").items():
        esrc = tnode.keys[event]
        tw = f"SMS template '{event}' of {what}"
        if event not in SMS_EVENTS:
            r.choice(YNode("scalar", esrc, event, raw=event), f"an SMS template's event of {what}",
                     SMS_EVENTS)
            ok = False
            continue
        text = r.text(enode, tw)
        if text is _BAD:
            ok = False
            continue
        try:
            names = variables(text)
        except ValueError as exc:
            r.error(enode.src, f"{tw} has {exc}.")
            ok = False
            continue
        unknown = [n for n in names if n not in VARIABLE_MAX]
        if unknown:
            r.error(enode.src, f"{tw} uses {{{unknown[0]}}}, which is not one of "
                               f"{', '.join('{' + v + '}' for v in VARIABLE_MAX)}.")
            ok = False
            continue
        encoding, units, parts = worst_case(text, known)
        if parts > max_segments:
            per = "160/153" if encoding == "GSM-7" else "70/67"
            why = "" if encoding == "GSM-7" else " (a character or variable outside GSM-7)"
            r.error(enode.src, f"{tw} is {encoding}{why} and up to {units} characters long: "
                               f"{parts} messages ({per} per message), more than max_segments "
                               f"{max_segments}.")
            ok = False
            continue
        templates.append(m.SmsTemplate(event, text, enode.src))
    if not ok:
        return _BAD
    return m.SmsConfig(templates=tuple(templates), src=node.src, **got)


GATEWAY_KEYS = ("url", "method", "body", "content_type", "headers", "timeout_s", "concurrency")


def read_sms_gateway(r: _Reader, node: YNode, what: str) -> Any:
    """``sms_gateway:`` of the settings: URL, method, body template, headers (``${ENV}``)."""
    if node.is_null:
        return None
    body = r.mapping(node, what, GATEWAY_KEYS, ("url",))
    if body is None or "url" not in body:
        return _BAD
    got: dict[str, Any] = {"url": _url(r, body["url"], f"'url' of {what}")}
    if "method" in body:
        got["method"] = r.choice(body["method"], f"'method' of {what}", ("POST", "PUT", "GET"))
    if "body" in body:
        got["body"] = r.text(body["body"], f"'body' of {what}")
        if got["body"] is not _BAD and "{text}" not in got["body"]:
            r.error(body["body"].src, f"'body' of {what} needs a {{text}} where the message "
                                      f"goes (and a {{to}}).")
            got["body"] = _BAD
    if "content_type" in body:
        got["content_type"] = r.text(body["content_type"], f"'content_type' of {what}")
    if "timeout_s" in body:
        got["timeout_s"] = r.number(body["timeout_s"], f"'timeout_s' of {what}", 0.1, 60)
    if "concurrency" in body:
        got["concurrency"] = r.integer(body["concurrency"], f"'concurrency' of {what}", 1, 64)
    if "headers" in body:
        headers = []
        for name, hnode in r.entries(body["headers"], f"'headers' of {what}").items():
            value = r.secret(hnode, f"header '{name}' of {what}")
            if value is _BAD:
                got["headers"] = _BAD
                break
            headers.append((name, value))
        else:
            got["headers"] = tuple(headers)
    if _BAD in got.values():
        return _BAD
    return m.SmsGateway(**got)
