"""The segment engine: FreeSWITCH events in, calls, segments, agent intervals and live changes out.

Pure: no socket, clock, database or Redis. Every time comes from the event's
``Event-Date-Timestamp``; every id is derived from the events
(``f"{call_id}:{kind}:{discriminator}"``), so a second engine fed the same
stream emits identical records, and a record re-emitted with an id seen before
replaces the earlier version (upsert). Events re-sent with the same Core-UUID
and Event-Sequence are ignored.

The interpreter is a dispatch table of small handlers keyed by
``(Event-Name, Event-Subclass, CC-Action / Action)`` (wazo-call-logd style).
Handlers mutate per-call state and put frozen records; ``feed`` returns what
changed. A failure while handling one event is logged with the call it belongs
to and never stops the other calls. After a (re)connect ``reconcile`` ends the
calls whose caller leg the switch no longer lists (their hangup was lost).

What the segments mean is defined by the capture README (the ground truth,
../shared/esl-captures/README.md, copied to tests/data/captures/):

* a *call* is the caller's inbound leg that ran the DID (not loopback ``-a``
  twins, agent legs, loopback ``agent-``/``phone-`` legs or consult legs);
* ``ivr``: from the DID's answer (first menu) or ``menu::enter`` to
  ``menu::exit``; digits from DTMF on the caller's leg;
* ``queue``: ``member-queue-start`` to ``bridge-agent-start`` (answered) or
  ``member-queue-end`` (abandoned / short-abandon / timeout / no-agent /
  exit-key); answered stays the agent transferred become transferred-out;
* ``ring``: ``agent-offering`` to ``bridge-agent-start`` / ``-fail``;
* ``talk``: ``bridge-agent-start`` to the caller's ``CHANNEL_UNBRIDGE`` (or
  ``bridge-agent-end``), split around ``hold`` (``CHANNEL_HOLD`` to
  ``CHANNEL_UNHOLD`` on the agent's leg); the last piece says who hung up;
* ``wrapup``: the agent's wrap-up-time from ``bridge-agent-end``, cut short by
  a status change inside it (re-emitted shorter);
* ``transfer``: zero length where the caller left the agent and went on into
  another extension - not into the dialplan's own ``transfer_after_bridge``
  destination (a survey queue's ``hotline-qexit-<queue>``), which is no transfer;
* ``survey``: from the caller's leg running ``python hotline_survey`` to its end or
  the hang-up; ``hotline::survey`` brings the score;
* ``callback``: from ``hotline::callback`` request to the dialer's result; the
  dialer's legs (``hotline_callback_call_id``) add the agent's ``ring`` (the phone
  rings to its answer) and the ``talk`` with the customer to the same call;
* ``supervision``: a supervisor's leg running ``eavesdrop`` on the agent's leg, to
  that leg's hang-up; mode listen / whisper / barge from its eavesdrop variables.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from daemon.engine.records import CallRecord, EngineOutput, LiveChange, Segment
from daemon.engine.segments_agents import AgentBook, WrapUp
from daemon.engine.segments_state import (
    CallbackLegs,
    CallState,
    SwitchPresence,
    Visit,
    domain_of,
    evolve,
    peek,
    to_int,
    with_attrs,
)
from daemon.switch.events import Event

if TYPE_CHECKING:
    from daemon.definition.model import CallCenter
    from daemon.switch.supervisor import SwitchSnapshot

logger = logging.getLogger(__name__)

DEFAULT_SHORT_ABANDON_S = 20
# A finished call is forgotten this long (switch time) after its last event, so
# a long-running daemon keeps bounded state; late events of a call (e.g.
# billing's bridge-agent-end after a transfer) arrive within seconds.
PURGE_AFTER_MS = 15 * 60 * 1000
PURGE_EVERY_MS = 60 * 1000
# A call silent this long lost its end (e.g. events missed while disconnected): forget it too.
STALE_AFTER_MS = 12 * 3600 * 1000
MAX_CLOCK_STEP_MS = 3600 * 1000
# duplicate detection window per Core-UUID (events can be re-sent after a reconnect)
SEEN_WINDOW = 20000
# mod_callcenter may report a caller's hang-up as a break-out a moment before the hangup event
EXIT_KEY_RACE_MS = 500
# member-queue-end CC-Cancel-Reason of a caller who pressed one of cc_exit_keys (1.10.12;
# older versions said BREAK_OUT, as for a hang-up)
EXIT_WITH_KEY = "EXIT_WITH_KEY"
# Hotline's own queue exit extension (daemon/definition/render.py), reached after the bridge
# through transfer_after_bridge in survey queues
QUEUE_EXIT_PREFIX = "hotline-qexit-"

# Only these events are ever decoded; everything else is skipped on a byte peek.
_INTERESTING = frozenset({
    b"CHANNEL_CREATE", b"CHANNEL_ANSWER", b"CHANNEL_EXECUTE", b"CHANNEL_EXECUTE_COMPLETE",
    b"CHANNEL_BRIDGE", b"CHANNEL_UNBRIDGE", b"CHANNEL_HOLD", b"CHANNEL_UNHOLD",
    b"CHANNEL_HANGUP", b"CHANNEL_HANGUP_COMPLETE", b"CHANNEL_DESTROY", b"DTMF", b"API", b"CUSTOM",
})
_INTERESTING_SUBCLASSES = frozenset({
    "callcenter::info", "menu::enter", "menu::exit", "conference::maintenance",
    "hotline::survey", "hotline::callback", "hotline::disposition", "hotline::agent",
})

RING_OUTCOME_BY_CAUSE = {
    "NO_ANSWER": "no-answer",
    "NO_USER_RESPONSE": "no-answer",
    "ALLOTTED_TIMEOUT": "no-answer",
    "RECOVERY_ON_TIMER_EXPIRE": "no-answer",
    "LOSE_RACE": "lose-race",
    "ORIGINATOR_CANCEL": "caller-abandoned",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "rejected",
}


Handler = Callable[[Event, int], None]
# CallRecord fields the engine sets besides call_id, in the order of _call_fields
_CALL_FIELD_NAMES = ("tenant", "node", "caller", "dialed", "started_ms", "ended_ms", "outcome",
                     "caller_name", "ivr_path", "first_queue")


class SegmentEngine:
    """Events in, :class:`EngineOutput` out (see the module docstring)."""

    def __init__(self, node: str = "", agent_wrapup_s: Mapping[str, int] = {},
                 short_abandon_s: Mapping[str, int] = {},
                 internal_numbers: frozenset[str] | set[str] = frozenset(),
                 did_tenants: Mapping[str, str] = {},
                 agent_extensions: Mapping[str, str] = {}) -> None:
        self.node = node
        self.agent_wrapup_s: dict[str, int] = dict(agent_wrapup_s)
        self.short_abandon_s: dict[str, int] = dict(short_abandon_s)
        # Caller numbers of agents' own phones: their calls are consult legs, not calls.
        self.internal_numbers = frozenset(internal_numbers)
        self.did_tenants: dict[str, str] = dict(did_tenants)  # DID -> tenant domain
        # "<extension>@<domain>" of an agent's desk phone -> the qualified agent: who the
        # callback dialer rings (its leg names the phone, not the agent)
        self.agent_extensions: dict[str, str] = dict(agent_extensions)
        self._calls: dict[str, CallState] = {}
        self._legs: dict[str, tuple[str, str, str]] = {}  # uuid -> (call_id, role, member_uuid)
        self._internal: set[str] = set()
        self._campaign_legs: set[str] = set()  # campaign dialer legs: never inbound calls
        self._book = AgentBook()
        self._segs: dict[str, Segment] = {}
        self._emitted_segs: dict[str, Segment] = {}
        # call id -> the fields of the call record emitted last (see _call_fields): comparing
        # them tells whether the record changed without building a frozen record per event
        self._emitted_calls: dict[str, tuple] = {}
        self._seen: dict[str, list] = {}  # Core-UUID -> [highest sequence, sequences seen]
        self._last_purge_ms = 0
        self._clock_ms = 0
        self._jump_ms = 0
        self._heartbeat_ms = 0  # the latest HEARTBEAT's switch time (see _heard)
        self._out = EngineOutput()
        self._dirty_segs: dict[str, None] = {}
        self._dirty_calls: dict[str, None] = {}
        self._event_node = ""
        self._handlers: dict[tuple[str, str | None, str | None], Handler] = {
            ("CHANNEL_CREATE", None, None): self._on_create,
            ("CHANNEL_ANSWER", None, None): self._on_answer,
            ("CHANNEL_EXECUTE", None, None): self._on_execute,
            ("CHANNEL_EXECUTE_COMPLETE", None, None): self._on_execute_complete,
            ("CHANNEL_BRIDGE", None, None): self._on_bridge,
            ("CHANNEL_UNBRIDGE", None, None): self._on_unbridge,
            ("CHANNEL_HOLD", None, None): self._on_hold,
            ("CHANNEL_UNHOLD", None, None): self._on_unhold,
            ("CHANNEL_HANGUP", None, None): self._on_hangup,
            ("CHANNEL_HANGUP_COMPLETE", None, None): self._on_hangup_complete,
            ("CHANNEL_DESTROY", None, None): self._on_destroy,
            ("DTMF", None, None): self._on_dtmf,
            ("API", None, None): self._on_api,
            ("CUSTOM", "menu::enter", None): self._on_menu_enter,
            ("CUSTOM", "menu::exit", None): self._on_menu_exit,
            ("CUSTOM", "callcenter::info", "member-queue-start"): self._on_member_queue_start,
            ("CUSTOM", "callcenter::info", "agent-offering"): self._on_agent_offering,
            ("CUSTOM", "callcenter::info", "bridge-agent-start"): self._on_bridge_agent_start,
            ("CUSTOM", "callcenter::info", "bridge-agent-fail"): self._on_bridge_agent_fail,
            ("CUSTOM", "callcenter::info", "bridge-agent-end"): self._on_bridge_agent_end,
            ("CUSTOM", "callcenter::info", "member-queue-end"): self._on_member_queue_end,
            ("CUSTOM", "callcenter::info", "agent-status-change"): self._on_agent_status,
            ("CUSTOM", "callcenter::info", "agent-state-change"): self._on_agent_state,
            ("CUSTOM", "callcenter::info", "agent-max-no-answer"): self._on_agent_max_no_answer,
            ("CUSTOM", "conference::maintenance", "add-member"): self._on_conference_add,
            ("CUSTOM", "conference::maintenance", "del-member"): self._on_conference_del,
            ("CUSTOM", "hotline::survey", None): self._on_survey,
            ("CUSTOM", "hotline::callback", None): self._on_callback,
            ("CUSTOM", "hotline::disposition", None): self._on_disposition,
            ("CUSTOM", "hotline::agent", None): self._on_hotline_agent,
        }

    # ------------------------------------------------------------------ API

    def feed(self, event: Event) -> EngineOutput:
        """Handle one event; return what it produced (possibly nothing)."""
        raw = event.raw
        name = peek(raw, b"\nEvent-Name: ")
        if name not in _INTERESTING:
            if name == b"HEARTBEAT":
                self._heard(event.timestamp_ms)
            return EngineOutput()
        subclass = action = None
        if name == b"CUSTOM":
            subclass = event.subclass
            if subclass not in _INTERESTING_SUBCLASSES:
                return EngineOutput()
            if subclass == "callcenter::info":
                action = event.get("CC-Action")
            elif subclass == "conference::maintenance":
                action = event.get("Action")
        key_name = name.decode()
        handler = self._handlers.get((key_name, subclass, action))
        if handler is None:
            handler = self._handlers.get((key_name, subclass, None))
            if handler is None:
                return EngineOutput()
        if self._duplicate(event):
            return EngineOutput()
        ts = event.timestamp_ms
        # the engine's node, else the node the supervisor tagged the event with, else the switch's
        self._event_node = (self.node or getattr(event, "node", "")
                            or event.get("FreeSWITCH-Switchname") or "")
        try:
            handler(event, ts)
        except Exception:
            call_id = (event.get("CC-Member-Session-UUID") or event.get("Hotline-Call-ID")
                       or event.uuid or event.get("CC-Agent") or "?")
            logger.exception("failed to handle %s for call %s", key_name, call_id)
        if self._advance_clock(ts) - self._last_purge_ms >= PURGE_EVERY_MS:
            self._purge(self._clock_ms)
        return self._flush()

    def finish(self, close_agent_intervals: bool = False) -> EngineOutput:
        """End of a replayed stream: wrap-ups are already closed at their configured end;
        calls still up stay open (in-progress). With ``close_agent_intervals`` (a capture
        that stands alone) agent status and state intervals end at the switch time of the
        last event the engine read: a recording says nothing about what followed it, and an interval left open
        would count as idle time up to the moment of a report."""
        if close_agent_intervals and self._clock_ms:
            self._book.close_all(self._clock_ms, self._out.intervals)
        return self._flush()

    def checkpoint(self) -> dict:
        """The engine's whole working memory as JSON values (``daemon.engine.checkpoint``):
        an engine given it by :meth:`restore` goes on exactly as this one would."""
        from daemon.engine.checkpoint import encode

        return encode(self)

    def restore(self, state: dict) -> None:
        """Take back a :meth:`checkpoint` (into a fresh engine); CheckpointError if it
        comes from another version of the engine or is damaged."""
        from daemon.engine.checkpoint import restore

        restore(self, state)

    def reconcile(self, snapshot: SwitchSnapshot | SwitchPresence) -> EngineOutput:
        """After a (re)connect: end the calls the switch no longer has.

        ``snapshot.channels`` is the switch's parsed ``show channels as json``,
        ``snapshot.members`` its ``callcenter_config queue list members`` replies. A call of
        this node that is still up here, or still has something open (a hung-up caller whose
        queue end or agent's bridge end was lost), but of which the switch has neither a leg
        (caller, loopback twin, agent) nor a live queue member ended while the daemon was
        not listening. It is closed as if its hangup had been seen at the engine's last
        switch time (the latest event or heartbeat
        read: the best bound there is), or at its hangup if that was seen: the hangup, the
        agent's bridge end (talk, hold, wrap-up) and mod_callcenter's member-queue-end (a
        waiting caller abandoned, rings caller-abandoned) run as for the real events, and
        every segment this closes or opens carries ``closed_by=reconcile``. Events arriving
        later for such a call still apply (a real queue end replaces the guessed one).

        Calls whose leg is still there are untouched; a channel list that cannot be read
        (``{}``) changes nothing. Pure: only the snapshot's uuids and the engine's own
        switch clock are used, so the same state and snapshot give the same output.
        """
        presence = SwitchPresence.of(snapshot)
        alive, members = presence.channels, presence.members
        last_ms = max(self._clock_ms, self._heartbeat_ms)
        if alive is None or not last_ms:
            return EngineOutput()
        nodes = (self.node, presence.node)
        for call_id in sorted(self._calls):
            call = self._calls[call_id]
            if (call.node not in nodes or not self._in_flight(call)
                    or self._on_switch(call, alive, members)):
                continue
            if call.callback_legs is not None and call.callback_legs.agent_leg in alive:
                continue  # the caller is long gone, but the dialer's call is up
            try:
                self._close_vanished(call, last_ms)
            except Exception:  # one call's surprise must not keep the others open
                logger.exception("failed to reconcile call %s", call_id)
        return self._flush()

    @staticmethod
    def _on_switch(call: CallState, channels: frozenset[str], members: frozenset[str]) -> bool:
        """The switch still has a leg of the call (caller, its loopback twin, an agent's) or
        mod_callcenter still lists one of its queue stays: its end is still to come as events
        (a caller who hung up during the talk leaves the agent's bridge end and the queue
        end to follow)."""
        if call.call_id in channels or call.a_leg in channels or call.call_id in members:
            return True
        return any(mu in members or (v.agent_leg is not None and v.agent_leg in channels)
                   for mu, v in call.visits.items())

    def _in_flight(self, call: CallState) -> bool:
        """Up, or with a segment still open (a requested callback stays open by design)."""
        if not call.hungup:
            return True
        segs = self._segs
        return any((seg := segs.get(sid)) is not None and seg.ended_ms is None
                   and seg.kind != "callback" for sid in call.seg_ids)

    def _close_vanished(self, call: CallState, last_ms: int) -> None:
        at = call.ended_ms if call.hungup and call.ended_ms is not None else last_ms
        segs = self._segs
        had = set(call.seg_ids)
        was_open = {sid for sid in had
                    if (seg := segs.get(sid)) is not None and seg.ended_ms is None}
        if not call.hungup:
            self._caller_hangup(call, at)
        for visit in call.visits.values():
            if visit.talk_id is not None or visit.hold_id is not None:
                # the caller's unbridge, then mod_callcenter's bridge-agent-end
                if visit.agent:
                    self._agent_leaves(call, visit, visit.agent, at)
                else:
                    self._end_talk(call, visit, at)
            if not visit.ended:
                self._queue_end(call, visit, at, reason="", cause="", answer_state="hangup")
        if call.extra_talk_id is not None:  # a bridge outside the queue
            self._close(call, call.extra_talk_id, at, hangup_by="caller")
            call.extra_talk_id = None
        for conf_id in call.conference_ids.values():
            self._close(call, conf_id, at)
        for seg_id in call.supervision_ids.values():
            self._close(call, seg_id, at)
        legs = call.callback_legs
        if legs is not None:  # the dialer's call ended unseen too: its last sign of life
            self._close(call, legs.ring_id, last_ms)
            self._callback_talk_end(call, legs, last_ms, "system")
            call.callback_legs = None
        for sid in call.seg_ids:
            seg = segs.get(sid)
            if seg is not None and ((sid in was_open and seg.ended_ms is not None)
                                    or sid not in had):
                self._put(call, evolve(seg, attrs=with_attrs(seg.attrs, closed_by="reconcile")))
        logger.info("call %s ended while not listening: closed at %d", call.call_id, at)

    # ------------------------------------------------------------ plumbing

    def _advance_clock(self, ts: int) -> int:
        """The switch time that drives forgetting finished calls. One event with a wild
        timestamp must not make every call look stale: a jump counts once a second event
        confirms it."""
        if ts > self._clock_ms:
            if self._clock_ms == 0 or ts - self._clock_ms <= MAX_CLOCK_STEP_MS:
                self._clock_ms = ts
            elif self._jump_ms and abs(ts - self._jump_ms) <= MAX_CLOCK_STEP_MS:
                self._clock_ms, self._jump_ms = ts, 0
            else:
                self._jump_ms = ts
        return self._clock_ms

    def _heard(self, ts: int) -> None:
        """A HEARTBEAT (every 20 s) says the link was up at ``ts``: the bound reconcile() has
        for a call whose hangup was lost (a caller waiting in a queue sends no events). Only
        reconcile uses it, and only within a plausible step of what was read before."""
        last = max(self._clock_ms, self._heartbeat_ms)
        if last and 0 < ts - last <= MAX_CLOCK_STEP_MS:
            self._heartbeat_ms = ts

    def _duplicate(self, event: Event) -> bool:
        """An event re-sent (same Core-UUID and Event-Sequence) is ignored: feeding the
        same events twice must not add a second ring, hold or talk piece."""
        seq = to_int(event.get("Event-Sequence"))
        core = event.get("Core-UUID")
        if seq is None or not core:
            return False
        entry = self._seen.get(core)
        if entry is None:  # (updated in place: no tuple and set built per event)
            entry = self._seen[core] = [0, set()]
        high, seen = entry
        if seq in seen or seq <= high - SEEN_WINDOW:
            return True
        seen.add(seq)
        if seq > high:
            entry[0] = high = seq
            if len(seen) > 2 * SEEN_WINDOW:
                entry[1] = {s for s in seen if s > high - SEEN_WINDOW}
        return False

    def _flush(self) -> EngineOutput:
        if not (self._dirty_calls or self._dirty_segs):  # most events change no record
            out = self._out
            if not (out.intervals or out.live):
                return EngineOutput()  # self._out stays: it was never handed out
            self._out = EngineOutput()
            return out
        out, self._out = self._out, EngineOutput()
        emitted_calls = self._emitted_calls
        for call_id in self._dirty_calls:
            call = self._calls.get(call_id)
            if call is None or not call.known:
                continue
            fields = self._call_fields(call)
            if emitted_calls.get(call_id) != fields:
                emitted_calls[call_id] = fields
                out.calls.append(
                    CallRecord(call_id=call_id, **dict(zip(_CALL_FIELD_NAMES, fields))))
        emitted_segs = self._emitted_segs
        for seg_id in self._dirty_segs:
            seg = self._segs.get(seg_id)
            if seg is None:
                continue
            prev = emitted_segs.get(seg_id)
            # the same object is unchanged; else compare the fields (what == does, minus
            # the two tuples a dataclass __eq__ builds)
            if prev is not seg and (prev is None or prev.__dict__ != seg.__dict__):
                emitted_segs[seg_id] = seg
                out.segments.append(seg)
        self._dirty_calls.clear()
        self._dirty_segs.clear()
        return out

    @property
    def calls_in_flight(self) -> int:
        """Calls the engine follows that have not hung up (for the daemon's counters)."""
        return sum(1 for c in self._calls.values() if not c.hungup)

    def _purge(self, now_ms: int) -> None:
        self._last_purge_ms = now_ms
        purged = {c.call_id for c in self._calls.values()
                  if (c.hungup and all(v.ended for v in c.visits.values())
                      and not self._awaits_callback(c)
                      and now_ms - c.last_ms > PURGE_AFTER_MS)
                  or now_ms - c.last_ms > STALE_AFTER_MS}
        if not purged:
            return
        for call_id in purged:
            call = self._calls.pop(call_id)
            self._emitted_calls.pop(call_id, None)
            for seg_id in call.seg_ids:
                self._segs.pop(seg_id, None)
                self._emitted_segs.pop(seg_id, None)
        # one pass over the legs for all purged calls (not one per call)
        for uuid in [u for u, leg in self._legs.items() if leg[0] in purged]:
            del self._legs[uuid]

    def _awaits_callback(self, call: CallState) -> bool:
        """A requested callback (or one being dialed) is remembered until it is done: its
        result and the dialer's legs come minutes or hours after the caller hung up."""
        if call.callback_legs is not None:
            return True
        seg = self._segs.get(call.callback_id or "")
        return seg is not None and seg.ended_ms is None

    def _put(self, call: CallState, seg: Segment) -> None:
        if seg.segment_id not in self._segs:
            call.seg_ids.append(seg.segment_id)
        self._segs[seg.segment_id] = seg
        self._dirty_segs[seg.segment_id] = None
        self._dirty_calls[call.call_id] = None

    def _update(self, call: CallState, seg_id: str | None, **changes: object) -> None:
        if seg_id is None:
            return
        seg = self._segs.get(seg_id)
        if seg is not None:
            self._put(call, evolve(seg, **changes))

    def _new_seg(self, call: CallState, seg_id: str, kind: str, started_ms: int,
                 visit: Visit | None = None, **fields: object) -> str:
        if visit is not None:
            fields.setdefault("queue", visit.queue)
            fields.setdefault("visit_id", visit.member_uuid)
            fields.setdefault("queue_entered_ms", visit.joined_ms)
        self._put(call, Segment(
            segment_id=seg_id, call_id=call.call_id, tenant=call.tenant, node=call.node,
            kind=kind, started_ms=started_ms, ended_ms=fields.pop("ended_ms", None),
            caller=call.caller, dialed=call.dialed, **fields))
        return seg_id

    def _live(self, kind: str, key: str, at_ms: int, **data: object) -> None:
        self._out.live.append(LiveChange(kind, key, tuple(data.items()), at_ms))

    # ------------------------------------------------------------- calls

    def _call_fields(self, call: CallState) -> tuple:
        """The values of the call's record (see _CALL_FIELD_NAMES): a plain tuple is cheap to
        build and compare on every event; the frozen record is built only when it changed."""
        return (call.tenant, call.node, call.caller, call.dialed, call.started_ms, call.ended_ms,
                self._call_outcome(call), call.caller_name, ",".join(call.digits),
                call.first_queue)

    def _call_outcome(self, call: CallState) -> str:
        if call.callback_id is not None:
            return "callback"
        if call.voicemail_id is not None:
            return "voicemail"
        if call.visits:
            last = list(call.visits.values())[-1]
            seg = self._segs.get(f"{call.call_id}:queue:{last.member_uuid}")
            outcome = seg.outcome if seg is not None else None
            if outcome in ("answered", "transferred-out"):
                return "answered"
            if outcome in ("abandoned", "short-abandon", "exit-key"):
                return "abandoned"  # left the queue (with a key and nothing after it: still lost)
            if outcome in ("timeout", "no-agent"):
                return "timeout"
            return "abandoned" if call.hungup else "in-progress"
        if call.extra_seq:
            return "answered"
        if call.conference_ids:
            return "conference"
        if not call.hungup:
            return "in-progress"
        return "ivr-only" if call.ivr_seq else "blocked"

    def _is_call_leg(self, ev: Event, uuid: str) -> bool:
        """Only the caller's inbound leg (the one that runs the DID) is a call."""
        if uuid in self._internal:
            return False
        if ev.get("variable_hotline_callback_call_id"):
            self._internal.add(uuid)  # a leg the callback dialer opened for an earlier call
            return False
        if ev.get("variable_hotline_campaign"):
            # a campaign dialer's leg (daemon/switch/campaign_dialer.py): its loopback twin
            # that routes the number out is internal through the rule below, and its stay in
            # a queue (progressive) is no inbound queue call; outbound campaign calls are
            # counted from the campaign attempts
            self._internal.add(uuid)
            self._campaign_legs.add(uuid)
            return False
        if ev.get("variable_cc_side") == "agent" or ev.get("variable_cc_member_session_uuid"):
            self._internal.add(uuid)  # a leg mod_callcenter dialed for an agent
            return False
        for other in (ev.get("Other-Leg-Unique-ID"), ev.get("variable_other_loopback_leg_uuid")):
            if other and other in self._internal:
                self._internal.add(uuid)  # originated by (or the loopback twin of) an agent leg
                return False
        if ev.get("Call-Direction") != "inbound":
            return False
        chan = ev.get("Channel-Name") or ""
        if chan.startswith(("loopback/agent-", "loopback/phone-")):
            self._internal.add(uuid)
            return False
        if ev.get("Caller-Caller-ID-Number") in self.internal_numbers:
            return False  # an agent's phone dialing out (consult leg)
        return True

    def _call_from_channel(self, ev: Event, ts: int) -> CallState | None:
        """The call whose caller leg this channel event is about, created on first sight."""
        uuid = ev.uuid
        if not uuid:
            return None
        call = self._calls.get(uuid)
        if call is None:
            if uuid in self._legs or not self._is_call_leg(ev, uuid):
                return None
            call = self._stub(uuid, "")
        if not call.known:
            call.known = True
            call.caller = ev.get("Caller-Caller-ID-Number") or ""
            call.caller_name = ev.get("Caller-Caller-ID-Name") or ""
            # after an IVR transfer the destination is the queue's extension; RDNIS keeps the DID
            call.dialed = ev.get("Caller-RDNIS") or ev.get("Caller-Destination-Number") or ""
            created = to_int(ev.get("Caller-Channel-Created-Time"))
            call.started_ms = created // 1000 if created else ts
            answered = to_int(ev.get("Caller-Channel-Answered-Time"))
            if answered:
                call.answered_ms = answered // 1000
            # the DID names the tenant; a trunk's context ("public") does not
            did_tenant = self.did_tenants.get(call.dialed)
            if did_tenant:
                self._set_tenant(call, did_tenant, known=True)
            else:
                self._follow_context(call, ev)
            self._dirty_calls[call.call_id] = None
        if call.a_leg is None:
            a_leg = ev.get("variable_other_loopback_leg_uuid")
            if a_leg:
                call.a_leg = a_leg
                self._legs[a_leg] = (call.call_id, "a", "")
        call.last_ms = max(call.last_ms, ts)
        return call

    def _set_tenant(self, call: CallState, tenant: str, known: bool) -> None:
        call.tenant_known = call.tenant_known or known
        if tenant == call.tenant:
            return
        call.tenant = tenant
        self._dirty_calls[call.call_id] = None
        for seg_id in call.seg_ids:
            self._update(call, seg_id, tenant=tenant)

    def _follow_context(self, call: CallState, ev: Event) -> None:
        """Without a DID or queue to name the tenant, the dialplan context the caller runs in
        does (a trunk's "public" context transfers into the tenant's)."""
        context = ev.get("Caller-Context")
        if context and not call.tenant_known:
            self._set_tenant(call, context, known=False)

    def _stub(self, call_id: str, tenant: str) -> CallState:
        call = self._calls.get(call_id)
        if call is None:
            call = CallState(call_id=call_id, tenant=tenant, node=self._event_node,
                         tenant_known=bool(tenant))
            self._calls[call_id] = call
        return call

    def _member_call(self, ev: Event, ts: int) -> CallState | None:
        session = ev.get("CC-Member-Session-UUID")
        if not session or session in self._campaign_legs:
            return None  # a campaign contact in a queue: not an inbound call (see _is_call_leg)
        call = self._calls.get(session)
        if call is None:
            call = self._stub(session, domain_of(ev.get("CC-Queue")))
        if not call.known and ev.uuid == session:
            self._call_from_channel(ev, ts)
        call.last_ms = max(call.last_ms, ts)
        return call

    def _visit(self, call: CallState, ev: Event, ts: int) -> Visit | None:
        mu = ev.get("CC-Member-UUID")
        if not mu:
            return None
        visit = call.visits.get(mu)
        if visit is None:
            # the stay began before this engine started: rebuild it from what mod_callcenter reports
            joined = to_int(ev.get("CC-Member-Joined-Time"))
            visit = self._open_visit(call, mu, ev.get("CC-Queue") or "",
                                     joined * 1000 if joined else ts, ts)
        return visit

    # ------------------------------------------------------- channel events

    def _on_create(self, ev: Event, ts: int) -> None:
        uuid = ev.uuid
        callback_of = ev.get("variable_hotline_callback_call_id")
        if uuid and callback_of:
            self._callback_leg(ev, uuid, callback_of, ts)
            return
        if uuid and uuid not in self._calls:
            call = self._call_from_channel(ev, ts)
            if call is not None:
                call.started_ms = ts
                self._dirty_calls[call.call_id] = None

    def _on_answer(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        if call is None:
            found = self._callback_of_leg(ev.uuid, "cb-agent")
            if found is not None:  # the agent picked up the callback dialer's call
                self._close(found[0], found[1].ring_id, ts, outcome="answered")
            return
        if call.answered_ms is None:
            call.answered_ms = ts
            self._call_from_channel(ev, ts)

    def _on_execute(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        app = ev.get("Application") or ""
        if app == "eavesdrop":
            self._supervision_start(ev, ts)
        if call is None:
            return
        if app == "ivr":
            self._open_ivr(call, ev.get("Application-Data") or "", ts)
        elif app == "voicemail":
            if call.voicemail_id is None:
                call.voicemail_id = self._new_seg(
                    call, f"{call.call_id}:voicemail:0", "voicemail", ts,
                    target=ev.get("Application-Data") or None)
        dest = ev.get("Caller-Destination-Number")
        if not call.hungup and dest:
            # the caller's leg runs another extension after its agent left: a blind transfer
            # (a survey or announcement in the same extension is not one, nor the
            # extension the dialplan itself continues in after the bridge)
            left = self._left_by_agent(call)
            if left is not None and left.transfer_id is None and not left.after_bridge:
                if _after_bridge_destination(ev, dest):
                    left.after_bridge = True
                elif left.extension and dest != left.extension:
                    self._mark_transfer(call, left, "blind", dest, None)
        if app == "python" and _script(ev) == SURVEY_SCRIPT:
            self._survey_start(call, ev, ts)

    def _on_execute_complete(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        app = ev.get("Application")
        if app == "eavesdrop":
            self._supervision_end(ev.uuid or "", ts)
        if call is None:
            return
        if call.voicemail_id and app == "voicemail":
            self._close(call, call.voicemail_id, ts)
        elif app == "python" and _script(ev) == SURVEY_SCRIPT:
            self._close(call, call.survey_id, ts)

    def _on_bridge(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        if call is None:
            self._callback_bridge(ev, ts)
            return
        other = ev.get("Other-Leg-Unique-ID") or ""
        leg = self._legs.get(other)
        if (leg is not None and leg[1] == "agent") or other in self._internal:
            return  # the queue bridge: talk begins at bridge-agent-start
        if any(v.talk_id or v.rings for v in call.visits.values()):
            return  # an agent is being bridged (events of one bridge may come in either order)
        # a bridge outside the queue: attended-transfer target, extension, supervisor
        party = ev.get("Other-Leg-Destination-Number") or ev.get("Other-Leg-Caller-ID-Number") or ""
        left = self._left_by_agent(call)
        if left is not None:  # a REFER with Replaces leaves the target to this bridge
            self._mark_transfer(call, left, "attended", party, None)
        self._close(call, call.extra_talk_id, ts)
        call.extra_talk_id = self._new_seg(
            call, f"{call.call_id}:talk:x{call.extra_seq}", "talk", ts, target=party or None)
        call.extra_seq += 1

    def _on_unbridge(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        if call is None:
            found = self._callback_of_leg(ev.uuid, "cb-agent")
            if found is not None:  # the agent and the customer part
                legs = found[1]
                self._callback_talk_end(found[0], legs, ts,
                                        "caller" if legs.customer_gone else "agent")
            return
        caller_gone = ev.get("Answer-State") == "hangup" or call.caller_side_hungup
        other = ev.get("Other-Leg-Unique-ID")
        target: Visit | None = None
        for visit in call.visits.values():
            if (visit.talk_id or visit.hold_id) and (not other or other == visit.agent_leg):
                if caller_gone and visit.first_hangup is None:
                    visit.first_hangup = "caller"
                self._end_talk(call, visit, ts)
                target = visit
                break
        else:
            # bridge-agent-end may have closed the talk already: the caller's unbridge still
            # tells whether the caller stayed on the line (a transfer)
            for visit in reversed(list(call.visits.values())):
                if visit.talk_ended_ms is not None and (not other or other == visit.agent_leg):
                    target = visit
                    break
        if target is not None:
            if not caller_gone and not target.caller_up_after_talk:
                target.caller_up_after_talk = True
                if target.refer is not None:
                    self._mark_transfer(call, target, target.refer[0], target.refer[1], "refer")
                elif call.pending_transfer is not None:
                    dest, method = call.pending_transfer
                    self._mark_transfer(call, target, "blind", dest, method)
            return
        if call.extra_talk_id is not None:
            self._close(call, call.extra_talk_id, ts,
                        hangup_by="caller" if caller_gone else "system")
            call.extra_talk_id = None

    def _agent_visit(self, uuid: str | None) -> tuple[CallState, Visit] | None:
        leg = self._legs.get(uuid or "")
        if leg is None or leg[1] != "agent":
            return None
        call = self._calls.get(leg[0])
        visit = call.visits.get(leg[2]) if call else None
        return (call, visit) if call and visit else None

    def _on_hold(self, ev: Event, ts: int) -> None:
        found = self._agent_visit(ev.uuid)
        if found is None:
            return
        call, visit = found
        if visit.talk_id is None or visit.hold_id is not None:
            return
        self._close(call, visit.talk_id, ts)
        visit.talk_id = None
        visit.hold_id = self._new_seg(
            call, f"{call.call_id}:hold:{visit.member_uuid}:{visit.hold_seq}", "hold", ts,
            visit, agent=visit.agent)
        visit.hold_seq += 1

    def _on_unhold(self, ev: Event, ts: int) -> None:
        found = self._agent_visit(ev.uuid)
        if found is None:
            return
        call, visit = found
        if visit.hold_id is None:
            return
        self._close(call, visit.hold_id, ts)
        visit.hold_id = None
        self._open_talk(call, visit, ts)

    def _on_hangup(self, ev: Event, ts: int) -> None:
        uuid = ev.uuid or ""
        call = self._calls.get(uuid)
        if call is not None:
            self._caller_hangup(call, ts)
            return
        leg = self._legs.get(uuid)
        if leg is None:
            return
        call = self._calls.get(leg[0])
        if call is None:
            return
        if leg[1] in ("cb-agent", "cb-customer", "supervisor"):
            self._leg_hangup(call, leg[1], uuid, ev, ts)
        elif leg[1] == "a":
            call.caller_side_hungup = True
            for visit in call.visits.values():
                if visit.in_talk and visit.first_hangup is None:
                    visit.first_hangup = "caller"
        elif leg[1] == "agent":
            visit = call.visits.get(leg[2])
            if visit is not None:
                if visit.in_talk and visit.first_hangup is None:
                    visit.first_hangup = "agent"
                self._note_refer(call, visit, ev)

    def _caller_hangup(self, call: CallState, ts: int) -> None:
        """The caller's leg hung up at ``ts`` (also what :meth:`reconcile` plays for a leg
        that vanished while the daemon was not listening)."""
        if not call.hungup:
            call.hungup = True
            # the switch ended the caller's leg while the caller (its -a twin) was still there
            who = "system" if call.a_leg and not call.caller_side_hungup else "caller"
            for visit in call.visits.values():
                if visit.in_talk and visit.first_hangup is None:
                    visit.first_hangup = who
                    visit.first_hangup_own_leg = call.a_leg is None
            self._close_ivr(call, ts)
            self._close(call, call.voicemail_id, ts)
            self._close(call, call.survey_id, ts)
            for seg_id in call.supervision_ids.values():  # nothing left to listen to
                self._close(call, seg_id, ts)
            self._exit_key_was_hangup(call, ts)
        call.ended_ms = ts
        call.last_ms = max(call.last_ms, ts)
        self._dirty_calls[call.call_id] = None

    def _on_hangup_complete(self, ev: Event, ts: int) -> None:
        uuid = ev.uuid or ""
        call = self._calls.get(uuid)
        if call is not None:
            if not call.hungup:
                self._on_hangup(ev, ts)
            call.ended_ms = ts
            self._dirty_calls[call.call_id] = None
            if (ev.get("variable_sip_hangup_disposition") or "").startswith("send_"):
                self._switch_hung_up(call)
            return
        found = self._agent_visit(uuid)
        if found is not None:
            self._note_refer(found[0], found[1], ev)

    def _switch_hung_up(self, call: CallState) -> None:
        """A SIP caller's leg whose BYE the switch sent was not hung up by the caller."""
        for visit in call.visits.values():
            if visit.first_hangup == "caller" and visit.first_hangup_own_leg:
                visit.first_hangup = "system"
                if visit.talk_ids and visit.transfer_id is None:
                    self._update(call, visit.talk_ids[-1], hangup_by="system")

    def _note_refer(self, call: CallState, visit: Visit, ev: Event) -> None:
        """A desk phone's REFER shows on the agent's leg (blind: ``blind:7002``)."""
        if visit.refer is not None:
            return
        dest = ev.get("variable_transfer_destination") or ""
        disposition = ev.get("variable_endpoint_disposition") or ""
        if not dest and "TRANSFER" not in disposition:
            return
        kind = "attended" if "ATTENDED" in disposition or dest.startswith("attended:") else "blind"
        if ":" in dest:
            target = dest.partition(":")[2]
        else:
            target = dest or ev.get("variable_sip_refer_to") or ""
        visit.refer = (kind, target)
        if visit.caller_up_after_talk:
            self._mark_transfer(call, visit, kind, target, "refer")

    def _on_destroy(self, ev: Event, ts: int) -> None:
        uuid = ev.uuid or ""
        self._internal.discard(uuid)
        self._campaign_legs.discard(uuid)  # mod_callcenter ends its stay before the destroy
        call = self._calls.get(uuid)
        if call is not None:
            call.last_ms = max(call.last_ms, ts)

    def _on_dtmf(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        if call is None or call.ivr_id is None:
            return
        digit = ev.get("DTMF-Digit") or ""
        if not digit:
            return
        call.digits.append(digit)
        seg = self._segs[call.ivr_id]
        self._update(call, call.ivr_id, digits=f"{seg.digits},{digit}" if seg.digits else digit)

    # ------------------------------------------------------------------ IVR

    def _open_ivr(self, call: CallState, menu: str, ts: int) -> None:
        if call.ivr_id is not None:
            if self._segs[call.ivr_id].menu == menu:
                return  # CHANNEL_EXECUTE ivr and menu::enter announce the same menu
            self._close_ivr(call, ts)
        start = ts
        if call.ivr_seq == 0 and not call.visits and call.answered_ms is not None:
            # the caller is in the IVR from the moment the DID answers (greeting included)
            start = min(ts, call.answered_ms)
        call.ivr_id = self._new_seg(call, f"{call.call_id}:ivr:{call.ivr_seq}", "ivr", start,
                                    menu=menu or None)
        call.ivr_seq += 1

    def _close_ivr(self, call: CallState, ts: int) -> None:
        if call.ivr_id is not None:
            self._close(call, call.ivr_id, ts)
            call.ivr_id = None

    def _on_menu_enter(self, ev: Event, ts: int) -> None:
        call = self._call_from_channel(ev, ts)
        if call is not None:
            self._follow_context(call, ev)
            self._open_ivr(call, ev.get("Menu-Name") or "", ts)

    def _on_menu_exit(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        if call is not None:
            self._close_ivr(call, ts)

    def _close(self, call: CallState, seg_id: str | None, ts: int, **changes: object) -> None:
        if seg_id is None:
            return
        seg = self._segs.get(seg_id)
        if seg is not None and seg.ended_ms is None:
            self._put(call, evolve(seg, ended_ms=max(ts, seg.started_ms), **changes))

    # ------------------------------------------------------------- queue

    def _open_visit(self, call: CallState, mu: str, queue: str, joined_ms: int, ts: int) -> Visit:
        visit = Visit(member_uuid=mu, queue=queue, joined_ms=joined_ms)
        call.visits[mu] = visit
        if call.first_queue is None:
            call.first_queue = queue
        domain = domain_of(queue)
        if domain:
            self._set_tenant(call, domain, known=True)  # one tenant = one domain
        self._new_seg(call, f"{call.call_id}:queue:{mu}", "queue", joined_ms, visit)
        self._live("member", queue, ts, action="join", call_id=call.call_id,
                   caller=call.caller, joined_ms=joined_ms)
        return visit

    def _on_member_queue_start(self, ev: Event, ts: int) -> None:
        call = self._member_call(ev, ts)
        mu = ev.get("CC-Member-UUID")
        if call is None or not mu or mu in call.visits:
            return
        self._close_ivr(call, ts)
        queue = ev.get("CC-Queue") or ""
        left = self._left_by_agent(call)
        if left is not None and not left.after_bridge:
            # the caller comes from an agent: transferred into this queue
            self._mark_transfer(call, left, "blind", ev.get("Caller-Destination-Number") or "",
                                None)
            seg = self._segs[left.transfer_id or ""]
            if "target_queue" not in dict(seg.attrs):
                self._update(call, seg.segment_id, attrs=with_attrs(seg.attrs, target_queue=queue))
        visit = self._open_visit(call, mu, queue, ts, ts)
        visit.extension = ev.get("Caller-Destination-Number")

    def _on_agent_offering(self, ev: Event, ts: int) -> None:
        call = self._member_call(ev, ts)
        visit = self._visit(call, ev, ts) if call else None
        agent = ev.get("CC-Agent")
        if call is None or visit is None or not agent:
            return
        self._close(call, visit.rings.get(agent), ts, outcome="no-answer")
        visit.rings[agent] = self._new_ring(call, visit, agent, ts)
        self._live("agent", agent, ts, call_id=call.call_id)

    def _new_ring(self, call: CallState, visit: Visit, agent: str, started_ms: int) -> str:
        # numbered per agent within the stay, never by time: a ring first seen at its
        # bridge-agent-start/-fail (an engine that missed the offering) only knows the whole
        # second mod_callcenter started calling the agent, the offering knows milliseconds,
        # and one ring must not get two ids
        seq = visit.ring_seq.get(agent, 0)
        visit.ring_seq[agent] = seq + 1
        seg_id = self._new_seg(call, f"{call.call_id}:ring:{visit.member_uuid}:{agent}:{seq}",
                               "ring", started_ms, visit, agent=agent)
        visit.last_ring[agent] = seg_id
        return seg_id

    def _on_bridge_agent_start(self, ev: Event, ts: int) -> None:
        call = self._member_call(ev, ts)
        visit = self._visit(call, ev, ts) if call else None
        agent = ev.get("CC-Agent")
        if call is None or visit is None or not agent or visit.answered_ms is not None:
            return
        self._answered(call, visit, agent, ev, ts)

    def _answered(self, call: CallState, visit: Visit, agent: str, ev: Event, ts: int) -> None:
        """The agent took the caller at ``ts``: queue and ring end, the talk begins."""
        visit.answered_ms = ts
        visit.agent = agent
        visit.agent_leg = ev.get("CC-Agent-UUID") or ev.uuid
        if visit.agent_leg:
            self._legs[visit.agent_leg] = (call.call_id, "agent", visit.member_uuid)
        self._update(call, f"{call.call_id}:queue:{visit.member_uuid}", ended_ms=ts,
                     outcome="answered", agent=agent)
        ring_id = visit.rings.pop(agent, None)
        if ring_id is None:
            called = to_int(ev.get("CC-Agent-Called-Time"))
            ring_id = self._new_ring(call, visit, agent, called * 1000 if called else ts)
        self._close(call, ring_id, ts, outcome="answered")
        self._open_talk(call, visit, ts)
        self._leave(call, visit, ts, "answered")
        self._live("agent", agent, ts, call_id=call.call_id)
        self._cut_wrapup(self._book.take_wrapup(agent, ts), ts, "call")

    def _open_talk(self, call: CallState, visit: Visit, ts: int) -> None:
        visit.talk_id = self._new_seg(
            call, f"{call.call_id}:talk:{visit.member_uuid}:{visit.talk_seq}", "talk", ts, visit,
            agent=visit.agent)
        visit.talk_ids.append(visit.talk_id)
        visit.talk_seq += 1

    def _end_talk(self, call: CallState, visit: Visit, ts: int) -> None:
        """The caller left the agent: close the talk (and a hold still open) at ``ts``."""
        if visit.hold_id is not None:
            self._close(call, visit.hold_id, ts)
            visit.hold_id = None
        hangup_by = visit.first_hangup or "system"
        if visit.talk_id is not None:
            self._close(call, visit.talk_id, ts, hangup_by=hangup_by)
            visit.talk_id = None
        elif visit.talk_ids:  # ended while held: the last talk piece carries who hung up
            self._update(call, visit.talk_ids[-1], hangup_by=hangup_by)
        visit.talk_ended_ms = ts

    @staticmethod
    def _left_by_agent(call: CallState) -> Visit | None:
        """The stay whose agent the caller left last while staying on the line: the only one
        a transfer can come from."""
        for visit in reversed(call.visits.values()):
            if visit.answered_ms is not None:
                return visit if visit.caller_up_after_talk else None
        return None

    def _mark_transfer(self, call: CallState, visit: Visit, kind: str, target: str,
                       method: str | None) -> None:
        """The agent transferred the caller out of this stay (seen after the fact)."""
        attrs: tuple[tuple[str, str], ...] = (("method", method),) if method else ()
        if visit.transfer_id is not None:
            seg = self._segs[visit.transfer_id]
            changes: dict[str, object] = {}
            if target and not seg.target:
                changes["target"] = target
            if method and "method" not in dict(seg.attrs):
                changes["attrs"] = with_attrs(seg.attrs, method=method)
            if changes:
                self._update(call, visit.transfer_id, **changes)
            return
        at = visit.talk_ended_ms if visit.talk_ended_ms is not None else (visit.answered_ms or 0)
        visit.transfer_id = self._new_seg(
            call, f"{call.call_id}:transfer:{visit.member_uuid}", "transfer", at, visit,
            ended_ms=at, agent=visit.agent, transfer_type=kind, target=target or None,
            attrs=attrs)
        self._update(call, f"{call.call_id}:queue:{visit.member_uuid}", outcome="transferred-out")
        if visit.talk_ids:
            self._update(call, visit.talk_ids[-1], hangup_by="transfer")
        call.pending_transfer = None

    def _on_bridge_agent_fail(self, ev: Event, ts: int) -> None:
        call = self._member_call(ev, ts)
        visit = self._visit(call, ev, ts) if call else None
        agent = ev.get("CC-Agent")
        if call is None or visit is None or not agent:
            return
        cause = ev.get("CC-Hangup-Cause") or ""
        outcome = RING_OUTCOME_BY_CAUSE.get(cause, "no-answer")
        ring_id = visit.rings.pop(agent, None)
        if ring_id is None:
            if agent in visit.last_ring:
                return  # already closed: the caller left the queue while it rang
            called = to_int(ev.get("CC-Agent-Called-Time"))
            ring_id = self._new_ring(call, visit, agent, called * 1000 if called else ts)
        self._close(call, ring_id, ts, outcome=outcome, attrs=(("cause", cause),) if cause else ())
        self._live("agent", agent, ts, call_id=None)

    def _on_bridge_agent_end(self, ev: Event, ts: int) -> None:
        call = self._member_call(ev, ts)
        visit = self._visit(call, ev, ts) if call else None
        agent = ev.get("CC-Agent") or (visit.agent if visit else None)
        if call is None or visit is None or not agent:
            return
        if visit.answered_ms is None and ev.get("CC-Agent-Bridged") == "true":
            # the bridge began while the daemon was not listening (stopped, link lost):
            # this event still says when, from the agent's leg
            self._answered(call, visit, agent, ev, _bridged_ms(ev, ts))
            if visit.first_hangup is None:  # the hang-ups came before the engine knew the talk
                visit.first_hangup = ("agent" if not call.hungup else
                                      "system" if call.a_leg and not call.caller_side_hungup
                                      else "caller")
            if call.hungup and call.ended_ms is not None:
                self._end_talk(call, visit, call.ended_ms)  # the talk ended with the caller
        self._agent_leaves(call, visit, agent, ts)

    def _agent_leaves(self, call: CallState, visit: Visit, agent: str, ts: int) -> None:
        """mod_callcenter's bridge-agent-end: the talk ends, the agent's wrap-up begins."""
        if visit.talk_id is not None or visit.hold_id is not None:
            self._end_talk(call, visit, ts)
        self._live("agent", agent, ts, call_id=None)
        wrapup_s = self.agent_wrapup_s.get(agent, 0)
        if wrapup_s <= 0 or self._book.logged_out(agent):
            # an agent logged out during the call keeps it, but mod_callcenter gives a
            # Logged Out agent no wrap-up: there is none to book
            return
        seg_id = self._new_seg(call, f"{call.call_id}:wrapup:{visit.member_uuid}", "wrapup", ts,
                               visit, ended_ms=ts + wrapup_s * 1000, agent=agent)
        self._book.start_wrapup(agent, WrapUp(seg_id, call.call_id, ts + wrapup_s * 1000))

    def _on_member_queue_end(self, ev: Event, ts: int) -> None:
        call = self._member_call(ev, ts)
        visit = self._visit(call, ev, ts) if call else None
        if call is None or visit is None:
            return
        # mod_callcenter expands the queue's record-template on the caller's leg at the
        # bridge; member-queue-end carries that leg's variables
        self._queue_end(call, visit, ts, reason=ev.get("CC-Cancel-Reason") or "",
                        cause=ev.get("CC-Cause") or "", answer_state=ev.get("Answer-State"),
                        recording=ev.get("variable_cc_record_filename"),
                        exit_key=ev.get("variable_cc_exit_key"))

    def _queue_end(self, call: CallState, visit: Visit, ts: int, reason: str, cause: str,
                   answer_state: str | None, recording: str | None = None,
                   exit_key: str | None = None) -> None:
        """The queue stay ends (member-queue-end): an answered one is done with its talk,
        any other gets its outcome from the cancel reason and the wait."""
        visit.ended = True
        if visit.answered_ms is not None:
            if visit.talk_id is not None or visit.hold_id is not None:
                self._end_talk(call, visit, ts)
            if recording:
                for talk_id in visit.talk_ids:
                    self._update(call, talk_id, recording=recording)
            return
        wait_ms = ts - visit.joined_ms
        if reason == "TIMEOUT":
            outcome = "timeout"
        elif reason == "NO_AGENT_TIMEOUT":
            outcome = "no-agent"
        elif reason == EXIT_WITH_KEY:
            outcome = "exit-key"  # FreeSWITCH 1.10.12 names the key press itself
        elif answer_state not in (None, "hangup") and not call.hungup:
            # older mod_callcenter reports the exit key as a BREAK_OUT with the caller still
            # on the line
            outcome = "exit-key"
        else:
            outcome = self._abandon_outcome(visit, wait_ms)
        attrs = (("cause", cause), ("cancel_reason", reason))
        if outcome == "exit-key" and exit_key:
            attrs += (("exit_key", exit_key),)  # the key the caller pressed
        self._update(call, f"{call.call_id}:queue:{visit.member_uuid}", ended_ms=ts,
                     outcome=outcome, attrs=attrs)
        for ring_id in visit.rings.values():  # still ringing when the caller left
            self._close(call, ring_id, ts, outcome="caller-abandoned")
        visit.rings.clear()
        self._leave(call, visit, ts, outcome)

    def _exit_key_was_hangup(self, call: CallState, hangup_ms: int) -> None:
        """A break-out reported just before the caller's hangup was the hangup itself."""
        for visit in call.visits.values():
            seg = self._segs.get(f"{call.call_id}:queue:{visit.member_uuid}")
            if (seg is not None and seg.outcome == "exit-key" and seg.ended_ms is not None
                    and dict(seg.attrs).get("cancel_reason") != EXIT_WITH_KEY
                    and hangup_ms - seg.ended_ms <= EXIT_KEY_RACE_MS):
                self._update(call, seg.segment_id, outcome=self._abandon_outcome(
                    visit, seg.ended_ms - visit.joined_ms))

    def _abandon_outcome(self, visit: Visit, wait_ms: int) -> str:
        limit = self.short_abandon_s.get(visit.queue, DEFAULT_SHORT_ABANDON_S)
        return "short-abandon" if wait_ms <= limit * 1000 else "abandoned"

    def _leave(self, call: CallState, visit: Visit, ts: int, outcome: str) -> None:
        if not visit.left:
            visit.left = True
            self._live("member", visit.queue, ts, action="leave", call_id=call.call_id,
                       joined_ms=visit.joined_ms, outcome=outcome)

    # ------------------------------------------------------------- agents

    def _cut_wrapup(self, wrapup: WrapUp | None, ts: int, why: str) -> None:
        if wrapup is None:
            return
        call = self._calls.get(wrapup.call_id)
        seg = self._segs.get(wrapup.segment_id)
        if call is not None and seg is not None and seg.started_ms <= ts:
            self._put(call, evolve(seg, ended_ms=ts, attrs=with_attrs(seg.attrs, cut_by=why)))

    def _on_agent_status(self, ev: Event, ts: int) -> None:
        agent, value = ev.get("CC-Agent"), ev.get("CC-Agent-Status")
        if agent and value:
            self._cut_wrapup(self._book.change(agent, "status", value, ts, self._event_node,
                                               self._out.intervals, self._out.live), ts, value)

    def _on_agent_state(self, ev: Event, ts: int) -> None:
        agent, value = ev.get("CC-Agent"), ev.get("CC-Agent-State")
        if agent and value:
            self._book.change(agent, "state", value, ts, self._event_node,
                              self._out.intervals, self._out.live)

    def _on_agent_max_no_answer(self, ev: Event, ts: int) -> None:
        agent = ev.get("CC-Agent")
        if agent:
            # mod_callcenter puts the agent On Break right after this event
            self._book.expect_reason(agent, "max-no-answer")

    def _on_hotline_agent(self, ev: Event, ts: int) -> None:
        agent, action = ev.get("Hotline-Agent"), ev.get("Hotline-Action")
        if not agent:
            return
        if action == "break":
            self._book.announce_break(agent, ev.get("Hotline-Reason") or None, ts,
                                      self._out.intervals, self._out.live)
        elif action == "end-wrapup":
            self._cut_wrapup(self._book.take_wrapup(agent, ts), ts, "end-wrapup")
        else:
            self._book.expect_reason(agent, None)

    # ---------------------------------------------------------- conference

    def _on_conference_add(self, ev: Event, ts: int) -> None:
        call = self._call_from_channel(ev, ts)
        member = ev.get("Member-ID") or ""
        if call is None or member in call.conference_ids:
            return
        room = ev.get("Conference-Name") or ""
        self._follow_context(call, ev)
        self._close_ivr(call, ts)
        call.conference_ids[member] = self._new_seg(
            call, f"{call.call_id}:conference:{room}:{member}", "conference", ts,
            target=room or None, attrs=(("member_id", member),))

    def _on_conference_del(self, ev: Event, ts: int) -> None:
        call = self._calls.get(ev.uuid or "")
        if call is not None:
            self._close(call, call.conference_ids.get(ev.get("Member-ID") or ""), ts)

    # ------------------------------------------------------ hotline events

    def _hotline_call(self, ev: Event) -> CallState | None:
        call_id = ev.get("Hotline-Call-ID")
        if not call_id:
            return None
        return self._stub(call_id, domain_of(ev.get("Hotline-Queue") or ev.get("Hotline-Agent")))

    def _survey_start(self, call: CallState, ev: Event, ts: int) -> None:
        """The caller's leg runs Hotline's survey script: the survey lasts until the script
        returns or the caller hangs up; ``hotline::survey`` brings its score."""
        seg = self._segs.get(call.survey_id or "")
        if seg is not None and seg.ended_ms is None:
            return
        visit = next((v for v in reversed(call.visits.values()) if v.answered_ms is not None),
                     None)
        queue = (ev.get("Application-Data") or "").split()[1:2]
        call.survey_id = self._new_seg(
            call, f"{call.call_id}:survey:{call.survey_seq}", "survey", ts, visit,
            queue=queue[0] if queue else (visit.queue if visit else None),
            agent=visit.agent if visit else None)
        call.survey_seq += 1
        call.survey_heard = False

    def _on_survey(self, ev: Event, ts: int) -> None:
        call = self._hotline_call(ev)
        if call is None:
            return
        queue, agent = ev.get("Hotline-Queue") or None, ev.get("Hotline-Agent") or None
        score = to_int(ev.get("Hotline-Score"))
        seg = self._segs.get(call.survey_id or "")
        if seg is not None and not call.survey_heard:
            # the result of the survey script the caller ran (a caller who hung up during
            # it gets the event, without a score, after the hangup)
            call.survey_heard = True
            self._update(call, seg.segment_id, score=score, queue=queue or seg.queue,
                         agent=agent or seg.agent)
            return
        self._new_seg(call, f"{call.call_id}:survey:{call.survey_seq}", "survey", ts,
                      ended_ms=ts, queue=queue, agent=agent, score=score)
        call.survey_seq += 1

    def _on_callback(self, ev: Event, ts: int) -> None:
        call = self._hotline_call(ev)
        if call is None:
            return
        seg_id = f"{call.call_id}:callback:0"
        queue = ev.get("Hotline-Queue") or None
        # the caller keeps the place from the queue join: the stay's own time (ms), else
        # the script's (mod_callcenter gives it the join in whole seconds)
        joined = to_int(ev.get("Hotline-Joined-MS"))
        entered = self._callback_entered(call, queue, joined) or joined
        if ev.get("Hotline-Action") == "result":
            agent = ev.get("Hotline-Agent") or None
            if seg_id not in self._segs:
                self._new_seg(call, seg_id, "callback", ts, queue=queue,
                              target=ev.get("Hotline-Number") or None, queue_entered_ms=entered)
            seg = self._segs[seg_id]
            attempts = ev.get("Hotline-Attempts")
            self._update(call, seg_id, ended_ms=max(ts, seg.started_ms),
                         outcome=ev.get("Hotline-Outcome") or None, agent=agent,
                         attrs=with_attrs(seg.attrs, attempts=attempts) if attempts else seg.attrs)
            legs = call.callback_legs
            if agent and legs is not None and legs.agent != agent:  # who the dialer rang
                legs.agent = agent
                for leg_seg in (legs.ring_id, legs.talk_id):
                    self._update(call, leg_seg, agent=agent)
        elif seg_id not in self._segs:  # the request
            self._new_seg(call, seg_id, "callback", ts, queue=queue,
                          target=ev.get("Hotline-Number") or None, outcome="requested",
                          queue_entered_ms=entered)
        call.callback_id = seg_id

    def _on_disposition(self, ev: Event, ts: int) -> None:
        call = self._hotline_call(ev)
        code, agent = ev.get("Hotline-Code"), ev.get("Hotline-Agent")
        if call is None or not code:
            return
        for visit in reversed(list(call.visits.values())):
            if visit.talk_ids and (not agent or visit.agent == agent):
                for talk_id in visit.talk_ids:
                    seg = self._segs.get(talk_id)
                    attrs = tuple(kv for kv in (seg.attrs if seg else ()) if kv[0] != "disposition_ms")
                    # when the agent keyed it in: the dispositions table's entered_ms
                    self._update(call, talk_id, disposition=code,
                                 attrs=attrs + (("disposition_ms", str(ts)),))
                return

    # ------------------------------------------------- callback dialer legs

    def _callback_entered(self, call: CallState, queue: str | None,
                          joined_ms: int | None = None) -> int | None:
        """When the caller joined the queue a callback of ``queue`` keeps the place of: that
        stay's join (to the ms; ``joined_ms``, mod_callcenter's whole seconds, picks the stay
        when given)."""
        for visit in reversed(call.visits.values()):
            if ((queue is None or visit.queue == queue)
                    and (joined_ms is None or abs(visit.joined_ms - joined_ms) < 2000)):
                return visit.joined_ms
        seg = self._segs.get(call.callback_id or "")
        return seg.queue_entered_ms if seg is not None else None

    def _callback_leg(self, ev: Event, uuid: str, call_id: str, ts: int) -> None:
        """A leg of the callback dialer (daemon/switch/dialer.py). It rings the agent's phone
        first: that leg's ring and the conversation that follows become the original call's
        ring and talk (the customer's legs only tell when the customer leaves)."""
        self._internal.add(uuid)
        if uuid in self._legs:
            return
        queue = ev.get("variable_hotline_callback_queue") or None
        call = self._stub(call_id, domain_of(queue))
        call.last_ms = max(call.last_ms, ts)
        legs = call.callback_legs
        if legs is not None:  # the agent's leg is up: this is the customer's
            legs.customer_legs.add(uuid)
            self._legs[uuid] = (call_id, "cb-customer", "")
            return
        presence = ev.get("Channel-Presence-ID") or (
            f"{ev.get('variable_dialed_user')}@{ev.get('variable_dialed_domain')}")
        agent = self.agent_extensions.get(presence)
        entered = self._callback_entered(call, queue)
        ring_id = self._new_seg(
            call, f"{call_id}:ring:callback:{uuid}", "ring", ts, queue=queue, agent=agent,
            queue_entered_ms=entered, attrs=(("agent_leg", uuid), ("callback", "true")))
        call.callback_legs = CallbackLegs(agent_leg=uuid, agent=agent, queue=queue,
                                          ring_id=ring_id)
        self._legs[uuid] = (call_id, "cb-agent", "")
        if agent:
            self._live("agent", agent, ts, call_id=call_id)

    def _callback_of_leg(self, uuid: str | None,
                         role: str | None = None) -> tuple[CallState, CallbackLegs] | None:
        """The call and the dialer's current attempt a callback leg belongs to (a leg of an
        earlier attempt belongs to none)."""
        leg = self._legs.get(uuid or "")
        if leg is None or not leg[1].startswith("cb-") or (role and leg[1] != role):
            return None
        call = self._calls.get(leg[0])
        legs = call.callback_legs if call is not None else None
        if legs is None or (uuid != legs.agent_leg and uuid not in legs.customer_legs):
            return None
        return call, legs

    def _callback_bridge(self, ev: Event, ts: int) -> None:
        found = self._callback_of_leg(ev.uuid)
        if found is None:
            return
        call, legs = found
        if legs.talk_id is not None or legs.customer_gone:
            return
        self._close(call, legs.ring_id, ts, outcome="answered")
        ring = self._segs[legs.ring_id]
        legs.talk_id = self._new_seg(
            call, f"{call.call_id}:talk:callback:{legs.agent_leg}", "talk", ts,
            queue=legs.queue, agent=legs.agent, queue_entered_ms=ring.queue_entered_ms,
            attrs=(("agent_leg", legs.agent_leg), ("callback", "true")))

    def _callback_talk_end(self, call: CallState, legs: CallbackLegs, ts: int,
                           hangup_by: str) -> None:
        if legs.talk_id is not None:
            self._close(call, legs.talk_id, ts, hangup_by=hangup_by)

    def _leg_hangup(self, call: CallState, role: str, uuid: str, ev: Event, ts: int) -> None:
        """A callback dialer's or a supervisor's leg hung up."""
        call.last_ms = max(call.last_ms, ts)
        if role == "supervisor":
            self._supervision_end(uuid, ts)
            return
        found = self._callback_of_leg(uuid)
        if found is None:
            return
        legs = found[1]
        if role == "cb-customer":
            if not legs.customer_gone:
                legs.customer_gone = True
                self._callback_talk_end(call, legs, ts, "caller")
            return
        # the agent's leg: an unanswered ring ends with the switch's cause
        cause = ev.get("Hangup-Cause") or ""
        self._close(call, legs.ring_id, ts, outcome=RING_OUTCOME_BY_CAUSE.get(cause, "no-answer"),
                    attrs=with_attrs(self._segs[legs.ring_id].attrs, cause=cause))
        self._callback_talk_end(call, legs, ts, "caller" if legs.customer_gone else "agent")
        if legs.agent:
            self._live("agent", legs.agent, ts, call_id=None)
        call.callback_legs = None  # the attempt is over; a retry rings the agent again

    # ---------------------------------------------------------- supervision

    def _supervision_start(self, ev: Event, ts: int) -> None:
        """A supervisor's leg runs ``eavesdrop <leg>`` on an agent's (or a caller's) leg: who
        listened to which call, how and when becomes a ``supervision`` segment of the call.
        The supervisor's leg is never a call of its own."""
        uuid = ev.uuid or ""
        target = (ev.get("Application-Data") or "").partition(" ")[0]
        leg = self._legs.get(target)
        agent = None
        if leg is not None and leg[1] == "agent":
            call = self._calls.get(leg[0])
            visit = call.visits.get(leg[2]) if call is not None else None
            heard = "agent"
        elif leg is not None and leg[1] == "cb-agent":  # the agent's callback conversation
            call, visit, heard = self._calls.get(leg[0]), None, "agent"
            agent = call.callback_legs.agent if call and call.callback_legs else None
        else:
            call = self._calls.get(target)
            visit = next((v for v in call.visits.values() if v.in_talk), None) if call else None
            heard = "caller"
        if call is None or not uuid or uuid in call.supervision_ids:
            return
        # eavesdrop mixes the supervisor into the listened-on leg's read stream for
        # whisper_aleg (so its bridged party hears it: with the agent's leg, the caller -
        # seen on a real 1.10.12, issue 9) and into its write stream for whisper_bleg (the
        # listened-on party itself hears it)
        whisper_a = ev.get("variable_eavesdrop_whisper_aleg") == "true"
        whisper_b = ev.get("variable_eavesdrop_whisper_bleg") == "true"
        partner = "caller" if heard == "agent" else "agent"
        attrs = {"supervisor_leg": uuid}
        if whisper_a and whisper_b:
            attrs["mode"] = "barge"
        elif whisper_a or whisper_b:
            attrs["mode"] = "whisper"
            attrs["whisper_to"] = partner if whisper_a else heard
        else:
            attrs["mode"] = "listen"
        if ev.get("Call-Direction") == "outbound":  # the supervise command rang the desk
            supervisor = ev.get("variable_dialed_user") or ev.get("Caller-Destination-Number")
        else:  # the supervisor dialed in from a desk phone
            supervisor = ev.get("Caller-Caller-ID-Number")
        call.supervision_ids[uuid] = self._new_seg(
            call, f"{call.call_id}:supervision:{uuid}", "supervision", ts, visit,
            agent=visit.agent if visit else agent, target=supervisor or None,
            attrs=tuple(sorted(attrs.items())))
        self._legs[uuid] = (call.call_id, "supervisor", visit.member_uuid if visit else "")
        self._internal.add(uuid)
        call.last_ms = max(call.last_ms, ts)

    def _supervision_end(self, uuid: str, ts: int) -> None:
        leg = self._legs.get(uuid)
        call = self._calls.get(leg[0]) if leg is not None and leg[1] == "supervisor" else None
        if call is not None:
            self._close(call, call.supervision_ids.get(uuid), ts)

    # --------------------------------------------------------------- API

    def _on_api(self, ev: Event, ts: int) -> None:
        command = ev.get("API-Command")
        if command == "uuid_transfer":
            args = [a for a in (ev.get("API-Command-Argument") or "").split()
                    if not a.startswith("-")]  # uuid_transfer <uuid> [-bleg|-both] <dest> ...
            if len(args) < 2:
                return
            call = self._calls.get(args[0])
            if call is None:
                return
            dest = args[1]
            # the API event may come before or after the events the command caused
            left = self._left_by_agent(call)
            if left is not None:
                self._mark_transfer(call, left, "blind", dest, "uuid_transfer")
            elif any(v.in_talk for v in call.visits.values()):
                call.pending_transfer = (dest, "uuid_transfer")
        elif command == "callcenter_config":
            args = (ev.get("API-Command-Argument") or "").split()
            # "agent set wrap_up_time 1001@hotline.test 3": learn wrap-up times from the switch
            if len(args) == 5 and args[:3] == ["agent", "set", "wrap_up_time"]:
                seconds = to_int(args[4])
                if seconds is not None:
                    self.agent_wrapup_s[args[3]] = seconds


SURVEY_SCRIPT = "hotline_survey"  # fs_scripts/hotline_survey.py


def _script(ev: Event) -> str:
    """The module a ``python`` application runs (its first argument)."""
    return (ev.get("Application-Data") or "").partition(" ")[0]


def _bridged_ms(ev: Event, default: int) -> int:
    """When the agent's leg was bridged to the caller, from a bridge-agent-end (it carries
    that leg's times): microseconds when the switch gives them, else mod_callcenter's
    whole-second answer time. The bridge is when bridge-agent-start would have come."""
    bridged_us = to_int(ev.get("Caller-Channel-Bridged-Time"))
    if bridged_us:
        return bridged_us // 1000
    answered_s = to_int(ev.get("CC-Agent-Answered-Time"))
    return answered_s * 1000 if answered_s else default


def _after_bridge_destination(ev: Event, dest: str) -> bool:
    """Whether ``dest`` is where the dialplan itself sends the caller once the bridge ends
    (``transfer_after_bridge``, e.g. Hotline's survey queues), not an agent's transfer."""
    after = ev.get("variable_transfer_after_bridge") or ""
    return dest.startswith(QUEUE_EXIT_PREFIX) or (
        bool(after) and after.replace(" ", ":").split(":")[0] == dest)


def engine_for(center: CallCenter | None, node: str) -> SegmentEngine:
    """An engine configured from the model: wrap-up times, short-abandon thresholds, the
    tenant of each DID and the agents' own phone numbers (their outgoing calls are consult
    legs, not calls)."""
    wrapup: dict[str, int] = {}
    short: dict[str, int] = {}
    internal: set[str] = set()
    dids: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for tenant in center.tenants if center is not None else ():
        dids.update((number.did, tenant.domain) for number in tenant.numbers)
        dids.update((room.room, tenant.domain) for room in tenant.conferences)
        for agent in tenant.agents:
            wrapup[tenant.qualified(agent.id)] = agent.wrap_up_s
            if agent.extension:
                internal.add(agent.extension)
                extensions[f"{agent.extension}@{tenant.domain}"] = tenant.qualified(agent.id)
        for queue in tenant.queues:
            short[tenant.qualified(queue.id)] = queue.short_abandon_s
    return SegmentEngine(node=node, agent_wrapup_s=wrapup, short_abandon_s=short,
                         internal_numbers=internal, did_tenants=dids,
                         agent_extensions=extensions)
