"""The engine's promises beyond single scenarios: determinism, idempotency, isolation of
failures, garbage, the custom events fs_scripts fire, live changes and engine_for."""
from __future__ import annotations

import logging
import random

from daemon.definition.model import Agent, CallCenter, Queue, Tenant
from daemon.engine.segments import SegmentEngine, engine_for
from daemon.switch.events import Event
from daemon.switch.supervisor import SwitchSnapshot
from tests.scenario import Replay, engine, events, feed_all, replay

CALL = "30082806-037b-4dba-8e24-9e170e1bf74c"  # answered_ivr
T0 = 1795345640000


def header(keyword: str) -> str:
    """Keyword argument -> header name: CC_Agent -> CC-Agent; variable_* names keep their _."""
    return keyword if keyword.startswith("variable_") else keyword.replace("_", "-")


def custom(subclass: str, ms: int, **headers: str) -> Event:
    base = {"Event-Name": "CUSTOM", "Event-Subclass": subclass,
            "Event-Date-Timestamp": str(ms * 1000), "FreeSWITCH-Switchname": "vm"}
    return Event.from_headers({**base, **{header(k): v for k, v in headers.items()}})


def test_a_second_engine_fed_the_same_stream_emits_identical_output():
    first = replay("blind_transfer")
    second = replay("blind_transfer")
    assert first.outputs == second.outputs
    assert first.segments and first.intervals and first.live


def test_feeding_the_same_events_twice_changes_no_record():
    eng = engine()
    once = feed_all(eng, events("noanswer_rollover"))
    again = feed_all(eng, events("noanswer_rollover"))
    assert not any(again.outputs)  # every event was recognised as already seen
    assert once.segments and once.calls


def test_records_re_emitted_with_the_same_id_replace_the_open_version():
    rep = replay("answered_ivr")
    talk_versions = [s for out in rep.outputs for s in out.segments if s.kind == "talk"]
    assert [s.ended_ms is None for s in talk_versions] == [True, False]  # opened, then closed
    assert len({s.segment_id for s in talk_versions}) == 1


def test_a_failing_handler_for_one_call_does_not_disturb_the_other_calls(caplog):
    evs = events("busy_hour")
    victim = "3b54a03c-ecad-46d0-8770-b852794cbe85"
    clean = feed_all(engine(), evs)

    eng = engine()
    key = ("CUSTOM", "callcenter::info", "bridge-agent-start")
    original = eng._handlers[key]

    def broken(ev: Event, ts: int) -> None:
        if ev.get("CC-Member-Session-UUID") == victim:
            raise RuntimeError("malformed bridge-agent-start")
        original(ev, ts)

    eng._handlers[key] = broken
    with caplog.at_level(logging.ERROR, logger="daemon.engine.segments"):
        hurt = feed_all(eng, events("busy_hour"))
    assert any(victim in r.getMessage() for r in caplog.records)
    others = {k: v for k, v in clean.segments.items() if not k.startswith(victim)}
    assert {k: v for k, v in hurt.segments.items() if not k.startswith(victim)} == others
    assert {k: v for k, v in hurt.calls.items() if k != victim} == {
        k: v for k, v in clean.calls.items() if k != victim}


def test_garbage_and_truncated_events_do_not_crash_and_change_nothing():
    evs = events("hold")
    rng = random.Random(7)
    junk = [Event(b""), Event(b"\x00\xff\xfe garbage"), Event(b"Event-Name: CUSTOM\n"),
            Event(b"Event-Name: CHANNEL_HANGUP\nUnique-ID: nope\nEvent-Date-Timestamp: x\n"),
            Event(b"Event-Name: CUSTOM\nEvent-Subclass: callcenter::info\n"
                  b"CC-Action: bridge-agent-end\n"),
            Event(b"Event-Name: CUSTOM\nEvent-Subclass: callcenter::info\n"
                  b"CC-Action: agent-offering\nCC-Member-Session-UUID: zzz\n"),
            Event(b"Event-Name: API\nAPI-Command: uuid_transfer\nAPI-Command-Argument: \n")]
    for ev in evs[::10]:  # truncated copies of real events, cut at random points
        raw = ev.raw
        junk.append(Event(raw[: rng.randrange(1, len(raw))]))
    mixed: list[Event] = []
    for i, ev in enumerate(evs):
        mixed.append(ev)
        if i % 7 == 0 and junk:
            mixed.append(junk.pop())
    clean = replay("hold")
    dirty = feed_all(engine(), [Event(e.raw) for e in mixed])
    hold_call = "4985edf3-6b5d-47c6-a50c-bf750197e9f9"
    assert {k: v for k, v in dirty.segments.items() if k.startswith(hold_call)} == {
        k: v for k, v in clean.segments.items() if k.startswith(hold_call)}
    assert dirty.calls[hold_call] == clean.calls[hold_call]


def test_survey_callback_and_disposition_events_from_fs_scripts():
    eng = engine()
    rep = feed_all(eng, events("answered_ivr"))
    for ev in (
        custom("hotline::disposition", T0, Hotline_Call_ID=CALL, Hotline_Agent="1001@hotline.test",
               Hotline_Code="12"),
        custom("hotline::survey", T0 + 100, Hotline_Call_ID=CALL,
               Hotline_Queue="billing@hotline.test", Hotline_Agent="1001@hotline.test",
               Hotline_Score="4"),
    ):
        rep.add(eng.feed(ev))
    (talk,) = rep.segs(CALL, "talk")
    assert talk.disposition == "12"
    assert dict(talk.attrs)["disposition_ms"] == str(T0)  # when the agent keyed it in
    (survey,) = rep.segs(CALL, "survey")
    assert (survey.score, survey.agent, survey.queue, survey.duration_ms) == (
        4, "1001@hotline.test", "billing@hotline.test", 0)


def test_callback_request_keeps_the_place_and_its_result_closes_it():
    eng = engine()
    rep = feed_all(eng, events("abandoned_long"))
    call_id = "faf2250e-3f86-4a81-8958-1b33785b3015"
    joined = rep.segs(call_id, "queue")[0].started_ms
    rep.add(eng.feed(custom("hotline::callback", T0 + 50000, Hotline_Call_ID=call_id,
                            Hotline_Queue="billing@hotline.test", Hotline_Number="13800138002",
                            Hotline_Joined_MS=str(joined), Hotline_Action="request")))
    rep.add(eng.feed(custom("hotline::callback", T0 + 90000, Hotline_Call_ID=call_id,
                            Hotline_Queue="billing@hotline.test", Hotline_Action="result",
                            Hotline_Outcome="connected", Hotline_Agent="1002@hotline.test")))
    (cb,) = rep.segs(call_id, "callback")
    assert (cb.target, cb.queue_entered_ms, cb.outcome, cb.agent, cb.duration_ms) == (
        "13800138002", joined, "connected", "1002@hotline.test", 40000)
    assert rep.calls[call_id].outcome == "callback"


def test_break_reason_from_hotline_agent_lands_on_the_next_on_break_interval():
    eng = SegmentEngine(node="node-a")
    rep = Replay()
    agent = "1001@hotline.test"

    def status(ms: int, value: str) -> Event:
        return custom("callcenter::info", ms, CC_Action="agent-status-change", CC_Agent=agent,
                      CC_Agent_Status=value)

    rep.add(eng.feed(status(T0, "Available")))
    rep.add(eng.feed(custom("hotline::agent", T0 + 1000, Hotline_Agent=agent,
                            Hotline_Action="break", Hotline_Reason="lunch")))
    rep.add(eng.feed(status(T0 + 1010, "On Break")))
    rep.add(eng.feed(status(T0 + 61010, "Available")))
    got = sorted((i.started_ms, i.value, i.reason, i.ended_ms, i.node)
                 for i in rep.intervals.values())
    assert got == [(T0, "Available", None, T0 + 1010, "node-a"),
                   (T0 + 1010, "On Break", "lunch", T0 + 61010, "node-a"),
                   (T0 + 61010, "Available", None, None, "node-a")]
    live = [dict(lc.data) for lc in rep.live if lc.kind == "agent"]
    assert live[1] == {"status": "On Break", "reason": "lunch", "since_ms": T0 + 1010}


def test_live_changes_follow_the_caller_through_the_queue_and_the_agent_through_the_call():
    rep = replay("answered_ivr")
    members = [(lc.key, dict(lc.data)) for lc in rep.live if lc.kind == "member"]
    joined = rep.segs(CALL, "queue")[0].started_ms
    assert members == [
        ("billing@hotline.test", {"action": "join", "call_id": CALL, "caller": "13800138001",
                                  "joined_ms": joined}),
        ("billing@hotline.test", {"action": "leave", "call_id": CALL, "joined_ms": joined,
                                  "outcome": "answered"}),
    ]
    agent = [dict(lc.data) for lc in rep.live
             if lc.kind == "agent" and lc.key == "1001@hotline.test"]
    states = [d["state"] for d in agent if "state" in d]
    assert states == ["Waiting", "Receiving", "In a queue call", "Waiting"]
    calls = [d["call_id"] for d in agent if "call_id" in d]
    assert calls[0] == CALL and calls[-1] is None  # offered / bridged, then free again


def test_engine_for_builds_wrapup_and_short_abandon_maps_from_the_model():
    tenant = Tenant(id="hl", domain="hotline.test", timezone="UTC",
                    queues=(Queue(id="billing", name="Billing", short_abandon_s=3),),
                    agents=(Agent(id="1001", name="A", extension="1001", password="x",
                                  wrap_up_s=7),))
    eng = engine_for(CallCenter(tenants=(tenant,)), "node-a")
    assert eng.agent_wrapup_s == {"1001@hotline.test": 7}
    assert eng.short_abandon_s == {"billing@hotline.test": 3}
    assert eng.node == "node-a"
    rep = feed_all(eng, events("abandoned_short"))
    (queue,) = [s for s in rep.segments.values() if s.kind == "queue"]
    assert (queue.outcome, queue.node) == ("abandoned", "node-a")  # 5 s > 3 s threshold
    assert engine_for(None, "").agent_wrapup_s == {}


def test_without_a_wrapup_time_no_wrapup_segment_is_invented():
    rep = feed_all(SegmentEngine(), events("answered_ivr"))
    assert [s for s in rep.segments.values() if s.kind == "wrapup"] == []
    assert rep.calls[CALL].outcome == "answered"


def channel(name: str, uuid: str, ms: int, **headers: str) -> Event:
    base = {"Event-Name": name, "Unique-ID": uuid, "Event-Date-Timestamp": str(ms * 1000),
            "FreeSWITCH-Switchname": "vm", "Caller-Context": "hotline.test"}
    return Event.from_headers({**base, **{header(k): v for k, v in headers.items()}})


def caller_leg(name: str, ms: int, **headers: str) -> Event:
    return channel(name, "call-1", ms, Call_Direction="inbound",
                   Channel_Name="sofia/external/caller",
                   Caller_Caller_ID_Number="13900000001", Caller_Destination_Number="7001",
                   Caller_RDNIS="4008001234", **headers)


def cc(action: str, ms: int, **headers: str) -> Event:
    return custom("callcenter::info", ms, CC_Action=action, CC_Queue="billing@hotline.test",
                  CC_Member_Session_UUID="call-1", CC_Member_UUID="m-1", **headers)


def test_attended_transfer_to_the_supervisor_desk_by_refer_with_replaces():
    """A SIP caller (no loopback twin): 1001 answers, consults 2000 and completes the transfer
    with REFER/Replaces; the caller then talks with 2000 and hangs up."""
    agent = "1001@hotline.test"
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        caller_leg("CHANNEL_ANSWER", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound",
           Caller_Destination_Number="7001"),
        cc("agent-offering", T0 + 200, CC_Agent=agent),
        channel("CHANNEL_CREATE", "agent-leg", T0 + 200, Call_Direction="outbound",
                variable_cc_side="agent", variable_cc_member_session_uuid="call-1"),
        cc("bridge-agent-start", T0 + 2200, CC_Agent=agent, CC_Agent_UUID="agent-leg"),
        # the agent's consult call from the same desk phone is not a call of its own
        channel("CHANNEL_CREATE", "consult", T0 + 4000, Call_Direction="inbound",
                Caller_Caller_ID_Number="1001", Caller_Destination_Number="2000"),
        channel("CHANNEL_HANGUP", "agent-leg", T0 + 9000, Hangup_Cause="NORMAL_CLEARING",
                variable_endpoint_disposition="ATTENDED_TRANSFER"),
        caller_leg("CHANNEL_UNBRIDGE", T0 + 9000, Answer_State="answered",
                   Other_Leg_Unique_ID="agent-leg"),
        cc("bridge-agent-end", T0 + 9020, CC_Agent=agent, CC_Agent_UUID="agent-leg"),
        cc("member-queue-end", T0 + 9020, CC_Agent=agent, CC_Cause="Terminated",
           Answer_State="answered"),
        caller_leg("CHANNEL_BRIDGE", T0 + 9040, Other_Leg_Unique_ID="supervisor-leg",
                   Other_Leg_Destination_Number="2000"),
        caller_leg("CHANNEL_HANGUP", T0 + 20000, Hangup_Cause="NORMAL_CLEARING",
                   Answer_State="hangup"),
        caller_leg("CHANNEL_UNBRIDGE", T0 + 20000, Answer_State="hangup",
                   Other_Leg_Unique_ID="supervisor-leg"),
        caller_leg("CHANNEL_HANGUP_COMPLETE", T0 + 20000, Answer_State="hangup"),
    ]
    eng = SegmentEngine(agent_wrapup_s={agent: 3}, internal_numbers={"1001"})
    rep = feed_all(eng, stream)
    assert list(rep.calls) == ["call-1"]  # the consult leg is not a call
    call = rep.calls["call-1"]
    assert (call.caller, call.dialed, call.tenant, call.outcome) == (
        "13900000001", "4008001234", "hotline.test", "answered")
    by_kind = {s.kind: s for s in rep.segs("call-1") if s.kind != "talk"}
    assert by_kind["queue"].outcome == "transferred-out"
    transfer = by_kind["transfer"]
    assert (transfer.transfer_type, transfer.target, transfer.started_ms) == (
        "attended", "2000", T0 + 9000)
    assert dict(transfer.attrs) == {"method": "refer"}
    talks = rep.segs("call-1", "talk")
    assert [(t.agent, t.target, t.duration_ms, t.hangup_by) for t in talks] == [
        (agent, None, 6800, "transfer"), (None, "2000", 10960, "caller")]
    assert by_kind["wrapup"].duration_ms == 3000


def test_caller_sent_to_voicemail_is_a_voicemail_call():
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        caller_leg("CHANNEL_EXECUTE", T0 + 500, Application="voicemail",
                   Application_Data="default hotline.test 1001"),
        caller_leg("CHANNEL_HANGUP", T0 + 30500, Answer_State="hangup"),
        caller_leg("CHANNEL_EXECUTE_COMPLETE", T0 + 30500, Application="voicemail"),
    ]
    rep = feed_all(SegmentEngine(), stream)
    (vm,) = rep.segs("call-1", "voicemail")
    assert (vm.target, vm.duration_ms) == ("default hotline.test 1001", 30000)
    assert rep.calls["call-1"].outcome == "voicemail"


def queue_stay_then_break_out(hangup_after_ms: int) -> Replay:
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound"),
        cc("member-queue-end", T0 + 40100, CC_Cause="Cancel", CC_Cancel_Reason="BREAK_OUT",
           Unique_ID="call-1", Answer_State="answered"),
        caller_leg("CHANNEL_HANGUP", T0 + 40100 + hangup_after_ms, Answer_State="hangup"),
    ]
    return feed_all(SegmentEngine(), stream)


def test_caller_pressing_the_exit_key_leaves_the_queue_with_outcome_exit_key():
    rep = queue_stay_then_break_out(hangup_after_ms=15000)
    (queue,) = rep.segs("call-1", "queue")
    assert (queue.outcome, queue.duration_ms) == ("exit-key", 40000)
    assert dict(queue.attrs)["cancel_reason"] == "BREAK_OUT"


def test_break_out_reported_just_before_the_hangup_is_an_abandon():
    rep = queue_stay_then_break_out(hangup_after_ms=20)
    (queue,) = rep.segs("call-1", "queue")
    assert queue.outcome == "abandoned"
    assert rep.calls["call-1"].outcome == "abandoned"


def test_the_did_names_the_tenant_of_a_call_from_a_trunk_context():
    from daemon.definition.model import Number

    tenant = Tenant(id="hl", domain="hotline.test", timezone="UTC",
                    numbers=(Number(did="4008001234", name="Hotline", rules=()),))
    eng = engine_for(CallCenter(tenants=(tenant,)), "n1")
    stream = [channel("CHANNEL_CREATE", "call-2", T0, Call_Direction="inbound",
                      Caller_Context="public", Caller_Destination_Number="4008001234",
                      Caller_Caller_ID_Number="13900000002"),
              channel("CHANNEL_HANGUP", "call-2", T0 + 800, Answer_State="hangup")]
    rep = feed_all(eng, stream)
    call = rep.calls["call-2"]
    assert (call.tenant, call.node, call.outcome, call.ended_ms) == (
        "hotline.test", "n1", "blocked", T0 + 800)


def test_max_no_answer_puts_the_agent_on_break_with_that_reason():
    eng = SegmentEngine()
    agent = "1002@hotline.test"
    rep = feed_all(eng, [
        custom("callcenter::info", T0, CC_Action="agent-max-no-answer", CC_Agent=agent),
        custom("callcenter::info", T0 + 1, CC_Action="agent-status-change", CC_Agent=agent,
               CC_Agent_Status="On Break"),
    ])
    (interval,) = rep.intervals.values()
    assert (interval.value, interval.reason, interval.ended_ms) == (
        "On Break", "max-no-answer", None)


def test_caller_bridge_reported_before_bridge_agent_start_is_still_the_queue_talk():
    agent = "1001@hotline.test"
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound"),
        cc("agent-offering", T0 + 200, CC_Agent=agent),
        channel("CHANNEL_CREATE", "agent-leg", T0 + 200, Call_Direction="outbound",
                variable_cc_side="agent", variable_cc_member_session_uuid="call-1"),
        caller_leg("CHANNEL_BRIDGE", T0 + 2200, Other_Leg_Unique_ID="agent-leg"),
        cc("bridge-agent-start", T0 + 2200, CC_Agent=agent, CC_Agent_UUID="agent-leg"),
    ]
    rep = feed_all(SegmentEngine(), stream)
    (talk,) = rep.segs("call-1", "talk")
    assert (talk.agent, talk.ended_ms, talk.visit_id) == (agent, None, "m-1")


def test_agent_answering_while_the_daemon_was_down_is_read_from_bridge_agent_end():
    """Seen on a real FreeSWITCH 1.10.12: the daemon stopped while 1001's phone rang and came
    back after the answer, so it never heard bridge-agent-start; bridge-agent-end (the
    agent's leg, CC-Agent-Bridged) and member-queue-end (Terminated) still tell the answer."""
    agent = "1001@hotline.test"
    bridged = T0 + 2140
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound"),
        cc("agent-offering", T0 + 200, CC_Agent=agent),
        # daemon not listening: agent answers at T0+2100, bridge-agent-start, CHANNEL_BRIDGE
        caller_leg("CHANNEL_HANGUP", T0 + 17320, Hangup_Cause="NORMAL_CLEARING",
                   Answer_State="hangup"),
        cc("bridge-agent-end", T0 + 17340, Unique_ID="agent-leg", CC_Agent=agent,
           CC_Agent_UUID="agent-leg", CC_Agent_Bridged="true", CC_Hangup_Cause="SUCCESS",
           CC_Agent_Called_Time=str(T0 // 1000), CC_Agent_Answered_Time=str((T0 + 2100) // 1000),
           Caller_Channel_Answered_Time=str((T0 + 2100) * 1000),
           Caller_Channel_Bridged_Time=str(bridged * 1000)),
        cc("member-queue-end", T0 + 17340, CC_Agent=agent, CC_Cause="Terminated",
           CC_Agent_Answered_Time=str((T0 + 2100) // 1000)),
    ]
    rep = feed_all(SegmentEngine(agent_wrapup_s={agent: 3}), stream)
    (queue,) = rep.segs("call-1", "queue")
    (ring,) = rep.segs("call-1", "ring")
    (talk,) = rep.segs("call-1", "talk")
    (wrapup,) = rep.segs("call-1", "wrapup")
    assert (queue.outcome, queue.agent, queue.ended_ms) == ("answered", agent, bridged)
    assert (ring.outcome, ring.started_ms, ring.ended_ms) == ("answered", T0 + 200, bridged)
    assert (talk.agent, talk.started_ms, talk.ended_ms, talk.hangup_by) == (
        agent, bridged, T0 + 17320, "caller")
    assert (wrapup.started_ms, wrapup.duration_ms) == (T0 + 17340, 3000)
    assert rep.calls["call-1"].outcome == "answered"


def test_bridge_agent_end_without_the_bridged_time_falls_back_to_the_answer_second():
    agent = "1001@hotline.test"
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound"),
        cc("agent-offering", T0 + 200, CC_Agent=agent),
        cc("bridge-agent-end", T0 + 17340, CC_Agent=agent, CC_Agent_UUID="agent-leg",
           CC_Agent_Bridged="true", CC_Agent_Answered_Time=str((T0 + 2100) // 1000)),
        cc("member-queue-end", T0 + 17340, CC_Agent=agent, CC_Cause="Terminated"),
    ]
    rep = feed_all(SegmentEngine(), stream)
    (talk,) = rep.segs("call-1", "talk")
    # the caller is still on the line when the bridge ends: the agent hung up
    assert (talk.started_ms, talk.hangup_by) == ((T0 + 2100) // 1000 * 1000, "agent")
    assert rep.segs("call-1", "queue")[0].outcome == "answered"


def test_one_event_with_a_wild_timestamp_does_not_make_live_calls_forgotten():
    eng = engine()
    evs = events("answered_ivr")
    bridge = next(i for i, e in enumerate(evs) if e.get("CC-Action") == "bridge-agent-start")
    wild = channel("CHANNEL_ANSWER", "somebody-else", T0 + 10 * 365 * 86400 * 1000)
    rep = feed_all(eng, evs[:bridge] + [wild] + evs[bridge:])
    assert rep.segments == replay("answered_ivr").segments


def answered_then(*after: Event) -> Replay:
    """A SIP caller answered by 1001 in billing (extension 7001), then ``after``."""
    agent = "1001@hotline.test"
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound",
           Caller_Destination_Number="7001"),
        cc("agent-offering", T0 + 200, CC_Agent=agent),
        cc("bridge-agent-start", T0 + 2200, CC_Agent=agent, CC_Agent_UUID="agent-leg"),
        *after,
    ]
    return feed_all(SegmentEngine(agent_wrapup_s={agent: 3}), stream)


def test_survey_played_to_the_caller_after_the_agent_hangs_up_is_not_a_transfer():
    rep = answered_then(
        channel("CHANNEL_HANGUP", "agent-leg", T0 + 8000, Hangup_Cause="NORMAL_CLEARING"),
        caller_leg("CHANNEL_UNBRIDGE", T0 + 8000, Answer_State="answered",
                   Other_Leg_Unique_ID="agent-leg"),
        cc("bridge-agent-end", T0 + 8020, CC_Agent="1001@hotline.test", CC_Agent_UUID="agent-leg"),
        caller_leg("CHANNEL_EXECUTE", T0 + 8040, Application="python",
                   Application_Data="hotline_survey billing"),
        caller_leg("CHANNEL_HANGUP", T0 + 15000, Answer_State="hangup"),
    )
    assert rep.segs("call-1", "transfer") == []
    (talk,) = rep.segs("call-1", "talk")
    assert (talk.duration_ms, talk.hangup_by) == (5800, "agent")
    assert rep.segs("call-1", "queue")[0].outcome == "answered"


def test_agent_hanging_up_while_the_caller_is_on_hold_ends_hold_and_talk_there():
    rep = answered_then(
        channel("CHANNEL_HOLD", "agent-leg", T0 + 5000),
        channel("CHANNEL_HANGUP", "agent-leg", T0 + 9000, Hangup_Cause="NORMAL_CLEARING"),
        caller_leg("CHANNEL_UNBRIDGE", T0 + 9000, Answer_State="answered",
                   Other_Leg_Unique_ID="agent-leg"),
        caller_leg("CHANNEL_HANGUP", T0 + 9000, Answer_State="hangup"),
    )
    talk, hold = rep.segs("call-1", "talk") + rep.segs("call-1", "hold")
    assert (talk.duration_ms, talk.hangup_by) == (2800, "agent")
    assert (hold.started_ms, hold.ended_ms) == (T0 + 5000, T0 + 9000)


def test_sip_caller_hanging_up_with_bye_or_being_hung_up_by_the_switch():
    def ended(disposition: str) -> str | None:
        rep = answered_then(
            caller_leg("CHANNEL_HANGUP", T0 + 9000, Answer_State="hangup"),
            caller_leg("CHANNEL_UNBRIDGE", T0 + 9000, Answer_State="hangup",
                       Other_Leg_Unique_ID="agent-leg"),
            caller_leg("CHANNEL_HANGUP_COMPLETE", T0 + 9000, Answer_State="hangup",
                       variable_sip_hangup_disposition=disposition),
        )
        (talk,) = rep.segs("call-1", "talk")
        return talk.hangup_by

    assert ended("recv_bye") == "caller"
    assert ended("send_bye") == "system"


def test_engine_built_from_the_demo_config_reproduces_the_capture_truth():
    from daemon.definition.config import load_center
    from tests.scenario import REPO_CONFIG, mismatches, truth

    center = load_center(REPO_CONFIG)
    for name in ("answered_ivr", "blind_transfer", "noanswer_rollover"):
        checked, bad = mismatches(replay(name, engine_for(center, "")), truth(name)["calls"])
        assert checked > 10 and bad == [], name


def test_a_recorded_queue_call_keeps_the_recording_path_on_its_talk_segment():
    path = "/var/lib/freeswitch/recordings/hotline.test/2026-11-22/30082806.wav"
    stream = []
    for ev in events("answered_ivr"):
        if ev.get("CC-Action") == "member-queue-end":
            ev = Event(ev.raw + f"variable_cc_record_filename: {path.replace('/', '%2F')}\n".encode())
        stream.append(ev)
    rep = feed_all(engine(), stream)
    (talk,) = rep.segs(CALL, "talk")
    assert talk.recording == path


def test_a_capture_replayed_on_its_own_ends_its_agents_intervals_with_the_recording():
    eng = engine()
    rep = feed_all(eng, events("agent_status"))
    still_open = [i for i in rep.intervals.values() if i.ended_ms is None]
    assert still_open  # the daemon's view: agents stay logged in/out after the last event
    rep.add(eng.finish(close_agent_intervals=True))
    last_change_ms = max(i.started_ms for i in rep.intervals.values())  # nothing read after it
    assert all(rep.intervals[i.interval_id].ended_ms == last_change_ms for i in still_open)


# --- reconcile: calls whose hangup was lost while the daemon was not listening -----------

BILLING = "billing@hotline.test"


def switch_has(*uuids: str, node: str = "n1") -> SwitchSnapshot:
    """What the switch reports after a reconnect: its `show channels as json`, parsed."""
    rows = [{"uuid": u, "direction": "inbound", "created_epoch": "1795345640"} for u in uuids]
    channels = {"row_count": len(rows), "rows": rows} if rows else {"row_count": 0}
    return SwitchSnapshot(node, agents="", queues="", channels=channels)


def waiting_in_billing(*after: Event) -> tuple[SegmentEngine, Replay]:
    """call-1 waits in billing from T0+100 while 1001 rings (no answer yet), then ``after``."""
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        caller_leg("CHANNEL_ANSWER", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound"),
        cc("agent-offering", T0 + 200, CC_Agent="1001@hotline.test"),
        *after,
    ]
    eng = SegmentEngine(node="n1")
    return eng, feed_all(eng, stream)


def test_daemon_loses_the_link_while_a_caller_waits_then_the_switch_has_no_such_channel():
    # the last thing the daemon read: another agent's status change 45 s into the wait
    eng, rep = waiting_in_billing(custom("callcenter::info", T0 + 45000,
                                         CC_Action="agent-status-change",
                                         CC_Agent="1002@hotline.test", CC_Agent_Status="Available"))
    assert rep.calls["call-1"].outcome == "in-progress"
    out = eng.reconcile(switch_has("someone-else"))
    rep.add(out)
    call = rep.calls["call-1"]
    assert (call.outcome, call.ended_ms) == ("abandoned", T0 + 45000)
    (queue,) = rep.segs("call-1", "queue")
    assert (queue.outcome, queue.ended_ms, queue.queue) == ("abandoned", T0 + 45000, BILLING)
    (ring,) = rep.segs("call-1", "ring")
    assert (ring.outcome, ring.ended_ms) == ("caller-abandoned", T0 + 45000)
    assert all(dict(s.attrs)["closed_by"] == "reconcile" for s in (queue, ring))
    leave = [c for c in out.live if c.kind == "member" and dict(c.data)["action"] == "leave"]
    assert [(c.key, dict(c.data)["outcome"]) for c in leave] == [(BILLING, "abandoned")]


def test_the_last_heartbeat_bounds_a_silent_wait_and_a_short_one_is_a_short_abandon():
    heartbeat = Event.from_headers({"Event-Name": "HEARTBEAT",
                                    "Event-Date-Timestamp": str((T0 + 10000) * 1000)})
    eng, rep = waiting_in_billing(heartbeat)
    rep.add(eng.reconcile(switch_has()))  # an idle switch: {"row_count": 0}
    (queue,) = rep.segs("call-1", "queue")
    assert (queue.outcome, queue.ended_ms) == ("short-abandon", T0 + 10000)  # waited 9.9 s <= 20
    assert rep.calls["call-1"].outcome == "abandoned"


def test_caller_talking_to_an_agent_vanishes_talk_and_hold_close_and_wrap_up_starts():
    eng = SegmentEngine(node="n1", agent_wrapup_s={"1001@hotline.test": 3})
    rep = feed_all(eng, [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound"),
        cc("agent-offering", T0 + 200, CC_Agent="1001@hotline.test"),
        cc("bridge-agent-start", T0 + 2200, CC_Agent="1001@hotline.test",
           CC_Agent_UUID="agent-leg"),
        channel("CHANNEL_HOLD", "agent-leg", T0 + 5000),
        custom("callcenter::info", T0 + 9000, CC_Action="agent-status-change",
               CC_Agent="1002@hotline.test", CC_Agent_Status="Available"),
    ])
    rep.add(eng.reconcile(switch_has()))
    (talk,) = rep.segs("call-1", "talk")
    (hold,) = rep.segs("call-1", "hold")
    (wrapup,) = rep.segs("call-1", "wrapup")
    # the talk piece ended at the hold (a real event); the hold, at the last event read
    assert (talk.ended_ms, talk.hangup_by, "closed_by" in dict(talk.attrs)) == (
        T0 + 5000, "caller", False)
    assert (hold.ended_ms, dict(hold.attrs)) == (T0 + 9000, {"closed_by": "reconcile"})
    assert (wrapup.started_ms, wrapup.duration_ms, dict(wrapup.attrs)) == (
        T0 + 9000, 3000, {"closed_by": "reconcile"})
    (queue,) = rep.segs("call-1", "queue")
    assert (queue.outcome, "closed_by" in dict(queue.attrs)) == ("answered", False)  # untouched
    call = rep.calls["call-1"]
    assert (call.outcome, call.ended_ms) == ("answered", T0 + 9000)


def test_caller_in_the_ivr_vanishes_the_menu_closes_and_the_call_is_ivr_only():
    eng = SegmentEngine(node="n1")
    rep = feed_all(eng, [
        caller_leg("CHANNEL_CREATE", T0),
        caller_leg("CHANNEL_ANSWER", T0 + 100),
        caller_leg("CHANNEL_EXECUTE", T0 + 100, Application="ivr", Application_Data="main"),
        caller_leg("DTMF", T0 + 3000, DTMF_Digit="1"),
    ])
    rep.add(eng.reconcile(switch_has()))
    (ivr,) = rep.segs("call-1", "ivr")
    assert (ivr.ended_ms, ivr.digits, dict(ivr.attrs)) == (T0 + 3000, "1",
                                                            {"closed_by": "reconcile"})
    assert rep.calls["call-1"].outcome == "ivr-only"


def test_hangup_seen_but_the_queue_end_lost_closes_the_stay_at_the_hangup():
    eng, rep = waiting_in_billing(caller_leg("CHANNEL_HANGUP", T0 + 30000, Answer_State="hangup"),
                                  custom("callcenter::info", T0 + 50000,
                                         CC_Action="agent-status-change",
                                         CC_Agent="1002@hotline.test", CC_Agent_Status="Available"))
    rep.add(eng.reconcile(switch_has()))
    (queue,) = rep.segs("call-1", "queue")
    assert (queue.outcome, queue.ended_ms) == ("abandoned", T0 + 30000)
    assert rep.calls["call-1"].ended_ms == T0 + 30000


def test_call_still_up_on_the_switch_is_left_alone_and_its_events_keep_coming():
    eng, rep = waiting_in_billing()
    assert not eng.reconcile(switch_has("call-1", "agent-leg"))
    rep.add(eng.feed(caller_leg("CHANNEL_HANGUP", T0 + 50000, Answer_State="hangup")))
    rep.add(eng.feed(cc("member-queue-end", T0 + 50000, CC_Cause="Cancel",
                        Answer_State="hangup")))
    (queue,) = rep.segs("call-1", "queue")
    assert (queue.outcome, queue.ended_ms) == ("abandoned", T0 + 50000)
    assert "closed_by" not in dict(queue.attrs)


def test_empty_or_unreadable_channel_list_changes_nothing():
    eng, rep = waiting_in_billing()
    for channels in ({}, {"row_count": 2}, {"row_count": 1, "rows": [{"name": "sofia/x"}]},
                     {"row_count": 2, "rows": [{"uuid": "x"}]}, {"rows": "garbage"}):
        assert not eng.reconcile(SwitchSnapshot("n1", "", "", channels=channels)), channels
    assert rep.calls["call-1"].outcome == "in-progress"
    assert rep.segs("call-1", "queue")[0].ended_ms is None


def test_reconcile_is_deterministic_and_a_second_one_changes_nothing():
    first, _ = waiting_in_billing()
    second, _ = waiting_in_billing()
    out = first.reconcile(switch_has())
    assert out and out == second.reconcile(switch_has())
    assert not first.reconcile(switch_has())


def test_a_shared_engine_reconciles_only_the_calls_of_the_node_that_reported():
    eng = SegmentEngine()  # no node of its own: calls carry their switch's name ("vm")
    feed_all(eng, [caller_leg("CHANNEL_CREATE", T0),
                   cc("member-queue-start", T0 + 100, Unique_ID="call-1")])
    assert not eng.reconcile(switch_has(node="other-switch"))
    (queue,) = eng.reconcile(switch_has(node="vm")).segments
    assert queue.outcome == "short-abandon"


def test_daemon_reconnecting_after_a_lost_link_closes_the_caller_the_switch_no_longer_has():
    """Through the daemon: events from the ESL test peer, the link drops, and the switch's
    `show channels as json` after the reconnect no longer lists the waiting caller."""
    import gevent

    from daemon.definition.model import EslNode, Settings
    from daemon.service import Service
    from daemon.switch.supervisor import Supervisor
    from tests.eslpeer import EslPeer

    class Sink:  # journal, store and live state: keeps what the engine produced
        def __init__(self) -> None:
            self.rep = Replay()

        def append(self, raw: bytes) -> None:
            pass

        def write(self, out) -> None:
            self.rep.add(out)

        def apply(self, changes) -> None:
            pass

        def close(self) -> None:
            pass

    def queue_seg():
        segs = sink.rep.segs("call-1", "queue")
        return segs[0] if segs else None

    def wait_for(predicate, what: str) -> None:
        with gevent.Timeout(5, AssertionError(f"{what} not reached")):
            while not predicate():
                gevent.sleep(0.005)

    base = {"Event-Date-Timestamp": str(T0 * 1000), "FreeSWITCH-Switchname": "vm"}
    caller = {**base, "Event-Name": "CHANNEL_CREATE", "Unique-ID": "call-1",
              "Call-Direction": "inbound", "Channel-Name": "sofia/external/caller",
              "Caller-Caller-ID-Number": "13900000001", "Caller-Destination-Number": "7001",
              "Caller-Context": "hotline.test"}
    joined = {**base, "Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info",
              "CC-Action": "member-queue-start", "CC-Queue": BILLING,
              "CC-Member-Session-UUID": "call-1", "CC-Member-UUID": "m-1",
              "Event-Date-Timestamp": str((T0 + 100) * 1000)}
    heartbeat = {**base, "Event-Name": "HEARTBEAT",
                 "Event-Date-Timestamp": str((T0 + 60000) * 1000)}
    sink = Sink()
    with EslPeer(password="node-pw") as peer:
        settings = Settings(esl_nodes=(EslNode("n1", peer.host, peer.port, peer.password),))
        service = Service(settings, None, sink, lambda center, node: SegmentEngine(node=node),
                          sink, sink, sync_interval_s=0,
                          supervisor_factory=lambda n, f, s: Supervisor(
                              n, f, s, backoff_initial=0.01, backoff_max=0.05, timeout=2.0))
        runner = gevent.spawn(service.run)
        try:
            peer.wait_subscribed()
            for headers in (caller, joined, heartbeat):
                peer.send_event(headers)
            wait_for(lambda: service.events == 3, "events read")
            assert queue_seg() is not None and queue_seg().ended_ms is None
            # the caller hangs up while the daemon is not listening: the switch no longer
            # has the channel, and mod_callcenter no longer lists the member
            peer.script("api show channels as json",
                        '{"row_count":1,"rows":[{"uuid":"someone-else","direction":"inbound"}]}')
            peer.script("api callcenter_config queue list members", "+OK\n")
            peer.disconnect()
            wait_for(lambda: queue_seg().ended_ms is not None, "call closed after reconnect")
        finally:
            service.stop()
            runner.join(5)
    queue = queue_seg()
    assert (queue.outcome, queue.ended_ms, dict(queue.attrs)["closed_by"]) == (
        "abandoned", T0 + 60000, "reconcile")  # closed at the last heartbeat read
    assert sink.rep.calls["call-1"].outcome == "abandoned"
