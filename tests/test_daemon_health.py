"""The daemon says what is wrong: a database that refuses it for good is not an outage.

A probe pointed the daemon at a PostgreSQL database that does not exist: it retried it
as an outage for ever while ``/health`` said ok. Now the reason is logged as an error
(once, not at every retry), ``/health`` answers 503 with it, and the daemon keeps
journaling every event, so nothing is lost once the URL is fixed.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import gevent
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.eslpeer import EslPeer, real_switch
from tests.test_http_api import blocking, free_port

REPO = Path(__file__).resolve().parent.parent

if real_switch():
    pytest.skip("drives the test peer's control plane", allow_module_level=True)


def get_json(port: int, path: str) -> tuple[int | None, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return None, {}


def run_daemon(tmp_path: Path, peer: EslPeer, db_url: str, port: int) -> tuple[subprocess.Popen, Path]:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"esl: \"n1=127.0.0.1:{peer.port}:pw\"\n"
                        f"database_url: \"{db_url}\"\n"
                        f"journal_dir: \"{tmp_path / 'journal'}\"\n"
                        f"config_dir: \"{REPO / 'config'}\"\n"
                        f"http_listen: \"127.0.0.1:{port}\"\n")
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                             "--settings", str(settings)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    with gevent.Timeout(30, AssertionError("the daemon did not exit")):
        while proc.poll() is None:
            gevent.sleep(0.05)


@pytest.mark.parametrize("db", ["postgresql-missing-database", "sqlite-missing-directory"])
def test_a_database_that_does_not_exist_is_reported_by_health_not_retried_as_an_outage(
        tmp_path, db):
    if db.startswith("postgresql"):
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/hotline_no_such_database_42"
        words = "does not exist"
    else:
        url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'h.db'}"
        words = "cannot be created or opened"
    port = free_port()
    with EslPeer(password="pw") as peer:
        proc, log = run_daemon(tmp_path, peer, url, port)
        try:
            peer.wait_subscribed(timeout=30)
            with gevent.Timeout(30, AssertionError("/health never said why")):
                while True:
                    status, health = blocking(get_json, port, "/health")
                    if health.get("database", {}).get("error"):
                        break
                    gevent.sleep(0.1)
            for seq in range(5):  # the switch goes on: every event is still journaled
                peer.send_event({"Event-Name": "HEARTBEAT", "Event-Sequence": seq,
                                 "Event-Date-Timestamp": 1_795_345_944_000_000 + seq})
            journal = tmp_path / "journal"
            with gevent.Timeout(10, AssertionError("events not journaled")):
                while sum(p.stat().st_size for p in journal.glob("n1-*.esl")) < 5 * 100:
                    gevent.sleep(0.05)
            stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    logs = log.read_text()
    assert proc.returncode == 0, logs
    assert status == 503 and health["ok"] is False, health
    assert health["nodes"]["n1"]["connected"] is True
    assert health["database"]["connected"] is False and words in health["database"]["error"]
    refusals = [line for line in logs.splitlines() if "the database refuses the daemon" in line]
    assert refusals and all("level=error" in line for line in refusals), logs
    assert len(refusals) <= 2, "said once (migration, then the writer), not at every retry"
    assert "not an outage" in logs


def test_health_says_the_database_is_fine_when_it_is(tmp_path):
    port = free_port()
    with EslPeer(password="pw") as peer:
        proc, log = run_daemon(tmp_path, peer, f"sqlite:///{tmp_path / 'h.db'}", port)
        try:
            peer.wait_subscribed(timeout=30)
            with gevent.Timeout(20, AssertionError("no healthy answer")):
                while blocking(get_json, port, "/health")[0] != 200:
                    gevent.sleep(0.1)
            status, health = blocking(get_json, port, "/health")
            stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert status == 200 and health["database"] == {"connected": True}, log.read_text()
