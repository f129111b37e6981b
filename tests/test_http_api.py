"""The daemon's local HTTP API over real sockets on 127.0.0.1 (ephemeral ports).

The server runs in this thread's gevent hub (as in the daemon); blocking stdlib clients
(http.client, the CLI's urllib) run in gevent's thread pool so the hub keeps serving.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
from pathlib import Path

import gevent
import gevent.socket
import pytest
from click.testing import CliRunner

from daemon.definition.config import load_center
from daemon.engine.records import LiveChange
from daemon.live.http_api import (
    HttpApi,
    client_base_url,
    iso_ms,
    parse_iso_ms,
    parse_listen,
    snapshot_from_json,
    snapshot_json,
)
from daemon.live.state import MemoryLiveState, RedisLiveState
from daemon.service import Service, build_service
from tests.eslpeer import EslPeer, real_switch
from tests.test_daemon import Recorder, node_of, wait_for

REPO = Path(__file__).resolve().parent.parent
AGENT = "1001@hotline.test"
QUEUE = "billing@hotline.test"
JOINED_MS = 1_795_345_944_123
SINCE_MS = 1_795_345_900_007


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


def busy_center_state() -> MemoryLiveState:
    live = MemoryLiveState()
    live.apply([
        LiveChange("agent", AGENT, (("status", "On Break"), ("reason", "lunch")), SINCE_MS),
        LiveChange("agent", "1002@hotline.test", (("status", "Available"), ("state", "Waiting"),
                                                  ("since_ms", SINCE_MS)), SINCE_MS),
        LiveChange("member", QUEUE, (("call_id", "call-1"), ("caller", "13800138000"),
                                     ("joined_ms", JOINED_MS), ("action", "join")), JOINED_MS),
        LiveChange("member", QUEUE, (("call_id", "call-2"), ("caller", "13800138001"),
                                     ("joined_ms", JOINED_MS + 5_000), ("action", "join")),
                   JOINED_MS + 5_000),
        LiveChange("member", QUEUE, (("call_id", "call-2"), ("action", "leave"),
                                     ("outcome", "abandoned")), JOINED_MS + 9_000),
    ])
    return live


@pytest.fixture
def api(center):
    live = busy_center_state()
    server = HttpApi("127.0.0.1:0", live.snapshot, center).start()
    try:
        yield server
    finally:
        server.stop()


def blocking(fn, *args):
    """Run a blocking (stdlib socket) call in a real thread; the hub serves meanwhile."""
    return gevent.get_hub().threadpool.apply(fn, args)


def request(api: HttpApi, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    def go():
        host, port = api.address
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()
    return blocking(go)


def get_json(api: HttpApi, path: str, method: str = "GET") -> tuple[int, dict]:
    status, headers, body = request(api, path, method)
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    return status, json.loads(body)


def raw_exchange(api: HttpApi, data: bytes) -> bytes:
    """Send bytes as they are, read until the server closes (gevent sockets: cooperative)."""
    sock = gevent.socket.create_connection(api.address, timeout=5)
    try:
        sock.sendall(data)
        chunks = []
        with gevent.Timeout(5, AssertionError("the server did not close the connection")):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def json_body(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)


# --- endpoints ----------------------------------------------------------------------------------

def test_live_serves_the_snapshot_the_memory_live_state_holds_with_iso_times(api):
    status, data = get_json(api, "/live")
    assert status == 200
    assert data["agents"][AGENT] == {"status": "On Break", "reason": "lunch",
                                     "updated_at": iso_ms(SINCE_MS)}
    assert data["agents"]["1002@hotline.test"]["since"] == "2026-11-22T11:11:40.007Z"
    assert data["agents_by_status"] == {"Available": ["1002@hotline.test"], "On Break": [AGENT]}
    queue = data["queues"][QUEUE]
    assert queue["count"] == 1 and queue["oldest_joined_at"] == "2026-11-22T11:12:24.123Z"
    [waiting] = queue["waiting"]
    assert (waiting["call_id"], waiting["caller"], waiting["joined_at"]) == (
        "call-1", "13800138000", "2026-11-22T11:12:24.123Z")
    assert waiting["wait_ms"] == queue["longest_wait_ms"] > 0
    assert data["at"].endswith("Z") and parse_iso_ms(data["at"]) >= JOINED_MS


def test_one_queue_and_one_agent_by_qualified_name_also_percent_encoded(api):
    status, queue = get_json(api, "/live/queues/billing%40hotline.test")
    assert status == 200 and queue["queue"] == QUEUE
    assert [w["call_id"] for w in queue["waiting"]] == ["call-1"]
    status, agent = get_json(api, f"/live/agents/{AGENT}/")
    assert status == 200
    assert (agent["agent"], agent["status"], agent["reason"]) == (AGENT, "On Break", "lunch")


def test_configured_queue_without_callers_is_empty_and_unknown_names_are_404(api):
    status, sales = get_json(api, "/live/queues/sales@hotline.test")
    assert status == 200 and (sales["count"], sales["waiting"]) == (0, [])
    status, err = get_json(api, "/live/queues/nope@hotline.test")
    assert status == 404 and err == {"status": 404, "error": err["error"]}
    assert "no queue nope@hotline.test" in err["error"]
    status, err = get_json(api, "/live/agents/billing")
    assert status == 404 and "no agent billing" in err["error"]


def test_unknown_path_is_404_and_a_write_method_405_with_allow(api):
    status, headers, _ = request(api, "/")
    assert (status, headers["Location"]) == (302, "/wallboard")  # the console's front page
    for path in ("/nope", "/live/queues", "/live/calls/x", "/live/agents/a/b"):
        status, err = get_json(api, path)
        assert (status, err["status"]) == (404, 404), path
    for method in ("POST", "DELETE", "PUT"):
        status, headers, body = request(api, "/live", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        assert json.loads(body)["error"].startswith(f"method {method} not allowed")


def test_head_answers_headers_only(api):
    status, headers, body = request(api, "/live", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_over_long_path_or_query_is_414_in_json(api):
    status, err = get_json(api, "/live/queues/" + "q" * 1100)
    assert status == 414 and "at most 1024" in err["error"]
    status, err = get_json(api, "/live?" + "x=1&" * 300)
    assert status == 414
    response = raw_exchange(api, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 414 ")
    assert json_body(response) == {"error": "request line too long", "status": 414}


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
    b"HELLO\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /live HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /live HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
    b"GET /live\x00 HTTP/1.1\r\nConnection: close\r\n\r\n",
])
def test_garbage_gets_a_json_400_and_the_server_keeps_serving(api, garbage):
    response = raw_exchange(api, garbage)
    assert response.startswith(b"HTTP/1.1 400 "), response[:80]
    assert json_body(response)["status"] == 400
    status, data = get_json(api, "/live")
    assert status == 200 and data["queues"][QUEUE]["count"] == 1


def test_a_path_with_invalid_utf8_or_control_characters_is_400(api):
    status, err = get_json(api, "/live/agents/%ff%fe")
    assert status == 400 and "UTF-8" in err["error"]
    status, err = get_json(api, "/live/agents/a%0Ab")
    assert status == 400 and "control characters" in err["error"]


def test_a_failing_snapshot_is_a_json_500_not_a_traceback(center, caplog):
    def broken():
        raise RuntimeError("live state bug")

    server = HttpApi("127.0.0.1:0", broken, center).start()
    try:
        status, err = get_json(server, "/live")
        assert (status, err) == (500, {"error": "internal error", "status": 500})
        assert get_json(server, "/health")[0] == 200  # health does not read the snapshot
    finally:
        server.stop()
    assert server.errors == 1


def test_listen_addresses_and_iso_round_trip():
    assert parse_listen("") is None and parse_listen(None) is None
    assert parse_listen("127.0.0.1:8089") == ("127.0.0.1", 8089)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:8089") == ("::1", 8089)
    for bad in ("8089", "localhost:http", "::1:8089", "host:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert client_base_url("0.0.0.0:8089") == "http://127.0.0.1:8089"
    assert client_base_url("[::]:8089") == "http://[::1]:8089"
    assert parse_iso_ms(iso_ms(JOINED_MS)) == JOINED_MS
    snap = busy_center_state().snapshot(JOINED_MS + 60_000)
    assert snapshot_from_json(json.loads(json.dumps(snapshot_json(snap)))) == snap


# --- the daemon starts and stops it ------------------------------------------------------------

def http_service(nodes, live: MemoryLiveState, api: HttpApi) -> tuple[Service, Recorder]:
    from daemon.definition.model import Settings
    from daemon.switch.supervisor import Supervisor

    def sup_factory(node, on_frames, on_snapshot):
        return Supervisor(node, on_frames, on_snapshot, backoff_initial=0.01, backoff_max=0.05,
                          timeout=2.0)

    rec = Recorder()
    service = Service(Settings(esl_nodes=tuple(nodes)), None, rec, rec.engine_factory, rec, live,
                      supervisor_factory=sup_factory, sync_interval_s=0, http=api)
    return service, rec


def refused(address) -> bool:
    try:
        gevent.socket.create_connection(address, timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.skipif(real_switch() is not None, reason="drives the test peer's control plane")
def test_the_service_serves_health_and_live_while_running_and_closes_the_port_at_stop():
    live = MemoryLiveState()
    api = HttpApi("127.0.0.1:0", live.snapshot)
    with EslPeer(password="node-pw") as peer:
        service, rec = http_service([node_of(peer, "n1")], live, api)
        runner = gevent.spawn(service.run)
        try:
            peer.wait_subscribed()
            wait_for(lambda: api.address is not None, what="the API bound")
            status, health = get_json(api, "/health")
            assert status == 200 and health["ok"] is True
            assert health["nodes"]["n1"]["connected"] is True
            peer.send_event({"Event-Name": "CHANNEL_CREATE", "Unique-ID": "u1",
                             "Event-Date-Timestamp": 1_795_345_944_000_000})
            wait_for(lambda: rec.fed, what="the event processed")
            status, data = get_json(api, "/live")
            assert status == 200 and "n1:CHANNEL_CREATE" in data["agents"]
            address = api.address
        finally:
            service.stop()
            runner.join(10)
        assert runner.successful(), runner.exception
    assert api.address is None and refused(address)


def test_health_is_503_while_a_switch_is_unreachable():
    with EslPeer() as closed:
        node = node_of(closed, "down")
    live = MemoryLiveState()
    api = HttpApi("127.0.0.1:0", live.snapshot)
    service, _ = http_service([node], live, api)
    runner = gevent.spawn(service.run)
    try:
        wait_for(lambda: api.address is not None and service.supervisors
                 and service.supervisors[0].attempts >= 1, what="a connection attempt")
        status, health = get_json(api, "/health")
    finally:
        service.stop()
        runner.join(10)
    assert status == 503 and health["ok"] is False
    down = health["nodes"]["down"]
    assert down["connected"] is False and down["attempts"] >= 1
    assert runner.successful()


def test_a_taken_port_is_logged_and_the_daemon_runs_without_the_api(caplog):
    live = MemoryLiveState()
    first = HttpApi("127.0.0.1:0", live.snapshot).start()
    try:
        host, port = first.address
        second = HttpApi(f"{host}:{port}", live.snapshot)
        service, _ = http_service([], live, second)
        runner = gevent.spawn(service.run)
        wait_for(lambda: "http API not started" in caplog.text, what="the error logged")
        service.live.apply([LiveChange("agent", AGENT, (("status", "Available"),), 1)])
        service.stop()
        runner.join(10)
        assert runner.successful() and second.address is None
        assert get_json(first, "/health")[0] == 200  # the other server is untouched
    finally:
        first.stop()


@pytest.mark.skipif(real_switch() is not None, reason="drives the test peer's control plane")
def test_build_service_binds_http_listen_and_serves_the_daemons_live_state(tmp_path, center):
    from tests.test_control import RecordingPeer
    from tests.test_daemon_integration import settings_for, status_change

    with RecordingPeer(password="node-pw") as peer:
        peer.script("sendevent", "+OK 5b3c3c8e-0000-4000-8000-000000000001")
        settings = dataclasses.replace(settings_for(peer, tmp_path), http_listen="127.0.0.1:0")
        service = build_service(settings, center)
        assert isinstance(service.http, HttpApi)
        runner = gevent.spawn(service.run)
        try:
            peer.wait_subscribed()
            peer.send_event(status_change(AGENT, "On Break", 1))
            wait_for(lambda: AGENT in service.live.snapshot()["agents"], what="live state")
            status, agent = get_json(service.http, f"/live/agents/{AGENT}")
            assert status == 200 and agent["status"] == "On Break"
            assert get_json(service.http, "/health")[1]["nodes"]["n1"]["connected"] is True
        finally:
            service.stop()
            runner.join(15)
        assert runner.successful(), runner.exception
    assert service.http.address is None


def test_empty_http_listen_builds_no_api(tmp_path):
    from daemon.definition.model import EslNode, Settings

    settings = Settings(esl_nodes=(EslNode("n1", "127.0.0.1", 1),), http_listen="",
                        database_url=f"sqlite:///{tmp_path / 'h.db'}",
                        journal_dir=str(tmp_path / "journal"))
    service = build_service(settings)
    try:
        assert service.http is None
    finally:
        service.store.close()


# --- hotline queue status -----------------------------------------------------------------------

def settings_file(tmp_path: Path, http_listen: str, esl_port: int, redis_url: str = "") -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(f"config_dir: {REPO / 'config'}\nhttp_listen: '{http_listen}'\n"
                    f"esl: 127.0.0.1:{esl_port}:ClueCon\n"
                    + (f"redis_url: {redis_url}\n" if redis_url else ""))
    return str(path)


def queue_status_cli(settings: str, *args: str):
    from cli import hotline

    env = {"HOTLINE_SETTINGS": settings, "HOTLINE_REDIS_URL": None, "HOTLINE_ESL": None,
           "HOTLINE_CONFIG_DIR": None}
    runner = CliRunner()
    return blocking(lambda: runner.invoke(hotline, ["queue", "status", *args], env=env))


def closed_port() -> int:
    with EslPeer() as peer:
        return peer.port


def test_queue_status_without_redis_reads_the_running_daemons_api(api, tmp_path):
    host, port = api.address
    settings = settings_file(tmp_path, f"{host}:{port}", closed_port())  # no switch to ask
    result = queue_status_cli(settings, QUEUE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"source: the daemon's HTTP API (http://127.0.0.1:{port})"
    assert lines[1].startswith(f"{QUEUE}: 1 waiting, longest ")
    assert "call-1" in lines[2] and "13800138000" in lines[2]
    assert f"on break: {AGENT}" in result.output
    result = queue_status_cli(settings, QUEUE, "--json")
    data = json.loads(result.output)
    assert data["source"] == "daemon" and data["source_url"] == f"http://127.0.0.1:{port}"
    assert data["queues"][QUEUE]["waiting"][0]["joined_ms"] == JOINED_MS


@pytest.mark.skipif(real_switch() is not None, reason="drives the test peer's control plane")
def test_queue_status_falls_back_to_the_switch_when_no_daemon_answers(tmp_path):
    from tests.test_control import RecordingPeer
    from tests.test_reload_switch import FakeCallcenter

    with RecordingPeer() as peer:
        fake = FakeCallcenter(peer)
        fake.xml_queues = {QUEUE: {}}
        fake._queue_load([QUEUE])
        fake.add_member(QUEUE, "call-from-switch", 1_800_000_000, number="13700000000")
        settings = settings_file(tmp_path, f"127.0.0.1:{closed_port()}", peer.port)
        result = queue_status_cli(settings, QUEUE)
        forced = None
        with_api = HttpApi("127.0.0.1:0", busy_center_state().snapshot).start()
        try:
            host, port = with_api.address
            forced = queue_status_cli(settings_file(tmp_path, f"{host}:{port}", peer.port),
                                      QUEUE, "--switch", "--json")
        finally:
            with_api.stop()
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("source: the switch (daemon http: http://127.0.0.1:")
    assert "call-from-switch" in result.output
    assert forced.exit_code == 0, forced.output
    data = json.loads(forced.output)
    assert data["source"] == "switch" and "skipped" not in data
    assert [w["call_id"] for w in data["queues"][QUEUE]["waiting"]] == ["call-from-switch"]


def test_queue_status_prefers_redis_over_the_daemons_api(api, tmp_path, redis_url):
    live = RedisLiveState(redis_url)
    live.apply([LiveChange("member", QUEUE, (("call_id", "call-in-redis"), ("caller", "139"),
                                             ("joined_ms", JOINED_MS), ("action", "join")), 1)])
    live.close()
    host, port = api.address
    result = queue_status_cli(settings_file(tmp_path, f"{host}:{port}", closed_port(), redis_url),
                              QUEUE, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["source"] == "redis"
    assert [w["call_id"] for w in data["queues"][QUEUE]["waiting"]] == ["call-in-redis"]


def test_something_else_on_the_port_is_reported_as_unavailable_not_a_crash():
    import gevent.server

    from daemon.live.http_api import ApiUnavailable, fetch_snapshot

    def junk(sock, address):
        sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        sock.close()

    server = gevent.server.StreamServer(("127.0.0.1", 0), junk)
    server.start()
    try:
        with pytest.raises(ApiUnavailable, match="127.0.0.1"):
            blocking(fetch_snapshot, f"127.0.0.1:{server.server_port}")
    finally:
        server.stop()


# --- `hotline daemon` as a process: SIGTERM stops the API with the rest ------------------------

def free_port() -> int:
    sock = gevent.socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def get_health(port: int) -> int | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.mark.skipif(real_switch() is not None, reason="drives the test peer's control plane")
def test_the_daemon_process_serves_health_and_closes_the_api_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys

    port = free_port()
    with EslPeer(password="pw") as peer:
        settings = tmp_path / "settings.yaml"
        settings.write_text(f"esl: \"n1=127.0.0.1:{peer.port}:pw\"\n"
                            f"database_url: \"sqlite:///{tmp_path / 'h.db'}\"\n"
                            f"journal_dir: \"{tmp_path / 'journal'}\"\n"
                            f"config_dir: \"{REPO / 'config'}\"\n"
                            f"http_listen: \"127.0.0.1:{port}\"\n")
        log = tmp_path / "daemon.log"
        proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                                 "--settings", str(settings)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        try:
            peer.wait_subscribed(timeout=30)
            with gevent.Timeout(20, AssertionError("no /health answer")):
                while blocking(get_health, port) != 200:
                    gevent.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            with gevent.Timeout(30, AssertionError("the daemon did not exit")):
                while proc.poll() is None:
                    gevent.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
    logs = log.read_text()
    assert proc.returncode == 0, logs
    assert f"http API listening on 127.0.0.1:{port}" in logs and "http API stopped" in logs
    assert refused(("127.0.0.1", port))
