"""The dialer's brain: concurrency, agents, priorities, windows and the abandon-rate cap."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from daemon.definition.config import load_center
from daemon.switch.pacing import (
    Candidate,
    CampaignLive,
    abandon_rate,
    agents_kept_back,
    choose,
    plan,
)
from tests.campaign_sim import simulate, uncapped

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def city():
    return load_center(REPO / "config", env={}).tenant("cityutil")


def live(campaign, *, free=(), in_flight=0, running=True, window=True, answered=0,
         abandoned=0):
    return CampaignLive("cityutil", campaign, running, window, in_flight, tuple(free),
                        answered, abandoned)


def test_progressive_dials_one_contact_per_free_agent_within_its_concurrency(city):
    revisit = city.campaign("revisit")  # max_concurrent 4
    (d,) = plan([live(revisit, free=("a1", "a2"))], {})
    assert (d.dial, d.agents) == (2, ("a1", "a2"))
    (d,) = plan([live(revisit, free=("a1", "a2", "a3"), in_flight=3)], {})
    assert (d.dial, d.agents) == (1, ("a1",))


def test_nothing_is_dialed_outside_the_window_or_when_paused(city):
    revisit = city.campaign("revisit")
    assert plan([live(revisit, free=("a1",), window=False)], {})[0].dial == 0
    assert plan([live(revisit, free=("a1",), running=False)], {})[0].reason == "not running"


def test_a_route_limit_is_shared_by_the_campaigns_on_it_and_priority_goes_first(city):
    revisit, notice = city.campaign("revisit"), city.campaign("outage_notice")  # prio 3 and 6
    decisions = plan([live(revisit, free=("a1", "a2", "a3")), live(notice)], {"pstn": 12})
    by = {d.campaign: d for d in decisions}
    # the route has 20 lines, 12 are busy: the notice (priority 6) takes 8, nothing is left
    assert by["outage_notice"].dial == 8
    assert by["revisit"].dial == 0 and "route pstn has 0 line(s) left" in by["revisit"].reason


def test_an_agent_serves_one_campaign_per_round(city):
    revisit = city.campaign("revisit")
    other = dataclasses.replace(revisit, id="survey", priority=9, route=None)
    by = {d.campaign: d for d in plan([live(revisit, free=("a1", "a2")),
                                       live(other, free=("a2",))], {})}
    assert by["survey"].agents == ("a2",) and by["revisit"].agents == ("a1",)


def test_agents_are_kept_back_from_half_the_cap_one_more_per_half_cap():
    assert [agents_kept_back(r, 3.0) for r in (0.0, 0.015, 0.016, 0.03, 0.031, 0.05, 0.5)] \
        == [0, 0, 1, 1, 2, 3, 4]
    assert abandon_rate(answered=4, abandoned=1) == 1 / 20  # a small sample is padded


def test_over_the_cap_a_progressive_campaign_keeps_agents_back_but_goes_on(city):
    revisit = city.campaign("revisit")
    (d,) = plan([live(revisit, free=("a1", "a2", "a3"), answered=100, abandoned=4)], {})
    assert d.dial == 1 and "2 free agent(s) kept back" in d.reason


def test_choose_honours_due_time_attempts_and_the_dnc_list(city):
    revisit = city.campaign("revisit")  # 3 attempts
    cands = [Candidate(1, "+861", "pending", 0, 0), Candidate(2, "+862", "pending", 3, 0),
             Candidate(3, "+863", "pending", 1, 500), Candidate(4, "+864", "pending", 1, 100),
             Candidate(5, "+865", "dialing", 0, 0), Candidate(6, "+866", "pending", 0, 0)]
    got = choose(cands, revisit, now_ms=200, n=5, dnc=frozenset({"+866"}))
    assert [c.id for c in got] == [1, 4]


def test_the_abandon_cap_holds_over_a_simulated_busy_hour(city):
    revisit = city.campaign("revisit")
    busy = dataclasses.replace(revisit, max_concurrent=40)
    for seed in (1, 7, 42):
        free_run = simulate(uncapped(busy), seed=seed)
        capped = simulate(busy, seed=seed)
        # without the cap, agents taken away while their contact rings abandon contacts
        assert free_run.abandon_rate > 0.03, (seed, free_run)
        # with it, the dialer keeps agents back and stays under 3 % over the hour ...
        assert capped.abandon_rate < 0.03, (seed, capped)
        # ... at a modest cost in reached contacts
        assert capped.answered > 0.75 * free_run.answered, (seed, capped, free_run)
    assert simulate(busy, seed=42) == capped  # deterministic
