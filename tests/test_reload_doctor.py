"""``hotline doctor`` and the reload's registration check through the ESL test peer: a stock
FreeSWITCH (modules missing, registrations forced into the default domain, a site-wide
tod_tz_offset) is told plainly what to change; a well set-up switch is ok."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.definition.config import load_center
from daemon.switch.doctor import (
    PROBLEM,
    parse_registrations,
    registration_findings,
    timezone_findings,
)
from daemon.switch.reload import format_report, reload_center
from tests.eslpeer import EslPeer
from tests.test_reload import settings_for
from tests.test_reload_switch import FakeCallcenter

REPO = Path(__file__).resolve().parent.parent


def registrations(*rows: tuple[str, str]) -> str:
    """``show registrations as json`` as mod_commands prints it (the core registrations
    table that mod_sofia fills: reg_user, realm = the registration's domain, ...)."""
    return json.dumps({"row_count": len(rows), "rows": [
        {"reg_user": user, "realm": realm, "token": f"call-{user}",
         "url": f"sofia/internal/sip:{user}@127.0.0.1:5070", "expires": "1796399999",
         "network_ip": "127.0.0.1", "network_port": "5070", "network_proto": "udp",
         "hostname": "vm", "metadata": "SIPp"} for user, realm in rows]}) + "\n"


# stock sip_profiles/internal.xml: every phone lands in the default domain (here the IP)
FORCED = registrations(("1001", "192.0.2.2"), ("1002", "192.0.2.2"), ("2002", "192.0.2.2"))
RIGHT = registrations(("1001", "hotline.test"), ("2002", "hotline.cityutil.cn"))


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


def switch(peer: EslPeer, regs: str, python3: str = "true", tz: str = "-ERR no reply") -> None:
    peer.script("api module_exists mod_callcenter", "true")
    peer.script("api module_exists mod_conference", "true")
    peer.script("api module_exists mod_python3", python3)
    peer.script("api show registrations as json", regs)
    peer.script("api global_getvar tod_tz_offset", tz)


def test_an_agent_registered_under_another_domain_is_named_with_the_fix(center):
    findings = registration_findings(center, parse_registrations(FORCED))
    assert [f.status for f in findings] == [PROBLEM] * 3
    by_agent = {f.message.split(":")[0]: f.message for f in findings}
    assert set(by_agent) == {"agent 1001@hotline.test", "agent 1002@hotline.test",
                             "agent 2002@hotline.cityutil.cn"}
    first = by_agent["agent 1001@hotline.test"]
    assert first.startswith("agent 1001@hotline.test: the desk phone is registered as "
                            "1001@192.0.2.2, not @hotline.test, so mod_callcenter's "
                            "user/1001@hotline.test never reaches it.")
    assert "force-register-domain, force-register-db-domain, force-subscription-domain" in first
    assert "sip_profiles/internal.xml" in first


def test_phones_in_their_tenants_domain_and_unregistered_ones_are_fine(center):
    findings = registration_findings(center, parse_registrations(RIGHT))
    assert [(f.status, f.message) for f in findings] == [
        ("ok", "2 of 22 agent phones registered, each in its tenant's domain")]
    # one registration in the right domain is enough (a second phone elsewhere is not ours)
    both = registrations(("1001", "hotline.test"), ("1001", "192.0.2.2"))
    assert registration_findings(center, parse_registrations(both))[0].status == "ok"
    assert parse_registrations("-ERR no reply\n") == []


def test_a_numeric_site_wide_tod_tz_offset_is_a_warning():
    assert timezone_findings("8\n")[0].status == "warning"
    assert "wins over timezone" in timezone_findings("-5")[0].message
    assert timezone_findings("-ERR no reply\n")[0].status == "ok"


def run_doctor(peer: EslPeer, tmp_path: Path, *args: str):
    from cli import hotline

    settings = tmp_path / "settings.yaml"
    settings.write_text(f"freeswitch_conf_dir: {tmp_path / 'fs'}\n"
                        f"esl: {peer.host}:{peer.port}:{peer.password}\n"
                        f"config_dir: {REPO / 'config'}\n")
    return CliRunner().invoke(hotline, ["doctor", *args], env={
        "HOTLINE_SETTINGS": str(settings), "HOTLINE_ESL": None, "HOTLINE_CONFIG_DIR": None})


def test_doctor_on_a_stock_switch_lists_every_problem_and_exits_1(tmp_path):
    with EslPeer() as peer:
        switch(peer, FORCED, python3="false", tz="8")
        result = run_doctor(peer, tmp_path, "--json")
        commands = [c for c in peer.commands if c.startswith("api ")]
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["problems"] == 4
    assert result.stderr.strip() == "Error: 4 problem(s) found"
    rows = [(f["check"], f["status"]) for f in data["nodes"][0]["findings"]]
    assert rows == [("modules", "problem"), ("registrations", "problem"),
                    ("registrations", "problem"), ("registrations", "problem"),
                    ("timezone", "warning")]
    assert "mod_python3 is not loaded" in data["nodes"][0]["findings"][0]["message"]
    # read-only: nothing but queries went to the switch
    assert commands == ["api module_exists mod_callcenter", "api module_exists mod_python3",
                        "api module_exists mod_conference", "api show registrations as json",
                        "api global_getvar tod_tz_offset"]


def test_doctor_on_a_well_set_up_switch_says_ok(tmp_path):
    with EslPeer() as peer:
        switch(peer, RIGHT)
        result = run_doctor(peer, tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "node local: ok"
    assert "ok       registrations: 2 of 22 agent phones registered" in result.output


def test_doctor_cannot_reach_the_switch_says_so(tmp_path):
    with EslPeer() as peer:
        host, port = peer.host, peer.port
    from cli import hotline

    settings = tmp_path / "settings.yaml"
    settings.write_text(f"esl: {host}:{port}:ClueCon\nconfig_dir: {REPO / 'config'}\n")
    result = CliRunner().invoke(hotline, ["doctor"], env={
        "HOTLINE_SETTINGS": str(settings), "HOTLINE_ESL": None, "HOTLINE_CONFIG_DIR": None})
    assert result.exit_code == 1
    assert f"problem  connection: cannot connect to {host}:{port}" in result.output


def test_reload_warns_about_agents_registered_under_another_domain(center, tmp_path):
    with EslPeer() as peer:
        FakeCallcenter(peer, tmp_path / "fs")
        peer.script("api show registrations as json", FORCED)
        report = reload_center(center, settings_for(tmp_path / "fs", peer))
    assert report.ok, report.error
    warnings = report.nodes[0].warnings
    assert len(warnings) == 3
    assert any(w.startswith("agent 1001@hotline.test: the desk phone is registered as "
                            "1001@192.0.2.2") for w in warnings)
    text = format_report(report.to_dict())
    assert "  WARNING agent 1002@hotline.test: the desk phone is registered as 1002@192.0.2.2" \
        in text


def test_the_console_entry_point_exits_1_on_a_problem(tmp_path, monkeypatch, capsys):
    # the real entry point (cli:main runs click with standalone_mode=False), not CliRunner
    from daemon.cli import main

    with EslPeer() as peer:
        switch(peer, FORCED)
        settings = tmp_path / "settings.yaml"
        settings.write_text(f"esl: {peer.host}:{peer.port}:{peer.password}\n"
                            f"config_dir: {REPO / 'config'}\n")
        monkeypatch.setenv("HOTLINE_SETTINGS", str(settings))
        monkeypatch.delenv("HOTLINE_ESL", raising=False)
        monkeypatch.delenv("HOTLINE_CONFIG_DIR", raising=False)
        monkeypatch.setattr("sys.argv", ["hotline", "doctor", "--json"])
        with pytest.raises(SystemExit) as done:
            main()
    assert done.value.code == 1
    out = capsys.readouterr()
    assert json.loads(out.out)["problems"] == 3, out.out[-600:]
    assert out.err.strip() == "Error: 3 problem(s) found"
