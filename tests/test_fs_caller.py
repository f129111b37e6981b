"""Caller-side scripts (survey, callback request, agent-id announcement) through the double."""
from __future__ import annotations

import pytest
from fs_double import RecordingSession
from hotline_fs import caller
from hotline_fs.prompts import BEEP, DEFAULTS

CALL = "30082806-037b-4dba-8e24-9e170e1bf74c"
ANSWERED = {"uuid": CALL, "domain_name": "hotline.test", "cc_cause": "answered",
            "cc_agent": "1001@hotline.test", "cc_queue": "billing@hotline.test"}
EXITED = {"uuid": CALL, "domain_name": "hotline.test", "cc_cause": "cancel",
          "cc_cancel_reason": "EXIT_WITH_KEY", "cc_exit_key": "*", "cc_queue": "billing@hotline.test",
          "cc_queue_joined_epoch": "1700000000", "caller_id_number": "13800138001"}
DIGITS_13800138001 = [f"digits/{d}.wav" for d in "13800138001"]


# --- survey -------------------------------------------------------------------------------

def test_survey_score_fires_event_with_qualified_queue_and_hangs_up():
    s = RecordingSession(ANSWERED, keys=["4"])
    caller.survey(s, "billing")
    assert s.events == [("hotline::survey", {
        "Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test",
        "Hotline-Agent": "1001@hotline.test", "Hotline-Score": "4"})]
    assert s.prompts == [BEEP]
    assert s.played == [DEFAULTS["survey"], DEFAULTS["thanks"], DEFAULTS["goodbye"]]
    assert s.hung_up


def test_survey_skipped_when_the_call_was_not_answered():
    s = RecordingSession(EXITED)
    caller.survey(s, "billing@hotline.test")
    assert s.calls == []


def test_survey_invalid_key_reprompts_then_accepts():
    s = RecordingSession(ANSWERED, keys=["9", "5"])
    caller.survey(s, "billing@hotline.test")
    assert s.played[:2] == [DEFAULTS["survey"], DEFAULTS["invalid"]]
    assert s.events[0][1]["Hotline-Score"] == "5"


def test_survey_no_input_fires_event_without_score_after_three_tries():
    s = RecordingSession(ANSWERED)
    caller.survey(s, "")
    assert len(s.prompts) == 3
    assert s.events == [("hotline::survey", {
        "Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test",
        "Hotline-Agent": "1001@hotline.test"})]
    assert s.hung_up


def test_survey_caller_hangs_up_during_it_is_recorded_without_score():
    s = RecordingSession(ANSWERED, keys=["3"], hangs_up_after=1)
    caller.survey(s, "billing@hotline.test")
    assert "Hotline-Score" not in s.events[0][1]
    assert DEFAULTS["thanks"] not in s.played and not s.hung_up


def test_survey_prompt_can_be_overridden_by_channel_variable():
    s = RecordingSession({**ANSWERED, "hotline_prompt_survey": "/srv/prompts/rate_us.wav"},
                         keys=["1"])
    caller.survey(s, "billing@hotline.test")
    assert s.played[0] == "/srv/prompts/rate_us.wav"


# --- callback -----------------------------------------------------------------------------

def test_callback_confirms_caller_id_and_keeps_the_queue_join_time():
    s = RecordingSession(EXITED, keys=["1"])
    caller.callback(s, "billing")
    assert s.events == [("hotline::callback", {
        "Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test",
        "Hotline-Number": "13800138001",
        "Hotline-Joined-MS": "1700000000000", "Hotline-Action": "request"})]
    assert s.played == [BEEP, *DIGITS_13800138001, DEFAULTS["callback_registered"],
                        DEFAULTS["goodbye"]]
    assert s.hung_up


def test_callback_caller_enters_another_number():
    s = RecordingSession(EXITED, keys=["2", "13912345678", "1"])
    caller.callback(s, "billing@hotline.test")
    assert s.events[0][1]["Hotline-Number"] == "13912345678"
    collects = [c for c in s.calls if c[0] == "collect"]
    assert collects[1][1:6] == (DEFAULTS["callback_enter"], 3, 20, 10000, "#")
    assert s.played.count("digits/9.wav") == 1  # the new number was read back before "1"


def test_callback_invalid_confirm_key_reprompts():
    s = RecordingSession(EXITED, keys=["7", "1"])
    caller.callback(s, "billing@hotline.test")
    assert DEFAULTS["invalid"] in s.played
    assert s.events[0][1]["Hotline-Number"] == "13800138001"


def test_callback_anonymous_caller_is_asked_for_a_number_first():
    s = RecordingSession({**EXITED, "caller_id_number": "anonymous"}, keys=["010123456", "1"])
    caller.callback(s, "billing@hotline.test")
    assert s.calls[[c[0] for c in s.calls].index("collect")][2:4] == (3, 20)
    assert s.events[0][1]["Hotline-Number"] == "010123456"


# The caller's channel when hotline_callback ran in capture exit_key_callback (FreeSWITCH
# 1.10.12: the CHANNEL_EXECUTE of "python hotline_callback outage_water@..." after the
# caller pressed * in outage_water@hotline.cityutil.cn).
EXIT_KEY_CAPTURED = {
    "uuid": "2c9025d6-318f-4a62-9545-8f8c388f76f3", "domain_name": "hotline.cityutil.cn",
    "cc_cause": "cancel", "cc_cancel_reason": "EXIT_WITH_KEY", "cc_exit_key": "*",
    "cc_exit_keys": "*", "cc_queue": "outage_water@hotline.cityutil.cn",
    "cc_queue_joined_epoch": "1796399408", "cc_queue_canceled_epoch": "1796399505",
    "hotline_queue": "outage_water@hotline.cityutil.cn", "caller_id_number": "13900000061"}


def test_callback_after_the_exit_key_as_a_real_switch_leaves_the_channel():
    s = RecordingSession(EXIT_KEY_CAPTURED, keys=["1"])
    caller.callback(s, "outage_water@hotline.cityutil.cn")
    assert s.events == [("hotline::callback", {
        "Hotline-Call-ID": "2c9025d6-318f-4a62-9545-8f8c388f76f3",
        "Hotline-Queue": "outage_water@hotline.cityutil.cn", "Hotline-Number": "13900000061",
        "Hotline-Joined-MS": "1796399408000", "Hotline-Action": "request"})]
    assert s.hung_up


def test_callback_not_requested_without_exit_key():
    s = RecordingSession({**ANSWERED})
    caller.callback(s, "billing@hotline.test")
    assert s.calls == []


@pytest.mark.parametrize("later", [
    {"cc_cause": "cancel", "cc_cancel_reason": "TIMEOUT"},
    {"cc_cause": "cancel", "cc_cancel_reason": "BREAK_OUT"},  # hung up / transferred away
    {"cc_cause": "answered", "cc_cancel_reason": ""},
])
def test_callback_ignores_an_exit_key_left_over_from_an_earlier_queue(later):
    # mod_callcenter never clears cc_exit_key: the caller pressed it in an earlier queue
    s = RecordingSession({**EXITED, **later})
    caller.callback(s, "billing@hotline.test")
    assert s.calls == []


def test_callback_no_input_fires_nothing_and_leaves_the_call_to_the_dialplan():
    s = RecordingSession(EXITED)
    caller.callback(s, "billing@hotline.test")
    assert s.events == []
    assert len(s.prompts) == 3 and not s.hung_up
    assert any("callback request abandoned" in m for m in s.logged("info"))


def test_callback_invalid_entered_number_is_refused():
    s = RecordingSession({**EXITED, "caller_id_number": ""}, keys=["12", "", ""])
    caller.callback(s, "billing@hotline.test")
    assert s.events == []
    assert s.played.count(DEFAULTS["invalid"]) == 3


def test_callback_without_join_epoch_uses_now():
    variables = {k: v for k, v in EXITED.items() if k != "cc_queue_joined_epoch"}
    s = RecordingSession(variables, keys=["1"], now=1_700_000_123.456)
    caller.callback(s, "billing@hotline.test")
    assert s.events[0][1]["Hotline-Joined-MS"] == "1700000123456"


# --- callback offered by an action (menu option, number rule, queue on_timeout) ------------

# What the rendered callback action leaves on the channel: no cc_exit_key, the request flag.
REQUESTED = {"uuid": CALL, "domain_name": "hotline.test", "hotline_tenant": "hotline.test",
             "hotline_queue": "billing@hotline.test", "hotline_callback_request": "true",
             "caller_id_number": "13800138001"}
SWITCH_NOW = {"strmicroepoch": "1700000500123456\n"}  # µs on the switch's clock


def test_callback_action_confirms_caller_id_and_keeps_the_moment_of_the_request():
    s = RecordingSession(REQUESTED, keys=["1"], replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events == [("hotline::callback", {
        "Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test",
        "Hotline-Number": "13800138001",
        "Hotline-Joined-MS": "1700000500123", "Hotline-Action": "request"})]
    assert s.commands == ["strmicroepoch"]
    assert s.played == [BEEP, *DIGITS_13800138001, DEFAULTS["callback_registered"],
                        DEFAULTS["goodbye"]]
    assert s.hung_up


def test_callback_action_caller_enters_another_number():
    s = RecordingSession(REQUESTED, keys=["2", "13912345678", "1"], replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert [e[1]["Hotline-Number"] for e in s.events] == ["13912345678"]
    assert s.prompts == [DEFAULTS["callback_confirm"], DEFAULTS["callback_enter"],
                         DEFAULTS["callback_confirm"]]
    assert s.hung_up


def test_callback_action_no_input_says_goodbye_and_hangs_up_without_a_request():
    s = RecordingSession(REQUESTED, replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events == []
    assert len(s.prompts) == 3
    assert s.played[-1] == DEFAULTS["goodbye"] and DEFAULTS["callback_registered"] not in s.played
    assert s.calls[-1] == ("hangup", "NORMAL_CLEARING")
    assert any("callback request abandoned" in m for m in s.logged("info"))


def test_callback_action_caller_hangs_up_while_confirming_fires_nothing():
    s = RecordingSession(REQUESTED, keys=["1"], hangs_up_after=1, replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events == []
    assert not s.hung_up and DEFAULTS["goodbye"] not in s.played


def test_callback_action_caller_hangs_up_while_entering_another_number_fires_nothing():
    s = RecordingSession(REQUESTED, keys=["2", "139"], hangs_up_after=2, replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events == [] and not s.hung_up
    assert len(s.prompts) == 2


def test_callback_action_for_the_queue_just_waited_in_keeps_that_queue_place():
    # the queue's on_timeout offers the callback: cc_queue_joined_epoch is this queue's
    timed_out = {**REQUESTED, "cc_cause": "timeout", "cc_queue": "billing@hotline.test",
                 "cc_queue_joined_epoch": "1700000000"}
    s = RecordingSession(timed_out, keys=["1"], replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events[0][1]["Hotline-Joined-MS"] == "1700000000000"
    assert "strmicroepoch" not in s.commands


def test_callback_action_for_another_queue_than_the_one_left_starts_now():
    left = {**REQUESTED, "cc_cause": "timeout", "cc_queue": "sales@hotline.test",
            "cc_queue_joined_epoch": "1700000000"}
    s = RecordingSession(left, keys=["1"], replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events[0][1]["Hotline-Joined-MS"] == "1700000500123"


def test_callback_action_without_switch_time_falls_back_to_the_host_clock():
    s = RecordingSession(REQUESTED, keys=["1"], now=1_700_000_123.456,
                         replies={"strmicroepoch": "-ERR strmicroepoch Command not found!\n"})
    caller.callback(s, "billing@hotline.test")
    assert s.events[0][1]["Hotline-Joined-MS"] == "1700000123456"


def test_callback_action_takes_the_queue_from_hotline_queue_without_argument():
    s = RecordingSession({**REQUESTED, "hotline_queue": "billing"}, keys=["1"], replies=SWITCH_NOW)
    caller.callback(s, "${hotline_queue}")
    assert s.events[0][1]["Hotline-Queue"] == "billing@hotline.test"


def test_callback_request_flag_wins_over_an_earlier_exit_key():
    # exit key pressed, no number confirmed, then the fallback offers a callback again:
    # this time the script ends the call when the caller gives up
    s = RecordingSession({**EXITED, **REQUESTED}, replies=SWITCH_NOW)
    caller.callback(s, "billing@hotline.test")
    assert s.events == [] and s.hung_up


def test_callback_request_flag_false_is_no_request():
    s = RecordingSession({**REQUESTED, "hotline_callback_request": "false"})
    caller.callback(s, "billing@hotline.test")
    assert s.calls == []


# --- survey offered by an action (menu option, number rule) ----------------------------------

PLAIN_CALL = {"uuid": CALL, "domain_name": "hotline.test", "hotline_tenant": "hotline.test",
              "caller_id_number": "13800138001"}


def test_survey_action_on_a_call_that_met_no_queue_runs_without_agent():
    s = RecordingSession(PLAIN_CALL, keys=["5"])
    caller.survey(s, "billing")
    assert s.events == [("hotline::survey", {
        "Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test", "Hotline-Score": "5"})]
    assert s.played == [DEFAULTS["survey"], DEFAULTS["thanks"], DEFAULTS["goodbye"]]
    assert s.hung_up


def test_survey_action_without_queue_fires_only_the_call_and_score():
    s = RecordingSession(PLAIN_CALL, keys=["3"])
    caller.survey(s, "")
    assert s.events == [("hotline::survey", {"Hotline-Call-ID": CALL, "Hotline-Score": "3"})]


def test_survey_action_takes_queue_and_agent_from_the_channel_when_present():
    # an agent transferred the caller to a menu whose option is the survey
    s = RecordingSession({**PLAIN_CALL, "cc_cause": "answered", "cc_agent": "1001@hotline.test",
                          "cc_queue": "billing@hotline.test"}, keys=["4"])
    caller.survey(s, "${hotline_queue}")
    assert s.events[0][1] == {"Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test",
                              "Hotline-Agent": "1001@hotline.test", "Hotline-Score": "4"}


def test_survey_request_flag_runs_it_after_an_unanswered_queue():
    s = RecordingSession({**EXITED, "hotline_survey_request": "true"}, keys=["2"])
    caller.survey(s, "")
    assert s.events == [("hotline::survey", {
        "Hotline-Call-ID": CALL, "Hotline-Queue": "billing@hotline.test", "Hotline-Score": "2"})]


def test_survey_action_no_input_is_recorded_without_score_and_hangs_up():
    s = RecordingSession(PLAIN_CALL)
    caller.survey(s, "billing@hotline.test")
    assert len(s.prompts) == 3
    assert s.events == [("hotline::survey", {"Hotline-Call-ID": CALL,
                                             "Hotline-Queue": "billing@hotline.test"})]
    assert s.hung_up


def test_survey_action_caller_hangs_up_mid_way_is_recorded_without_score():
    s = RecordingSession(PLAIN_CALL, keys=["9", "4"], hangs_up_after=2)
    caller.survey(s, "billing@hotline.test")
    assert s.events == [("hotline::survey", {"Hotline-Call-ID": CALL,
                                             "Hotline-Queue": "billing@hotline.test"})]
    assert not s.hung_up and DEFAULTS["thanks"] not in s.played


# --- announcement (caller's leg, inside the bridge: bridge_pre_execute_app) ------------------

# the caller's leg as mod_callcenter leaves it when it bridges 1001's phone
CALLER_LEG = {"uuid": CALL, "domain_name": "hotline.test", "cc_queue": "billing@hotline.test",
              "cc_agent_uuid": "agent-leg-1", "bridge_pre_execute_app": "python",
              "bridge_pre_execute_data": "hotline_announce"}
AGENT_OF_LEG = {"uuid_getvar agent-leg-1 cc_agent": "1001@hotline.test"}
SAY_1001 = "file_string://" + "!".join([BEEP, "digits/1.wav", "digits/0.wav", "digits/0.wav",
                                        "digits/1.wav"])


def test_announce_on_the_callers_leg_remembers_the_call_and_plays_the_agent_id_at_once():
    s = RecordingSession(CALLER_LEG, replies=AGENT_OF_LEG)
    caller.announce(s, "")
    assert s.commands == ["uuid_getvar agent-leg-1 cc_agent",
                          f"hash insert/hotline_last_call/1001@hotline.test/{CALL}"]
    # played on this channel (the caller's), not broadcast; no waiting, no polling
    assert s.played == [SAY_1001]
    assert not any(c[0] == "sleep" for c in s.calls)
    # once per queue bridge: a later bridge of this call must not announce again
    assert ("set", "bridge_pre_execute_app", "") in s.calls


def test_announce_trusts_the_agent_leg_over_a_stale_cc_agent_of_an_earlier_queue():
    s = RecordingSession({**CALLER_LEG, "cc_agent": "1005@hotline.test"}, replies=AGENT_OF_LEG)
    caller.announce(s, "")
    assert s.commands[-1] == f"hash insert/hotline_last_call/1001@hotline.test/{CALL}"
    assert s.played == [SAY_1001]


def test_announce_falls_back_to_cc_agent_when_the_agent_leg_has_none():
    s = RecordingSession({**CALLER_LEG, "cc_agent": "2046@hotline.test",
                          "hotline_prompt_announce_pre": "hotline/agent_number.wav",
                          "hotline_prompt_announce_post": "hotline/is_serving_you.wav"},
                         replies={"uuid_getvar": "_undef_"})
    caller.announce(s, "")
    assert s.played == ["file_string://hotline/agent_number.wav!digits/2.wav!digits/0.wav!"
                        "digits/4.wav!digits/6.wav!hotline/is_serving_you.wav"]


def test_announce_stops_the_armed_callback_key_tasks_of_the_call():
    # the queue armed its exit key with sched_api in the group named by the call's uuid
    s = RecordingSession({**CALLER_LEG, "hotline_callback_task": "+OK Added: 7"},
                         replies=AGENT_OF_LEG)
    caller.announce(s, "")
    assert s.commands[0] == f"sched_del {CALL}"


def test_announce_switched_off_for_the_queue_only_remembers_the_call():
    s = RecordingSession({**CALLER_LEG, "hotline_announce_agent": "false"}, replies=AGENT_OF_LEG)
    caller.announce(s, "")
    assert s.commands[-1] == f"hash insert/hotline_last_call/1001@hotline.test/{CALL}"
    assert s.played == []


def test_announce_without_any_agent_does_nothing_but_log():
    s = RecordingSession({"uuid": CALL}, replies={"uuid_getvar": "_undef_"})
    caller.announce(s, "")
    assert s.played == [] and not any(c.startswith("hash") for c in s.commands)
    assert s.logged("warning")


def test_announce_logs_when_the_last_call_cannot_be_remembered():
    s = RecordingSession({**CALLER_LEG, "hotline_announce_agent": "false"},
                         replies={**AGENT_OF_LEG, "hash": "-ERR hash Command not found!\n"})
    caller.announce(s, "")
    assert any("cannot remember the last call of 1001@hotline.test" in m for m in s.logged("err"))
