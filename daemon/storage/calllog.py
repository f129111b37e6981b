"""The call log: each call with its segments, read from the statistics database.

``call_log(db_url, ...)`` returns plain dicts - the public JSON of ``hotline
calls --json``, documented in docs/CALLS_JSON.md. Keep that document in step
with ``call_dict`` / ``segment_dict``: every key is always present (null where
it does not apply), times are ISO 8601 with milliseconds.

Tenants are named by their id (``demo``, what the YAML author wrote and what
``hotline report --tenant`` takes); the domain is a field of its own. Times are on
the wall clock of each call's tenant (with its UTC offset), or in UTC (``Z``) with
``utc=True``; a tenant the model does not know (or no model at all) is named by its
domain and shown in UTC. --from/--to are read on each tenant's wall clock too.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select, true

from daemon.definition.model import CallCenter
from daemon.definition.moments import MomentError, parse_ms
from daemon.storage import schema
from daemon.storage.store import make_engine

# order of kinds for segments starting at the same millisecond: the order a call lives them
KIND_ORDER = {k: i for i, k in enumerate(("ivr", "transfer", "queue", "ring", "talk", "hold",
                                          "supervision", "wrapup", "conference", "voicemail",
                                          "survey", "callback"))}
SEGMENT_FIELDS = ("kind", "started_at", "ended_at", "duration_ms", "queue", "agent", "outcome",
                  "segment_id", "visit_id", "queue_entered_at", "menu", "digits", "target",
                  "transfer_type", "score", "disposition", "recording", "hangup_by", "attrs")
CALL_FIELDS = ("call_id", "tenant", "domain", "caller", "dialed", "started_at", "ended_at", "outcome",
               "duration_ms", "node", "direction", "caller_name", "ivr_path", "first_queue",
               "segments")


class CallLogError(ValueError):
    """A call-log request that cannot be answered (bad time, unknown tenant): one sentence."""


def iso_ms(ms: int | None, tz: ZoneInfo | None = None) -> str | None:
    """Epoch milliseconds as ISO 8601 with milliseconds: ``2026-11-22T11:07:09.492Z`` in UTC
    (``tz`` None), ``2026-11-22T12:07:09.492+01:00`` on the wall clock of ``tz``."""
    if ms is None:
        return None
    if tz is None:
        t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
    t = dt.datetime.fromtimestamp(ms // 1000, tz).replace(microsecond=(ms % 1000) * 1000)
    return t.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class TenantView:
    """How the call log shows the calls of one domain: its public name and its clock."""

    id: str
    domain: str
    zone: ZoneInfo | None  # None: UTC, written with Z

    @property
    def zone_name(self) -> str:
        return self.zone.key if self.zone is not None else "UTC"


def tenant_views(center: CallCenter | None, *, utc: bool = False) -> dict[str, TenantView]:
    """Domain -> view, for every tenant of the model."""
    if center is None:
        return {}
    return {t.domain: TenantView(t.id, t.domain, None if utc else ZoneInfo(t.timezone))
            for t in center.tenants}


def _view(views: dict[str, TenantView], domain: str) -> TenantView:
    return views.get(domain) or TenantView(domain, domain, None)


def segment_dict(row: Any, tz: ZoneInfo | None = None) -> dict[str, Any]:
    attrs = None
    if row.attrs:
        try:
            attrs = json.loads(row.attrs)
        except ValueError:
            attrs = {"raw": row.attrs}
    return {
        "kind": row.kind,
        "started_at": iso_ms(row.started_ms, tz),
        "ended_at": iso_ms(row.ended_ms, tz),
        "duration_ms": row.duration_ms,
        "queue": row.queue,
        "agent": row.agent,
        "outcome": row.outcome,
        "segment_id": row.segment_id,
        "visit_id": row.visit_id,
        "queue_entered_at": iso_ms(row.queue_entered_ms, tz),
        "menu": row.menu,
        "digits": row.digits,
        "target": row.target,
        "transfer_type": row.transfer_type,
        "score": row.score,
        "disposition": row.disposition,
        "recording": row.recording,
        "hangup_by": row.hangup_by,
        "attrs": attrs,
    }


def call_dict(row: Any, segments: list[dict[str, Any]],
              view: TenantView | None = None) -> dict[str, Any]:
    view = view or TenantView(row.tenant, row.tenant, None)
    return {
        "call_id": row.call_id,
        "tenant": view.id,
        "domain": row.tenant,
        "caller": row.caller,
        "dialed": row.dialed,
        "started_at": iso_ms(row.started_ms, view.zone),
        "ended_at": iso_ms(row.ended_ms, view.zone),
        "outcome": row.outcome,
        "duration_ms": None if row.ended_ms is None else row.ended_ms - row.started_ms,
        "node": row.node,
        "direction": row.direction,
        "caller_name": row.caller_name,
        "ivr_path": row.ivr_path,
        "first_queue": row.first_queue,
        "segments": segments,
    }


def find_tenant(views: dict[str, TenantView], name: str) -> TenantView:
    """--tenant: a tenant id (``demo``) or, as before, its domain (``hotline.test``)."""
    for v in views.values():
        if name in (v.id, v.domain):
            return v
    return TenantView(name, name, None)  # not in the model: a domain seen only in the data


def call_log(db_url: str, *, start: str | None = None, end: str | None = None,
             call_id: str | None = None, tenant: str | None = None,
             limit: int | None = None, center: CallCenter | None = None, utc: bool = False,
             now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Calls that started in [start, end), oldest first, each with its segments.

    ``start``/``end`` are what the user typed (see ``daemon.definition.moments``), read on
    the wall clock of each call's tenant (UTC with ``utc``, or for a domain the model
    does not know). ``tenant`` is a tenant id or domain. Raises :class:`CallLogError`.
    """
    views = tenant_views(center, utc=utc)
    calls_t, segs_t = schema.calls, schema.segments
    query = select(calls_t)
    only = find_tenant(views, tenant) if tenant is not None else None
    if only is not None:
        query = query.where(calls_t.c.tenant == only.domain)
    if start is not None or end is not None:
        query = query.where(_time_filter(views, only, start, end, now))
    if call_id is not None:
        query = query.where(calls_t.c.call_id == call_id)
    query = query.order_by(calls_t.c.started_ms, calls_t.c.call_id)
    if limit is not None:
        query = query.limit(limit)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            if only is not None and only.domain not in views and conn.execute(
                    select(calls_t.c.call_id).where(calls_t.c.tenant == only.domain).limit(1)
            ).first() is None:
                names = ", ".join(sorted(v.id for v in views.values())) or "none configured"
                raise CallLogError(f"no tenant {tenant!r} (tenants: {names})")
            call_rows = conn.execute(query).all()
            by_call: dict[str, list[Any]] = {row.call_id: [] for row in call_rows}
            ids = list(by_call)
            for first in range(0, len(ids), 500):  # keep IN lists within every driver's limits
                chunk = ids[first:first + 500]
                for seg in conn.execute(select(segs_t).where(segs_t.c.call_id.in_(chunk))):
                    by_call[seg.call_id].append(seg)
    finally:
        engine.dispose()
    result = []
    for row in call_rows:
        view = _view(views, row.tenant)
        segs = sorted(by_call[row.call_id],
                      key=lambda s: (s.started_ms, KIND_ORDER.get(s.kind, 99), s.segment_id))
        result.append(call_dict(row, [segment_dict(s, view.zone) for s in segs], view))
    return result


def _time_filter(views: dict[str, TenantView], only: TenantView | None, start: str | None,
                 end: str | None, now: dt.datetime | None) -> Any:
    """started_ms within the bounds read on each tenant's clock: one clause per tenant of
    the model, and one in UTC for every other domain."""
    c = schema.calls.c

    def bounds(zone: str) -> Any:
        try:
            low = (parse_ms(start, zone, now=now, option="--from")
                   if start is not None else None)
            high = (parse_ms(end, zone, end=True, now=now, option="--to")
                    if end is not None else None)
        except MomentError as exc:
            raise CallLogError(str(exc)) from None
        if low is not None and high is not None and high <= low:
            raise CallLogError("--to must be after --from")
        parts = []
        if low is not None:
            parts.append(c.started_ms >= low)
        if high is not None:
            parts.append(c.started_ms < high)
        return and_(*parts)

    if only is not None:
        return bounds(only.zone_name)
    clauses = [and_(c.tenant == v.domain, bounds(v.zone_name)) for v in views.values()]
    others = c.tenant.not_in([v.domain for v in views.values()]) if views else true()
    clauses.append(and_(others, bounds("UTC")))
    return or_(*clauses)


def _secs(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"


def format_table(calls: Sequence[dict[str, Any]]) -> str:
    """The call log for humans: one header line per call, then its segments indented."""
    if not calls:
        return "No calls."
    lines: list[str] = []
    for call in calls:
        length = "open" if call["duration_ms"] is None else f"{_secs(call['duration_ms'])} s"
        lines.append(f"{call['started_at']}  {call['call_id']}  {call['caller'] or '-'} -> "
                     f"{call['dialed'] or '-'}  {call['tenant']}  {call['outcome']}  {length}")
        rows = [("kind", "start", "secs", "queue", "agent", "outcome", "detail")]
        for seg in call["segments"]:
            detail = []
            for name in ("digits", "menu", "target", "transfer_type", "score", "disposition",
                         "hangup_by"):
                if seg.get(name) is not None:
                    detail.append(f"{name}={seg[name]}")
            if seg["kind"] == "supervision" and seg.get("attrs"):
                detail.append(f"mode={seg['attrs'].get('mode')}")  # listen / whisper / barge
            start = (seg["started_at"] or "")[11:23]
            rows.append((seg["kind"], start, _secs(seg["duration_ms"]) or "open",
                         seg["queue"] or "", seg["agent"] or "", seg["outcome"] or "",
                         " ".join(detail)))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            lines.append("    " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
        lines.append("")
    return "\n".join(lines).rstrip()
