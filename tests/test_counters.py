"""The daemon's counters and its one-line summary: a quiet log is not a dead daemon."""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import gevent
import pytest

from daemon.definition.config import load_center
from daemon.live.counters import Counters, NodeCounters, rates, summary_line
from daemon.service import build_service
from tests.eslpeer import EslPeer, capture_event_frames, real_switch
from tests.test_daemon_integration import running, settings_for

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"


def sample(at: float, events: dict[str, int], **kw) -> Counters:
    base = {"events": sum(events.values()), "engine_errors": 0, "journal_errors": 0,
            "calls_in_flight": 0, "writer_pending": 0, "writer_lag_s": 0.0, "spill_files": 0,
            "database_ok": True, "database_error": None, "journal_bytes": 0,
            "journal_disk_bytes": 0, "redis_connected": None}
    base.update(kw)
    nodes = tuple(NodeCounters(n, True, e, 1, 0, 0) for n, e in events.items())
    return Counters(at=at, nodes=nodes, **base)


def test_events_per_second_come_from_two_samples_per_node():
    before = sample(100.0, {"fs1": 1000, "fs2": 10})
    after = sample(110.0, {"fs1": 1500, "fs2": 10})
    assert rates(before, after) == {"fs1": 50.0, "fs2": 0.0}
    line = summary_line(before, after)
    assert line.startswith("summary nodes=fs1:up:50.0/s,fs2:up:0.0/s events=1510 ")


def test_a_refusing_database_and_a_lagging_writer_show_in_the_line():
    line = summary_line(None, sample(1.0, {"fs1": 3}, database_ok=False,
                                     database_error="the database does not exist",
                                     writer_pending=420, writer_lag_s=75.25,
                                     journal_bytes=52 * 1024 * 1024, redis_connected=False))
    assert "db=refused" in line and "writer_pending=420" in line and "writer_lag_s=75.2" in line
    assert "journal_bytes=52.0MB" in line and "redis=down" in line


@pytest.mark.skipif(real_switch() is not None, reason="drives the test peer's control plane")
def test_the_daemon_logs_a_summary_every_interval_with_events_per_node_and_calls_up(
        tmp_path, caplog):
    frames = capture_event_frames(CAPTURES / "answered_ivr.esl")
    half = len(frames) // 2  # the call is up in the middle of the capture
    with EslPeer(password="pw") as peer:
        settings = dataclasses.replace(settings_for(peer, tmp_path), summary_interval_s=0.3,
                                       http_listen="")
        service = build_service(settings, load_center(REPO / "config"))
        with caplog.at_level(logging.INFO, logger="daemon.live.counters"), running(service):
            peer.wait_subscribed()
            sent = peer.replay(frames[:half])  # the subscribed ones
            with gevent.Timeout(15, AssertionError("no summary after the events")):
                while len([r for r in caplog.records  # two: it goes on every interval
                           if f"events={sent} " in r.getMessage()]) < 2:
                    gevent.sleep(0.05)
            counters = service.counters()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("summary ")]
    assert len(lines) >= 2, lines
    rated = [float(m[1]) for line in lines if (m := re.search(r"nodes=n1:up:([0-9.]+)/s", line))]
    assert rated and max(rated) > 0 and rated[-1] == 0, lines  # the burst, then quiet
    assert counters.calls_in_flight == 1 and counters.nodes[0].events == sent
    assert counters.journal_bytes > 0 and counters.journal_disk_bytes >= counters.journal_bytes
    assert "calls_in_flight=1 " in lines[-1] and "db=ok" in lines[-1]


@pytest.mark.skipif(real_switch() is not None, reason="drives the test peer's control plane")
def test_a_refused_frame_reconnects_the_node_and_is_counted():
    from daemon.definition.model import EslNode
    from daemon.switch.supervisor import Supervisor

    got: list = []
    with EslPeer(password="pw") as peer:
        sup = Supervisor(EslNode("n1", peer.host, peer.port, "pw"),
                         lambda node, frames: got.extend(frames),
                         backoff_initial=0.01, backoff_max=0.05).start()
        try:
            peer.wait_subscribed().write(b"Content-Length: 16777216\n"
                                         b"Content-Type: text/event-plain\n\n")
            with gevent.Timeout(10, AssertionError("no reconnect")):
                while sup.sessions < 2 or not sup.up.is_set():
                    gevent.sleep(0.02)
            peer.send_event({"Event-Name": "HEARTBEAT", "Event-Sequence": 1})
            with gevent.Timeout(5, AssertionError("no event after the reconnect")):
                while not got:
                    gevent.sleep(0.02)
        finally:
            sup.stop()
    assert sup.oversized_frames == 1 and sup.stalled_frames == 0
    assert sup.events_received == 1
