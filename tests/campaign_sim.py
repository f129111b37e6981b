"""A deterministic simulated progressive campaign: agents, contacts and the dialer's brain.

One-second steps. Agents take the campaign's calls, and now and then are taken away by
other work (an inbound call, a break) - also while a contact they were dialed for is still
ringing, which is what makes a progressive dialer abandon contacts. A contact that answers
gets its reserved agent, else any free agent within 2 s, else it is abandoned. Used by
tests/test_pacing.py and bench/bench_dialer.py.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from daemon.definition.campaigns import Campaign
from daemon.switch.pacing import CampaignLive, plan


@dataclass
class SimResult:
    dialed: int = 0
    answered: int = 0
    abandoned: int = 0
    decisions: int = 0
    idle_agent_s: int = 0  # agent-seconds free and unreserved (what slowing down costs)

    @property
    def abandon_rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0


@dataclass
class _Call:
    agent: str
    answer_at: int | None  # None: never answers
    end_at: int  # ring end when not answered


@dataclass
class _Sim:
    rng: random.Random
    agents: list[str]
    busy_until: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, _Call] = field(default_factory=dict)
    calls: list[_Call] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # deadlines of answered contacts


def simulate(campaign: Campaign, *, agents: int = 20, seconds: int = 3600, seed: int = 7,
             answer_p: float = 0.4, away_p: float = 0.01, talk_s: tuple[int, int] = (60, 240),
             wrap_s: int = 15) -> SimResult:
    """Run the campaign for ``seconds`` and count what happened."""
    rng = random.Random(seed)
    sim = _Sim(rng, [f"a{i}" for i in range(agents)])
    out = SimResult()
    for t in range(seconds):
        # other work takes agents away, reserved ones included
        for a in sim.agents:
            if sim.busy_until.get(a, 0) <= t and rng.random() < away_p:
                sim.busy_until[a] = t + rng.randint(30, 120)
        free = [a for a in sim.agents if sim.busy_until.get(a, 0) <= t and a not in sim.reserved]
        # contacts answer; each gets its agent, else a free one within 2 s
        for call in list(sim.calls):
            if call.answer_at == t:
                sim.calls.remove(call)
                sim.reserved.pop(call.agent, None)
                out.answered += 1
                if sim.busy_until.get(call.agent, 0) <= t:
                    sim.busy_until[call.agent] = t + rng.randint(*talk_s) + wrap_s
                    free = [a for a in free if a != call.agent]
                else:
                    sim.waiting.append(t + 2)
            elif call.answer_at is None and call.end_at == t:
                sim.calls.remove(call)
                sim.reserved.pop(call.agent, None)
                if sim.busy_until.get(call.agent, 0) <= t:
                    free.append(call.agent)
        for deadline in list(sim.waiting):
            if free:
                a = free.pop(0)
                sim.busy_until[a] = t + rng.randint(*talk_s) + wrap_s
                sim.waiting.remove(deadline)
            elif deadline <= t:
                sim.waiting.remove(deadline)
                out.abandoned += 1
        out.idle_agent_s += len(free)
        live = CampaignLive("sim", campaign, True, True, len(sim.calls), tuple(free),
                            answered=out.answered, abandoned=out.abandoned)
        (decision,) = plan([live], {})
        out.decisions += 1
        for a in decision.agents:
            ring = rng.randint(5, 25)
            answers = rng.random() < answer_p
            call = _Call(a, t + ring if answers else None, t + 30)
            sim.calls.append(call)
            sim.reserved[a] = call
            out.dialed += 1
    return out


def uncapped(campaign: Campaign) -> Campaign:
    return dataclasses.replace(campaign, abandon_cap_pct=100.0)
