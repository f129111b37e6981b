"""What the segment engine emits: calls, segments and agent-state intervals.

These are the rows of the statistics database (``daemon.storage.schema``), as frozen
values. Times are integer milliseconds since the Unix epoch on the switch's
clock (``Event-Date-Timestamp`` // 1000); ids are deterministic so that feeding
the same events twice yields the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SEGMENT_KINDS = (
    "ivr",
    "queue",
    "ring",
    "talk",
    "hold",
    "wrapup",
    "transfer",
    "conference",
    "voicemail",
    "survey",
    "callback",
    "supervision",  # a supervisor listening / whispering / barging in (target = supervisor)
)

# queue segment outcomes
QUEUE_OUTCOMES = (
    "answered",
    "abandoned",
    "short-abandon",
    "timeout",
    "no-agent",
    "exit-key",
    "transferred-out",  # answered, then the agent transferred the caller elsewhere
)
# ring segment outcomes
RING_OUTCOMES = ("answered", "no-answer", "rejected", "busy", "lose-race", "caller-abandoned")
# call final outcomes
CALL_OUTCOMES = ("answered", "abandoned", "timeout", "blocked", "ivr-only", "voicemail", "callback",
                 "conference", "outbound", "in-progress")


@dataclass(frozen=True)
class CallRecord:
    call_id: str  # Unique-ID of the caller's inbound leg
    tenant: str  # tenant domain, e.g. "hotline.test"
    node: str  # FreeSWITCH node (FreeSWITCH-Switchname / settings name)
    caller: str
    dialed: str
    started_ms: int
    ended_ms: int | None
    outcome: str
    direction: str = "inbound"
    caller_name: str = ""
    ivr_path: str = ""  # digits pressed, comma separated, e.g. "1" or "2,1"
    first_queue: str | None = None  # qualified queue name of the first queue entered


@dataclass(frozen=True)
class Segment:
    segment_id: str  # deterministic: f"{call_id}:{kind}:{discriminator}"
    call_id: str
    tenant: str
    node: str
    kind: str  # one of SEGMENT_KINDS
    started_ms: int
    ended_ms: int | None  # None while still open
    caller: str = ""
    dialed: str = ""
    queue: str | None = None  # qualified, e.g. "billing@hotline.test"
    agent: str | None = None  # qualified, e.g. "1001@hotline.test"
    outcome: str | None = None
    visit_id: str | None = None  # CC-Member-UUID of the queue stay this segment belongs to
    queue_entered_ms: int | None = None  # when that stay began: the interval a call belongs to
    menu: str | None = None  # ivr
    digits: str | None = None  # ivr
    target: str | None = None  # transfer target / conference room / callback number
    transfer_type: str | None = None  # blind / attended
    score: int | None = None  # survey
    disposition: str | None = None  # talk
    recording: str | None = None  # talk
    hangup_by: str | None = None  # talk: caller / agent / system / transfer
    attrs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def duration_ms(self) -> int | None:
        return None if self.ended_ms is None else self.ended_ms - self.started_ms


@dataclass(frozen=True)
class AgentInterval:
    """One stretch of an agent's status (Available, On Break, ...) or state (Waiting, ...)."""

    interval_id: str  # deterministic: f"{agent}:{kind}:{started_ms}"
    tenant: str
    node: str
    agent: str  # qualified
    kind: str  # "status" | "state"
    value: str  # e.g. "Available", "On Break", "Waiting", "In a queue call"
    started_ms: int
    ended_ms: int | None
    reason: str | None = None  # break reason

    @property
    def duration_ms(self) -> int | None:
        return None if self.ended_ms is None else self.ended_ms - self.started_ms


@dataclass(frozen=True)
class LiveChange:
    """A change of live state for ``daemon.live.state``.

    kind "agent": key = qualified agent; data keys among status, state, reason,
      call_id, since_ms (only the keys that changed).
    kind "member": key = qualified queue; data: call_id, caller, joined_ms,
      action = "join" | "leave" (leave also carries outcome).
    """

    kind: str
    key: str
    data: tuple[tuple[str, object], ...]
    at_ms: int


@dataclass
class EngineOutput:
    """Everything one event produced. A record with an id seen before replaces it (upsert)."""

    calls: list[CallRecord] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    intervals: list[AgentInterval] = field(default_factory=list)
    live: list[LiveChange] = field(default_factory=list)

    def extend(self, other: "EngineOutput") -> None:
        self.calls.extend(other.calls)
        self.segments.extend(other.segments)
        self.intervals.extend(other.intervals)
        self.live.extend(other.live)

    def __bool__(self) -> bool:
        return bool(self.calls or self.segments or self.intervals or self.live)
