"""The dialer's brain: how many contacts each campaign dials now, and which (pure).

No sockets, no database, no clock of its own: :func:`plan` takes the campaigns with their
live figures (in-flight calls, free agents, the measured abandon rate, the dialing
window) and returns how many contacts each may claim; :func:`choose` picks those contacts
from candidates (the database does the same choice at scale: ``storage.campaigns
.claim_batch`` orders by the same ``(next_ms, id)``).

Rules, in order:

* a campaign dials only while it is ``running`` and inside its window (``may_dial``: hours,
  schedule, holidays, never at night);
* never more than ``max_concurrent`` calls of a campaign, nor ``route_max_concurrent``
  calls on a route, summed over the campaigns using it;
* preview and progressive: one contact per free agent (an agent already reserved by a
  call in flight is not free); free agents go to the campaign of higher ``priority``
  first, and an agent serves one campaign per round;
* progressive only: the abandon rate (answered contacts left without an agent within 2 s,
  over the answered ones, since the start of the campaign's day in the tenant's zone - the
  period regulators measure it over) is kept under ``abandon_cap_pct`` by
  keeping some free agents back as a buffer (``agents_kept_back``): none while the rate is
  at most half the cap, one more per further half cap. The rate is
  measured over at least ``MIN_SAMPLE`` answered calls (fewer are padded), so the first
  few calls of a day cannot stop the campaign;
* notice: no agents needed; only the concurrency limits apply.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from daemon.definition.campaigns import Campaign

MIN_SAMPLE = 20  # answered calls the abandon rate is measured over, at least
MAX_RESERVE = 4  # free agents kept back at most


@dataclass(frozen=True)
class CampaignLive:
    """One campaign as the dialer sees it at the start of a round."""

    tenant: str
    campaign: Campaign
    running: bool
    window_open: bool
    in_flight: int  # its calls up now (dialing, ringing or talking before an agent has it)
    free_agents: tuple[str, ...]  # its agents free now (qualified), best first
    answered: int = 0  # answered contacts today (tenant's day)
    abandoned: int = 0  # of which no agent within 2 s

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.campaign.id)


@dataclass(frozen=True)
class Decision:
    """How many contacts a campaign claims now, which agents they are for, and why."""

    tenant: str
    campaign: str
    dial: int
    agents: tuple[str, ...]  # preview/progressive: one per contact, in order
    reason: str


def abandon_rate(answered: int, abandoned: int) -> float:
    """Abandoned over answered, measured over at least MIN_SAMPLE answered calls."""
    return abandoned / max(answered, MIN_SAMPLE)


def agents_kept_back(rate: float, cap_pct: float) -> int:
    """Free agents kept back as a buffer for contacts whose agent went away meanwhile:
    none up to half the cap, then one more for every further half cap, at most MAX_RESERVE.
    Never "stop dialing": agents freeing up exceed the buffer and the campaign goes on, so
    the day's rate is diluted back under the cap instead of freezing above it."""
    half = cap_pct / 200.0
    if rate <= half:
        return 0
    if half <= 0:
        return MAX_RESERVE
    return min(MAX_RESERVE, 1 + math.floor((rate - half) / half - 1e-12))


def plan(campaigns: Sequence[CampaignLive], route_in_use: Mapping[str, int]) -> list[Decision]:
    """How many contacts each campaign dials now (see the module doc)."""
    out: list[Decision] = []
    taken: set[str] = set()
    route_left: dict[str, int] = {}
    for c in campaigns:
        r, limit = c.campaign.route, c.campaign.route_max_concurrent
        if r is not None and limit is not None:
            route_left[r] = min(route_left.get(r, limit), limit) if r in route_left else \
                limit - route_in_use.get(r, 0)
    order = sorted(campaigns, key=lambda c: (-c.campaign.priority, c.tenant, c.campaign.id))
    for c in order:
        camp = c.campaign
        if not c.running:
            out.append(Decision(c.tenant, camp.id, 0, (), "not running"))
            continue
        if not c.window_open:
            out.append(Decision(c.tenant, camp.id, 0, (), "outside the dialing window"))
            continue
        room = max(camp.max_concurrent - c.in_flight, 0)
        room_why = f"{c.in_flight}/{camp.max_concurrent} calls up"
        if camp.route in route_left and route_left[camp.route] < room:
            room = max(route_left[camp.route], 0)
            room_why = f"route {camp.route} has {room} line(s) left"
        agents: tuple[str, ...] = ()
        if camp.type == "notice":
            wanted, why = room, f"{room} line(s) free"
        else:
            free = [a for a in c.free_agents if a not in taken]
            wanted, why = len(free), f"{len(free)} free agent(s)" if free else "no free agent"
            if camp.type == "progressive" and free:
                rate = abandon_rate(c.answered, c.abandoned)
                keep = agents_kept_back(rate, camp.abandon_cap_pct)
                if keep:
                    wanted = max(len(free) - keep, 0)
                    why = (f"abandon rate {rate:.1%} against a cap of {camp.abandon_cap_pct:g}%: "
                           f"{keep} free agent(s) kept back, dialing for {wanted}")
        n = min(room, wanted)
        if room < wanted:
            why = room_why
        if camp.type != "notice":
            agents = tuple(free[:n])
            taken.update(agents)
        if camp.route in route_left:
            route_left[camp.route] -= n
        out.append(Decision(c.tenant, camp.id, n, agents, why))
    return out


@dataclass(frozen=True)
class Candidate:
    """A contact as the chooser sees it."""

    id: int
    number: str
    status: str
    attempts: int
    next_ms: int


def choose(candidates: Iterable[Candidate], campaign: Campaign, now_ms: int, n: int,
           dnc: frozenset[str] = frozenset()) -> list[Candidate]:
    """The ``n`` contacts to dial now: pending, due, attempts left, not on the do-not-call
    list; earliest due first, then import order (the same order as the claim query)."""
    due = [c for c in candidates
           if c.status == "pending" and c.next_ms <= now_ms and c.attempts < campaign.max_attempts
           and c.number not in dnc]
    due.sort(key=lambda c: (c.next_ms, c.id))
    return due[:max(n, 0)]
