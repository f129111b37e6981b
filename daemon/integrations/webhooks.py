"""Webhook events: derived from the engine's stored rows, versioned, signed (pure, no I/O).

The store hands every batch of rows it writes to the outbox (``daemon.storage.outbox``),
which asks :func:`events_of` what happened in them. Each event has a deterministic id
(a UUIDv5 of its type and the record it comes from), so a record written again - a
newer version, a replay, a spill file after an outage - yields the same id, and the
outbox's ``ON CONFLICT DO NOTHING`` keeps one message per subscription and event.

What counts as "happened" (docs/WEBHOOKS.md):

=====================  ==========================================================
``call.offered``       a ring segment: mod_callcenter offered the call to an agent
``call.answered``      a talk segment with an agent: the agent picked up
``call.ended``         a call row with ``ended_ms``: the caller's leg hung up
``call.abandoned``     a queue segment whose outcome is abandoned / short-abandon
``callback.requested`` a callback segment (the caller asked to be called back)
``survey.completed``   a survey segment with a score
``agent.status_changed`` an agent status interval (Available, On Break, ...)
=====================  ==========================================================

A payload is ``{"version": 1, "id", "type", "occurred_at", "tenant", "domain", "data"}``;
its JSON text is fixed when the event is derived, and the signature covers
``f"{timestamp}.{body}"`` (HMAC-SHA256, hex) so a receiver can check both the sender and
the freshness (``verify``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

PAYLOAD_VERSION = 1
_NAMESPACE = uuid.UUID("6f1c2e5a-8d0b-4c4e-9a51-5d3b1f0e7c42")  # Hotline's event ids
SIGNATURE_HEADER = "Hotline-Signature"
TIMESTAMP_HEADER = "Hotline-Timestamp"
IDEMPOTENCY_HEADER = "Hotline-Idempotency-Key"
EVENT_HEADER = "Hotline-Event"
ABANDONED = ("abandoned", "short-abandon")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class WebhookEvent:
    """One thing that happened, ready to be queued for each subscriber of its type."""

    event_id: str  # the idempotency key
    type: str
    domain: str  # the tenant's domain (rows carry domains)
    occurred_ms: int
    data: Mapping[str, Any]

    def body(self, tenant_id: str) -> str:
        """The JSON text sent (and signed), fixed when the event is queued."""
        payload = {"version": PAYLOAD_VERSION, "id": self.event_id, "type": self.type,
                   "occurred_at": iso(self.occurred_ms), "tenant": tenant_id,
                   "domain": self.domain, "data": dict(self.data)}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def event_id(kind: str, record_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}\x00{record_id}"))


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds (``2026-12-04T17:35:18.123Z``)."""
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _seconds(start: int | None, end: int | None) -> float | None:
    return None if start is None or end is None else round((end - start) / 1000, 3)


def calls_needed(by_table: Mapping[str, Sequence[Row]]) -> set[str]:
    """The call ids whose call row (and segments) the events of a batch need to describe."""
    ids = {row["call_id"] for row in by_table.get("segments", ())
           if row["kind"] in ("ring", "talk")}
    ids.update(row["call_id"] for row in by_table.get("calls", ()) if row.get("ended_ms"))
    return ids


def _nobody(domain: str, caller: str) -> Mapping[str, Any] | None:
    return None


def events_of(by_table: Mapping[str, Sequence[Row]], calls: Mapping[str, Row],
              segments_of: Mapping[str, Sequence[Row]],
              wanted: Iterable[str] | None = None,
              customer_of: Callable[[str, str], Mapping[str, Any] | None] = _nobody,
              ) -> list[WebhookEvent]:
    """Every event a batch of rows shows; ``calls`` / ``segments_of`` are the stored rows of
    the calls ``calls_needed`` names (read in the same transaction); ``wanted`` limits the
    event types (None: all); ``customer_of(domain, caller)`` is the caller's directory
    entry (``Customer.to_dict()``) or None."""
    want = set(wanted) if wanted is not None else None
    out: list[WebhookEvent] = []

    def _offer(seg: Row, call: Row) -> dict[str, Any]:
        return dict(_offer_data(seg, call), customer=_customer(customer_of, seg))

    def _ended(call: Row, segs: Sequence[Row]) -> dict[str, Any]:
        return dict(_ended_data(call, segs), customer=_customer(customer_of, call))

    def add(kind: str, record_id: str, domain: str, at_ms: int, data: dict[str, Any]) -> None:
        if want is None or kind in want:
            out.append(WebhookEvent(event_id(kind, record_id), kind, domain, at_ms, data))

    for seg in by_table.get("segments", ()):
        kind = seg["kind"]
        call = calls.get(seg["call_id"], {})
        if kind == "ring" and seg.get("agent"):
            add("call.offered", seg["segment_id"], seg["tenant"], seg["started_ms"],
                _offer(seg, call))
        elif kind == "talk" and seg.get("agent"):
            add("call.answered", seg["segment_id"], seg["tenant"], seg["started_ms"],
                _offer(seg, call))
        elif kind == "queue" and seg.get("outcome") in ABANDONED and seg.get("ended_ms"):
            add("call.abandoned", seg["segment_id"], seg["tenant"], seg["ended_ms"], {
                "call_id": seg["call_id"], "caller": seg["caller"], "dialed": seg["dialed"],
                "queue": seg["queue"], "short": seg["outcome"] == "short-abandon",
                "entered_at": iso(seg["started_ms"]), "abandoned_at": iso(seg["ended_ms"]),
                "wait_s": _seconds(seg["started_ms"], seg["ended_ms"])})
        elif kind == "callback":
            add("callback.requested", seg["segment_id"], seg["tenant"], seg["started_ms"], {
                "call_id": seg["call_id"], "caller": seg["caller"], "number": seg.get("target"),
                "queue": seg.get("queue"), "requested_at": iso(seg["started_ms"])})
        elif kind == "survey" and seg.get("score") is not None:
            add("survey.completed", seg["segment_id"], seg["tenant"], seg["started_ms"], {
                "call_id": seg["call_id"], "caller": seg["caller"], "queue": seg.get("queue"),
                "agent": seg.get("agent"), "score": seg["score"],
                "completed_at": iso(seg["started_ms"])})
    for call in by_table.get("calls", ()):
        if call.get("ended_ms"):
            add("call.ended", call["call_id"], call["tenant"], call["ended_ms"],
                _ended(call, segments_of.get(call["call_id"], ())))
    for interval in by_table.get("agent_intervals", ()):
        if interval["kind"] == "status":
            add("agent.status_changed", interval["interval_id"], interval["tenant"],
                interval["started_ms"], {
                    "agent": interval["agent"], "status": interval["value"],
                    "reason": interval.get("reason"), "since": iso(interval["started_ms"])})
    return out


def _customer(customer_of: Callable[[str, str], Mapping[str, Any] | None],
              row: Row) -> dict[str, Any] | None:
    found = customer_of(row["tenant"], row["caller"])
    return dict(found) if found is not None else None


def _offer_data(seg: Row, call: Row) -> dict[str, Any]:
    """The screen pop: who calls, what they chose, where they waited, who takes it."""
    entered = seg.get("queue_entered_ms")
    return {"call_id": seg["call_id"], "caller": seg["caller"],
            "caller_name": call.get("caller_name") or "", "dialed": seg["dialed"],
            "ivr_path": call.get("ivr_path") or "", "queue": seg.get("queue"),
            "agent": seg["agent"], "at": iso(seg["started_ms"]),
            "wait_s": _seconds(entered, seg["started_ms"])}


def _ended_data(call: Row, segments: Sequence[Row]) -> dict[str, Any]:
    segs = sorted(segments, key=lambda s: (s["started_ms"], s["segment_id"]))
    return {"call_id": call["call_id"], "caller": call["caller"],
            "caller_name": call.get("caller_name") or "", "dialed": call["dialed"],
            "direction": call["direction"], "outcome": call["outcome"],
            "ivr_path": call.get("ivr_path") or "", "first_queue": call.get("first_queue"),
            "started_at": iso(call["started_ms"]), "ended_at": iso(call["ended_ms"]),
            "duration_s": _seconds(call["started_ms"], call["ended_ms"]),
            "segments": [{"kind": s["kind"], "started_at": iso(s["started_ms"]),
                          "ended_at": iso(s.get("ended_ms")),
                          "duration_s": _seconds(s["started_ms"], s.get("ended_ms")),
                          "queue": s.get("queue"), "agent": s.get("agent"),
                          "outcome": s.get("outcome")} for s in segs]}


# --- signing ------------------------------------------------------------------------------

def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 over ``b"<timestamp>." + body``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def headers(secret: str, timestamp: int, body: bytes, event: str, idempotency_key: str,
            delivery_id: str) -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8",
            "User-Agent": "hotline-webhooks/1",
            EVENT_HEADER: event, IDEMPOTENCY_HEADER: idempotency_key,
            "Hotline-Delivery": delivery_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: str, timestamp: str, body: bytes, signature_header: str, *,
           now_s: float, tolerance_s: int = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now_s - ts) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, ts, body), signature_header or "")
