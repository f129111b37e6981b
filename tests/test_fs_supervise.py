"""Supervisor listen / whisper / barge through the recording session double."""
from __future__ import annotations

import pytest
from fs_double import RecordingSession, serve_data, write_data
from hotline_fs.prompts import DEFAULTS, FAILED
from hotline_fs.supervise import supervise

TENANT = {"hotline.test": {"agents": {"1001": {"id": "1001"}, "1002": {"id": "1002"}},
                           "supervisors": ["2000"]}}
ON_CALL = {"callcenter_config agent get uuid 1001@hotline.test": "agent-leg-1",
           "uuid_exists agent-leg-1": "true"}


@pytest.fixture
def data_file(tmp_path, monkeypatch):
    return serve_data(monkeypatch, write_data(tmp_path / "hotline_data.json", TENANT))


def phone(data_file, user="2000"):
    return {"user_name": user, "domain_name": "hotline.test"}


def eavesdrop_vars(s):
    return {c[1]: c[2] for c in s.calls if c[0] == "set"}


# eavesdrop on the agent's leg: whisper_aleg is heard by the caller, whisper_bleg by the agent
@pytest.mark.parametrize("mode, to_caller, to_agent", [
    ("listen", "false", "false"),
    ("whisper", "false", "true"),
    ("barge", "true", "true"),
])
def test_supervise_eavesdrops_on_the_agents_call_leg_in_each_mode(data_file, mode, to_caller,
                                                                  to_agent):
    s = RecordingSession(phone(data_file), replies=ON_CALL)
    supervise(s, f"{mode} 1001")
    assert s.commands == ["callcenter_config agent get uuid 1001@hotline.test",
                          "uuid_exists agent-leg-1"]
    assert eavesdrop_vars(s) == {
        "eavesdrop_enable_dtmf": "true", "eavesdrop_bridge_aleg": "true",
        "eavesdrop_bridge_bleg": "true", "eavesdrop_whisper_aleg": to_caller,
        "eavesdrop_whisper_bleg": to_agent}
    assert ("execute", "eavesdrop", "agent-leg-1") in s.calls
    assert s.order("set", "execute")[-1][0] == "execute"  # variables set before eavesdrop starts
    assert s.hung_up


def test_supervise_refuses_a_phone_that_is_not_a_supervisor(data_file):
    s = RecordingSession(phone(data_file, user="1002"), replies=ON_CALL)
    supervise(s, "listen 1001")
    assert s.commands == []
    assert not any(c[0] == "execute" for c in s.calls)
    assert s.played == [FAILED]


def test_supervise_without_supervisor_list_allows_any_phone_of_the_tenant(tmp_path,
                                                                          monkeypatch):
    path = serve_data(monkeypatch, write_data(tmp_path / "d.json",
                                              {"hotline.test": {"agents": {"1001": {"id": "1001"}}}}))
    s = RecordingSession(phone(path, user="1002"), replies=ON_CALL)
    supervise(s, "listen 1001")
    assert ("execute", "eavesdrop", "agent-leg-1") in s.calls


def test_supervise_agent_not_on_a_call_plays_failed(data_file):
    s = RecordingSession(phone(data_file),
                         replies={"callcenter_config agent get uuid 1001@hotline.test": ""})
    supervise(s, "barge 1001")
    assert not any(c[0] == "execute" for c in s.calls)
    assert s.played == [FAILED]


def test_supervise_stale_agent_uuid_is_not_eavesdropped(data_file):
    s = RecordingSession(phone(data_file), replies={**ON_CALL, "uuid_exists agent-leg-1": "false"})
    supervise(s, "listen 1001")
    assert not any(c[0] == "execute" for c in s.calls)


def test_supervise_collects_the_agent_id_when_not_dialed(data_file):
    s = RecordingSession(phone(data_file), keys=["1001"], replies=ON_CALL)
    supervise(s, "whisper")
    assert s.prompts == [DEFAULTS["enter_agent"]]
    assert ("execute", "eavesdrop", "agent-leg-1") in s.calls


def test_supervise_unknown_agent_reprompts_then_gives_up(data_file):
    s = RecordingSession(phone(data_file), keys=["4711"])
    supervise(s, "listen 9999")
    assert len(s.prompts) == 1
    assert s.played == [DEFAULTS["invalid"], DEFAULTS["invalid"], FAILED]
    assert s.commands == []


def test_supervise_unknown_mode_is_refused(data_file):
    s = RecordingSession(phone(data_file), replies=ON_CALL)
    supervise(s, "spy 1001")
    assert s.commands == []
    assert any("unknown mode 'spy'" in m for m in s.logged("err"))


def test_supervise_api_error_is_treated_as_not_on_a_call(data_file):
    s = RecordingSession(phone(data_file),
                         replies={"callcenter_config agent get uuid": "-ERR Agent not found!\n"})
    supervise(s, "listen 1001")
    assert not any(c[0] == "execute" for c in s.calls)
    assert s.played == [FAILED]
