"""The busy hour: 150 overlapping calls checked against busy_hour.truth.json, value by value."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.scenario import mismatches, replay, seconds, truth


@pytest.fixture(scope="module")
def busy():
    return replay("busy_hour")


def first_stay_outcome(rep, call) -> str:
    queues = rep.segs(call.call_id, "queue")
    return queues[0].outcome if queues else call.outcome


def test_busy_hour_has_the_150_calls_of_the_truth_file_and_nothing_else(busy):
    assert set(busy.calls) == {c["call_uuid"] for c in truth("busy_hour")["calls"]}


def test_busy_hour_outcomes_of_the_first_queue_match_the_readme(busy):
    outcomes = Counter(first_stay_outcome(busy, c) for c in busy.calls.values())
    assert outcomes == {"answered": 103, "short-abandon": 30, "ivr-only": 9,
                        "transferred-out": 6, "abandoned": 2}
    assert Counter(c.first_queue for c in busy.calls.values() if c.first_queue) == {
        "billing@hotline.test": 84, "outage@hotline.test": 57}


def test_busy_hour_rings_holds_and_hangups_match_the_readme(busy):
    rings = Counter(s.outcome for s in busy.segments.values() if s.kind == "ring")
    assert rings["no-answer"] == 6
    assert rings["lose-race"] == 25
    assert rings["caller-abandoned"] == 5
    holds = Counter(s.visit_id for s in busy.segments.values() if s.kind == "hold")
    assert len(holds) == 12 and sum(1 for n in holds.values() if n == 2) == 3
    last_talks = {}
    for s in sorted((s for s in busy.segments.values() if s.kind == "talk"),
                    key=lambda s: s.started_ms):
        last_talks[s.visit_id] = s
    assert Counter(t.hangup_by for t in last_talks.values())["agent"] == 32
    assert Counter(s.kind for s in busy.segments.values())["transfer"] == 6


def test_busy_hour_every_wait_ring_talk_hold_wrapup_and_hangup_matches_the_truth(busy):
    checked, bad = mismatches(busy, truth("busy_hour")["calls"])
    assert checked > 2000
    assert bad == []


def test_wrapup_is_cut_short_when_1001_logs_out_inside_it(busy):
    (wrapup,) = [s for s in busy.segments.values()
                 if s.kind == "wrapup" and s.visit_id == "bb3805a8-a33d-43bf-93a0-5a355e3a466b"]
    assert wrapup.agent == "1001@hotline.test"
    assert seconds(wrapup.duration_ms) == pytest.approx(1.5, abs=0.05)
    assert dict(wrapup.attrs)["cut_by"] == "Logged Out"


def test_busy_hour_leaves_nothing_open_and_every_queue_join_has_a_leave(busy):
    assert [s.segment_id for s in busy.segments.values() if s.ended_ms is None] == []
    assert all(c.ended_ms is not None for c in busy.calls.values())
    members = Counter(dict(lc.data)["action"] for lc in busy.live if lc.kind == "member")
    assert members == {"join": 147, "leave": 147}
