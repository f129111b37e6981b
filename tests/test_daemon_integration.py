"""The daemon as `hotline daemon` builds it (``build_service``): callback dialer and BLF
lamps wired in, spill next to the journal, a journal that replays to the daemon's own rows.

Everything runs against the ESL test peer with the real store (SQLite), the real Redis
and the real engine; the peer records every command the daemon's command connections send.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import gevent
import pytest
import redis
from sqlalchemy import create_engine, select

from daemon.definition.config import load_center
from daemon.definition.model import EslNode, Settings
from daemon.service import Service, build_service
from daemon.storage import schema
from daemon.storage.replay import replay
from daemon.switch.dialer import PREFIX as CALLBACK_PREFIX
from tests.eslpeer import capture_event_frames, real_switch
from tests.test_control import RecordingPeer
from tests.test_daemon import AGENT_LIST, wait_for

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
AGENT = "1001@hotline.test"

if real_switch():
    pytest.skip("drives the test peer's control plane", allow_module_level=True)


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


@pytest.fixture
def peer():
    with RecordingPeer(password="node-pw") as p:
        p.script("sendevent", "+OK 5b3c3c8e-0000-4000-8000-000000000001")
        yield p


def settings_for(peer: RecordingPeer, tmp_path: Path, redis_url: str | None = None,
                 node: str = "n1") -> Settings:
    return Settings(esl_nodes=(EslNode(node, peer.host, peer.port, peer.password),),
                    database_url=f"sqlite:///{tmp_path / 'hotline.db'}", redis_url=redis_url,
                    journal_dir=str(tmp_path / "journal"), config_dir=str(tmp_path / "none"))


@contextlib.contextmanager
def running(service: Service):
    runner = gevent.spawn(service.run)
    try:
        yield runner
    finally:
        service.stop()
        runner.join(15)
    assert runner.successful(), runner.exception


def status_change(agent: str, status: str, seq: int) -> dict[str, object]:
    return {"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info",
            "CC-Action": "agent-status-change", "CC-Agent": agent, "CC-Agent-Status": status,
            "Event-Sequence": seq, "Event-Date-Timestamp": 1_795_345_944_000_000 + seq}


def lamps(peer: RecordingPeer) -> list[tuple[str, str]]:
    return [(e["from"], e["answer-state"]) for e in peer.events_sent()
            if e["Event-Name"] == "PRESENCE_IN"]


# --- BLF lamps ----------------------------------------------------------------------------------

def test_an_agent_going_on_break_blinks_the_lamp_through_a_command_connection(peer, tmp_path):
    service = build_service(settings_for(peer, tmp_path))
    with running(service):
        peer.wait_subscribed()
        peer.send_event(status_change(AGENT, "Available", 1))
        wait_for(lambda: len(lamps(peer)) == 1, what="first PRESENCE_IN")
        peer.send_event(status_change(AGENT, "On Break", 2))
        wait_for(lambda: len(lamps(peer)) == 2, what="second PRESENCE_IN")
    assert lamps(peer) == [(AGENT, "confirmed"), (AGENT, "early")]
    # sent on a connection of its own (auth, then sendevent), never on the event link
    lamp_conns = [c for c in peer.connections if not (c.events or c.all_events)]
    assert lamp_conns, "a separate command connection"
    assert service.presence.publisher.sent == 2  # type: ignore[union-attr]


def test_after_connecting_every_agent_the_switch_reports_gets_its_lamp(peer, tmp_path):
    peer.script("api callcenter_config agent list", AGENT_LIST)  # 1001 Available, Waiting
    service = build_service(settings_for(peer, tmp_path))
    with running(service):
        wait_for(lambda: lamps(peer), what="lamps after the rebuild")
    assert lamps(peer) == [(AGENT, "confirmed")]


# --- the callback dialer ------------------------------------------------------------------------

def callback_request(call_id: str) -> dict[str, object]:
    return {"Event-Name": "CUSTOM", "Event-Subclass": "hotline::callback",
            "Event-Date-Timestamp": 1_795_345_990_000_000, "Unique-ID": call_id,
            "Hotline-Action": "request", "Hotline-Call-ID": call_id,
            "Hotline-Queue": "billing@hotline.test", "Hotline-Number": "13900000001",
            "Hotline-Joined-MS": "1795345960000"}


def test_a_callback_request_from_the_switch_is_claimed_and_dialed_by_the_daemon(
        peer, tmp_path, redis_url, center):
    peer.script("api callcenter_config agent list", AGENT_LIST)  # 1001 free on the switch
    peer.script("api callcenter_config agent get state", "Waiting\n")
    peer.script("api originate", lambda line: "+OK agent-leg-1\n" if "}user/" in line
                else "+OK customer-leg-2\n")
    peer.script("api uuid_bridge", "+OK\n")
    service = build_service(settings_for(peer, tmp_path, redis_url), center)
    service.dialer_interval_s = 0.05
    assert service.dialer is not None
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"{CALLBACK_PREFIX}:req:call-cb-1"
    try:
        with running(service):
            peer.wait_subscribed()
            wait_for(lambda: client.get(f"{CALLBACK_PREFIX}:lock") == service.dialer.owner,
                     what="the dialer holds the lock")
            peer.send_event(callback_request("call-cb-1"))
            wait_for(lambda: client.hget(key, "status") == "connected", timeout=10,
                     what="request dialed")
        request = client.hgetall(key)
        lock_after_stop = client.get(f"{CALLBACK_PREFIX}:lock")
    finally:
        client.close()
    assert request["owner"] == service.dialer.owner and request["agent"] == AGENT
    originates = [c for c in peer.commands if c.startswith("api originate")]
    assert len(originates) == 2
    assert originates[0].endswith("}user/1001@hotline.test &park()")
    assert "api uuid_bridge agent-leg-1 customer-leg-2" in peer.commands
    results = [e for e in peer.events_sent() if e.get("Event-Subclass") == "hotline::callback"]
    assert [e["Hotline-Outcome"] for e in results] == ["connected"]
    assert lock_after_stop is None  # SIGTERM: the dialer stopped and gave the lock back


def test_without_redis_callback_requests_are_kept_in_the_database_for_the_dialer(
        peer, tmp_path, center):
    service = build_service(settings_for(peer, tmp_path), center)
    with running(service):
        peer.wait_subscribed()
        peer.send_event(callback_request("call-cb-2"))
        wait_for(lambda: service.events >= 1, what="event processed")
        wait_for(lambda: service.dialer.store.get("call-cb-2") is not None,
                 what="request stored")
    assert service.dialer.store.get("call-cb-2").status == "pending"  # no agent free: waits
    assert not [c for c in peer.commands if c.startswith("api originate")]


# --- storage ------------------------------------------------------------------------------------

def test_records_the_database_cannot_take_spill_next_to_the_journal_not_in_tmp(peer, tmp_path):
    service = build_service(settings_for(peer, tmp_path))
    try:
        assert service.store.spill_dir == tmp_path / "journal" / "spill"  # type: ignore[attr-defined]
    finally:
        service.store.close()  # type: ignore[attr-defined]


def dump(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: [tuple(r) for r in conn.execute(
                select(t).order_by(*t.primary_key.columns))]
                for t in (schema.calls, schema.segments, schema.agent_intervals)}
    finally:
        engine.dispose()


def test_a_daemon_journal_replays_to_the_daemons_own_rows_node_included(peer, tmp_path, center):
    settings = settings_for(peer, tmp_path, node="local")  # the default node name
    service = build_service(settings, center)
    frames = capture_event_frames(CAPTURES / "sip_agent.esl")
    with running(service):
        peer.wait_subscribed()
        sent = peer.replay(frames)
        wait_for(lambda: service.events == sent, what="every event processed")
    journal = sorted((tmp_path / "journal").glob("local-*.esl"))
    assert journal, "journal files named after the node"
    daemon_rows = dump(settings.database_url)
    assert daemon_rows["calls"] and {r.node for r in _calls(settings.database_url)} == {"local"}

    replayed = f"sqlite:///{tmp_path / 'replayed.db'}"
    replay(journal, replayed, center)
    assert dump(replayed) == daemon_rows


def _calls(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(schema.calls)))
    finally:
        engine.dispose()
