"""Per-call state of the segment engine: what it remembers about a call between events.

Mutable on purpose (the engine's private working memory); everything that leaves
the engine is a frozen record from ``daemon.engine.records``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar

_R = TypeVar("_R")
_FIELDS: dict[type, frozenset[str]] = {}


def peek(raw: bytes, key: bytes) -> bytes | None:
    """Raw value of header ``key`` (given as b"\\nName: ") without decoding the event."""
    if raw.startswith(key[1:]):
        start = len(key) - 1
    else:
        i = raw.find(key)
        if i < 0:
            return None
        start = i + len(key)
    end = raw.find(b"\n", start)
    return raw[start:] if end < 0 else raw[start:end]


def evolve(record: _R, **changes: object) -> _R:
    """``dataclasses.replace`` for the engine's frozen records, several times cheaper.

    ``replace`` reads every field and runs the frozen ``__init__``, which sets each field
    through ``object.__setattr__``; the engine does this on every segment change. The
    records have no ``__post_init__`` and no slots, so copying the instance dict gives an
    equal value. Unknown field names are still refused, as ``replace`` does.
    """
    cls = record.__class__
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    if not changes.keys() <= names:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(changes.keys() - names)}")
    new = object.__new__(cls)
    state = new.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return new


def domain_of(name: str | None) -> str:
    return name.partition("@")[2] if name else ""


def with_attrs(attrs: tuple[tuple[str, str], ...], **more: str) -> tuple[tuple[str, str], ...]:
    """Attributes as a sorted tuple, so the order they were learnt in does not matter."""
    merged = dict(attrs)
    merged.update(more)
    return tuple(sorted(merged.items()))


def channel_uuids(channels: object) -> frozenset[str] | None:
    """The uuids in a parsed ``show channels as json`` reply, or None when it cannot be
    trusted to be the whole list.

    FreeSWITCH answers ``{"row_count": N, "rows": [{"uuid": ...}, ...]}``, and an idle
    switch just ``{"row_count": 0}`` (no "rows"): that one is a real empty list. Anything
    else (``{}`` for an -ERR reply or unreadable JSON, rows without a uuid, a count that
    disagrees with the rows) says nothing about which channels exist.
    """
    if not isinstance(channels, Mapping) or not channels:
        return None
    count = channels.get("row_count")
    rows = channels.get("rows")
    if rows is None:
        return frozenset() if count == 0 and not isinstance(count, bool) else None
    if not isinstance(rows, list) or (count is not None and count != len(rows)):
        return None
    uuids = []
    for row in rows:
        uuid = row.get("uuid") if isinstance(row, Mapping) else None
        if not isinstance(uuid, str) or not uuid:
            return None  # a channel we cannot name might be any call's
        uuids.append(uuid)
    return frozenset(uuids)


# mod_callcenter member states of a caller still waiting, being offered or talking
_LIVE_MEMBER_STATES = frozenset({"Waiting", "Trying", "Answered"})


def member_uuids(members: object) -> frozenset[str]:
    """The member and session uuids of the live rows of ``callcenter_config queue list
    members <queue>`` replies (queue -> text: a ``|`` header line, rows, ``+OK``).

    Only used to keep calls open, never to close one, so an unreadable reply just adds
    nothing."""
    found: set[str] = set()
    for text in (members.values() if isinstance(members, Mapping) else ()):
        lines = [line for line in str(text).splitlines() if "|" in line]
        if not lines:
            continue
        head = lines[0].split("|")
        if "uuid" not in head or "state" not in head:
            continue
        cols = {name: head.index(name) for name in ("uuid", "session_uuid", "state")
                if name in head}
        for line in lines[1:]:
            row = line.split("|")
            if len(row) != len(head) or row[cols["state"]] not in _LIVE_MEMBER_STATES:
                continue
            found.update(row[i] for key, i in cols.items() if key != "state" and row[i])
    return frozenset(found)


@dataclass(frozen=True)
class SwitchPresence:
    """What :meth:`SegmentEngine.reconcile` needs of a switch's snapshot: the uuids of its
    channels (None: the list could not be read) and of its live queue members. It is also
    what the daemon journals of a snapshot, so a replay reconciles exactly as it did."""

    node: str
    channels: frozenset[str] | None
    members: frozenset[str] = frozenset()

    @classmethod
    def of(cls, snapshot: object) -> SwitchPresence:
        if isinstance(snapshot, SwitchPresence):
            return snapshot
        return cls(str(getattr(snapshot, "node", "") or ""),
                   channel_uuids(getattr(snapshot, "channels", None)),
                   member_uuids(getattr(snapshot, "members", None)))


def to_int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass
class Visit:
    """One queue stay (CC-Member-UUID) of a call."""

    member_uuid: str
    queue: str
    joined_ms: int
    extension: str | None = None  # the caller's destination (queue extension) during the stay
    answered_ms: int | None = None
    agent: str | None = None
    agent_leg: str | None = None
    talk_seq: int = 0
    talk_id: str | None = None  # open talk piece
    hold_id: str | None = None  # open hold
    hold_seq: int = 0
    talk_ids: list[str] = field(default_factory=list)
    talk_ended_ms: int | None = None
    first_hangup: str | None = None  # caller | agent | system, whoever left the talk first
    first_hangup_own_leg: bool = False  # decided by the caller leg's own hangup (no loopback twin)
    caller_up_after_talk: bool = False
    transfer_id: str | None = None
    # the caller went on into the dialplan's own after-bridge destination (a survey queue's
    # transfer_after_bridge): what the caller's leg runs from there is not a transfer
    after_bridge: bool = False
    refer: tuple[str, str] | None = None  # (blind|attended, destination) from the agent's REFER
    rings: dict[str, str] = field(default_factory=dict)  # agent -> open ring segment id
    last_ring: dict[str, str] = field(default_factory=dict)  # agent -> latest ring segment id
    ring_seq: dict[str, int] = field(default_factory=dict)  # agent -> rings so far in this stay
    ended: bool = False
    left: bool = False  # live "leave" sent

    @property
    def in_talk(self) -> bool:
        """Bridged to the agent (talking or on hold) and the caller has not left yet."""
        return self.answered_ms is not None and self.talk_ended_ms is None


@dataclass
class CallState:
    call_id: str
    tenant: str
    node: str
    tenant_known: bool = False  # from a DID or queue, not just a dialplan context
    caller: str = ""
    caller_name: str = ""
    dialed: str = ""
    started_ms: int = 0
    answered_ms: int | None = None
    ended_ms: int | None = None
    known: bool = False  # a channel event of the caller's leg was seen
    a_leg: str | None = None
    caller_side_hungup: bool = False
    hungup: bool = False
    seg_ids: list[str] = field(default_factory=list)
    ivr_seq: int = 0
    ivr_id: str | None = None
    digits: list[str] = field(default_factory=list)
    visits: dict[str, Visit] = field(default_factory=dict)
    first_queue: str | None = None
    conference_ids: dict[str, str] = field(default_factory=dict)  # member id -> segment id
    voicemail_id: str | None = None
    callback_id: str | None = None
    survey_seq: int = 0
    survey_id: str | None = None  # the survey script the caller ran last
    survey_heard: bool = False  # its hotline::survey event came (it may follow the hangup)
    callback_legs: "CallbackLegs | None" = None  # the dialer's legs of a callback attempt
    supervision_ids: dict[str, str] = field(default_factory=dict)  # supervisor leg -> segment
    extra_seq: int = 0
    extra_talk_id: str | None = None
    pending_transfer: tuple[str, str] | None = None  # (destination, method) from an API command
    last_ms: int = 0


@dataclass
class CallbackLegs:
    """The legs the callback dialer opened for one attempt (daemon/switch/dialer.py): the
    agent's phone first, then the customer; both carry ``hotline_callback_call_id``."""

    agent_leg: str
    agent: str | None
    queue: str | None
    ring_id: str
    talk_id: str | None = None
    customer_legs: set[str] = field(default_factory=set)
    customer_gone: bool = False  # a customer leg hung up (before the agent's, if first)
