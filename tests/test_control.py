"""Control commands through the ESL test peer (agent, queue status, supervise) and the DB
(recordings); with HOTLINE_TEST_ESL the read-only ones run against a real switch too."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.definition.config import load_center
from daemon.engine.records import LiveChange
from daemon.live.state import RedisLiveState
from daemon.switch.control import (
    ControlError,
    agent_action,
    agent_status,
    queue_status,
    recordings,
    supervise,
)
from daemon.switch.esl import EslConnection
from tests.eslpeer import EslPeer, PeerConnection, real_switch
from tests.test_reload_switch import FakeCallcenter

REPO = Path(__file__).resolve().parent.parent


class _RecordingConnection(PeerConnection):
    def handle(self, block: str) -> None:
        self.peer.blocks.append(block)
        super().handle(block)


class RecordingPeer(EslPeer):
    """The test peer, also keeping each command's header lines (``blocks``): sendevent
    carries its event in them, and the plain peer records first lines only."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.blocks: list[str] = []

    def _accept(self, sock, address) -> None:
        self.accepted += 1
        conn = _RecordingConnection(self, sock, address)
        self.connections.append(conn)
        self._connected.set()
        conn.serve()

    def events_sent(self) -> list[dict[str, str]]:
        out = []
        for block in self.blocks:
            first, _, rest = block.partition("\n")
            if first.startswith("sendevent"):
                headers = dict(line.split(": ", 1) for line in rest.split("\n") if ": " in line)
                headers["Event-Name"] = first.split(" ", 1)[1]
                out.append(headers)
        return out


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


@pytest.fixture
def peer():
    with RecordingPeer() as p:
        p.script("sendevent", "+OK 5b3c3c8e-0000-4000-8000-000000000001")
        yield p


@pytest.fixture
def fake(peer):
    fake = FakeCallcenter(peer)
    for name in ("1001@hotline.test", "1002@hotline.test", "2001@hotline.cityutil.cn"):
        fake._agent_add([name, "callback"])
    return fake


@pytest.fixture
def conn(peer):
    with EslConnection(peer.host, peer.port, peer.password) as c:
        yield c


def api_sent(peer) -> list[str]:
    return [c for c in peer.commands if c.startswith(("api ", "sendevent"))]


def test_agent_login_fires_the_event_then_sets_available_and_waiting(peer, fake, conn, center):
    data = agent_action(conn, center, "1001", "login")
    assert api_sent(peer) == [
        "api callcenter_config agent get status 1001@hotline.test",
        "sendevent CUSTOM",
        "api callcenter_config agent set status 1001@hotline.test Available",
        "api callcenter_config agent get state 1001@hotline.test",
        "api callcenter_config agent set state 1001@hotline.test Waiting",
    ]
    assert peer.events_sent() == [{"Event-Name": "CUSTOM", "Event-Subclass": "hotline::agent",
                                   "Hotline-Agent": "1001@hotline.test",
                                   "Hotline-Action": "login"}]
    assert (data["previous_status"], data["status"]) == ("Logged Out", "Available")
    assert fake.agents["1001@hotline.test"]["state"] == "Waiting"


def test_agent_break_with_reason_digit_sends_the_reason_name(peer, fake, conn, center):
    fake.agents["2001@hotline.cityutil.cn"]["status"] = "Available"
    data = agent_action(conn, center, "2001", "break", "1")
    assert data["reason"] == "lunch"
    assert peer.events_sent()[0]["Hotline-Reason"] == "lunch"
    assert api_sent(peer)[-1] == ("api callcenter_config agent set status "
                                  "2001@hotline.cityutil.cn 'On Break'")
    assert fake.agents["2001@hotline.cityutil.cn"]["status"] == "On Break"


def test_agent_break_refused_when_logged_out_or_reason_unknown(peer, fake, conn, center):
    with pytest.raises(ControlError, match="logged out"):
        agent_action(conn, center, "2001", "break", "lunch")
    fake.agents["2001@hotline.cityutil.cn"]["status"] = "Available"
    with pytest.raises(ControlError, match="no break reason 'nap'"):
        agent_action(conn, center, "2001", "break", "nap")
    assert not any(" set " in c for c in api_sent(peer))
    assert peer.events_sent() == []


def test_agent_ready_keeps_the_state_of_an_agent_on_a_call(peer, fake, conn, center):
    fake.agents["1002@hotline.test"].update(status="On Break", state="In a queue call")
    agent_action(conn, center, "1002@hotline.test", "ready")
    assert api_sent(peer)[-2:] == [
        "api callcenter_config agent set status 1002@hotline.test Available",
        "api callcenter_config agent get state 1002@hotline.test"]


def test_agent_logout_and_unknown_agent(peer, fake, conn, center):
    fake.agents["1001@hotline.test"]["status"] = "Available"
    assert agent_action(conn, center, "1001", "logout")["status"] == "Logged Out"
    assert api_sent(peer)[-1] == ("api callcenter_config agent set status "
                                  "1001@hotline.test 'Logged Out'")
    with pytest.raises(ControlError, match="no agent 4242"):
        agent_action(conn, center, "4242", "logout")


def test_agent_status_lists_status_state_and_queues(peer, fake, conn, center):
    fake.agents["1001@hotline.test"].update(status="Available", state="Waiting")
    fake.xml_queues = {"billing@hotline.test": {}}
    fake._queue_load(["billing@hotline.test"])
    fake._tier_add(["billing@hotline.test", "1001@hotline.test", "1", "1"])
    rows = agent_status(conn, center, "1001")
    assert rows == [{"agent": "1001@hotline.test", "on_switch": True, "status": "Available",
                     "state": "Waiting", "queues": ["billing@hotline.test"]}]
    everyone = {r["agent"]: r for r in agent_status(conn, center)}
    assert everyone["1003@hotline.test"]["on_switch"] is False


def test_queue_status_from_the_switch_shows_waits_and_agents_by_state(peer, fake, conn, center):
    fake.xml_queues = {"billing@hotline.test": {}}
    fake._queue_load(["billing@hotline.test"])
    for a in ("1001@hotline.test", "1002@hotline.test"):
        fake._tier_add(["billing@hotline.test", a, "1", "1"])
    fake.agents["1001@hotline.test"].update(status="Available", state="In a queue call")
    fake.agents["1002@hotline.test"].update(status="On Break")
    fake.add_member("billing@hotline.test", "call-a", 1_800_000_000, number="13800000001")
    fake.add_member("billing@hotline.test", "call-b", 1_800_000_030, number="13800000002")
    fake.add_member("billing@hotline.test", "call-c", 1_800_000_010, state="Answered",
                    agent="1001@hotline.test")
    data = queue_status(center, "billing@hotline.test", conn=conn, now_ms=1_800_000_100_000)
    q = data["queues"]["billing@hotline.test"]
    assert [(w["call_id"], w["wait_s"]) for w in q["waiting"]] == [("call-a", 100), ("call-b", 70)]
    assert q["longest_wait_s"] == 100 and q["count"] == 2
    assert q["agents"] == {"on a call": ["1001@hotline.test"], "on break": ["1002@hotline.test"]}


def test_queue_status_from_redis_live_state(redis_url, center):
    live = RedisLiveState(redis_url)
    live.apply([
        LiveChange("agent", "1003@hotline.test",
                   (("status", "Available"), ("state", "Waiting")), 1),
        LiveChange("agent", "1004@hotline.test", (("status", "Logged Out"),), 1),
        LiveChange("member", "sales@hotline.test", (("call_id", "c1"), ("caller", "139"),
                                                    ("joined_ms", 1_000), ("action", "join")), 1),
    ])
    live.close()
    data = queue_status(center, "sales", redis_url=redis_url, now_ms=61_000)
    q = data["queues"]["sales@hotline.test"]
    assert data["source"] == "redis"
    assert q["waiting"] == [{"call_id": "c1", "caller": "139", "joined_ms": 1000, "wait_s": 60}]
    assert q["agents"] == {"logged out": ["1004@hotline.test"]}
    billing = queue_status(center, "billing@hotline.test", redis_url=redis_url, now_ms=61_000)
    assert "1003@hotline.test" in billing["queues"]["billing@hotline.test"]["agents"]["available"]


def test_supervise_whisper_originates_the_supervisor_into_eavesdrop(peer, fake, conn, center):
    fake.agents["1001@hotline.test"]["uuid"] = "agent-leg-1"
    peer.script("api uuid_exists agent-leg-1", "true")
    peer.script("api originate", "+OK sup-leg-9\n")
    data = supervise(conn, center, "whisper", "1001", "2000")
    cmd = api_sent(peer)[-1]
    assert cmd.startswith("api originate {")
    assert cmd.endswith("}user/2000@hotline.test &eavesdrop(agent-leg-1)")
    # the agent hears the supervisor: the write side of the agent's leg (whisper_bleg)
    assert "eavesdrop_whisper_aleg=false" in cmd and "eavesdrop_whisper_bleg=true" in cmd
    assert data["supervisor_leg"] == "sup-leg-9"


def test_supervise_barge_whispers_to_both_and_refuses_agent_without_call(peer, fake, conn, center):
    with pytest.raises(ControlError, match="not on a call"):
        supervise(conn, center, "barge", "1002", "2000")
    fake.agents["1002@hotline.test"]["uuid"] = "leg-2"
    peer.script("api uuid_exists leg-2", "true")
    peer.script("api originate", "+OK s\n")
    supervise(conn, center, "barge", "1002", "2000")
    cmd = api_sent(peer)[-1]
    assert "eavesdrop_whisper_aleg=true" in cmd and "eavesdrop_whisper_bleg=true" in cmd


def test_supervise_an_idle_agent_says_not_on_a_call_instead_of_no_reply(peer, fake, conn, center):
    # a real switch: "agent get uuid" of an idle agent is empty, which the event socket
    # answers with "-ERR no reply"
    peer.script("api callcenter_config agent get uuid 1003@hotline.test", "-ERR no reply\n")
    with pytest.raises(ControlError) as err:
        supervise(conn, center, "listen", "1003", "2000")
    assert str(err.value) == "1003@hotline.test is not on a call"
    assert not any(c.startswith("api originate") for c in api_sent(peer))


def test_recordings_lists_talk_segments_with_stored_or_expected_paths(empty_db_url, center):
    from sqlalchemy import create_engine

    from daemon.storage.schema import segments
    from daemon.storage.store import migrate

    migrate(empty_db_url)
    engine = create_engine(empty_db_url)
    base = {"tenant": "cityutil", "node": "n1", "kind": "talk", "caller": "1", "dialed": "2",
            "queue": None, "agent": None, "recording": None}
    with engine.begin() as c:
        c.execute(segments.insert(), [
            dict(base, segment_id="c1:talk:0", call_id="c1", started_ms=1_700_000_000_000,
                 queue="billing@hotline.cityutil.cn", agent="2001@hotline.cityutil.cn",
                 recording="/rec/c1.wav"),
            dict(base, segment_id="c2:talk:0", call_id="c2", started_ms=1_700_000_100_000,
                 queue="outage_water@hotline.cityutil.cn", agent="2002@hotline.cityutil.cn"),
            dict(base, segment_id="c3:talk:0", call_id="c3", started_ms=1_700_000_200_000,
                 queue="sales@hotline.test", agent="1004@hotline.test"),
            dict(base, segment_id="c1:ring:0", call_id="c1", kind="ring", started_ms=1),
        ])
    engine.dispose()
    rows = recordings(empty_db_url, center=center)
    assert [(r["call_id"], r["recording"], r["derived"]) for r in rows] == [
        ("c1", "/rec/c1.wav", False),
        ("c2", "$${recordings_dir}/hotline/hotline.cityutil.cn/2023-11-14/c2.wav", True)]
    assert [r["call_id"] for r in recordings(empty_db_url)] == ["c1"]
    one = recordings(empty_db_url, "c3", center)
    assert one[0]["recording"] is None  # sales does not record


def test_cli_agent_login_json_and_unknown_node(peer, fake, monkeypatch):
    from cli import hotline

    env = {"HOTLINE_ESL": f"{peer.host}:{peer.port}:{peer.password}",
           "HOTLINE_CONFIG_DIR": str(REPO / "config"), "HOTLINE_SETTINGS": ""}
    runner = CliRunner()
    result = runner.invoke(hotline, ["agent", "login", "1001", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "Available"
    result = runner.invoke(hotline, ["agent", "status", "1001"], env=env)
    assert result.exit_code == 0 and "Available / Waiting" in result.output
    result = runner.invoke(hotline, ["agent", "logout", "1001", "--node", "nope"], env=env)
    assert result.exit_code == 1 and "no ESL node named 'nope'" in result.output


def test_cli_reload_dry_run_json(peer, tmp_path):
    from cli import hotline

    fake = FakeCallcenter(peer, tmp_path / "fs")
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"freeswitch_conf_dir: {tmp_path / 'fs'}\n"
                        f"freeswitch_script_dir: {tmp_path / 'fs-scripts'}\n"
                        f"esl: {peer.host}:{peer.port}:{peer.password}\n"
                        f"config_dir: {REPO / 'config'}\n")
    result = CliRunner().invoke(hotline, ["reload", "--dry-run", "--json"],
                                env={"HOTLINE_SETTINGS": str(settings), "HOTLINE_ESL": None,
                                     "HOTLINE_CONFIG_DIR": None})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dry_run"] and data["nodes"][0]["node"] == "local"
    assert "callcenter_config queue load billing@hotline.test" in data["nodes"][0]["commands"]
    assert not (tmp_path / "fs").exists() and not (tmp_path / "fs-scripts").exists()
    assert fake.reloads == 0


# --- a real switch (HOTLINE_TEST_ESL=host:port:password) -----------------------------------

needs_switch = pytest.mark.skipif(real_switch() is None, reason="HOTLINE_TEST_ESL is not set")


@needs_switch
def test_real_switch_agent_and_queue_status_read(center):
    host, port, password = real_switch()
    with EslConnection(host, port, password) as c:
        rows = agent_status(c, center)
        data = queue_status(center, conn=c)
    # the recording switch of the captures runs hotline.test's agents
    assert any(r["on_switch"] and r["status"] for r in rows)
    assert data["source"] == "switch"
    assert all(q["count"] == len(q["waiting"]) for q in data["queues"].values())



def test_node_connections_reuse_a_live_connection_and_reopen_a_dropped_one():
    from daemon.definition.model import EslNode
    from daemon.switch.control import NodeConnections

    with EslPeer() as p:
        conns = NodeConnections([EslNode("n1", p.host, p.port, p.password)])
        first = conns("")
        assert conns("n1") is first and p.accepted == 1
        p.disconnect()
        assert first.wait_closed(5)
        assert conns.sender("n1")("api status").data.startswith("UP") and p.accepted == 2
        with pytest.raises(ControlError, match="no ESL node named 'n9'"):
            conns("n9")
        conns.close()


def test_cli_agent_break_refuses_a_reason_the_tenant_does_not_have(peer, fake):
    from cli import hotline

    env = {"HOTLINE_ESL": f"{peer.host}:{peer.port}:{peer.password}",
           "HOTLINE_CONFIG_DIR": str(REPO / "config"), "HOTLINE_SETTINGS": ""}
    for name in ("1001@hotline.test", "2001@hotline.cityutil.cn"):
        fake.agents[name]["status"] = "Available"
    runner = CliRunner()
    # cityutil lists its reasons; the demo tenant hotline.test defines none at all
    result = runner.invoke(hotline, ["agent", "break", "2001", "nap"], env=env)
    assert result.exit_code == 1, result.output
    assert "no break reason 'nap'" in result.output
    assert "1=lunch, 2=training, 3=meeting, 4=restroom" in result.output
    result = runner.invoke(hotline, ["agent", "break", "1001", "nap"], env=env)
    assert result.exit_code == 1, result.output
    assert "defines no break reasons" in result.output and "Traceback" not in result.output
    assert peer.events_sent() == [] and not any(" set " in c for c in api_sent(peer))
    assert fake.agents["1001@hotline.test"]["status"] == "Available"
    # without a reason, and with one the tenant has, the break goes through
    assert runner.invoke(hotline, ["agent", "break", "1001"], env=env).exit_code == 0
    result = runner.invoke(hotline, ["agent", "break", "2001", "training"], env=env)
    assert result.exit_code == 0 and "(training)" in result.output, result.output
