"""Agent status and state intervals for the segment engine (pure, like the engine).

mod_callcenter reports every change as ``agent-status-change`` (Available, On
Break, Logged Out, Available (On Demand)) or ``agent-state-change`` (Idle,
Waiting, Receiving, In a queue call). Each change closes the agent's open
interval of that kind and opens the next one; both versions are emitted and
the store upserts them by id. A repeated value continues the open interval.

A Logged Out agent has no state interval: mod_callcenter keeps (and even reports) a
state for it - ``Waiting`` after a call the agent kept through its logout - but it
offers such an agent nothing, so booking that as waiting would count a logged-out
agent as idle-available (occupancy). At logout an idle state (Waiting, Idle) ends; a
call state (Receiving, In a queue call) runs on to the switch's next state change,
which ends it without opening another. The switch's state is remembered and its
interval opens again when the agent logs back in.
"""
from __future__ import annotations

from dataclasses import dataclass

from daemon.engine.records import AgentInterval, LiveChange
from daemon.engine.segments_state import evolve  # dataclasses.replace, cheaper


@dataclass(frozen=True)
class WrapUp:
    """A wrap-up running for an agent: the segment that a status change would cut short."""

    segment_id: str
    call_id: str
    end_ms: int


LOGGED_OUT = "Logged Out"
# states of an agent between calls; the others (Receiving, In a queue call) are a call's
IDLE_STATES = frozenset({"Waiting", "Idle"})


@dataclass
class _Agent:
    status: AgentInterval | None = None
    state: AgentInterval | None = None
    switch_state: str | None = None  # the state mod_callcenter reports, booked or not
    pending_reason: str | None = None  # announced for the next On Break interval
    wrapup: WrapUp | None = None


def tenant_of(agent: str) -> str:
    return agent.partition("@")[2]


class AgentBook:
    """Per agent: the open status and state intervals, the break reason announced for the
    next On Break, and the wrap-up running now.

    Methods append what they produce to the ``intervals`` / ``live`` lists they are given.
    """

    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}

    def _get(self, agent: str) -> _Agent:
        st = self._agents.get(agent)
        if st is None:
            st = self._agents[agent] = _Agent()
        return st

    def change(self, agent: str, kind: str, value: str, ts: int, node: str,
               intervals: list[AgentInterval], live: list[LiveChange]) -> WrapUp | None:
        """Record a status or state change; return the wrap-up it cuts short, if any."""
        st = self._get(agent)
        if kind == "state":
            st.switch_state = value
            if self.logged_out(agent):
                self._end_state(st, ts, intervals)  # the call the agent kept is over
                live.append(LiveChange("agent", agent, (("state", value), ("since_ms", ts)), ts))
                return None
        prev = st.status if kind == "status" else st.state
        reason = None
        if kind == "status":
            if value == "On Break":
                reason = st.pending_reason
            st.pending_reason = None
        if prev is not None and prev.value == value:
            if reason and prev.reason != reason:  # the reason came with a repeated status
                st.status = evolve(prev, reason=reason)
                intervals.append(st.status)
                live.append(LiveChange("agent", agent, (("reason", reason),), ts))
            return None
        if prev is not None:
            intervals.append(evolve(prev, ended_ms=max(ts, prev.started_ms)))
        new = AgentInterval(interval_id=f"{agent}:{kind}:{ts}", tenant=tenant_of(agent), node=node,
                            agent=agent, kind=kind, value=value, started_ms=ts, ended_ms=None,
                            reason=reason)
        intervals.append(new)
        if kind == "state":
            st.state = new
            live.append(LiveChange("agent", agent, (("state", value), ("since_ms", ts)), ts))
            return None
        st.status = new
        live.append(LiveChange("agent", agent,
                               (("status", value), ("reason", reason), ("since_ms", ts)), ts))
        if value == LOGGED_OUT:
            if st.state is not None and st.state.value in IDLE_STATES:
                self._end_state(st, ts, intervals)
        elif (prev is not None and prev.value == LOGGED_OUT and st.state is None
              and st.switch_state is not None):
            # logged back in: the state mod_callcenter kept meanwhile is booked again
            st.state = AgentInterval(
                interval_id=f"{agent}:state:{ts}", tenant=tenant_of(agent), node=node,
                agent=agent, kind="state", value=st.switch_state, started_ms=ts, ended_ms=None)
            intervals.append(st.state)
        return self.take_wrapup(agent, ts)

    @staticmethod
    def _end_state(st: _Agent, ts: int, intervals: list[AgentInterval]) -> None:
        if st.state is not None:
            intervals.append(evolve(st.state, ended_ms=max(ts, st.state.started_ms)))
            st.state = None

    def logged_out(self, agent: str) -> bool:
        """Whether the agent's status is Logged Out now (unknown status: not logged out)."""
        st = self._agents.get(agent)
        return st is not None and st.status is not None and st.status.value == LOGGED_OUT

    def announce_break(self, agent: str, reason: str | None, ts: int,
                       intervals: list[AgentInterval], live: list[LiveChange]) -> None:
        """hotline::agent ``break`` is fired before the status changes: the reason belongs
        to the next On Break interval, or to the current one if the agent is already on break."""
        st = self._get(agent)
        if st.status is not None and st.status.value == "On Break":
            st.status = evolve(st.status, reason=reason)
            intervals.append(st.status)
            live.append(LiveChange("agent", agent, (("reason", reason),), ts))
        else:
            st.pending_reason = reason

    def close_all(self, ts: int, intervals: list[AgentInterval]) -> None:
        """End every open interval at ``ts`` (the end of a replayed stream)."""
        for st in self._agents.values():
            for prev in (st.status, st.state):
                if prev is not None and prev.ended_ms is None:
                    intervals.append(evolve(prev, ended_ms=max(ts, prev.started_ms)))
            st.status = st.state = None

    def expect_reason(self, agent: str, reason: str | None) -> None:
        self._get(agent).pending_reason = reason

    def start_wrapup(self, agent: str, wrapup: WrapUp) -> None:
        self._get(agent).wrapup = wrapup

    def take_wrapup(self, agent: str, ts: int) -> WrapUp | None:
        """The wrap-up still running at ``ts`` (it ends there: it is forgotten)."""
        st = self._agents.get(agent)
        wrapup = st.wrapup if st is not None else None
        if wrapup is None or ts >= wrapup.end_ms:
            return None
        st.wrapup = None  # type: ignore[union-attr]
        return wrapup
