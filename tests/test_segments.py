"""Scenario tests of the segment engine, each replaying one recorded call from tests/data/captures.

Every number asserted here is in the capture's README table / truth file; the
tolerance is 0.05 s (the switch's event times advance in ~20 ms steps).
"""
from __future__ import annotations

import pytest

from tests.scenario import mismatches, replay, seconds, truth

TOL = 0.05


def approx(value: float) -> object:
    return pytest.approx(value, abs=TOL)


def kinds(segs) -> list[str]:
    return [s.kind for s in segs]


def test_caller_presses_1_and_1001_answers_after_2s_ring_talks_6s_then_wraps_up_3s():
    rep = replay("answered_ivr")
    call_id = "30082806-037b-4dba-8e24-9e170e1bf74c"
    call = rep.calls[call_id]
    assert (call.caller, call.caller_name, call.dialed) == (
        "13800138001", "Wang Fang", "4008001234")
    assert (call.tenant, call.node, call.outcome) == ("hotline.test", "vm", "answered")
    assert (call.ivr_path, call.first_queue) == ("1", "billing@hotline.test")
    segs = rep.segs(call_id)
    assert kinds(segs) == ["ivr", "queue", "ring", "talk", "wrapup"]
    ivr, queue, ring, talk, wrapup = segs
    assert (ivr.menu, ivr.digits, seconds(ivr.duration_ms)) == ("hotline_main", "1", approx(2.0))
    assert ivr.started_ms == call.started_ms  # the caller is in the IVR from the DID's answer
    assert (queue.queue, queue.outcome, seconds(queue.duration_ms)) == (
        "billing@hotline.test", "answered", approx(2.06))
    assert (ring.agent, ring.outcome, seconds(ring.duration_ms)) == (
        "1001@hotline.test", "answered", approx(2.0))
    assert (talk.agent, talk.hangup_by, seconds(talk.duration_ms)) == (
        "1001@hotline.test", "caller", approx(6.02))
    assert (wrapup.agent, seconds(wrapup.duration_ms)) == ("1001@hotline.test", approx(3.0))
    # every row of the call carries the caller, the DID, the tenant, the node and the stay
    assert {(s.caller, s.dialed, s.tenant, s.node) for s in segs} == {
        ("13800138001", "4008001234", "hotline.test", "vm")}
    assert {s.visit_id for s in segs[1:]} == {"7466ab86-7533-4882-8151-08075a81585d"}
    assert {s.queue_entered_ms for s in segs[1:]} == {queue.started_ms}


def test_caller_waits_25s_and_hangs_up_is_one_queue_segment_abandoned_not_short():
    rep = replay("abandoned_long")
    call_id = "faf2250e-3f86-4a81-8958-1b33785b3015"
    segs = rep.segs(call_id)
    assert kinds(segs) == ["ivr", "queue"]
    queue = segs[1]
    assert queue.outcome == "abandoned"
    assert seconds(queue.duration_ms) == approx(25.0)
    assert rep.calls[call_id].outcome == "abandoned"


def test_caller_hangs_up_after_5s_in_queue_is_a_short_abandon():
    rep = replay("abandoned_short")
    queue = rep.segs("c3126c41-4625-404a-811a-1b24a5be35fa", "queue")
    assert [(q.outcome, seconds(q.duration_ms)) for q in queue] == [("short-abandon", approx(5.02))]


def test_short_abandon_threshold_is_per_queue():
    from daemon.engine.segments import SegmentEngine
    from tests.scenario import WRAPUP_S, events, feed_all

    eng = SegmentEngine(agent_wrapup_s=WRAPUP_S, short_abandon_s={"billing@hotline.test": 3})
    rep = feed_all(eng, events("abandoned_short"))
    assert [q.outcome for q in rep.segs("c3126c41-4625-404a-811a-1b24a5be35fa", "queue")] == [
        "abandoned"]


def test_1001_does_not_answer_for_5s_and_the_call_rolls_over_to_1002():
    rep = replay("noanswer_rollover")
    call_id = "95314ac0-fa41-47a6-b44c-f818c5920792"
    rings = rep.segs(call_id, "ring")
    assert [(r.agent, r.outcome, seconds(r.duration_ms)) for r in rings] == [
        ("1001@hotline.test", "no-answer", approx(4.24)),
        ("1002@hotline.test", "answered", approx(2.04)),
    ]
    (queue,) = rep.segs(call_id, "queue")
    assert (queue.outcome, seconds(queue.duration_ms), queue.agent) == (
        "answered", approx(6.42), "1002@hotline.test")
    (wrapup,) = rep.segs(call_id, "wrapup")
    assert (wrapup.agent, seconds(wrapup.duration_ms)) == ("1002@hotline.test", approx(4.0))


def test_agent_holds_4s_so_talk_is_split_around_the_hold_and_the_agent_hangs_up():
    rep = replay("hold")
    call_id = "4985edf3-6b5d-47c6-a50c-bf750197e9f9"
    segs = [s for s in rep.segs(call_id) if s.kind in ("talk", "hold")]
    assert [(s.kind, seconds(s.duration_ms)) for s in segs] == [
        ("talk", approx(3.0)), ("hold", approx(4.26)), ("talk", approx(2.74))]
    assert segs[0].ended_ms == segs[1].started_ms and segs[1].ended_ms == segs[2].started_ms
    assert segs[-1].hangup_by == "agent"
    assert {s.agent for s in segs} == {"1001@hotline.test"}


def test_blind_transfer_from_billing_to_outage_gives_two_stays_and_a_transfer():
    rep = replay("blind_transfer")
    call_id = "5df682a3-2445-4dbe-8904-22aa80293ece"
    billing, outage = "2f681f4f-d9b1-4629-af19-95451f0779f5", "25ce7717-a7a2-46bf-bdfa-fecc80451971"
    (q1,) = rep.visit(call_id, billing, "queue")
    assert (q1.queue, q1.outcome, seconds(q1.duration_ms)) == (
        "billing@hotline.test", "transferred-out", approx(2.08))
    (talk1,) = rep.visit(call_id, billing, "talk")
    assert (seconds(talk1.duration_ms), talk1.hangup_by) == (approx(4.0), "transfer")
    (transfer,) = rep.segs(call_id, "transfer")
    assert (transfer.transfer_type, transfer.target, transfer.agent) == (
        "blind", "7002", "1001@hotline.test")
    assert dict(transfer.attrs) == {"method": "uuid_transfer",
                                    "target_queue": "outage@hotline.test"}
    assert transfer.duration_ms == 0 and transfer.started_ms == talk1.ended_ms
    (wrap1,) = rep.visit(call_id, billing, "wrapup")
    assert (wrap1.agent, seconds(wrap1.duration_ms)) == ("1001@hotline.test", approx(3.0))
    # billing's bridge-agent-end / member-queue-end came after outage's member-queue-start
    (q2,) = rep.visit(call_id, outage, "queue")
    assert (q2.queue, q2.outcome, seconds(q2.duration_ms)) == (
        "outage@hotline.test", "answered", approx(2.14))
    rings = sorted((r.agent, r.outcome) for r in rep.visit(call_id, outage, "ring"))
    assert rings == [("1002@hotline.test", "lose-race"), ("1003@hotline.test", "answered"),
                     ("1004@hotline.test", "lose-race")]
    (talk2,) = rep.visit(call_id, outage, "talk")
    assert (talk2.agent, seconds(talk2.duration_ms), talk2.hangup_by) == (
        "1003@hotline.test", approx(5.02), "caller")
    call = rep.calls[call_id]
    assert (call.outcome, call.first_queue) == ("answered", "billing@hotline.test")


def test_uuid_transfer_api_event_arriving_after_its_effects_changes_nothing():
    from tests.scenario import engine, events, feed_all

    evs = events("blind_transfer")
    api = next(i for i, e in enumerate(evs) if e.get("API-Command") == "uuid_transfer")
    start2 = next(i for i, e in enumerate(evs) if e.get("CC-Action") == "member-queue-start"
                  and e.get("CC-Queue") == "outage@hotline.test")
    moved = evs[:api] + evs[api + 1:start2 + 1] + [evs[api]] + evs[start2 + 1:]
    in_order = replay("blind_transfer").segments
    late_api = feed_all(engine(), moved).segments
    assert late_api == in_order


def test_sales_queue_gives_up_after_max_wait_time_and_the_switch_ends_the_call():
    rep = replay("queue_timeout")
    call_id = "2e518ac2-c8da-4e74-b7c0-b0364b7af5aa"
    assert kinds(rep.segs(call_id)) == ["ivr", "queue"]
    queue = rep.segs(call_id, "queue")[0]
    assert (queue.queue, queue.outcome, seconds(queue.duration_ms)) == (
        "sales@hotline.test", "timeout", approx(7.52))
    assert rep.calls[call_id].outcome == "timeout"
    assert rep.calls[call_id].ivr_path == "3"


def test_three_callers_meet_in_room_3001_one_conference_segment_each():
    rep = replay("conference")
    got = {}
    for call in rep.calls.values():
        (conf,) = rep.segs(call.call_id, "conference")
        got[call.caller] = (call.outcome, conf.target, dict(conf.attrs)["member_id"],
                            seconds(conf.duration_ms))
    assert got == {
        "13800138031": ("conference", "3001@hotline.test", "1", approx(9.0)),
        "13800138032": ("conference", "3001@hotline.test", "2", approx(9.5)),
        "13800138033": ("conference", "3001@hotline.test", "3", approx(10.0)),
    }


def test_caller_hangs_up_in_the_ivr_without_a_key_is_ivr_only():
    rep = replay("ivr_only")
    call = rep.calls["c7cbe4e1-cc96-4107-b294-2ba2b8c26026"]
    (ivr,) = rep.segs(call.call_id)
    assert (call.outcome, call.ivr_path, call.first_queue) == ("ivr-only", "", None)
    assert (ivr.kind, ivr.digits, seconds(ivr.duration_ms)) == ("ivr", None, approx(4.5))


def test_sip_desk_phone_1005_answers_and_hangs_up_with_bye():
    rep = replay("sip_agent")
    (talk,) = rep.segs("74044f04-0309-41fe-9096-b4b024d25716", "talk")
    assert (talk.agent, talk.hangup_by, seconds(talk.duration_ms)) == (
        "1005@hotline.test", "agent", approx(5.0))


def test_loopback_agent_six_channels_make_one_call_answered_by_1006():
    rep = replay("loopback_agent")
    assert list(rep.calls) == ["616fa897-47d3-4a61-a24a-bfddd8297ada"]
    segs = rep.segs("616fa897-47d3-4a61-a24a-bfddd8297ada")
    assert kinds(segs) == ["ivr", "queue", "ring", "talk", "wrapup"]
    assert {s.agent for s in segs[2:]} == {"1006@hotline.test"}
    assert seconds(segs[3].duration_ms) == approx(5.0)


def test_agent_status_and_state_changes_become_chained_intervals():
    rep = replay("agent_status")
    assert rep.calls == {}
    status_1001 = sorted((i for i in rep.intervals.values()
                          if i.agent == "1001@hotline.test" and i.kind == "status"),
                         key=lambda i: i.started_ms)
    assert [i.value for i in status_1001] == [
        "Logged Out", "Available", "On Break", "Available", "Logged Out"]
    for before, after in zip(status_1001, status_1001[1:]):
        assert before.ended_ms == after.started_ms  # closed when the next change arrives
    assert status_1001[-1].ended_ms is None
    on_break = status_1001[2]
    assert seconds(on_break.duration_ms) == approx(8.98 - 4.50)
    assert (on_break.tenant, on_break.node) == ("hotline.test", "vm")
    # every change of the truth file starts an interval (repeated values continue one)
    for change in truth("agent_status")["agent_status_and_state_events"]:
        kind = change["action"].split("-")[1]
        assert any(i.agent == change["agent"] and i.kind == kind and i.value == change["value"]
                   and i.started_ms <= change["t"] * 1000 + 50
                   and (i.ended_ms is None or i.ended_ms >= change["t"] * 1000 - 50)
                   for i in rep.intervals.values()), change


def test_on_demand_agent_goes_idle_after_waiting():
    rep = replay("agent_status")
    states = sorted(((i.started_ms, i.value) for i in rep.intervals.values()
                     if i.agent == "1003@hotline.test" and i.kind == "state"))
    assert [v for _, v in states] == ["Waiting", "Idle"]


@pytest.mark.parametrize("name", [
    "answered_ivr", "abandoned_long", "abandoned_short", "noanswer_rollover", "hold",
    "blind_transfer", "queue_timeout", "conference", "ivr_only", "sip_agent", "loopback_agent",
])
def test_every_truth_value_of_the_capture_matches(name):
    checked, bad = mismatches(replay(name), truth(name)["calls"])
    assert checked > 0
    assert bad == []


def test_blind_transfer_is_seen_from_the_caller_running_7002_even_without_the_api_event():
    from tests.scenario import engine, events, feed_all

    evs = [e for e in events("blind_transfer") if e.get("API-Command") != "uuid_transfer"]
    rep = feed_all(engine(), evs)
    (transfer,) = rep.segs("5df682a3-2445-4dbe-8904-22aa80293ece", "transfer")
    assert (transfer.transfer_type, transfer.target) == ("blind", "7002")
    assert dict(transfer.attrs) == {"target_queue": "outage@hotline.test"}
