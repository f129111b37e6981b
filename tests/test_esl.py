"""The ESL connection (daemon/esl.py) against the test peer, or a real FreeSWITCH when
HOTLINE_TEST_ESL=host:port:password is set (then the tests that need the peer's
control plane skip). One test per greenswitch failure mode the daemon must survive."""
from __future__ import annotations

import logging
from pathlib import Path

import gevent
import gevent.event
import pytest

from daemon.switch.esl import EslAuthError, EslConnection, EslDisconnected, EslError, EslTimeout
from tests.eslpeer import EslPeer, capture_event_frames, event_frame, real_switch

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
REAL = real_switch()


@pytest.fixture
def peer():
    """The test peer (its control plane); skipped against a real switch."""
    if REAL:
        pytest.skip("needs the test peer's control plane")
    with EslPeer(password="s3cret-pw") as p:
        yield p


@pytest.fixture
def switch():
    """(host, port, password): the real switch if configured, else a fresh peer."""
    if REAL:
        yield REAL
        return
    with EslPeer(password="s3cret-pw") as p:
        yield p.host, p.port, p.password


def connect(peer: EslPeer, **kw) -> EslConnection:
    return EslConnection(peer.host, peer.port, peer.password, 2.0, **kw).connect()


def heartbeat(seq: int, **extra: object) -> dict[str, object]:
    return {"Event-Name": "HEARTBEAT", "Event-Sequence": seq,
            "Event-Date-Timestamp": 1795345944096762 + seq, **extra}


def wait_for(predicate, timeout: float = 5.0) -> None:
    with gevent.Timeout(timeout, AssertionError("condition not reached")):
        while not predicate():
            gevent.sleep(0.005)


# --- the protocol, against the peer or a real switch -----------------------------------

def test_connect_authenticate_and_run_api_status(switch):
    host, port, password = switch
    with EslConnection(host, port, password, 5.0) as conn:
        assert conn.connected
        assert "UP" in conn.api("status")


def test_bgapi_result_comes_back_matched_by_job_uuid(switch):
    host, port, password = switch
    with EslConnection(host, port, password, 5.0) as conn:
        conn.subscribe(["BACKGROUND_JOB"])
        assert "UP" in conn.bgapi("status", timeout=5.0)


def test_subscribe_and_filter_are_accepted(switch):
    host, port, password = switch
    with EslConnection(host, port, password, 5.0) as conn:
        assert conn.subscribe(["HEARTBEAT", "CUSTOM", "callcenter::info"]).startswith("+OK")
        assert conn.filter("Event-Name", "HEARTBEAT").startswith("+OK")
        assert conn.noevents().startswith("+OK")


def test_wrong_password_is_refused_and_never_logged(switch, caplog):
    host, port, _ = switch
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EslAuthError):
        EslConnection(host, port, "wrong-pw-123", 5.0).connect()
    assert "wrong-pw-123" not in caplog.text


# --- the peer's protocol and control plane ----------------------------------------------

def test_a_custom_event_sent_on_one_connection_reaches_a_subscriber_on_another(switch):
    """What an agent's break from the CLI relies on: ``sendevent`` fires hotline::agent on
    the switch, and the daemon's event link receives it, reason included."""
    from daemon.switch.control import fire_event

    host, port, password = switch
    got = []
    with EslConnection(host, port, password, 5.0, on_event=got.append) as listener, \
            EslConnection(host, port, password, 5.0) as sender:
        listener.subscribe(["CUSTOM", "hotline::agent"])
        fire_event(sender, "hotline::agent", {"Hotline-Agent": "1001@hotline.test",
                                              "Hotline-Action": "break",
                                              "Hotline-Reason": "lunch break"})
        wait_for(lambda: any(e.subclass == "hotline::agent" for e in got))
    (ev,) = [e for e in got if e.subclass == "hotline::agent"]
    assert (ev.get("Hotline-Agent"), ev.get("Hotline-Action"), ev.get("Hotline-Reason")) == (
        "1001@hotline.test", "break", "lunch break")
    assert ev.timestamp_us > 0  # stamped by the switch


def test_peer_records_commands_and_only_sends_subscribed_events(peer):
    got = []
    conn = connect(peer, on_event=got.append)
    conn.subscribe(["HEARTBEAT", "CUSTOM", "hotline::agent"])
    peer.send_event({"Event-Name": "CHANNEL_CREATE", "Unique-ID": "u1"})
    peer.send_event({"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info"})
    peer.send_event({"Event-Name": "CUSTOM", "Event-Subclass": "hotline::agent", "Hotline-Action": "login"})
    peer.send_event(heartbeat(1))
    wait_for(lambda: len(got) == 2)
    assert [e.name for e in got] == ["CUSTOM", "HEARTBEAT"]
    assert got[0].get("Hotline-Action") == "login"
    conn.close()
    assert peer.commands == ["auth s3cret-pw", "event plain HEARTBEAT CUSTOM hotline::agent", "exit"]


def test_filters_and_nixevent_narrow_what_the_peer_sends(peer):
    got = []
    conn = connect(peer, on_event=got.append)
    conn.subscribe(["ALL"])
    conn.filter("Event-Name", "API")
    peer.send_event(heartbeat(1))
    peer.send_event({"Event-Name": "API", "API-Command": "status"})
    wait_for(lambda: len(got) == 1)
    assert got[0].name == "API"
    conn.noevents()
    peer.send_event({"Event-Name": "API", "API-Command": "version"})
    conn.subscribe(["HEARTBEAT", "API"])
    conn.command("nixevent API")
    peer.send_event({"Event-Name": "API", "API-Command": "ignored"})
    conn.command("filter delete Event-Name")
    peer.send_event(heartbeat(2))
    wait_for(lambda: len(got) == 2)
    assert got[1].name == "HEARTBEAT"
    conn.close()


def test_scripted_api_replies_and_concurrent_bgapi_jobs_get_their_own_results(peer):
    peer.script("api callcenter_config agent list", "name|status\n1001@hotline.test|Available\n+OK\n")
    peer.script("bgapi echo", lambda line: line.split("\n")[0].split(" ", 2)[2])
    conn = connect(peer)
    conn.subscribe(["BACKGROUND_JOB"])
    assert conn.api("callcenter_config agent list").startswith("name|status")
    jobs = [gevent.spawn(conn.bgapi, f"echo job-{i}", 5.0) for i in range(5)]
    gevent.joinall(jobs, raise_error=True)
    assert [j.value for j in jobs] == [f"job-{i}" for i in range(5)]
    conn.close()


def test_a_capture_replayed_through_a_trickling_link_arrives_intact(peer):
    peer.trickle = 97  # the switch writes 97 bytes at a time
    got = []
    conn = connect(peer, on_frame=got.append)
    conn.subscribe(["ALL"])
    sent = peer.replay(CAPTURES / "agent_status.esl")
    wait_for(lambda: len(got) == sent)
    assert sent == 44
    assert [f.raw for f in got] == capture_event_frames(CAPTURES / "agent_status.esl")
    conn.close()


def test_refused_connection_raises_disconnected(peer):
    peer.refuse = True
    with pytest.raises(EslDisconnected):
        connect(peer)


def test_nothing_listening_raises_disconnected():
    with EslPeer() as p:
        port = p.port
    with pytest.raises(EslDisconnected):
        EslConnection("127.0.0.1", port, "x", 1.0).connect()


def test_a_late_reply_after_a_timeout_does_not_shift_later_replies(peer):
    def slow(line: str) -> str:
        gevent.sleep(0.3)
        return "late"

    peer.script("api slowcmd", slow)
    conn = connect(peer)
    with pytest.raises(EslTimeout):
        conn.api("slowcmd", timeout=0.05)
    assert "UP" in conn.api("status", timeout=5.0)
    conn.close()


# --- greenswitch failure mode 1: an exception in event handling --------------------------

def test_handler_exception_does_not_kill_reading_and_commands_keep_working(peer):
    seen = []

    def explode(event):
        seen.append(event.get("Event-Sequence"))
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    conn = connect(peer, on_event=explode)
    conn.greenswitch.register_handle("HEARTBEAT", lambda e: 1 / 0)  # greenswitch-style handler, also broken
    conn.subscribe(["HEARTBEAT"])
    for i in range(3):
        peer.send_event(heartbeat(i))
    wait_for(lambda: len(seen) == 3)
    assert seen == ["0", "1", "2"]
    assert conn.connected
    assert "UP" in conn.api("status")
    conn.close()


# --- failure mode 2: pending commands when the switch dies -------------------------------

def test_command_pending_when_the_switch_dies_is_released_with_an_error(peer):
    peer.script("api never", None)  # the switch will never answer this one
    conn = connect(peer)
    waiting = gevent.spawn(conn.api, "never", 600)
    peer.wait_command("api never")
    peer.disconnect()
    with gevent.Timeout(5, AssertionError("pending command still blocked")):
        waiting.join()
    assert isinstance(waiting.exception, EslDisconnected)
    with pytest.raises(EslDisconnected):
        conn.api("status", timeout=600)


def test_command_without_reply_times_out(peer):
    peer.script("api never", None)
    conn = connect(peer)
    with pytest.raises(EslTimeout):
        conn.api("never", timeout=0.05)
    conn.close()


# --- failure mode 3: reconnecting ------------------------------------------------------

def test_a_connection_is_single_use_and_a_fresh_one_reconnects(peer):
    first = connect(peer)
    peer.disconnect()
    assert first.wait_closed(5)
    with pytest.raises(EslError):
        first.connect()
    second = connect(peer)
    assert second is not first and second.connected
    assert "UP" in second.api("status")
    second.close()
    assert peer.accepted == 2


# --- failure mode 4: socket closed in the middle of an event body ------------------------

def test_socket_closed_mid_body_ends_the_connection_while_the_hub_stays_responsive(peer):
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0.001)

    conn = connect(peer)
    conn.subscribe(["ALL"])
    other = gevent.spawn(ticker)
    try:
        before = len(ticks)
        peer.disconnect(mid_frame=True)
        assert conn.wait_closed(5)
        gevent.sleep(0.02)
        assert len(ticks) > before  # other greenlets ran: nothing spins on the dead socket
        assert not conn.connected
        with pytest.raises(EslDisconnected):
            conn.api("status")
    finally:
        other.kill()


# --- failure mode 5: header injection through a caller-ID name ----------------------------

def test_caller_id_name_cannot_inject_a_callcenter_header(peer):
    got = []
    conn = connect(peer, on_event=got.append)
    conn.subscribe(["CUSTOM", "callcenter::info"])
    peer.send_event({
        "Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info",
        "CC-Member-CID-Name": "a\nCC-Action: member-queue-end", "CC-Action": "agent-offering",
    })
    # and the exact bytes an attacker would craft, as the switch encodes them
    peer.inject(event_frame({"Event-Name": "CHANNEL_CREATE"})[:-1]
                + b"Caller-Caller-ID-Name: a%0ACC-Action%3A%20member-queue-end\n\n")
    peer.send_event({"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info", "CC-Action": "last"})
    wait_for(lambda: len(got) == 3)
    assert got[0].get("CC-Action") == "agent-offering"
    assert got[0].get("CC-Member-CID-Name") == "a\nCC-Action: member-queue-end"
    assert got[2].get("CC-Action") == "last"
    conn.close()


# --- failure mode 6: catch-all handlers, root logger, sendall, stop() ------------------------

def test_catch_all_handlers_fire_for_every_event_even_when_a_specific_one_matched(peer):
    specific, catch_all = [], []
    conn = connect(peer)
    conn.greenswitch.register_handle("HEARTBEAT", specific.append)
    conn.greenswitch.register_handle("*", catch_all.append)
    conn.subscribe(["HEARTBEAT", "API"])
    peer.send_event(heartbeat(1))
    peer.send_event({"Event-Name": "API", "API-Command": "status"})
    wait_for(lambda: len(catch_all) == 2)
    assert len(specific) == 1
    assert [e.name for e in catch_all] == ["HEARTBEAT", "API"]
    conn.close()


def test_nothing_is_logged_on_the_root_logger(peer, caplog):
    caplog.set_level(logging.DEBUG)
    conn = connect(peer, on_event=lambda e: 1 / 0)
    conn.subscribe(["HEARTBEAT"])
    peer.send_event(heartbeat(1))
    peer.inject(b"garbage frame\n\n")
    wait_for(lambda: any("on_event" in r.getMessage() for r in caplog.records))
    peer.disconnect()
    conn.wait_closed(5)
    names = {r.name for r in caplog.records}
    assert names and all(n.startswith("daemon.") for n in names), names
    assert "s3cret-pw" not in caplog.text


def test_large_command_is_written_whole(peer):
    conn = connect(peer)
    arg = "x" * 3_000_000
    assert conn.api(f"echo {arg}", timeout=10).startswith("-ERR")
    assert len(peer.commands[-1]) == len("api echo ") + len(arg)
    conn.close()


def test_stop_returns_while_the_peer_keeps_the_socket_open(peer):
    peer.ignore_exit = True  # no +OK bye, no close: a wedged switch
    conn = connect(peer)
    with gevent.Timeout(10, AssertionError("close() hung")):
        conn.close(timeout=0.5)
    assert not conn.connected
    assert peer.live  # the peer never closed its side
    assert peer.commands[-1] == "exit"


def test_a_silent_link_is_declared_dead_after_the_idle_timeout(peer):
    conn = connect(peer, idle_timeout=0.05)  # the real daemon waits 65 s (3 missed HEARTBEATs)
    assert conn.wait_closed(5)
    with pytest.raises(EslDisconnected):
        conn.api("status")


def test_a_line_break_in_an_argument_cannot_smuggle_a_second_command(peer):
    conn = connect(peer)
    with pytest.raises(ValueError):
        conn.api("status\n\napi uuid_kill all")
    with pytest.raises(ValueError):
        conn.bgapi("originate x\nJob-UUID: y")
    assert "UP" in conn.api("status")
    conn.close()
    assert not any("uuid_kill" in c for c in peer.commands)


def test_a_slow_consumer_pushes_back_on_the_switch_instead_of_buffering_everything(peer):
    release = gevent.event.Event()
    got = []

    def slow(frames):
        release.wait()
        got.extend(frames)

    conn = connect(peer, on_frames=slow, max_backlog=2)
    conn.subscribe(["HEARTBEAT"])
    frames = [event_frame(heartbeat(i, **{"Event-Info": "x" * 4000})) for i in range(2000)]  # ~8 MB
    sender = gevent.spawn(peer.replay, frames)
    gevent.sleep(0.3)
    assert conn._esl._batches.qsize() <= 2  # bounded backlog in the daemon...
    assert not sender.ready()  # ...so the switch's writes wait (TCP backpressure)
    release.set()
    sender.join(10)
    wait_for(lambda: len(got) == 2000)
    assert [f.raw for f in got] == frames
    conn.close()


# --- frames a switch never sends: refused or timed out, never silently waited for -------

def test_a_16_mib_content_length_drops_the_link_instead_of_swallowing_the_stream(peer, caplog):
    got: list = []
    conn = connect(peer, on_frames=got.extend)
    conn.subscribe(["ALL"])
    link = peer.wait_subscribed()
    link.write(event_frame(heartbeat(1)))
    link.write(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % (16 * 1024 * 1024))
    link.send_events([event_frame(heartbeat(n)) for n in range(2, 48)])
    with caplog.at_level(logging.WARNING, logger="daemon.switch.esl"):
        assert conn.wait_closed(5), "the link is dropped (the supervisor reconnects)"
    assert len(got) == 1  # the event before it; the 46 behind it are not taken as a body
    assert conn.stats["oversized"] == 1
    assert any("frame refused" in r.getMessage() and "over the bound" in r.getMessage()
               for r in caplog.records)


def test_a_frame_that_stops_half_way_is_declared_stalled_and_the_link_dropped(peer, caplog):
    conn = connect(peer, frame_stall_timeout=0.3, idle_timeout=30)
    conn.subscribe(["ALL"])
    frame = event_frame(heartbeat(1, **{"Event-Info": "x" * 500}))
    peer.wait_subscribed().write(frame[:300])  # ... and nothing more, the socket stays open
    started = gevent.get_hub().loop.now()
    with caplog.at_level(logging.WARNING, logger="daemon.switch.esl"):
        assert conn.wait_closed(5)
    assert gevent.get_hub().loop.now() - started < 3
    assert conn.stats["stalled"] == 1
    assert any("frame stalled: 300 of" in r.getMessage() for r in caplog.records)


def test_a_steady_stream_of_frames_is_not_a_stall(peer):
    got: list = []
    conn = connect(peer, frame_stall_timeout=0.3, on_frames=got.extend)
    conn.subscribe(["ALL"])
    link = peer.wait_subscribed()
    frames = [event_frame(heartbeat(n)) for n in range(40)]
    data = b"".join(frames)
    for i in range(0, len(data), 97):  # every read ends inside a frame, for 2 s in all
        link.write(data[i:i + 97])
        gevent.sleep(2.0 / (len(data) / 97))
    wait_for(lambda: len(got) == 40)
    assert conn.connected and conn.stats["stalled"] == 0
    conn.close()
