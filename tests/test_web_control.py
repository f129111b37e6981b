"""Agent actions from the console: the CLI's control code, supervisors only, CSRF, audited.

The switch is the recording ESL test peer with its fake mod_callcenter; the console is
a real server on 127.0.0.1 with two logins: a supervisor of tenant demo and a viewer.
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from daemon.definition.config import load_center
from daemon.definition.model import EslNode, WebUser
from daemon.live.http_api import HttpApi
from daemon.live.state import MemoryLiveState
from daemon.live.web.auth import hash_secret
from daemon.switch.control import NodeConnections
from tests.test_control import RecordingPeer, api_sent
from tests.test_reload_switch import FakeCallcenter
from tests.test_web_security import call

REPO = Path(__file__).resolve().parent.parent
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


@pytest.fixture
def peer():
    with RecordingPeer() as p:
        p.script("sendevent", "+OK 5b3c3c8e-0000-4000-8000-000000000001")
        yield p


@pytest.fixture
def console(peer, center, tmp_path):
    fake = FakeCallcenter(peer)
    for name in ("1001@hotline.test", "1002@hotline.test", "2001@hotline.cityutil.cn"):
        fake._agent_add([name, "callback"])
    conns = NodeConnections((EslNode("n1", peer.host, peer.port, peer.password),))
    users = (WebUser("wang", hash_secret("supervisor-pw"), "supervisor", "demo"),
             WebUser("client", hash_secret("viewer-pw"), "viewer", "demo"))
    api = HttpApi("127.0.0.1:0", MemoryLiveState().snapshot, center, users=users,
                  control=conns, audit_path=str(tmp_path / "audit.jsonl")).start()
    try:
        yield api, fake, tmp_path / "audit.jsonl"
    finally:
        api.stop()
        conns.close()


def login(api, user, secret) -> tuple[str, str]:
    status, headers, _ = call(api, "/login", "POST", FORM, f"user={user}&secret={secret}")
    assert status == 302
    cookie = headers["Set-Cookie"].split(";")[0]
    sid = cookie.split("=", 1)[1]
    return cookie, api.auth.sessions[sid].csrf


def post(api, path, cookie, **form):
    return call(api, path, "POST", {**FORM, "Cookie": cookie}, urllib.parse.urlencode(form))


def test_a_supervisor_puts_an_agent_on_break_through_the_cli_code_and_it_is_audited(
        console, peer):
    api, fake, audit = console
    fake.agents["1001@hotline.test"]["status"] = "Available"
    cookie, csrf = login(api, "wang", "supervisor-pw")
    _, _, page = call(api, "/wallboard", headers={"Cookie": cookie})
    assert f'content="{csrf}"'.encode() in page and b'name="hotline-control" content="yes"' in page
    status, _, body = post(api, "/agents/1001@hotline.test/break", cookie, csrf=csrf)
    data = json.loads(body)
    assert status == 200, data
    assert (data["previous_status"], data["status"]) == ("Available", "On Break")
    assert api_sent(peer)[-1] == ("api callcenter_config agent set status "
                                  "1001@hotline.test 'On Break'")
    assert peer.events_sent()[0]["Hotline-Action"] == "break"  # as `hotline agent break`
    [entry] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (entry["user"], entry["role"], entry["action"], entry["target"]) == (
        "wang", "supervisor", "agent break", "1001@hotline.test")
    assert entry["outcome"] == "ok: Available -> On Break" and entry["at"].endswith("+00:00")


def test_refused_writes_change_nothing_on_the_switch(console, peer):
    api, fake, audit = console
    fake.agents["1001@hotline.test"]["status"] = "Available"
    cookie, csrf = login(api, "wang", "supervisor-pw")
    viewer, viewer_csrf = login(api, "client", "viewer-pw")
    cases = [
        (post(api, "/agents/1001@hotline.test/break", cookie), 403),  # no CSRF token
        (post(api, "/agents/1001@hotline.test/break", cookie, csrf="forged"), 403),
        (post(api, "/agents/1001@hotline.test/break", viewer, csrf=viewer_csrf), 403),  # role
        (post(api, "/agents/2001@hotline.cityutil.cn/logout", cookie, csrf=csrf), 404),  # tenant
        (post(api, "/agents/1001@hotline.test/explode", cookie, csrf=csrf), 404),
        (call(api, "/agents/1001@hotline.test/break", "POST", FORM, f"csrf={csrf}"), 401),
    ]
    assert [(c[0][0], c[1]) for c in cases] == [(c[1], c[1]) for c in cases]
    assert not any(" set " in c for c in api_sent(peer)) and peer.events_sent() == []
    # a refusal by the control code itself (logged out agent) is audited too
    fake.agents["1002@hotline.test"]["status"] = "Logged Out"
    status, _, body = post(api, "/agents/1002@hotline.test/ready", cookie, csrf=csrf)
    assert status == 409 and "log in first" in json.loads(body)["error"]
    [entry] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert entry["outcome"].startswith("refused: ") and entry["target"] == "1002@hotline.test"


def test_a_viewer_sees_no_action_buttons(console):
    api, _, _ = console
    cookie, _ = login(api, "client", "viewer-pw")
    _, _, page = call(api, "/wallboard", headers={"Cookie": cookie})
    assert b'name="hotline-control" content="no"' in page
