"""Render ↔ fs_scripts contract on the example center: the rendered dialplan calls only
entry modules that exist, and the rendered data file drives the scripts."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from fs_double import FS_SCRIPTS, RecordingSession
from hotline_fs import agent, data

REPO = FS_SCRIPTS.parent


@pytest.fixture(scope="module")
def rendered():
    from daemon.config import load_center
    from daemon.render import render_files

    return render_files(load_center(REPO / "config"))


def python_calls(xml_text: str) -> list[str]:
    """Every module a rendered dialplan runs with mod_python3 (actions and execute_on_answer)."""
    root = ET.fromstring(xml_text)
    modules = []
    for action in root.iter("action"):
        app, value = action.get("application"), action.get("data") or ""
        if app == "python":
            modules.append(value.split()[0])
        elif app == "set" and value.startswith("execute_on_answer=python"):
            modules.append(value.split("=", 1)[1].split()[1])
    return modules


def test_rendered_dialplan_calls_only_existing_entry_modules(rendered):
    entry = {p.stem for p in FS_SCRIPTS.glob("hotline_*.py")}
    called = set()
    for path, text in rendered.items():
        if re.fullmatch(r"dialplan/[^/]+\.xml", path):
            called |= set(python_calls(text))
    assert called, "the example center renders no fs_scripts calls"
    assert called <= entry
    # every agent feature code of the example is wired
    assert {"hotline_login", "hotline_logout", "hotline_toggle", "hotline_break", "hotline_ready",
            "hotline_wrapup", "hotline_disposition", "hotline_supervise"} <= called


def test_rendered_data_file_logs_an_example_agent_in(rendered, tmp_path):
    path = tmp_path / "hotline_data.json"
    path.write_text(rendered["scripts/hotline_data.json"], encoding="utf-8")
    tenants = data.load(str(path))
    domain, tenant = sorted(tenants.items())[0]
    desk = sorted(tenant.agents.values(), key=lambda a: a.extension)[0]
    keys = [desk.pin] if desk.pin else []
    s = RecordingSession({"user_name": desk.extension, "hotline_tenant": domain,
                          "hotline_data": str(path)}, keys=keys)
    agent.login(s, "")
    name = f"{desk.id}@{domain}"
    assert s.events == [("hotline::agent", {"Hotline-Agent": name, "Hotline-Action": "login"})]
    assert s.commands[0] == f"callcenter_config agent set status {name} Available"
