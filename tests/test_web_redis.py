"""``hotline web serve`` beside the daemons: live state from real Redis, pushed to the live stream.

A daemon's RedisLiveState (as two daemons sharing Redis would write it) in this process;
``hotline web serve`` as a separate process reading Redis and following ``hotline:live``.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gevent
import pytest

from daemon.engine.records import LiveChange
from daemon.live.state import RedisLiveState
from tests.test_http_api import blocking, free_port

REPO = Path(__file__).resolve().parent.parent
QUEUE = "billing@hotline.test"


def stream_until(port: int, *needles: bytes, timeout: float = 15.0) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(b"GET /live/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while not all(n in data for n in needles) and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # not listening yet
        return 0, b""


@pytest.fixture
def web_serve(redis_url, tmp_path):
    port = free_port()
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"redis_url: \"{redis_url}\"\n"
                        f"database_url: \"sqlite:///{tmp_path / 'w.db'}\"\n"
                        f"config_dir: \"{REPO / 'config'}\"\n"
                        f"http_listen: \"127.0.0.1:{port}\"\n")
    log = tmp_path / "web.log"
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "web", "serve",
                             "--settings", str(settings)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        with gevent.Timeout(30, AssertionError("hotline web serve did not answer")):
            while True:
                if blocking(get, port, "/live")[0] == 200:
                    break
                gevent.sleep(0.1)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0, log.read_text()


def test_web_serve_shows_what_a_daemon_writes_to_redis_and_pushes_changes(redis_url, web_serve):
    port, _ = web_serve
    live = RedisLiveState(redis_url)
    try:
        live.apply([LiveChange("agent", "1001@hotline.test", (("status", "Available"),
                                                              ("state", "Waiting")), 1_000)])
        status, body = blocking(get, port, "/live")
        assert status == 200
        assert json.loads(body)["agents"]["1001@hotline.test"]["status"] == "Available"
        # a caller joins while the wallboard's stream is open: the stream carries it
        job = gevent.get_hub().threadpool.spawn(stream_until, port, b'"caller":"13900001111"')
        gevent.sleep(1.0)
        now = int(time.time() * 1000)
        live.apply([LiveChange("member", QUEUE, (("call_id", "c-redis"),
                                                 ("caller", "13900001111"), ("joined_ms", now),
                                                 ("action", "join")), now)])
        data = job.get(timeout=20)
        assert b'"caller":"13900001111"' in data
        status, metrics = blocking(get, port, "/metrics")
        assert status == 200
        assert f'hotline_queue_callers_waiting{{queue="{QUEUE}"}} 1.0'.encode() in metrics
        assert b"hotline_redis_up 1.0" in metrics
        status, health = blocking(get, port, "/health")
        assert status == 200 and json.loads(health)["redis_connected"] is True
    finally:
        live.close()


def test_web_serve_without_redis_url_is_a_one_line_user_error(tmp_path):
    settings = tmp_path / "s.yaml"
    settings.write_text(f"config_dir: \"{tmp_path / 'none'}\"\n")
    result = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "web", "serve",
                             "--settings", str(settings)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "set redis_url" in result.stderr and "Traceback" not in result.stderr
