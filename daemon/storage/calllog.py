"""The call log: each call with its segments, read from the statistics database.

``call_log(db_url, ...)`` returns plain dicts - the public JSON of ``hotline
calls --json``, documented in docs/CALLS_JSON.md. Keep that document in step
with ``call_dict`` / ``segment_dict``: every key is always present (null where
it does not apply), times are ISO 8601 UTC with milliseconds.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Sequence

from sqlalchemy import select

from daemon.storage import schema
from daemon.storage.store import make_engine

# order of kinds for segments starting at the same millisecond: the order a call lives them
KIND_ORDER = {k: i for i, k in enumerate(("ivr", "transfer", "queue", "ring", "talk", "hold",
                                          "supervision", "wrapup", "conference", "voicemail",
                                          "survey", "callback"))}
SEGMENT_FIELDS = ("kind", "started_at", "ended_at", "duration_ms", "queue", "agent", "outcome",
                  "segment_id", "visit_id", "queue_entered_at", "menu", "digits", "target",
                  "transfer_type", "score", "disposition", "recording", "hangup_by", "attrs")
CALL_FIELDS = ("call_id", "tenant", "caller", "dialed", "started_at", "ended_at", "outcome",
               "duration_ms", "node", "direction", "caller_name", "ivr_path", "first_queue",
               "segments")


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds: ``2026-11-22T11:07:09.492Z``."""
    if ms is None:
        return None
    t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_when(text: str, *, end: bool = False) -> int:
    """ISO date or datetime -> epoch ms (UTC unless an offset is given).

    A bare date means the start of that day, or with ``end=True`` the start of the
    next day, so ``--from 2026-11-22 --to 2026-11-22`` is that whole day.
    Raises ValueError with a sentence for anything else.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty date")
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
            if end:
                start += dt.timedelta(days=1)
            return int(start.timestamp() * 1000)
        if value.endswith(("Z", "z")):
            value = value[:-1] + "+00:00"
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or date-time "
                         "(e.g. 2026-11-22 or 2026-11-22T11:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return round(moment.timestamp() * 1000)


def segment_dict(row: Any) -> dict[str, Any]:
    attrs = None
    if row.attrs:
        try:
            attrs = json.loads(row.attrs)
        except ValueError:
            attrs = {"raw": row.attrs}
    return {
        "kind": row.kind,
        "started_at": iso_ms(row.started_ms),
        "ended_at": iso_ms(row.ended_ms),
        "duration_ms": row.duration_ms,
        "queue": row.queue,
        "agent": row.agent,
        "outcome": row.outcome,
        "segment_id": row.segment_id,
        "visit_id": row.visit_id,
        "queue_entered_at": iso_ms(row.queue_entered_ms),
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


def call_dict(row: Any, segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "call_id": row.call_id,
        "tenant": row.tenant,
        "caller": row.caller,
        "dialed": row.dialed,
        "started_at": iso_ms(row.started_ms),
        "ended_at": iso_ms(row.ended_ms),
        "outcome": row.outcome,
        "duration_ms": None if row.ended_ms is None else row.ended_ms - row.started_ms,
        "node": row.node,
        "direction": row.direction,
        "caller_name": row.caller_name,
        "ivr_path": row.ivr_path,
        "first_queue": row.first_queue,
        "segments": segments,
    }


def call_log(db_url: str, *, start_ms: int | None = None, end_ms: int | None = None,
             call_id: str | None = None, tenant: str | None = None,
             limit: int | None = None) -> list[dict[str, Any]]:
    """Calls that started in [start_ms, end_ms), oldest first, each with its segments."""
    calls_t, segs_t = schema.calls, schema.segments
    query = select(calls_t)
    if start_ms is not None:
        query = query.where(calls_t.c.started_ms >= start_ms)
    if end_ms is not None:
        query = query.where(calls_t.c.started_ms < end_ms)
    if call_id is not None:
        query = query.where(calls_t.c.call_id == call_id)
    if tenant is not None:
        query = query.where(calls_t.c.tenant == tenant)
    query = query.order_by(calls_t.c.started_ms, calls_t.c.call_id)
    if limit is not None:
        query = query.limit(limit)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            call_rows = conn.execute(query).all()
            by_call: dict[str, list[Any]] = {row.call_id: [] for row in call_rows}
            ids = list(by_call)
            for start in range(0, len(ids), 500):  # keep IN lists within every driver's limits
                chunk = ids[start:start + 500]
                for seg in conn.execute(select(segs_t).where(segs_t.c.call_id.in_(chunk))):
                    by_call[seg.call_id].append(seg)
    finally:
        engine.dispose()
    result = []
    for row in call_rows:
        segs = sorted(by_call[row.call_id],
                      key=lambda s: (s.started_ms, KIND_ORDER.get(s.kind, 99), s.segment_id))
        result.append(call_dict(row, [segment_dict(s) for s in segs]))
    return result


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
