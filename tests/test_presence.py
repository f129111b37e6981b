"""BLF lamps: PRESENCE_IN for agent+ID@domain through the ESL test peer."""
from __future__ import annotations

import pytest

from daemon.engine.records import LiveChange
from daemon.switch.esl import EslConnection
from daemon.switch.presence import PresencePublisher, presence_command
from tests.test_control import RecordingPeer


@pytest.fixture
def peer():
    with RecordingPeer() as p:
        p.script("sendevent", "+OK 0d5c1f4e-0000-4000-8000-000000000002")
        yield p


@pytest.fixture
def conn(peer):
    with EslConnection(peer.host, peer.port, peer.password) as c:
        yield c


def change(agent: str, **data) -> LiveChange:
    return LiveChange("agent", agent, tuple(data.items()), 1_800_000_000_000)


def test_status_changes_light_the_lamp_as_the_desk_phone_convention_says(peer, conn):
    pub = PresencePublisher({"n1": conn.command})
    pub.apply([change("1001@hotline.test", status="Available"),
               change("1002@hotline.test", status="On Break", reason="lunch"),
               change("1003@hotline.test", status="Logged Out")])
    events = peer.events_sent()
    assert [e["Event-Name"] for e in events] == ["PRESENCE_IN"] * 3
    assert [(e["from"], e["answer-state"]) for e in events] == [
        ("1001@hotline.test", "confirmed"), ("1002@hotline.test", "early"),
        ("1003@hotline.test", "terminated")]
    first = events[0]
    assert first["proto"] == "agent" and first["login"] == "1001@hotline.test"
    assert first["event_type"] == "presence" and first["alt_event_type"] == "dialog"
    assert first["Presence-Call-Direction"] == "outbound"
    assert pub.sent == 3 and pub.failed == 0


def test_state_changes_and_repeated_status_send_nothing(peer, conn):
    pub = PresencePublisher([conn.command])
    pub.apply([change("1001@hotline.test", status="Available"),
               change("1001@hotline.test", state="Receiving"),
               change("1001@hotline.test", status="Available", state="Waiting"),
               LiveChange("member", "billing@hotline.test", (("call_id", "c"),), 1)])
    assert len(peer.events_sent()) == 1


def test_unique_id_is_stable_per_agent_and_every_node_gets_the_lamp(peer, conn):
    with RecordingPeer() as peer2:
        peer2.script("sendevent", "+OK x")
        with EslConnection(peer2.host, peer2.port, peer2.password) as conn2:
            pub = PresencePublisher({"n1": conn.command, "n2": conn2.command})
            pub.apply([change("1001@hotline.test", status="Available")])
            pub.apply([change("1001@hotline.test", status="On Break")])
        assert len(peer2.events_sent()) == 2
    ids = {e["unique-id"] for e in peer.events_sent()}
    assert len(ids) == 1


def test_a_switch_refusing_the_event_is_logged_not_raised(peer, conn):
    peer.script("sendevent", "-ERR Invalid event")
    pub = PresencePublisher([conn.command])
    pub.apply([change("1001@hotline.test", status="Available")])
    assert pub.failed == 1 and pub.sent == 0


def test_publish_all_lights_every_lamp_of_a_snapshot(peer, conn):
    pub = PresencePublisher([conn.command])
    pub.publish_all({"1001@hotline.test": {"status": "Available"}, "1002@hotline.test": {}})
    assert [(e["from"], e["status"]) for e in peer.events_sent()] == [
        ("1001@hotline.test", "Available"), ("1002@hotline.test", "Logged Out")]


def test_presence_command_refuses_header_injection():
    with pytest.raises(ValueError):
        presence_command("1001@hotline.test\nEvent-Name: X", "Available")


def test_the_daemons_lamp_worker_never_waits_and_sends_only_the_newest_status(peer, conn):
    from daemon.switch.presence import PresenceWorker

    worker = PresenceWorker(PresencePublisher([conn.command]))
    # the event loop hands over three changes of one agent in a burst: no I/O happens here
    worker.apply([change("1001@hotline.test", status="Available")])
    worker.apply([change("1001@hotline.test", status="On Break", reason="lunch")])
    worker.apply([change("1001@hotline.test", status="Logged Out"),
                  change("1001@hotline.test", state="Idle")])
    assert worker.pending == 1 and peer.events_sent() == []
    worker.start()
    worker.close()  # sends what is pending, then stops
    assert [(e["from"], e["status"]) for e in peer.events_sent()] == [
        ("1001@hotline.test", "Logged Out")]


# --- a phone subscribes to a lamp: mod_sofia's PRESENCE_PROBE ------------------------------

def sofia_probe(to: str, proto: str = "agent") -> dict[str, str]:
    """The headers mod_sofia 1.10 gives the probe of a SUBSCRIBE to ``<proto>+<user>@<host>``
    (sofia_presence.c, sofia_presence_handle_sip_i_subscribe)."""
    return {"Event-Name": "PRESENCE_PROBE", "proto": proto, "login": "internal",
            "sip_profile": "internal", "from": "1003@hotline.test", "to": to,
            "proto-specific-event-name": "dialog", "expires": "3600",
            "event_type": "presence", "alt_event_type": "dialog", "sub-call-id": "abc@10.0.0.3"}


def test_probed_agent_reads_the_lamp_a_phone_subscribed_to():
    from daemon.switch.presence import probed_agent

    assert probed_agent("agent", "agent+1001@hotline.test") == "1001@hotline.test"
    assert probed_agent("sip", "1001@hotline.test") is None  # a plain BLF on an extension
    assert probed_agent("agent", "agent+@hotline.test") is None
    assert probed_agent("agent", "agent+1001") is None


def test_a_phone_subscribing_after_a_reboot_gets_the_agents_current_lamp(peer, conn):
    from daemon.switch.presence import PresenceWorker

    worker = PresenceWorker(PresencePublisher([conn.command]))
    worker.apply([change("1002@hotline.test", status="On Break", reason="lunch")])
    worker.start()
    try:
        from tests.test_daemon import wait_for

        wait_for(lambda: len(peer.events_sent()) == 1, what="the lamp")
        # the lamp was sent once; the phone reboots and subscribes again
        probe = sofia_probe("agent+1002@hotline.test")
        assert worker.probe(probe["proto"], probe["to"])
        # unknown agents and other lamps are left to mod_sofia
        assert not worker.probe("agent", "agent+9999@hotline.test")
        assert not worker.probe("sip", "1002@hotline.test")
    finally:
        worker.close()
    assert [(e["from"], e["answer-state"], e["status"]) for e in peer.events_sent()] == [
        ("1002@hotline.test", "early", "On Break"), ("1002@hotline.test", "early", "On Break")]


def test_the_daemon_answers_a_presence_probe_from_the_switch(peer):
    import gevent

    from daemon.switch.presence import PresenceWorker
    from tests.test_daemon import Recorder, make_service, node_of, wait_for

    with RecordingPeer() as lamps:
        lamps.script("sendevent", "+OK x")
        with EslConnection(lamps.host, lamps.port, lamps.password) as lamp_conn:
            worker = PresenceWorker(PresencePublisher([lamp_conn.command]))
            worker.publish_all({"1001@hotline.test": {"status": "Available"}})
            rec = Recorder()
            service = make_service([node_of(peer)], rec, presence=worker)
            runner = gevent.spawn(service.run)
            try:
                peer.wait_subscribed()
                assert "PRESENCE_PROBE" in peer.wait_subscribed().events
                wait_for(lambda: len(lamps.events_sent()) == 1, what="the snapshot lamp")
                peer.send_event(sofia_probe("agent+1001@hotline.test"))
                wait_for(lambda: len(lamps.events_sent()) == 2, what="the probe's answer")
            finally:
                service.stop()
                runner.join(5)
            answer = lamps.events_sent()[-1]
            assert (answer["from"], answer["answer-state"]) == ("1001@hotline.test", "confirmed")
