"""The webhook outbox: messages written with the records that caused them, and their state.

``OutboxWriter`` is the store's hook (``Store(outbox=...)``): called inside the store's
write transaction with the rows of a batch, it derives the webhook events
(``daemon.integrations.webhooks.events_of``) and inserts one row per subscriber and
event with ``ON CONFLICT DO NOTHING`` - committed with the records or not at all, and
never twice for one event (ids are deterministic).

The delivery worker (``daemon.integrations.delivery``) claims due rows with
:func:`claim` (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two daemons
never claim one message; SQLite has one worker), and records each attempt with
:func:`delivered` / :func:`failed`. A claim is a lease: ``next_attempt_ms`` moves to the
lease's end, so a message claimed by a process that died is due again after it.
``hotline webhooks status|retry|replay`` read and reset rows here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import and_, event, func, or_, select, update
from sqlalchemy.engine import Connection

from daemon.integrations.webhooks import WebhookEvent, calls_needed, events_of
from daemon.storage import schema

logger = logging.getLogger(__name__)

ob = schema.webhook_outbox
PENDING, DELIVERED, DEAD, SKIPPED = "pending", "delivered", "dead", "skipped"
SMS = "sms"  # the subscription name of a tenant's SMS
_CHUNK = 500  # IN-list size every driver takes


def now_ms() -> int:
    return int(time.time() * 1000)


def message_id(domain: str, subscription: str, event_id: str) -> str:
    return hashlib.sha256(f"{domain}\x00{subscription}\x00{event_id}".encode()).hexdigest()


def _insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(ob).on_conflict_do_nothing(index_elements=["id"])


@dataclass(frozen=True)
class Subscriber:
    """A subscription as the outbox sees it: which tenant, which events."""

    tenant_id: str
    domain: str
    name: str
    events: frozenset[str]


def subscribers(center: Any) -> dict[str, list[Subscriber]]:
    """domain -> its tenant's subscriptions (empty when nobody subscribes to anything)."""
    out: dict[str, list[Subscriber]] = {}
    for tenant in getattr(center, "tenants", ()) or ():
        for sub in tenant.webhooks:
            out.setdefault(tenant.domain, []).append(
                Subscriber(tenant.id, tenant.domain, sub.name, frozenset(sub.events)))
    return out


class OutboxWriter:
    """The store's hook: webhook messages in the same transaction as their records."""

    def __init__(self, center: Any, clock: Callable[[], int] = now_ms,
                 sms_gateway: Any = None) -> None:
        self.subs = subscribers(center)
        tenants = getattr(center, "tenants", ()) or ()
        self.regions = {t.domain: t.country for t in tenants}
        # SMS go through the outbox as the tenant's subscription "sms" (only with a gateway)
        self.sms = {t.domain: t for t in tenants if t.sms is not None and sms_gateway is not None}
        self.wanted = frozenset(
            [e for subs in self.subs.values() for s in subs for e in s.events]
            + [tpl.event for t in self.sms.values() for tpl in t.sms.templates])
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []
        self.queued = 0  # messages inserted (a re-derived event counts once per attempt)

    def __bool__(self) -> bool:
        return bool(self.subs or self.sms)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Called after a transaction that queued messages commits (wakes the worker)."""
        self._listeners.append(listener)

    def __call__(self, conn: Connection, by_table: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        subs = self.subs
        mine = {table: [r for r in rows if r.get("tenant") in subs or r.get("tenant") in self.sms]
                for table, rows in by_table.items() if table != "dispositions"}
        if not any(mine.values()):
            return
        try:
            ids = calls_needed(mine)
            ended = {r["call_id"] for r in mine.get("calls", ()) if r.get("ended_ms")}
        except Exception:  # a bug here must never cost the records their transaction
            logger.exception("webhook events not derived for a batch")
            return
        calls = _rows_by(conn, schema.calls, schema.calls.c.call_id, ids)
        segments: dict[str, list[dict[str, Any]]] = {}
        for row in _rows(conn, schema.segments, schema.segments.c.call_id, ended):
            segments.setdefault(row["call_id"], []).append(row)
        customer_of = self._customers(conn, mine)
        try:
            events = events_of(mine, calls, segments, self.wanted, customer_of)
            rows = self._messages(events)
            texts = self._texts(events)
        except Exception:
            logger.exception("webhook events not derived for a batch")
            return
        if texts:
            rows += self._screen_texts(conn, texts)
        if not rows:
            return
        stmt = _insert(conn)
        for start in range(0, len(rows), _CHUNK):
            conn.execute(stmt, rows[start:start + _CHUNK])
        self.queued += len(rows)
        if self._listeners:
            event.listen(conn, "commit", self._committed, once=True)

    def _customers(self, conn: Connection, rows: Mapping[str, Sequence[Mapping[str, Any]]]
                   ) -> Callable[[str, str], Mapping[str, Any] | None]:
        """The directory entries of the callers in a batch (one query per tenant)."""
        from daemon.integrations.customers import caller_key, find_many

        wanted: dict[str, set[str]] = {}
        for table in ("calls", "segments"):
            for row in rows.get(table, ()):
                if table == "calls" or row["kind"] in ("ring", "talk"):
                    region = self.regions.get(row["tenant"])
                    wanted.setdefault(row["tenant"], set()).add(caller_key(row["caller"], region))
        found = find_many(conn, wanted) if wanted else {}

        def customer_of(domain: str, caller: str) -> Mapping[str, Any] | None:
            hit = found.get((domain, caller_key(caller, self.regions.get(domain))))
            return hit.to_dict() if hit is not None else None

        return customer_of

    def _committed(self, _conn: Any) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                logger.exception("outbox listener failed")

    def _texts(self, events: Iterable[WebhookEvent]) -> list[dict[str, Any]]:
        """One SMS row per event a tenant has a template for (to the caller's E.164 number)."""
        from daemon.integrations.customers import normalise
        from daemon.integrations.sms import render, values_of

        now = self.clock()
        out: list[dict[str, Any]] = []
        for ev in events:
            tenant = self.sms.get(ev.domain)
            template = tenant.sms.template(ev.type) if tenant is not None else None
            if template is None:
                continue
            to = normalise(str(ev.data.get("number") or ev.data.get("caller") or ""),
                           tenant.country)
            if to is None:  # an extension, "anonymous": nobody to text
                continue
            queues = {tenant.qualified(q.id): q.name for q in tenant.queues}
            text = render(template.text, values_of(ev.type, ev.data, tenant.name, queues))
            payload = json.dumps({"to": to, "text": text, "sender": tenant.sms.sender,
                                  "event": ev.type, "event_id": ev.event_id},
                                 ensure_ascii=False, separators=(",", ":"))
            mid = message_id(ev.domain, SMS, ev.event_id)
            out.append({"id": mid, "tenant": ev.domain, "subscription": SMS, "event": ev.type,
                        "event_id": ev.event_id, "payload": payload,
                        "occurred_ms": ev.occurred_ms, "created_ms": now, "status": PENDING,
                        "attempts": 0, "next_attempt_ms": now, "claimed_by": None,
                        "last_status": None, "last_error": None, "delivered_ms": None,
                        "recipient": to})
        return out

    def _screen_texts(self, conn: Connection, texts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Opt-outs and the per-number rate limit: such texts are stored as skipped."""
        known = {r["id"] for r in _rows(conn, ob, ob.c.id, [t["id"] for t in texts])}
        texts = [t for t in texts if t["id"] not in known]  # queued before: not counted twice
        if not texts:
            return []
        opted = {(r["tenant"], r["number"]) for r in _rows(
            conn, schema.sms_opt_out, schema.sms_opt_out.c.number, {t["recipient"] for t in texts})}
        since = self.clock() - 24 * 3600 * 1000
        sent: dict[tuple[str, str], int] = {}
        for row in _rows(conn, ob, ob.c.recipient, {t["recipient"] for t in texts}):
            if row["subscription"] == SMS and row["status"] != SKIPPED \
                    and row["created_ms"] >= since:
                key = (row["tenant"], row["recipient"])
                sent[key] = sent.get(key, 0) + 1
        for text in texts:
            key = (text["tenant"], text["recipient"])
            limit = self.sms[text["tenant"]].sms.rate_limit_per_day
            if key in opted:
                text.update(status=SKIPPED, last_error="opted out")
            elif sent.get(key, 0) >= limit:
                text.update(status=SKIPPED, last_error=f"rate limit: {limit} SMS in 24 hours")
            else:
                sent[key] = sent.get(key, 0) + 1
        return texts

    def _messages(self, events: Iterable[WebhookEvent]) -> list[dict[str, Any]]:
        now = self.clock()
        rows: dict[str, dict[str, Any]] = {}
        for ev in events:
            for sub in self.subs.get(ev.domain, ()):
                if ev.type not in sub.events:
                    continue
                mid = message_id(ev.domain, sub.name, ev.event_id)
                rows[mid] = {"id": mid, "tenant": ev.domain, "subscription": sub.name,
                             "event": ev.type, "event_id": ev.event_id,
                             "payload": ev.body(sub.tenant_id), "occurred_ms": ev.occurred_ms,
                             "created_ms": now, "status": PENDING, "attempts": 0,
                             "next_attempt_ms": now, "claimed_by": None, "last_status": None,
                             "last_error": None, "delivered_ms": None, "recipient": None}
        return list(rows.values())


def _rows(conn: Connection, table: Any, column: Any, keys: Iterable[str]) -> list[dict[str, Any]]:
    keys = sorted(keys)
    out: list[dict[str, Any]] = []
    for start in range(0, len(keys), _CHUNK):
        result = conn.execute(select(table).where(column.in_(keys[start:start + _CHUNK])))
        out.extend(dict(r._mapping) for r in result)
    return out


def _rows_by(conn: Connection, table: Any, column: Any, keys: Iterable[str]) -> dict[str, Any]:
    return {row[column.name]: row for row in _rows(conn, table, column, keys)}


# --- the worker's side ------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    id: str
    tenant: str
    subscription: str
    event: str
    event_id: str
    payload: str
    created_ms: int
    attempts: int  # including the one just claimed


def claim(conn: Connection, domain: str, subscription: str, limit: int, worker: str,
          lease_ms: int, now: int) -> list[Message]:
    """Up to ``limit`` due messages of one subscription, leased to ``worker``.

    Call inside a transaction (``engine.begin()``): the rows stay locked (PostgreSQL,
    SKIP LOCKED) until the lease is written and committed."""
    due = (select(ob.c.id, ob.c.tenant, ob.c.subscription, ob.c.event, ob.c.event_id,
                  ob.c.payload, ob.c.created_ms, ob.c.attempts)
           .where(ob.c.status == PENDING, ob.c.tenant == domain,
                  ob.c.subscription == subscription, ob.c.next_attempt_ms <= now)
           .order_by(ob.c.next_attempt_ms).limit(limit))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = conn.execute(due).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    conn.execute(update(ob).where(ob.c.id.in_(ids))
                 .values(claimed_by=worker, next_attempt_ms=now + lease_ms,
                         attempts=ob.c.attempts + 1))
    return [Message(r.id, r.tenant, r.subscription, r.event, r.event_id, r.payload,
                    r.created_ms, r.attempts + 1) for r in rows]


def delivered(conn: Connection, results: Sequence[tuple[str, int]], worker: str,
              now: int) -> None:
    """(id, HTTP status) of messages the receiver took. Only the claimant records them: a
    message whose lease ran out and was claimed again is the new claimant's to record."""
    by_status: dict[int, list[str]] = {}
    for mid, status in results:
        by_status.setdefault(status, []).append(mid)
    for status, ids in by_status.items():
        for start in range(0, len(ids), _CHUNK):
            conn.execute(update(ob).where(ob.c.id.in_(ids[start:start + _CHUNK]),
                                          ob.c.claimed_by == worker)
                         .values(status=DELIVERED, delivered_ms=now, claimed_by=None,
                                 last_status=status, last_error=None))


def failed(conn: Connection, mid: str, worker: str, *, next_attempt_ms: int | None,
           status: int | None, error: str) -> None:
    """An attempt that did not deliver: due again at ``next_attempt_ms``, or dead if None."""
    values: dict[str, Any] = {"claimed_by": None, "last_status": status,
                              "last_error": error[:300]}
    if next_attempt_ms is None:
        values["status"] = DEAD
    else:
        values["next_attempt_ms"] = next_attempt_ms
    conn.execute(update(ob).where(ob.c.id == mid, ob.c.claimed_by == worker).values(**values))


def release_claims(conn: Connection) -> int:
    """A single worker (SQLite) starting: claims of a dead process are due at once."""
    result = conn.execute(update(ob).where(ob.c.status == PENDING, ob.c.claimed_by.is_not(None))
                          .values(claimed_by=None, next_attempt_ms=now_ms()))
    return result.rowcount or 0


def next_due_ms(conn: Connection, domain: str, subscription: str) -> int | None:
    return conn.execute(select(func.min(ob.c.next_attempt_ms))
                        .where(ob.c.status == PENDING, ob.c.tenant == domain,
                               ob.c.subscription == subscription)).scalar()


# --- the CLI's side ---------------------------------------------------------------------------

def status(conn: Connection, now: int) -> list[dict[str, Any]]:
    """Per tenant and subscription: counts by state, the oldest undelivered, the last error."""
    rows = conn.execute(
        select(ob.c.tenant, ob.c.subscription, ob.c.status, func.count(),
               func.min(ob.c.created_ms), func.max(ob.c.delivered_ms))
        .group_by(ob.c.tenant, ob.c.subscription, ob.c.status)
        .order_by(ob.c.tenant, ob.c.subscription)).all()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for tenant, sub, state, count, oldest, last in rows:
        entry = out.setdefault((tenant, sub), {
            "tenant": tenant, "subscription": sub, PENDING: 0, DELIVERED: 0, DEAD: 0, SKIPPED: 0,
            "oldest_pending_s": None, "last_delivered_ms": None, "last_error": None})
        entry[state] = count
        if state == PENDING and oldest is not None:
            entry["oldest_pending_s"] = round((now - oldest) / 1000, 1)
        if state == DELIVERED:
            entry["last_delivered_ms"] = last
    for (tenant, sub), entry in out.items():
        entry["last_error"] = conn.execute(
            select(ob.c.last_error).where(ob.c.tenant == tenant, ob.c.subscription == sub,
                                          ob.c.status.in_((PENDING, DEAD)),
                                          ob.c.last_error.is_not(None))
            .order_by(ob.c.created_ms.desc()).limit(1)).scalar()
    return list(out.values())


def _filters(tenant: str | None, subscription: str | None) -> list[Any]:
    where = []
    if tenant:
        where.append(ob.c.tenant == tenant)
    if subscription:
        where.append(ob.c.subscription == subscription)
    return where


def retry_dead(conn: Connection, *, tenant: str | None = None,
               subscription: str | None = None, now: int | None = None) -> int:
    """Dead messages back to pending, due now, with a fresh dead-letter clock."""
    now = now_ms() if now is None else now
    result = conn.execute(update(ob).where(ob.c.status == DEAD, *_filters(tenant, subscription))
                          .values(status=PENDING, next_attempt_ms=now, created_ms=now,
                                  attempts=0, claimed_by=None))
    return result.rowcount or 0


def replay(conn: Connection, from_ms: int, to_ms: int, *, tenant: str | None = None,
           subscription: str | None = None, event_type: str | None = None,
           now: int | None = None) -> int:
    """Send again every message of events that occurred in [from_ms, to_ms), whatever its
    state (same idempotency key: it is the same event). Messages being sent are left be."""
    now = now_ms() if now is None else now
    where = [ob.c.occurred_ms >= from_ms, ob.c.occurred_ms < to_ms,
             or_(ob.c.status != PENDING, ob.c.claimed_by.is_(None)),
             ob.c.status != SKIPPED,  # an opted-out number stays opted out
             *_filters(tenant, subscription)]
    if event_type:
        where.append(ob.c.event == event_type)
    if subscription is None:  # texting callers again takes asking for it by name
        where.append(ob.c.subscription != SMS)
    result = conn.execute(update(ob).where(and_(*where))
                          .values(status=PENDING, next_attempt_ms=now, created_ms=now,
                                  attempts=0, claimed_by=None, delivered_ms=None))
    return result.rowcount or 0
