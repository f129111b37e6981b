"""Desk-phone agent features through the recording session double."""
from __future__ import annotations

import pytest
from fs_double import RecordingSession, serve_data, write_data
from hotline_fs import agent
from hotline_fs.prompts import BEEP, DEFAULTS, DONE, FAILED

A = "1001@hotline.test"
TENANT = {
    "hotline.test": {
        "agents": {
            "1001": {"id": "1001", "pin": "4321"},
            "1002": {"id": "1002", "pin": None},
        },
        "break_reasons": {"1": "lunch", "2": "training", "3": "meeting"},
        "dispositions": {"1": "resolved", "2": "callback-needed", "31": "complaint"},
    }
}
AGENT_LIST_HEADER = ("name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|"
                     "reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|"
                     "last_bridge_end|last_offered_call|last_status_change|no_answer_count|"
                     "calls_answered|talk_time|ready_time|external_calls_count")
NOW = 1_700_000_000


@pytest.fixture
def data_file(tmp_path, monkeypatch):
    return serve_data(monkeypatch, write_data(tmp_path / "hotline_data.json", TENANT))


LOGGED_IN = {f"callcenter_config agent get status {A}": "Available",
             f"callcenter_config agent get state {A}": "Waiting"}
GET_STATUS = f"callcenter_config agent get status {A}"


def desk(data_file, user="1001", **extra):
    variables = {"user_name": user, "domain_name": "hotline.test", "hotline_tenant": "hotline.test"}
    variables.update(extra)
    return variables


CONTACT = "[leg_timeout=15]user/1001@hotline.test"


def agent_list(wrap_up: int, last_end: int, contact: str = CONTACT) -> str:
    row = (f"{A}|single_box||callback|{contact}|Available|Waiting|3|{wrap_up}|10|60|10|"
           f"{last_end - 60}|{last_end}|{last_end - 62}|{NOW - 3600}|0|4|240|0|0")
    return f"{AGENT_LIST_HEADER}\n{row}\n+OK\n"


# --- login / logout / toggle ---------------------------------------------------------------

def test_login_with_correct_pin_fires_login_then_sets_available_and_waiting(data_file):
    s = RecordingSession(desk(data_file), keys=["4321"],
                         replies={f"callcenter_config agent get state {A}": "Idle"})
    agent.login(s, "")
    assert s.answered
    assert s.prompts == [DEFAULTS["enter_pin"]]
    assert s.events == [("hotline::agent", {"Hotline-Agent": A, "Hotline-Action": "login"})]
    assert s.commands == [
        f"callcenter_config agent set status {A} Available",
        f"callcenter_config agent get state {A}",
        f"callcenter_config agent set state {A} Waiting",
    ]
    assert s.order("fire", "api")[0][0] == "fire"  # event before the status change
    assert s.played == [DEFAULTS["logged_in"]]
    assert s.calls[-1] == ("hangup", "NORMAL_CLEARING")


def test_login_wrong_pin_three_times_changes_nothing(data_file):
    s = RecordingSession(desk(data_file), keys=["1111", "2222", "3333"])
    agent.login(s, "")
    assert len(s.prompts) == 3
    assert s.commands == [] and s.events == []
    assert s.played == [DEFAULTS["bad_pin"]] * 3 + [FAILED]
    assert any("wrong PIN 3 times" in m for m in s.logged("warning"))
    assert not any("1111" in str(c) for c in s.calls if c[0] == "log")  # PINs never logged
    assert s.hung_up


def test_login_pin_right_on_third_try_after_a_timeout(data_file):
    s = RecordingSession(desk(data_file), keys=["0000", "", "4321"],
                         replies={f"callcenter_config agent get state {A}": "Waiting"})
    agent.login(s, "")
    assert s.played == [DEFAULTS["bad_pin"], DEFAULTS["bad_pin"], DEFAULTS["logged_in"]]
    assert s.commands[0] == f"callcenter_config agent set status {A} Available"


def test_login_agent_without_pin_is_not_asked(data_file):
    s = RecordingSession(desk(data_file, user="1002"))
    agent.login(s, "")
    assert s.prompts == []
    assert s.commands[0] == "callcenter_config agent set status 1002@hotline.test Available"


def test_login_pin_can_be_switched_off_by_the_dialplan(data_file):
    s = RecordingSession(desk(data_file, hotline_agent_pin_required="false"))
    agent.login(s, "")
    assert s.prompts == []
    assert s.played == [DEFAULTS["logged_in"]]


def test_login_refused_when_pin_required_but_agent_has_none(data_file):
    s = RecordingSession(desk(data_file, user="1002", hotline_agent_pin_required="true"))
    agent.login(s, "")
    assert s.commands == [] and s.events == []
    assert s.played == [FAILED]


def test_login_leaves_state_alone_while_agent_is_on_a_queue_call(data_file):
    s = RecordingSession(desk(data_file, user="1002"),
                         replies={"callcenter_config agent get state 1002@hotline.test":
                                  "In a queue call"})
    agent.login(s, "")
    assert not any("set state" in c for c in s.commands)


def test_login_api_error_reply_plays_failed_and_stops(data_file):
    s = RecordingSession(desk(data_file, user="1002"),
                         replies={"callcenter_config agent set status": "-ERR Agent not found!\n"})
    agent.login(s, "")
    assert s.commands == ["callcenter_config agent set status 1002@hotline.test Available"]
    assert s.played == [FAILED]
    assert any("-ERR Agent not found!" in m for m in s.logged("err"))
    assert s.hung_up


def test_unknown_phone_is_refused_without_touching_mod_callcenter(data_file):
    s = RecordingSession(desk(data_file, user="1009"))
    agent.login(s, "")
    assert s.commands == [] and s.events == []
    assert s.played == [FAILED]
    assert any("1009@hotline.test is not an agent's desk phone" in m for m in s.logged("warning"))


def test_missing_data_file_is_reported_and_refused(tmp_path):
    s = RecordingSession(desk(tmp_path / "nope.json"))
    agent.logout(s, "")
    assert s.commands == [] and s.events == []
    assert s.played == [FAILED]
    assert any("data file not found" in m for m in s.logged("err"))


def test_tenant_missing_from_data_file_is_refused(data_file):
    s = RecordingSession(desk(data_file, hotline_tenant="other.test"))
    agent.logout(s, "")
    assert s.commands == []
    assert any("'other.test'" in m for m in s.logged("err"))


def test_phone_identified_by_sip_from_user_when_user_name_is_absent(data_file):
    variables = desk(data_file)
    del variables["user_name"]
    variables["sip_from_user"] = "1002"
    s = RecordingSession(variables)
    agent.logout(s, "")
    assert s.commands == ["callcenter_config agent set status 1002@hotline.test 'Logged Out'"]


def test_logout_fires_logout_then_sets_quoted_logged_out(data_file):
    s = RecordingSession(desk(data_file))
    agent.logout(s, "")
    assert s.order("fire", "api") == [
        ("fire", "hotline::agent", {"Hotline-Agent": A, "Hotline-Action": "logout"}),
        ("api", f"callcenter_config agent set status {A} 'Logged Out'"),
    ]
    assert s.played == [DEFAULTS["logged_out"]]


def test_toggle_logs_in_a_logged_out_agent_with_pin(data_file):
    s = RecordingSession(desk(data_file), keys=["4321"],
                         replies={f"callcenter_config agent get status {A}": "Logged Out",
                                  f"callcenter_config agent get state {A}": "Waiting"})
    agent.toggle(s, "")
    assert s.commands[:2] == [f"callcenter_config agent get status {A}",
                              f"callcenter_config agent set status {A} Available"]
    assert s.events[0][1]["Hotline-Action"] == "login"
    assert s.played[-1] == DEFAULTS["logged_in"]


@pytest.mark.parametrize("status", ["Available", "On Break", "Available (On Demand)"])
def test_toggle_logs_out_an_agent_who_is_logged_in(data_file, status):
    s = RecordingSession(desk(data_file),
                         replies={f"callcenter_config agent get status {A}": status})
    agent.toggle(s, "")
    assert s.prompts == []
    assert s.commands[-1] == f"callcenter_config agent set status {A} 'Logged Out'"
    assert s.events[0][1]["Hotline-Action"] == "logout"


def test_toggle_unknown_to_mod_callcenter_plays_failed(data_file):
    s = RecordingSession(desk(data_file),
                         replies={f"callcenter_config agent get status {A}":
                                  "-ERR Agent not found!\n"})
    agent.toggle(s, "")
    assert s.events == []
    assert s.played == [FAILED]


# --- break / ready ------------------------------------------------------------------------

def test_break_with_dialed_digit_fires_reason_before_on_break(data_file):
    s = RecordingSession(desk(data_file), replies=LOGGED_IN)
    agent.take_break(s, "1")
    assert s.prompts == []
    assert s.order("fire", "api") == [
        ("api", GET_STATUS),
        ("fire", "hotline::agent",
         {"Hotline-Agent": A, "Hotline-Action": "break", "Hotline-Reason": "lunch"}),
        ("api", f"callcenter_config agent set status {A} 'On Break'"),
    ]
    assert s.played == [DONE]


def test_break_reason_collected_when_not_dialed(data_file):
    s = RecordingSession(desk(data_file), keys=["2"], replies=LOGGED_IN)
    agent.take_break(s, "")
    assert [c[0] for c in s.order("collect", "fire")] == ["collect", "fire"]
    assert s.prompts == [BEEP]
    assert s.events[0][1]["Hotline-Reason"] == "training"


def test_break_invalid_digit_reprompts_once(data_file):
    s = RecordingSession(desk(data_file), keys=["9", "3"])
    agent.take_break(s, "")
    assert s.played == [DEFAULTS["invalid"], DONE]
    assert s.events[0][1]["Hotline-Reason"] == "meeting"


def test_break_gives_up_after_two_invalid_digits(data_file):
    s = RecordingSession(desk(data_file), keys=["9", "8"], replies=LOGGED_IN)
    agent.take_break(s, "")
    assert s.events == [] and s.commands == [GET_STATUS]
    assert s.played == [DEFAULTS["invalid"], DEFAULTS["invalid"], FAILED]


def test_break_invalid_dialed_digit_counts_as_first_try(data_file):
    s = RecordingSession(desk(data_file), keys=[""], replies=LOGGED_IN)
    agent.take_break(s, "7")
    assert len(s.prompts) == 1
    assert s.events == [] and s.commands == [GET_STATUS]
    assert s.played == [DEFAULTS["invalid"], DEFAULTS["invalid"], FAILED]


def test_break_no_input_times_out_twice_then_gives_up(data_file):
    s = RecordingSession(desk(data_file))
    agent.take_break(s, "")
    assert len(s.prompts) == 2
    assert s.events == []
    assert s.played[-1] == FAILED


def test_break_without_configured_reasons_goes_on_break_without_reason(tmp_path,
                                                                       monkeypatch):
    path = serve_data(monkeypatch, write_data(tmp_path / "d.json",
                                              {"hotline.test": {"agents": {"1001": {"id": "1001"}}}}))
    s = RecordingSession(desk(path), replies=LOGGED_IN)
    agent.take_break(s, "")
    assert s.events == [("hotline::agent", {"Hotline-Agent": A, "Hotline-Action": "break"})]
    assert s.commands == [GET_STATUS, f"callcenter_config agent set status {A} 'On Break'"]


def test_ready_fires_ready_then_available_and_waiting(data_file):
    s = RecordingSession(desk(data_file), replies={
        GET_STATUS: "On Break", f"callcenter_config agent get state {A}": "Idle"})
    agent.ready(s, "")
    assert s.events == [("hotline::agent", {"Hotline-Agent": A, "Hotline-Action": "ready"})]
    assert s.commands == [GET_STATUS, f"callcenter_config agent set status {A} Available",
                          f"callcenter_config agent get state {A}",
                          f"callcenter_config agent set state {A} Waiting"]
    assert s.played == [DONE]


# --- end wrap-up --------------------------------------------------------------------------

def test_end_wrapup_zeroes_wrap_up_time_and_schedules_the_restore(data_file):
    s = RecordingSession(desk(data_file), now=NOW,
                         replies={f"callcenter_config agent list {A}": agent_list(30, NOW - 10)})
    agent.end_wrapup(s, "")
    assert s.commands == [
        f"callcenter_config agent list {A}",
        f"sched_api +21 hotline_wrapup_{A} callcenter_config agent set wrap_up_time {A} 30",
        f"callcenter_config agent set wrap_up_time {A} 0",
    ]
    kinds = [c[0] if c[0] == "fire" else c[1].split()[0] for c in s.order("fire", "api")]
    assert kinds == ["callcenter_config", "sched_api", "fire", "callcenter_config"]
    assert s.events == [("hotline::agent", {"Hotline-Agent": A, "Hotline-Action": "end-wrapup"})]
    assert s.played == [DONE]


def test_end_wrapup_outside_wrapup_changes_nothing(data_file):
    s = RecordingSession(desk(data_file), now=NOW,
                         replies={f"callcenter_config agent list {A}": agent_list(30, NOW - 31)})
    agent.end_wrapup(s, "")
    assert s.commands == [f"callcenter_config agent list {A}"]
    assert s.events == []
    assert s.played == [DONE]


def test_end_wrapup_reads_a_contact_with_a_pipe(data_file):
    reply = agent_list(5, NOW - 2, contact="[leg_timeout=15]user/1001@hotline.test|sofia/gw/1001")
    s = RecordingSession(desk(data_file), now=NOW,
                         replies={f"callcenter_config agent list {A}": reply})
    agent.end_wrapup(s, "")
    restore = f"callcenter_config agent set wrap_up_time {A} 5"
    assert f"sched_api +4 hotline_wrapup_{A} {restore}" in s.commands


def test_end_wrapup_agent_list_error_plays_failed(data_file):
    s = RecordingSession(desk(data_file),
                         replies={"callcenter_config agent list": "-ERR Invalid!\n"})
    agent.end_wrapup(s, "")
    assert s.events == []
    assert s.played == [FAILED]


def test_end_wrapup_does_not_zero_when_the_restore_cannot_be_scheduled(data_file):
    s = RecordingSession(desk(data_file), now=NOW,
                         replies={f"callcenter_config agent list {A}": agent_list(30, NOW - 10),
                                  "sched_api": "-ERR Invalid syntax\n"})
    agent.end_wrapup(s, "")
    assert not any(c.endswith("wrap_up_time 1001@hotline.test 0") for c in s.commands)
    assert s.events == []
    assert s.played == [FAILED]


# --- disposition --------------------------------------------------------------------------

def test_disposition_with_dialed_code_goes_on_the_last_call(data_file):
    s = RecordingSession(desk(data_file), replies={f"hash select/hotline_last_call/{A}": "call-7"})
    agent.disposition(s, "1")
    assert s.commands == [f"hash select/hotline_last_call/{A}"]
    assert s.events == [("hotline::disposition",
                         {"Hotline-Call-ID": "call-7", "Hotline-Agent": A, "Hotline-Code": "1"})]
    assert s.played == [DONE]


def test_disposition_multi_digit_code_is_collected(data_file):
    s = RecordingSession(desk(data_file), keys=["31"],
                         replies={f"hash select/hotline_last_call/{A}": "call-7"})
    agent.disposition(s, "")
    assert s.calls[[c[0] for c in s.calls].index("collect")][2:4] == (1, 2)  # min 1, max 2 digits
    assert s.events[0][1]["Hotline-Code"] == "31"


def test_disposition_falls_back_to_the_current_call_of_the_agent_leg(data_file):
    s = RecordingSession(desk(data_file), replies={
        f"hash select/hotline_last_call/{A}": "-ERR hash Command not found!\n",
        f"callcenter_config agent get uuid {A}": "agent-leg-1",
        "uuid_getvar agent-leg-1 cc_member_session_uuid": "call-9",
    })
    agent.disposition(s, "2")
    assert s.events[0][1]["Hotline-Call-ID"] == "call-9"


def test_disposition_without_a_last_call_asks_nothing(data_file):
    s = RecordingSession(desk(data_file), replies={f"hash select/hotline_last_call/{A}": "",
                                                   f"callcenter_config agent get uuid {A}": ""})
    agent.disposition(s, "")
    assert s.prompts == [] and s.events == []
    assert s.played == [FAILED]


def test_disposition_invalid_codes_give_up(data_file):
    s = RecordingSession(desk(data_file), keys=["7", "99"],
                         replies={f"hash select/hotline_last_call/{A}": "call-7"})
    agent.disposition(s, "")
    assert s.events == []
    assert s.played == [DEFAULTS["invalid"], DEFAULTS["invalid"], FAILED]


def test_event_fire_failure_is_logged(data_file):
    s = RecordingSession(desk(data_file), fire_ok=False)
    agent.logout(s, "")
    assert any("could not fire hotline::agent" in m for m in s.logged("err"))


def test_break_reason_digit_without_configured_reasons_is_refused(tmp_path, monkeypatch):
    # *253 in a tenant with no break reasons: the digit names nothing, so nothing changes
    path = serve_data(monkeypatch, write_data(tmp_path / "d.json",
                                              {"hotline.test": {"agents": {"1001": {"id": "1001"}}}}))
    s = RecordingSession(desk(path), replies=LOGGED_IN)
    agent.take_break(s, "3")
    assert s.events == []
    assert s.commands == [GET_STATUS]
    assert s.played[-1] == FAILED
    assert any("defines no break reasons" in m for m in s.logged("warning"))


@pytest.mark.parametrize("feature, args", [(agent.ready, ""), (agent.take_break, "1")])
def test_ready_and_break_refuse_a_logged_out_agent(data_file, feature, args):
    s = RecordingSession(desk(data_file), replies={GET_STATUS: "Logged Out"})
    feature(s, args)  # ready must not bypass the login PIN
    assert s.commands == [GET_STATUS]
    assert s.events == []
    assert s.played == [FAILED]


def test_break_for_an_agent_unknown_to_mod_callcenter_plays_failed(data_file):
    s = RecordingSession(desk(data_file), replies={GET_STATUS: "-ERR Agent not found!\n"})
    agent.take_break(s, "1")
    assert s.events == []
    assert s.played == [FAILED]
