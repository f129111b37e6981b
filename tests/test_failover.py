"""Two daemons for the same switch; the leader is SIGKILLed mid-stream.

Real processes (``hotline daemon``), the ESL test peer, PostgreSQL and Redis. The
standby takes the lease within 5 s, writes the records the dead leader may not have
committed, and goes on; the database ends up equal, row for row, to a clean replay of
the stream; the roll-up job ran only in the daemon that was leader at the time.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest
import redis

from daemon.definition.config import load_center
from daemon.leader import LEASE_KEY
from daemon.storage.replay import replay
from tests.eslpeer import EslPeer, capture_event_frames, real_switch
from tests.test_daemon_cli import subscribed, wait_for
from tests.test_daemon_integration import dump

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
PASSWORD = "pw-failover"

if real_switch():
    pytest.skip("drives the peer's control plane", allow_module_level=True)


def start(tmp_path: Path, name: str, port: int, db_url: str, redis_url: str
          ) -> tuple[subprocess.Popen, Path]:
    home = tmp_path / name
    home.mkdir()
    settings = home / "settings.yaml"
    settings.write_text(
        "settings:\n"
        f"  esl: \"vm=127.0.0.1:{port}:{PASSWORD}\"\n"
        f"  database_url: \"{db_url}\"\n"
        f"  redis_url: \"{redis_url}\"\n"
        f"  journal_dir: \"{home / 'journal'}\"\n"
        f"  config_dir: \"{REPO / 'config'}\"\n"
        "  http_listen: \"\"\n"
        "  leader_election: true\n"
        "  rollup_interval_s: 0.5\n")
    log = home / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                             "--settings", str(settings)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    return proc, log


def wiped(url: str) -> str:
    """The session's PostgreSQL database, empty (two daemons share PostgreSQL: SQLite is
    one box, one daemon, so this test has no SQLite variant)."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


def test_the_standby_takes_over_within_5_s_and_no_row_is_lost_or_duplicated(
        tmp_path, pg_database_url, redis_url):
    empty_db_url = wiped(pg_database_url)
    frames = [f for f in capture_event_frames(CAPTURES / "busy_hour.esl.gz") if subscribed(f)]
    half = len(frames) // 2
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    procs = []
    with EslPeer(password=PASSWORD) as peer:
        try:
            a, log_a = start(tmp_path, "a", peer.port, empty_db_url, redis_url)
            wait_for(lambda: r.get(LEASE_KEY) is not None, 60, "a leader")
            b, log_b = start(tmp_path, "b", peer.port, empty_db_url, redis_url)
            procs = [a, b]
            wait_for(lambda: sum(1 for c in peer.live if c.events or c.all_events) >= 2
                     and sum(c == "api show channels as json" for c in peer.commands) >= 2,
                     60, "both daemons subscribed")
            leader, standby = (a, b) if f":{a.pid}:" in r.get(LEASE_KEY) else (b, a)
            assert peer.replay(frames[:half]) == 2 * half  # to each daemon
            gevent.sleep(0.5)  # the leader is writing
            leader.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            peer.replay(frames[half:])  # to the standby (the dead one's socket is gone)
            wait_for(lambda: f":{standby.pid}:" in (r.get(LEASE_KEY) or ""), 10,
                     "the standby leading")
            failover_s = time.monotonic() - killed
            gevent.sleep(2.0)  # the new leader's store and roll-up job catch up
            standby.send_signal(signal.SIGTERM)
            wait_for(lambda: standby.poll() is not None, 30, "the survivor's exit")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            r.close()
    assert failover_s < 5.0, failover_s
    logs = {p.pid: (log_a if p is a else log_b).read_text() for p in (a, b)}
    assert standby.returncode == 0, logs[standby.pid]
    # the roll-up job ran only where the lease was: the standby, only after taking it
    before, _, after = logs[standby.pid].partition("leader now")
    assert "job rollup done" not in before and "job rollup done" in after
    assert "job rollup done" in logs[leader.pid]
    # the rows equal a clean replay of the stream (the survivor's journal holds all of it)
    journal = sorted((tmp_path / ("b" if standby is b else "a") / "journal").glob("vm-*.esl"))
    assert sum(len(capture_event_frames(p)) for p in journal) == len(frames)
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    replay(journal, clean, load_center(REPO / "config"))
    got, want = dump(empty_db_url), dump(clean)
    for table in want:
        assert len(got[table]) == len(want[table]), table
        assert got[table] == want[table], table
    print(f"\nfailover {failover_s:.2f} s; segments {len(got['segments'])}, lost 0, duplicated 0; "
          + " ".join(re.findall(r"took over: \d+ recent engine outputs", logs[standby.pid])))
