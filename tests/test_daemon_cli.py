"""`hotline daemon` end to end: a real process talking to the ESL test peer (or a real
switch's protocol), with the real journal, engine, database (SQLite and PostgreSQL) and
Redis; SIGTERM makes it flush and exit 0; the ESL password never shows in its logs."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
from sqlalchemy import create_engine, text

from daemon.switch.events import Event
from daemon.switch.supervisor import ENGINE_EVENTS
from tests.eslpeer import EslPeer, capture_event_frames, real_switch
from tests.test_store import pg_via_proxy  # noqa: F401 - fixture: PostgreSQL behind a cuttable proxy

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
PASSWORD = "pw-Very-Secret-42"
SIP_AGENT_CALL = "74044f04-0309-41fe-9096-b4b024d25716"

if real_switch():
    pytest.skip("replays a capture through the peer's control plane", allow_module_level=True)


def subscribed(frame: bytes) -> bool:
    event = Event(frame[frame.index(b"\n\n") + 2:])
    return event.name in ENGINE_EVENTS and (event.name != "CUSTOM" or event.subclass in ENGINE_EVENTS)


def wait_for(predicate, timeout: float, what: str) -> None:
    with gevent.Timeout(timeout, AssertionError(f"{what} not reached")):
        while not predicate():
            gevent.sleep(0.02)


def start_daemon(tmp_path: Path, port: int, db_url: str, redis_url: str) -> tuple[subprocess.Popen, Path]:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        "settings:\n"
        f"  esl: \"vm=127.0.0.1:{port}:{PASSWORD}\"\n"
        f"  database_url: \"{db_url}\"\n"
        f"  redis_url: \"{redis_url}\"\n"
        f"  journal_dir: \"{tmp_path / 'journal'}\"\n"
        f"  config_dir: \"{tmp_path / 'no-config'}\"\n")
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon", "--settings", str(settings)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    return proc, log


def test_daemon_turns_a_switch_stream_into_rows_and_exits_0_on_sigterm(tmp_path, empty_db_url, redis_url):
    with EslPeer(password=PASSWORD) as peer:
        proc, log = start_daemon(tmp_path, peer.port, empty_db_url, redis_url)
        try:
            peer.wait_subscribed(timeout=30)
            wait_for(lambda: peer.commands and peer.commands[-1] == "api show channels as json", 10,
                     "live-state snapshot")
            frames = [f for f in capture_event_frames(CAPTURES / "sip_agent.esl") if subscribed(f)]
            assert peer.replay(frames) == len(frames)
            journal_dir = tmp_path / "journal"
            total = sum(len(f) for f in frames)
            wait_for(lambda: len(journaled_events(journal_dir)) == total, 20,
                     "all frames journaled")
            gevent.sleep(0.3)  # let the engine and the writer catch up before asking to stop
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: proc.poll() is not None, 30, "daemon exit")
        finally:
            if proc.poll() is None:
                proc.kill()
    logs = log.read_text()
    assert proc.returncode == 0, logs
    assert PASSWORD not in logs
    assert "auth" not in logs.replace("authenticat", "")
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines and all(line.startswith("ts=") and " level=" in line and " msg=" in line
                         for line in lines), logs
    assert "daemon stopped" in logs
    # the journal holds exactly the frames the switch sent, in the switch's format, and
    # what the switch reported at the connect (for replays to reconcile where it did)
    assert journaled_events(tmp_path / "journal") == b"".join(frames)
    from daemon.storage.journal import SWITCH_STATE_TYPE, read_frames

    kinds = [f.content_type for p in sorted((tmp_path / "journal").glob("vm-*.esl"))
             for f in read_frames(p)]
    assert kinds[0] == SWITCH_STATE_TYPE and kinds.count(SWITCH_STATE_TYPE) == 1
    # the call is in the database, flushed at SIGTERM
    engine = create_engine(empty_db_url)
    with engine.connect() as conn:
        outcome = conn.execute(text("SELECT outcome FROM calls WHERE call_id = :c"),
                               {"c": SIP_AGENT_CALL}).scalar()
        kinds = {r[0] for r in conn.execute(text("SELECT kind FROM segments WHERE call_id = :c"),
                                            {"c": SIP_AGENT_CALL})}
    engine.dispose()
    assert outcome == "answered"
    assert {"queue", "ring", "talk"} <= kinds
    # live state went to Redis
    import redis

    from daemon.live.state import PREFIX

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert "1005@hotline.test" in client.smembers(f"{PREFIX}:agents")
    finally:
        client.close()


def test_daemon_with_an_unreadable_settings_file_is_a_user_error(tmp_path):
    bad = tmp_path / "settings.yaml"
    bad.write_text("settings:\n  esl: [\n")
    proc = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "daemon", "--settings", str(bad)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "not valid" in proc.stderr




def test_daemon_started_while_postgres_is_down_journals_then_migrates_and_writes_when_it_is_back(
        tmp_path, pg_via_proxy, redis_url):
    direct, proxied, proxy = pg_via_proxy  # an empty database (no schema) behind a cut link
    proxy.cut()
    with EslPeer(password=PASSWORD) as peer:
        proc, log = start_daemon(tmp_path, peer.port, proxied, redis_url)
        try:
            peer.wait_subscribed(timeout=30)
            frames = [f for f in capture_event_frames(CAPTURES / "sip_agent.esl") if subscribed(f)]
            peer.replay(frames)
            journal_dir = tmp_path / "journal"
            total = sum(len(f) for f in frames)
            wait_for(lambda: len(journaled_events(journal_dir)) == total, 20,
                     "all frames journaled while the database is down")
            assert proc.poll() is None, log.read_text()  # running, not exited
            assert not _tables(direct)  # nothing could reach the database yet
            proxy.restore()
            wait_for(lambda: _call_outcome(direct) == "answered", 60,
                     "schema migrated and the buffered call written")
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: proc.poll() is not None, 30, "daemon exit")
        finally:
            if proc.poll() is None:
                proc.kill()
    logs = log.read_text()
    assert proc.returncode == 0, logs
    assert "schema migration deferred" in logs, logs  # it knew, and started anyway
    assert "database reachable: schema migrated" in logs  # by the running daemon


def test_records_spilled_at_a_stop_during_an_outage_are_written_by_the_next_daemon(
        tmp_path, pg_via_proxy, redis_url):
    direct, proxied, proxy = pg_via_proxy
    proxy.cut()
    frames = [f for f in capture_event_frames(CAPTURES / "sip_agent.esl") if subscribed(f)]
    with EslPeer(password=PASSWORD) as peer:
        proc, log = start_daemon(tmp_path, peer.port, proxied, redis_url)
        try:
            peer.wait_subscribed(timeout=30)
            peer.replay(frames)
            journal_dir = tmp_path / "journal"
            total = sum(len(f) for f in frames)
            wait_for(lambda: len(journaled_events(journal_dir)) == total, 20,
                     "all frames journaled")
            gevent.sleep(0.3)  # the engine hands the records to the store
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: proc.poll() is not None, 30, "daemon exit")
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, log.read_text()
    # kept next to the journal (survives a reboot, unlike /tmp)
    spilled = list((tmp_path / "journal" / "spill").glob("spill-*.jsonl"))
    assert spilled, log.read_text()
    proxy.restore()
    with EslPeer(password=PASSWORD) as peer:
        proc, log = start_daemon(tmp_path, peer.port, proxied, redis_url)
        try:
            wait_for(lambda: _call_outcome(direct) == "answered", 60, "spilled call written")
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: proc.poll() is not None, 30, "daemon exit")
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, log.read_text()
    assert not list((tmp_path / "journal" / "spill").glob("spill-*.jsonl"))


def journaled_events(journal_dir: Path) -> bytes:
    """The switch's event frames in a daemon's journal, as written (files in order)."""
    from daemon.storage.journal import read_frames

    return b"".join(f.raw for p in sorted(journal_dir.glob("vm-*.esl")) for f in read_frames(p)
                    if f.is_event)


def _tables(url: str) -> list[str]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _call_outcome(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "calls" not in inspect_tables(conn):
                return None
            return conn.execute(text("SELECT outcome FROM calls WHERE call_id = :c"),
                                {"c": SIP_AGENT_CALL}).scalar()
    finally:
        engine.dispose()


def inspect_tables(conn) -> list[str]:
    from sqlalchemy import inspect

    return inspect(conn).get_table_names()
