"""Scenario tests of the segment engine on the captures recorded with the rendered example
center (capture README, "Captures recorded with the rendered example center").

These streams come from a switch running ``hotline render config/``: tenants hotline.test
(demo) and hotline.cityutil.cn (cityutil), so every replay here goes through an engine
built from config/ (``tests.scenario.config_engine``), as the daemon builds it. Every
number asserted is in the capture's README table / truth file; tolerance 0.05 s.
"""
from __future__ import annotations

import re

import pytest

from daemon.engine.segments import SegmentEngine
from daemon.switch.events import Event
from tests.scenario import (
    RENDERED_CAPTURES,
    Replay,
    config_engine,
    events,
    feed_all,
    mismatches,
    replay,
    seconds,
    truth,
)

TOL = 0.05

SURVEY_CALL = "6e2d2dc8-9c05-4e85-90c5-3dae0f78348b"
WHISPER_CALL = "5d19de94-1c24-437c-a8dd-c895fa2fbd1f"
LOGOUT_CALL = "1e8991fb-acae-4414-9d47-4fca6aeb19ce"
CALLBACK_CALL = "3ddfdb3b-06b5-41e5-8e0f-83f1f8f31da7"
EXIT_KEY_CALL = "2c9025d6-318f-4a62-9545-8f8c388f76f3"
IGNORED_KEY_CALL = "f17dda09-5b4d-4e76-ae31-e69306833309"
CALLBACK_AGENT_LEG = "cbedacd7-c6cd-4d7d-ab2c-a3f964b31f58"


def approx(value: float) -> object:
    return pytest.approx(value, abs=TOL)


def kinds(segs) -> list[str]:
    return [s.kind for s in segs]


def since(call_start_ms: int, ms: int) -> float:
    return round((ms - call_start_ms) / 1000.0, 2)


def shifted(ev: Event, by_ms: int) -> Event:
    """The same event ``by_ms`` later on the switch's clock."""
    def later(m: re.Match) -> bytes:
        return b"Event-Date-Timestamp: " + str(int(m.group(1)) + by_ms * 1000).encode()
    return Event(re.sub(rb"Event-Date-Timestamp: (\d+)", later, ev.raw, count=1))


def with_header(ev: Event, name: str, value: str) -> Event:
    """``ev`` with header ``name`` replaced (values here need no URL encoding)."""
    raw = re.sub(rb"\n" + name.encode() + rb": [^\n]*", b"\n" + f"{name}: {value}".encode(),
                 ev.raw, count=1)
    return Event(raw)


@pytest.mark.parametrize("name", RENDERED_CAPTURES)
def test_every_truth_value_of_the_rendered_example_captures_matches(name):
    checked, bad = mismatches(replay(name), truth(name)["calls"])
    assert checked > 10
    assert bad == []


# --- survey_call ------------------------------------------------------------------------

def test_survey_queue_agent_hangs_up_and_the_caller_goes_on_to_the_survey_no_transfer():
    rep = replay("survey_call")
    call = rep.calls[SURVEY_CALL]
    segs = rep.segs(SURVEY_CALL)
    assert kinds(segs) == ["queue", "ring", "talk", "survey", "wrapup"]
    queue, ring, talk, survey, wrapup = segs
    # the rendered survey queue continues the caller's leg through transfer_after_bridge into
    # hotline-qexit-billing: Hotline's own dialplan, not an agent's transfer
    assert (queue.outcome, seconds(queue.duration_ms)) == ("answered", approx(5.36))
    assert (ring.agent, seconds(ring.duration_ms)) == ("2002@hotline.cityutil.cn", approx(5.30))
    assert (talk.hangup_by, seconds(talk.duration_ms)) == ("agent", approx(5.74))
    assert rep.segs(SURVEY_CALL, "transfer") == []
    # the survey runs from the agent's hang-up to the caller's: key 4 at 13.14 s
    assert (since(call.started_ms, survey.started_ms), seconds(survey.duration_ms)) == (
        approx(11.10), approx(3.04))
    assert (survey.score, survey.queue, survey.agent) == (
        4, "billing@hotline.cityutil.cn", "2002@hotline.cityutil.cn")
    assert (survey.visit_id, survey.queue_entered_ms) == (queue.visit_id, queue.started_ms)
    assert (wrapup.agent, seconds(wrapup.duration_ms)) == ("2002@hotline.cityutil.cn", approx(30))
    assert call.outcome == "answered"


def _survey_queue_call_then(dest: str, *after: Event) -> Replay:
    """A caller answered by 1001 in a survey queue (transfer_after_bridge set), whose agent
    leaves; the caller's leg then runs extension ``dest``."""
    from tests.test_segments_engine import T0, caller_leg, cc, channel

    agent = "1001@hotline.test"
    after_bridge = {"variable_transfer_after_bridge": "hotline-qexit-billing:XML:hotline.test"}
    stream = [
        caller_leg("CHANNEL_CREATE", T0),
        cc("member-queue-start", T0 + 100, Unique_ID="call-1", Call_Direction="inbound",
           Caller_Destination_Number="7001"),
        cc("agent-offering", T0 + 200, CC_Agent=agent),
        cc("bridge-agent-start", T0 + 2200, CC_Agent=agent, CC_Agent_UUID="agent-leg"),
        caller_leg("CHANNEL_UNBRIDGE", T0 + 8000, Answer_State="answered",
                   Other_Leg_Unique_ID="agent-leg", **after_bridge),
        channel("CHANNEL_EXECUTE", "call-1", T0 + 8000, Call_Direction="inbound",
                Channel_Name="sofia/external/caller", Caller_Caller_ID_Number="13900000001",
                Caller_RDNIS="4008001234", Caller_Destination_Number=dest,
                Application="python" if dest.startswith("hotline-") else "answer",
                Application_Data="hotline_survey billing@hotline.test", **after_bridge),
        *after,
    ]
    return feed_all(SegmentEngine(agent_wrapup_s={agent: 3}), stream)


def test_an_agents_own_transfer_from_a_survey_queue_is_still_a_transfer():
    survey = _survey_queue_call_then("hotline-qexit-billing")
    assert survey.segs("call-1", "transfer") == []
    assert [q.outcome for q in survey.segs("call-1", "queue")] == ["answered"]
    transferred = _survey_queue_call_then("7002")
    (transfer,) = transferred.segs("call-1", "transfer")
    assert (transfer.transfer_type, transfer.target) == ("blind", "7002")
    assert [q.outcome for q in transferred.segs("call-1", "queue")] == ["transferred-out"]


# --- whisper_barge ----------------------------------------------------------------------

def test_supervisor_listens_then_barges_two_supervision_segments_on_the_call():
    rep = replay("whisper_barge")
    assert list(rep.calls) == [WHISPER_CALL]  # the supervisor's desk legs are no calls
    call = rep.calls[WHISPER_CALL]
    (queue,) = rep.segs(WHISPER_CALL, "queue")
    sessions = rep.segs(WHISPER_CALL, "supervision")
    got = [(dict(s.attrs)["mode"], s.target, s.agent, since(call.started_ms, s.started_ms),
            seconds(s.duration_ms)) for s in sessions]
    assert got == [("listen", "1003", "1001@hotline.test", approx(7.60), approx(6.04)),
                   ("barge", "1003", "1001@hotline.test", approx(16.20), approx(6.06))]
    assert {(s.visit_id, s.queue, s.queue_entered_ms) for s in sessions} == {
        (queue.visit_id, "billing@hotline.test", queue.started_ms)}
    # for the call's statistics nothing changes
    (talk,) = rep.segs(WHISPER_CALL, "talk")
    assert (seconds(talk.duration_ms), talk.hangup_by) == (approx(20.12), "caller")


@pytest.mark.parametrize("variable, heard_by", [
    # eavesdropping on the agent's leg, whisper_bleg reaches the agent and whisper_aleg
    # the caller (issue 9: Hotline's whisper_aleg was heard on the caller's side only)
    ("variable_eavesdrop_whisper_bleg", "agent"),
    ("variable_eavesdrop_whisper_aleg", "caller"),
])
def test_a_whisper_to_one_side_is_mode_whisper_and_says_who_heard_it(variable, heard_by):
    listen_leg = "ffac31ad-7934-4f93-af4c-698a9cabf50e"
    stream = []
    for ev in events("whisper_barge"):
        if ev.uuid == listen_leg and ev.get("Application") == "eavesdrop":
            ev = with_header(ev, variable, "true")
        stream.append(ev)
    rep = feed_all(config_engine(), stream)
    first = rep.segs(WHISPER_CALL, "supervision")[0]
    assert dict(first.attrs) == {"mode": "whisper", "whisper_to": heard_by,
                                 "supervisor_leg": listen_leg}


# --- agent_on_call_logout ---------------------------------------------------------------

def test_agent_logged_out_during_the_call_keeps_it_but_gets_no_wrapup():
    rep = replay("agent_on_call_logout")
    call = rep.calls[LOGOUT_CALL]
    assert kinds(rep.segs(LOGOUT_CALL)) == ["queue", "ring", "talk"]
    (talk,) = rep.segs(LOGOUT_CALL, "talk")
    assert (talk.agent, seconds(talk.duration_ms), talk.hangup_by) == (
        "1002@hotline.test", approx(10.44), "caller")
    # mod_callcenter reports 1002 Waiting after the call although it is Logged Out: the
    # call's state ends there and no waiting (idle-available) time is booked
    states = sorted((i.started_ms, i.value, i.ended_ms) for i in rep.intervals.values()
                    if i.agent == "1002@hotline.test" and i.kind == "state")
    assert [v for _, v, _ in states] == ["Waiting", "Receiving", "In a queue call"]
    assert since(call.started_ms, states[-1][2]) == approx(12.50)


def test_the_state_kept_while_logged_out_is_booked_again_at_the_next_login():
    eng = config_engine()
    rep = feed_all(eng, events("agent_on_call_logout"))
    last = max(e.timestamp_ms for e in events("agent_on_call_logout"))
    from tests.test_segments_engine import custom

    rep.add(eng.feed(custom("callcenter::info", last + 60000, CC_Action="agent-status-change",
                            CC_Agent="1002@hotline.test", CC_Agent_Status="Available")))
    waiting = [i for i in rep.intervals.values()
               if i.agent == "1002@hotline.test" and i.kind == "state" and i.value == "Waiting"
               and i.started_ms == last + 60000]
    assert len(waiting) == 1 and waiting[0].ended_ms is None


def test_an_agent_logging_out_while_waiting_stops_waiting():
    from tests.scenario import replay as replay_bare

    rep = replay_bare("agent_status")  # 1002: Waiting at 3.50, Logged Out at 7.00
    states = [i for i in rep.intervals.values()
              if i.agent == "1002@hotline.test" and i.kind == "state"]
    status = [i for i in rep.intervals.values() if i.agent == "1002@hotline.test"
              and i.kind == "status" and i.value == "Logged Out"]
    logged_out_at = max(i.started_ms for i in status)
    (waiting,) = states
    assert waiting.value == "Waiting" and waiting.ended_ms == logged_out_at


# --- exit keys --------------------------------------------------------------------------

def test_caller_presses_the_armed_exit_key_and_the_dialplan_goes_on_to_emergency():
    rep = replay("exit_key_callback")
    first, second = rep.segs(EXIT_KEY_CALL, "queue")
    assert (first.queue, first.outcome, seconds(first.duration_ms)) == (
        "outage_water@hotline.cityutil.cn", "exit-key", approx(96.54))
    assert dict(first.attrs) == {"cause": "Cancel", "cancel_reason": "EXIT_WITH_KEY",
                                 "exit_key": "*"}
    assert (second.queue, second.outcome, seconds(second.duration_ms)) == (
        "emergency@hotline.cityutil.cn", "short-abandon", approx(7.96))
    assert rep.segs(EXIT_KEY_CALL, "callback") == []  # the script asked nothing (switch9's fix)


def test_exit_key_followed_at_once_by_the_callers_hangup_stays_an_exit_key():
    """EXIT_WITH_KEY names the key press: a hang-up right after it does not make it an
    abandon (a BREAK_OUT just before the hangup is the hangup itself)."""
    stream = []
    for ev in events("exit_key_callback"):
        stream.append(ev)
        if ev.get("CC-Action") == "member-queue-end":
            end = ev.timestamp_ms
            hangup = next(e for e in events("exit_key_callback")
                          if e.uuid == EXIT_KEY_CALL and e.name == "CHANNEL_HANGUP")
            stream.append(shifted(hangup, end + 300 - hangup.timestamp_ms))
            break
    rep = feed_all(config_engine(), stream)
    (queue,) = rep.segs(EXIT_KEY_CALL, "queue")
    assert queue.outcome == "exit-key"


def test_a_key_press_mod_callcenter_did_not_take_is_a_plain_abandon():
    rep = replay("exit_key_ignored")
    (queue,) = rep.segs(IGNORED_KEY_CALL, "queue")
    assert (queue.outcome, seconds(queue.duration_ms)) == ("abandoned", approx(101.06))


# --- callback_connected -----------------------------------------------------------------

def test_connected_callback_rings_2002_then_talks_6s_on_the_original_call():
    rep = replay("callback_connected")
    assert list(rep.calls) == [CALLBACK_CALL]  # the dialer's legs are no calls of their own
    call = rep.calls[CALLBACK_CALL]
    assert call.outcome == "callback"
    assert kinds(rep.segs(CALLBACK_CALL)) == ["queue", "callback", "ring", "talk"]
    queue, callback, ring, talk = rep.segs(CALLBACK_CALL)
    assert (queue.outcome, dict(queue.attrs)["cancel_reason"]) == ("exit-key", "EXIT_WITH_KEY")
    # the request keeps the caller's place from the queue join, to the millisecond
    assert callback.queue_entered_ms == queue.started_ms
    assert (callback.outcome, callback.agent, dict(callback.attrs)["attempts"]) == (
        "connected", "2002@hotline.cityutil.cn", "1")
    assert since(call.started_ms, callback.started_ms) == approx(102.24)
    # the dialer rings the agent first (2.02 s), then bridges the customer: 6.02 s of talk
    assert (ring.agent, ring.outcome, since(call.started_ms, ring.started_ms),
            seconds(ring.duration_ms)) == (
        "2002@hotline.cityutil.cn", "answered", approx(109.10), approx(2.02))
    assert (talk.agent, talk.hangup_by, since(call.started_ms, talk.started_ms),
            seconds(talk.duration_ms)) == (
        "2002@hotline.cityutil.cn", "caller", approx(111.20), approx(6.02))
    # both count where the request does: the billing queue, in the interval of its join
    assert {(s.queue, s.queue_entered_ms, s.visit_id) for s in (ring, talk)} == {
        ("billing@hotline.cityutil.cn", queue.started_ms, None)}
    assert dict(talk.attrs) == {"agent_leg": CALLBACK_AGENT_LEG, "callback": "true"}
    # no wrap-up: mod_callcenter did not bridge this call, the dialer set 2002 back to Waiting
    assert rep.segs(CALLBACK_CALL, "wrapup") == []


def test_the_agent_not_answering_the_callback_dialer_is_an_unanswered_ring():
    from tests.test_segments_engine import channel

    stream = [e for e in events("callback_connected")
              if e.timestamp_ms < 1796399643162 or e.uuid == "" or e.name == "HEARTBEAT"]
    create = next(e for e in events("callback_connected")
                  if e.uuid == CALLBACK_AGENT_LEG and e.name == "CHANNEL_CREATE")
    stream.append(create)
    stream.append(channel("CHANNEL_HANGUP", CALLBACK_AGENT_LEG, create.timestamp_ms + 15000,
                          Hangup_Cause="NO_ANSWER",
                          variable_hotline_callback_call_id=CALLBACK_CALL))
    rep = feed_all(config_engine(), stream)
    (ring,) = rep.segs(CALLBACK_CALL, "ring")
    assert (ring.agent, ring.outcome, seconds(ring.duration_ms)) == (
        "2002@hotline.cityutil.cn", "no-answer", approx(15.0))
    assert dict(ring.attrs)["cause"] == "NO_ANSWER"
    assert rep.segs(CALLBACK_CALL, "talk") == []


def test_a_callback_dialed_half_an_hour_after_the_request_keeps_its_request():
    """The engine forgets finished calls after 15 minutes, but not one awaiting its
    callback: the result and the dialer's legs still land on the request."""
    later = 30 * 60 * 1000
    hung_up = next(e for e in events("callback_connected")
                   if e.uuid == CALLBACK_CALL and e.name == "CHANNEL_DESTROY").timestamp_ms
    # everything after the caller's hang-up (the agent's login, the dialer) comes 30 min later
    stream = [shifted(ev, later) if ev.timestamp_ms > hung_up else ev
              for ev in events("callback_connected")]
    rep = feed_all(config_engine(), stream)
    (callback,) = rep.segs(CALLBACK_CALL, "callback")
    call = rep.calls[CALLBACK_CALL]
    assert since(call.started_ms, callback.started_ms) == approx(102.24)
    assert seconds(callback.duration_ms) == approx(8.90 + 1800)
    (talk,) = rep.segs(CALLBACK_CALL, "talk")
    assert seconds(talk.duration_ms) == approx(6.02)


# --- the call log -----------------------------------------------------------------------

def test_hotline_calls_json_shows_who_listened_and_the_callback_conversation(empty_db_url):
    """`hotline replay` (with config/, as the daemon) then `hotline calls --json`."""
    import json

    from click.testing import CliRunner

    from cli import hotline
    from tests.conftest import CAPTURES, REPO

    result = CliRunner().invoke(hotline, [
        "replay", "--quiet", "--config", str(REPO / "config"),
        str(CAPTURES / "whisper_barge.esl"), str(CAPTURES / "callback_connected.esl"),
        "--db", empty_db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    def call(call_id: str) -> dict:
        out = CliRunner().invoke(hotline, ["calls", "--json", "--utc", "--call", call_id,
                                           "--db", empty_db_url], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        (found,) = json.loads(out.output)
        return found

    supervised = call(WHISPER_CALL)
    sessions = [(s["target"], s["agent"], s["attrs"]["mode"], s["duration_ms"],
                 s["started_at"][11:23]) for s in supervised["segments"]
                if s["kind"] == "supervision"]
    # --utc: the capture's clock (the tenant's wall clock would be 16:49 in Europe/Berlin)
    assert sessions == [("1003", "1001@hotline.test", "listen", 6040, "15:49:35.985"),
                        ("1003", "1001@hotline.test", "barge", 6060, "15:49:44.585")]
    called_back = call(CALLBACK_CALL)
    assert [s["kind"] for s in called_back["segments"]] == ["queue", "callback", "ring", "talk"]
    talk = called_back["segments"][-1]
    assert (talk["agent"], talk["duration_ms"], talk["hangup_by"], talk["attrs"]["callback"]) == (
        "2002@hotline.cityutil.cn", 6020, "caller", "true")
    assert talk["queue_entered_at"] == called_back["segments"][0]["started_at"]


def test_after_a_reconnect_a_callback_conversation_still_up_stays_open_and_a_lost_one_ends():
    from daemon.switch.supervisor import SwitchSnapshot

    upto = [e for e in events("callback_connected") if e.timestamp_ms < 1796399648000]

    def reconciled(channels: list[str]) -> Replay:
        eng = config_engine()
        rep = feed_all(eng, upto)
        snapshot = SwitchSnapshot("vm", "", "", channels={
            "row_count": len(channels), "rows": [{"uuid": u} for u in channels]})
        rep.add(eng.reconcile(snapshot))
        return rep

    up = reconciled([CALLBACK_AGENT_LEG])  # the caller's leg is gone, the dialer's call is up
    (talk,) = up.segs(CALLBACK_CALL, "talk")
    assert talk.ended_ms is None
    lost = reconciled([])
    (talk,) = lost.segs(CALLBACK_CALL, "talk")
    assert talk.ended_ms is not None and dict(talk.attrs)["closed_by"] == "reconcile"


def test_caller_hanging_up_during_the_survey_leaves_one_unanswered_survey():
    """fs_scripts fire hotline::survey without a score after such a hang-up."""
    stream, unanswered = [], None
    for ev in events("survey_call"):
        if ev.get("Event-Subclass") == "hotline::survey":
            unanswered = Event(re.sub(rb"\nHotline-Score: [^\n]*", b"", ev.raw))
            continue
        stream.append(ev)
        if ev.uuid == SURVEY_CALL and ev.name == "CHANNEL_HANGUP_COMPLETE":
            stream.append(shifted(unanswered, ev.timestamp_ms + 20 - unanswered.timestamp_ms))
    rep = feed_all(config_engine(), stream)
    (survey,) = rep.segs(SURVEY_CALL, "survey")
    assert (survey.score, seconds(survey.duration_ms)) == (None, approx(3.04))


def test_the_agent_ending_the_callback_conversation_is_an_agent_hang_up():
    evs = events("callback_connected")
    hangup = next(e for e in evs if e.uuid == CALLBACK_AGENT_LEG and e.name == "CHANNEL_HANGUP")
    early = hangup.timestamp_ms - 2000  # the agent hangs up 2 s before the customer would
    stream = [e for e in evs if e.timestamp_ms <= early] + [shifted(hangup, -2000)] + [
        e for e in evs if e.timestamp_ms > early]
    rep = feed_all(config_engine(), stream)
    (talk,) = rep.segs(CALLBACK_CALL, "talk")
    assert (talk.hangup_by, seconds(talk.duration_ms)) == ("agent", approx(4.02))


@pytest.mark.parametrize("name", ["callback_connected", "whisper_barge", "survey_call",
                                  "agent_on_call_logout", "exit_key_callback"])
def test_an_engine_restored_from_a_checkpoint_anywhere_in_these_calls_ends_like_a_clean_one(name):
    """A daemon restarted mid-callback, mid-supervision or mid-survey picks the call up
    where it was: the checkpoint holds the callback's legs and the supervision sessions."""
    import json

    evs = events(name)
    clean = feed_all(config_engine(), evs)
    for cut in range(0, len(evs) + 1, max(1, len(evs) // 12)):
        first = config_engine()
        rep = feed_all(first, evs[:cut])
        second = config_engine()
        second.restore(json.loads(json.dumps(first.checkpoint())))  # through its file format
        feed_all(second, evs[cut:], rep)
        assert (rep.calls, rep.segments, rep.intervals) == (
            clean.calls, clean.segments, clean.intervals), cut
