"""Entry modules: importable without the switch, and adapting mod_python3's session correctly.

A stand-in ``freeswitch`` module (tests/fs_double.FakeFreeswitch) takes the place
of the one mod_python3 embeds; it records API commands, fired events and logs.
"""
from __future__ import annotations

import importlib
import json
import sys

import pytest
from fs_double import FS_SCRIPTS, FakeCoreSession, FakeFreeswitch, serve_data, write_data
from hotline_fs import callcenter as cc
from hotline_fs import data
from hotline_fs.prompts import DEFAULTS, DONE

ENTRY_MODULES = sorted(p.stem for p in FS_SCRIPTS.glob("hotline_*.py"))
TENANT = {"hotline.test": {"agents": {"1001": {"id": "1001", "pin": "4321"}},
                           "break_reasons": {"1": "lunch", "2": "training"},
                           "supervisors": ["2000"]}}


@pytest.fixture
def fake_fs(monkeypatch):
    def install(replies=None):
        module = FakeFreeswitch(replies)
        monkeypatch.setitem(sys.modules, "freeswitch", module)
        return module
    return install


@pytest.fixture
def data_file(tmp_path, monkeypatch):
    return serve_data(monkeypatch, write_data(tmp_path / "hotline_data.json", TENANT))


def test_all_eleven_entry_modules_exist():
    assert ENTRY_MODULES == sorted([
        "hotline_announce", "hotline_break", "hotline_callback", "hotline_disposition",
        "hotline_login", "hotline_logout", "hotline_ready", "hotline_supervise", "hotline_survey",
        "hotline_toggle", "hotline_wrapup"])


@pytest.mark.parametrize("name", ENTRY_MODULES)
def test_entry_module_imports_without_the_freeswitch_module(monkeypatch, name):
    monkeypatch.delitem(sys.modules, "freeswitch", raising=False)
    module = importlib.import_module(name)
    assert callable(module.handler)
    assert "freeswitch" not in sys.modules


def test_hotline_fs_uses_only_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"hotline_fs", "freeswitch", "__future__"}
    for path in sorted((FS_SCRIPTS / "hotline_fs").glob("*.py")) + sorted(FS_SCRIPTS.glob("*.py")):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and not words[1].startswith("."):
                assert words[1].split(".")[0] in allowed, f"{path.name}: {line}"


def test_login_entry_adapts_read_api_event_playback_and_hangup(fake_fs, data_file):
    fs = fake_fs({"callcenter_config agent get state 1001@hotline.test": "Idle"})
    session = FakeCoreSession({"user_name": "1001", "domain_name": "hotline.test"}, digits=["4321"])
    importlib.import_module("hotline_login").handler(session, "")
    assert session.calls == [
        ("answer",),
        ("read", 1, 16, DEFAULTS["enter_pin"], 5000, "#"),
        ("streamFile", DEFAULTS["logged_in"]),
        ("hangup", "NORMAL_CLEARING"),
    ]
    assert fs.fired == [("CUSTOM", "hotline::agent",
                         [("Hotline-Agent", "1001@hotline.test"), ("Hotline-Action", "login")])]
    assert fs.api_commands == ["callcenter_config agent set status 1001@hotline.test Available",
                               "callcenter_config agent get state 1001@hotline.test",
                               "callcenter_config agent set state 1001@hotline.test Waiting"]


def test_break_entry_passes_the_dialed_digit(fake_fs, data_file):
    fs = fake_fs({"callcenter_config agent get status 1001@hotline.test": "Available"})
    session = FakeCoreSession({"user_name": "1001", "domain_name": "hotline.test"})
    importlib.import_module("hotline_break").handler(session, "2 ")
    assert fs.fired[0][2][-1] == ("Hotline-Reason", "training")
    assert fs.api_commands == ["callcenter_config agent get status 1001@hotline.test",
                               "callcenter_config agent set status 1001@hotline.test 'On Break'"]
    assert ("streamFile", DONE) in session.calls


def test_survey_entry_fires_the_score_event(fake_fs):
    fs = fake_fs()
    session = FakeCoreSession({"uuid": "call-1", "cc_cause": "answered",
                               "cc_agent": "1001@hotline.test", "domain_name": "hotline.test"},
                              digits=["5"])
    importlib.import_module("hotline_survey").handler(session, "billing@hotline.test")
    assert fs.fired == [("CUSTOM", "hotline::survey", [
        ("Hotline-Call-ID", "call-1"), ("Hotline-Queue", "billing@hotline.test"),
        ("Hotline-Agent", "1001@hotline.test"), ("Hotline-Score", "5")])]


def test_callback_entry_from_a_menu_option_stamps_the_request_with_switch_time(fake_fs):
    fs = fake_fs({"strmicroepoch": "1700000500123456"})
    session = FakeCoreSession({"uuid": "call-1", "domain_name": "hotline.test",
                               "hotline_callback_request": "true",
                               "hotline_queue": "billing@hotline.test",
                               "caller_id_number": "13800138001"}, digits=["1"])
    importlib.import_module("hotline_callback").handler(session, "billing@hotline.test")
    assert fs.api_commands == ["strmicroepoch"]
    assert fs.fired == [("CUSTOM", "hotline::callback", [
        ("Hotline-Call-ID", "call-1"), ("Hotline-Queue", "billing@hotline.test"),
        ("Hotline-Number", "13800138001"), ("Hotline-Joined-MS", "1700000500123"),
        ("Hotline-Action", "request")])]
    assert session.calls[-1] == ("hangup", "NORMAL_CLEARING")


def test_supervise_entry_runs_eavesdrop_with_whisper_variables(fake_fs, data_file):
    fake_fs({"callcenter_config agent get uuid 1001@hotline.test": "leg-1",
             "uuid_exists leg-1": "true"})
    session = FakeCoreSession({"user_name": "2000", "domain_name": "hotline.test"})
    importlib.import_module("hotline_supervise").handler(session, "whisper 1001")
    # whisper: only the agent hears (the write side of the agent's leg)
    assert ("setVariable", "eavesdrop_whisper_bleg", "true") in session.calls
    assert ("setVariable", "eavesdrop_whisper_aleg", "false") in session.calls
    assert ("execute", "eavesdrop", "leg-1") in session.calls


def test_a_crash_in_a_feature_is_logged_and_the_call_hung_up(fake_fs, data_file):
    fs = fake_fs()

    class Broken(FakeCoreSession):
        def getVariable(self, name):  # noqa: N802
            raise RuntimeError("boom")

    session = Broken({})
    importlib.import_module("hotline_logout").handler(session, "")
    assert session.calls[-1] == ("hangup", "NORMAL_TEMPORARY_FAILURE")
    assert fs.console[0][0] == "err" and "RuntimeError: boom" in fs.console[0][1]


# --- data file and mod_callcenter reply parsing ---------------------------------------

def test_data_file_accepts_a_tenants_wrapper(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"tenants": TENANT}))
    tenants = data.load(str(path))
    assert tenants["hotline.test"].agents["1001"] == data.AgentRecord("1001", "1001", "4321")
    assert tenants["hotline.test"].supervisors == frozenset({"2000"})


def test_data_file_broken_json_is_a_data_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("{not json")
    with pytest.raises(data.DataError, match="cannot read data file"):
        data.load(str(path))


def test_data_file_agent_without_id_is_a_data_error(tmp_path):
    path = write_data(tmp_path / "d.json", {"hotline.test": {"agents": {"1001": {"pin": "1"}}}})
    with pytest.raises(data.DataError, match=r"hotline.test.agents.1001 needs an id"):
        data.load(str(path))


def test_agent_list_reply_parses_to_columns():
    reply = "name|status|wrap_up_time\n1001@hotline.test|On Break|10\n+OK\n"
    assert cc.parse_agent_list(reply) == {"name": "1001@hotline.test", "status": "On Break",
                                          "wrap_up_time": "10"}
    assert cc.parse_agent_list("+OK\n") is None
    assert cc.parse_agent_list("-ERR Invalid!\n") is None


def test_status_values_with_spaces_are_single_quoted_like_the_captures():
    assert cc.set_status("1001@hotline.test", "Logged Out") == \
        "callcenter_config agent set status 1001@hotline.test 'Logged Out'"
    assert cc.set_status("1001@hotline.test", "Available") == \
        "callcenter_config agent set status 1001@hotline.test Available"
