"""Screen pop on the desk phone: the caller-ID name an agent's phone shows when it rings.

mod_callcenter calls the agent with the member channel's ``effective_caller_id_name``
(read at each offer, falling back to the name the caller joined with). When a caller
joins a queue (the engine's member "join" live change), :class:`ScreenPop` looks the
caller up in the tenant's customer directory and sets on the caller's channel::

    uuid_setvar <uuid> effective_caller_id_name VIP2 李娜 · Billing 10:27
    uuid_setvar <uuid> hotline_customer_id ACC-1002        (when the caller is a customer)
    uuid_setvar <uuid> hotline_vip 2

The name is the customer's name, or the caller's number when the directory does not
know it; ``VIPn`` marks a VIP; then the queue and the time the caller joined it (the
phone shows the name fixed when it rings, so the join time stands for the wait).

What survives SIP (docs/SCREEN_POP.md): FreeSWITCH writes the name as a quoted display
name in the INVITE's From / Remote-Party-ID; RFC 3261 allows any UTF-8 there except
raw control characters, and quotes and backslashes only escaped. mod_callcenter also
puts the name inside ``origination_caller_id_name='...'`` of its dial string, where a
``'`` ends the value and ``{ } [ ] , ^ |`` have meanings. :func:`display_name` therefore
keeps letters of every script (李娜 stays 李娜), turns both quote kinds into ``’``, drops
backslashes and control characters, replaces dial-string syntax by neutral characters,
and keeps the result to ``MAX_CHARS`` characters (desk phones show 16-32).

Sending never raises into the daemon and never waits in the event path: each join is
looked up and sent by a greenlet of a small pool.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
import zoneinfo
from typing import Any, Callable, Mapping, Sequence

from daemon.engine.records import LiveChange

logger = logging.getLogger(__name__)

MAX_CHARS = 40
_DIAL_SYNTAX = {"{": "(", "}": ")", "[": "(", "]": ")", ",": " ", "^": " ", "|": "/",
                "'": "’", '"': "’", "\\": "", "`": "’"}


def clean(text: str) -> str:
    """One piece of a display name made safe for SIP and mod_callcenter's dial string."""
    out = []
    for ch in text or "":
        if ch in _DIAL_SYNTAX:
            out.append(_DIAL_SYNTAX[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(" " if ch in "\t\r\n\x0b\x0c\u2028\u2029" else "")
        else:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def display_name(caller: str, customer: Mapping[str, Any] | None, queue_label: str | None,
                 joined: dt.datetime | None, max_chars: int = MAX_CHARS) -> str:
    """``[VIPn ]<name or number>[ · <queue> HH:MM]`` within ``max_chars`` (the name is
    shortened first, the queue and time kept)."""
    name = clean(str(customer.get("name") or "")) if customer else ""
    name = name or clean(caller) or "?"
    vip = int(customer.get("vip") or 0) if customer else 0
    head = f"VIP{vip} " if vip else ""
    tail = ""
    if queue_label:
        tail = f" · {clean(queue_label)}" + (f" {joined:%H:%M}" if joined else "")
    room = max_chars - len(head) - len(tail)
    if room < 4:  # a tiny limit: the name wins over the queue
        tail, room = "", max_chars - len(head)
    if len(name) > room:
        name = name[:max(1, room - 1)].rstrip() + "…"
    return (head + name + tail)[:max_chars]


def setvar_commands(uuid: str, display: str, customer: Mapping[str, Any] | None) -> list[str]:
    """The ``api uuid_setvar`` lines for one caller (values already cleaned: no line breaks)."""
    if not re.fullmatch(r"[0-9A-Za-z-]{1,64}", uuid or ""):
        raise ValueError(f"not a channel uuid: {uuid!r}")
    lines = [f"api uuid_setvar {uuid} effective_caller_id_name {display}"]
    if customer:
        if customer.get("account_id"):
            lines.append(f"api uuid_setvar {uuid} hotline_customer_id "
                         f"{clean(str(customer['account_id']))}")
        lines.append(f"api uuid_setvar {uuid} hotline_vip {int(customer.get('vip') or 0)}")
    return lines


class ScreenPop:
    """Live-change consumer (``apply(changes)``, like the presence lamps): sets the
    screen-pop variables of every caller who joins a queue of a known tenant."""

    def __init__(self, center: Any, lookup: Callable[[str, str, str | None], Any],
                 senders: Mapping[str, Callable[[str], Any]], pool_size: int = 8) -> None:
        import gevent.pool

        self.tenants = {t.domain: t for t in getattr(center, "tenants", ()) or ()}
        self.lookup = lookup  # (domain, caller, country) -> Customer | None
        self.senders = senders  # node name -> send(command text)
        self.pool = gevent.pool.Pool(pool_size)
        self.sent = 0
        self.errors = 0

    def apply(self, changes: Sequence[LiveChange]) -> None:
        for change in changes:
            if change.kind != "member":
                continue
            data = dict(change.data)
            if data.get("action") != "join" or not data.get("call_id"):
                continue
            local, _, domain = change.key.partition("@")
            tenant = self.tenants.get(domain)
            if tenant is None:
                continue
            if self.pool.full():  # a storm of joins: the phone shows the plain caller id
                logger.warning("screen pop skipped (busy) call=%s", data["call_id"])
                continue
            self.pool.spawn(self._pop, tenant, local, data)

    def _pop(self, tenant: Any, queue_id: str, data: Mapping[str, Any]) -> None:
        caller = str(data.get("caller") or "")
        try:
            found = self.lookup(tenant.domain, caller, tenant.country)
        except Exception as exc:  # the directory away: the call goes on without context
            logger.warning("screen pop lookup failed call=%s: %s", data["call_id"], exc)
            found = None
        customer = found.to_dict() if found is not None else None
        queue = tenant.queue(queue_id)
        joined = None
        if data.get("joined_ms"):
            joined = dt.datetime.fromtimestamp(int(data["joined_ms"]) / 1000,
                                               zoneinfo.ZoneInfo(tenant.timezone))
        display = display_name(caller, customer, queue.name if queue else queue_id, joined)
        try:
            lines = setvar_commands(str(data["call_id"]), display, customer)
        except ValueError as exc:
            logger.warning("screen pop skipped: %s", exc)
            return
        for node, send in self.senders.items():  # the channel lives on one of them
            for line in lines:
                try:
                    send(line)
                    self.sent += 1
                except Exception as exc:
                    self.errors += 1
                    logger.warning("screen pop not set node=%s call=%s: %s", node,
                                   data["call_id"], exc)
                    break


class LiveFanout:
    """Several live-change consumers in the daemon's one ``presence`` slot: ``apply`` goes
    to each; the lamps' extra calls (start, publish_all, close) to those that have them."""

    def __init__(self, *consumers: Any) -> None:
        self.consumers = [c for c in consumers if c is not None]

    def apply(self, changes: Sequence[LiveChange]) -> None:
        for consumer in self.consumers:
            try:
                consumer.apply(changes)
            except Exception:
                logger.exception("live consumer %r failed", consumer)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "consumers":
            raise AttributeError(name)
        if name not in ("start", "publish_all", "close"):
            for consumer in self.consumers:  # e.g. the lamps' publisher, for their stats
                if hasattr(consumer, name):
                    return getattr(consumer, name)
            raise AttributeError(name)

        def call_all(*args: Any, **kwargs: Any) -> None:
            for consumer in self.consumers:
                method = getattr(consumer, name, None)
                if method is not None:
                    method(*args, **kwargs)

        return call_all


def build_screen_pop(settings: Any, center: Any) -> tuple[ScreenPop | None, Callable[[], None]]:
    """For ``build_service``: the screen pop of the tenants with ``screen_pop: true``, on
    command connections of its own, reading the directory with an engine of its own."""
    if not any(getattr(t, "screen_pop", False) for t in getattr(center, "tenants", ()) or ()):
        return None, lambda: None
    from daemon.integrations.crm import CrmClient
    from daemon.integrations.customers import find
    from daemon.storage.store import make_engine
    from daemon.switch.control import NodeConnections

    engine = make_engine(settings.database_url)
    conns = NodeConnections(settings.esl_nodes)

    crms = {t.domain: CrmClient(t.crm_lookup) for t in center.tenants
            if t.screen_pop and t.crm_lookup is not None}

    def lookup(domain: str, caller: str, country: str | None) -> Any:
        with engine.connect() as conn:
            found = find(conn, domain, caller, country)
        return found if found is not None else crm_lookup(crms.get(domain), caller, country)

    popping = type(center)(tuple(t for t in center.tenants if t.screen_pop))
    pop = ScreenPop(popping, lookup, {n.name: conns.sender(n.name) for n in settings.esl_nodes})

    def close() -> None:
        conns.close()
        engine.dispose()

    return pop, close


def crm_lookup(client: Any, caller: str, country: str | None) -> Any:
    """The CRM's answer for a caller whose number the directory does not know (None: no
    CRM, not a phone number, unknown, or no answer within the CRM's timeout)."""
    from daemon.integrations.customers import normalise

    number = normalise(caller, country)
    if client is None or number is None:
        return None
    return client.lookup(number)
