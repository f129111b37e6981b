"""The HTTP surface with logins: real servers on 127.0.0.1, real sockets, both tenants of config/.

Two logins: ``boss`` (admin, every tenant) and ``demo-client`` (viewer, tenant ``demo``
only). Every route is tried without credentials, with a wrong secret and with the other
tenant's login; then the protocol edges: traversal, oversized and malformed requests,
slow clients.
"""
from __future__ import annotations

import base64
import http.client
import json
import time
from pathlib import Path

import gevent
import gevent.socket
import pytest

from daemon.definition.config import load_center
from daemon.definition.model import WebUser
from daemon.definition.reader import ConfigErrors
from daemon.definition.settings import load_settings
from daemon.engine.records import LiveChange
from daemon.live.http_api import HttpApi
from daemon.live.state import MemoryLiveState
from daemon.live.web.auth import hash_secret, verify_secret

REPO = Path(__file__).resolve().parent.parent
BOSS, BOSS_SECRET = "boss", "correct horse battery staple"
CLIENT, CLIENT_SECRET = "demo-client", "s3cret-demo"
DEMO_Q, CITY_Q = "billing@hotline.test", "billing@hotline.cityutil.cn"
DEMO_A, CITY_A = "1001@hotline.test", "2001@hotline.cityutil.cn"
T0 = 1_795_345_944_123


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


@pytest.fixture(scope="module")
def users():
    return (WebUser(BOSS, hash_secret(BOSS_SECRET), "admin", None),
            WebUser(CLIENT, hash_secret(CLIENT_SECRET), "viewer", "demo"))


def two_tenant_state() -> MemoryLiveState:
    live = MemoryLiveState()
    live.apply([
        LiveChange("agent", DEMO_A, (("status", "Available"), ("state", "Waiting")), T0),
        LiveChange("agent", CITY_A, (("status", "On Break"), ("reason", "lunch")), T0),
        LiveChange("member", DEMO_Q, (("call_id", "demo-call"), ("caller", "111"),
                                      ("joined_ms", T0), ("action", "join")), T0),
        LiveChange("member", CITY_Q, (("call_id", "city-call"), ("caller", "222"),
                                      ("joined_ms", T0), ("action", "join")), T0),
    ])
    return live


@pytest.fixture
def server(center, users, tmp_path):
    live = two_tenant_state()
    api = HttpApi("127.0.0.1:0", live.snapshot, center, users=users,
                  database_url=f"sqlite:///{tmp_path / 'empty.db'}").start(lambda: {"ok": True})
    try:
        yield api
    finally:
        api.stop()


def blocking(fn, *args):
    return gevent.get_hub().threadpool.apply(fn, args)


def call(api, path, method="GET", headers=None, body=None, read=True, timeout=60):
    def go():
        host, port = api.address
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read() if read else resp.read(200)
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()
    return blocking(go)


def basic(name, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


JSON_ROUTES = ["/health", "/metrics", "/live", f"/live/queues/{DEMO_Q}", f"/live/agents/{DEMO_A}",
               "/live/stream"]
PAGES = ["/wallboard", "/reports", "/reports/view", "/reports/csv", "/calls", "/calls/x",
         "/drill?kpi=offered"]


# --- settings -----------------------------------------------------------------------------

def test_a_plain_secret_in_the_settings_is_refused_a_hash_or_env_reference_is_taken(tmp_path):
    hashed = hash_secret("pw")
    good = tmp_path / "good.yaml"
    good.write_text("http_users:\n"
                    f"  - {{name: boss, secret: '{hashed}', role: admin}}\n"
                    "  - {name: grafana, secret: '${GRAFANA_TOKEN}', role: viewer, tenant: demo}\n"
                    "http_session_minutes: 15\n")
    s = load_settings(str(good), env={"GRAFANA_TOKEN": "tok", "HOTLINE_CONFIG_DIR": "none"})
    assert s.http_users == (WebUser("boss", hashed, "admin", None),
                            WebUser("grafana", "tok", "viewer", "demo"))
    assert s.http_session_minutes == 15
    bad = tmp_path / "bad.yaml"
    bad.write_text("http_users:\n  - {name: boss, secret: hunter2, role: root}\n")
    with pytest.raises(ConfigErrors) as err:
        load_settings(str(bad), env={"HOTLINE_CONFIG_DIR": "none"})
    assert "role" in str(err.value)
    bad.write_text("http_users:\n  - {name: boss, secret: hunter2}\n")
    with pytest.raises(ConfigErrors) as err:
        load_settings(str(bad), env={"HOTLINE_CONFIG_DIR": "none"})
    assert "neither a hash" in str(err.value) and "hunter2" not in str(err.value)


def test_hashes_verify_only_their_secret():
    stored = hash_secret("pw")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_secret(stored, "pw") and not verify_secret(stored, "pW")
    assert not verify_secret("scrypt$broken", "pw")


def test_listening_beyond_loopback_without_logins_is_refused(center, users):
    with pytest.raises(ValueError, match="not a loopback address"):
        HttpApi("0.0.0.0:0", MemoryLiveState().snapshot, center)
    HttpApi("0.0.0.0:0", MemoryLiveState().snapshot, center, users=users)  # with logins: fine


# --- who may read what ------------------------------------------------------------------

@pytest.mark.parametrize("path", JSON_ROUTES + PAGES)
def test_no_credentials_and_a_wrong_secret_get_nothing(server, path):
    status, headers, body = call(server, path)
    assert status == 401, path
    assert b"demo-call" not in body and b"city-call" not in body
    status, _, body = call(server, path, headers=basic(BOSS, "wrong"))
    assert status == 401, path
    assert b"demo-call" not in body


@pytest.mark.parametrize("path", PAGES[:1] + ["/calls"])
def test_a_browser_without_a_session_is_sent_to_the_login_page(server, path):
    status, headers, _ = call(server, path, headers={"Accept": "text/html"})
    assert status == 302 and headers["Location"].startswith("/login?next=")


def test_the_admin_sees_both_tenants_the_tenant_login_only_its_own(server):
    status, _, body = call(server, "/live", headers=basic(BOSS, BOSS_SECRET))
    data = json.loads(body)
    assert status == 200 and set(data["queues"]) == {DEMO_Q, CITY_Q}
    status, _, body = call(server, "/live", headers=basic(CLIENT, CLIENT_SECRET))
    data = json.loads(body)
    assert status == 200 and set(data["queues"]) == {DEMO_Q}
    assert set(data["agents"]) == {DEMO_A}
    assert all(CITY_A not in names for names in data["agents_by_status"].values())
    # the other tenant's queue and agent do not exist for this login
    for path in (f"/live/queues/{CITY_Q}", f"/live/agents/{CITY_A}",
                 "/live/queues/operator@hotline.cityutil.cn"):
        status, _, body = call(server, path, headers=basic(CLIENT, CLIENT_SECRET))
        assert status == 404 and b"city-call" not in body, path
    # every tenant's numbers: not for a tenant's login
    for path in ("/health", "/metrics"):
        assert call(server, path, headers=basic(CLIENT, CLIENT_SECRET))[0] == 403
        assert call(server, path, headers=basic(BOSS, BOSS_SECRET))[0] == 200
    # another tenant's report is refused, not silently narrowed
    status, _, body = call(server, "/reports/csv?tenant=cityutil",
                           headers=basic(CLIENT, CLIENT_SECRET))
    assert status == 403 and b"demo" in body


def read_stream(api, headers, until: bytes, timeout=5.0) -> bytes:
    """The live stream's bytes until ``until`` appears (raw socket: SSE never ends)."""
    def go():
        import socket

        host, port = api.address
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(f"GET /live/stream HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
            data = b""
            deadline = time.monotonic() + timeout
            while until not in data and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            sock.close()
    return blocking(go)


def test_the_live_stream_carries_only_the_logins_tenant(server):
    mine = read_stream(server, basic(CLIENT, CLIENT_SECRET), b"event: board")
    assert b"200 OK" in mine.split(b"\r\n")[0] and b"event: board" in mine
    assert b'"id":"demo"' in mine and b"cityutil" not in mine and b"222" not in mine
    everything = read_stream(server, basic(BOSS, BOSS_SECRET), b"event: board")
    assert b'"id":"demo"' in everything and b'"id":"cityutil"' in everything
    nobody = read_stream(server, {}, b"\r\n\r\n")
    assert nobody.startswith(b"HTTP/1.1 401") and b"event: board" not in nobody


def test_head_on_the_live_stream_holds_no_stream_slot(server):
    status, headers, body = call(server, "/live/stream", "HEAD", basic(BOSS, BOSS_SECRET))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert body == b"" and len(server.hub.clients) == 0


def test_login_session_csrf_logout_and_expiry(server):
    status, headers, _ = call(server, "/login", "POST", {
        "Content-Type": "application/x-www-form-urlencoded"},
        f"user={CLIENT}&secret={CLIENT_SECRET}&next=/calls")
    assert status == 302 and headers["Location"] == "/calls"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    status, _, body = call(server, "/wallboard", headers={"Cookie": session})
    assert status == 200 and b"demo-client" in body
    # logging out needs the session's CSRF token: a cross-site form cannot do it
    assert call(server, "/logout", "POST", {"Cookie": session, "Content-Type":
                                            "application/x-www-form-urlencoded"},
                "csrf=forged")[0] == 403
    assert call(server, "/wallboard", headers={"Cookie": session})[0] == 200
    sid = session.split("=", 1)[1]
    csrf = server.auth.sessions[sid].csrf
    assert call(server, "/logout", "POST", {"Cookie": session, "Content-Type":
                                            "application/x-www-form-urlencoded"},
                f"csrf={csrf}")[0] == 302
    assert call(server, "/wallboard", headers={"Cookie": session})[0] == 401
    # an idle session expires
    sid2, _ = server.auth.open_session(server.auth.check(BOSS, BOSS_SECRET, "t"))
    server.auth.sessions[sid2].last_seen -= server.auth.idle_s + 1
    assert call(server, "/live", headers={"Cookie": f"hotline_session={sid2}"})[0] == 401
    # an open redirect through ?next= is refused
    status, headers, _ = call(server, "/login", "POST", {
        "Content-Type": "application/x-www-form-urlencoded"},
        f"user={BOSS}&secret={BOSS_SECRET}&next=//evil.example/")
    assert headers["Location"] == "/wallboard"


def test_failed_logins_are_rate_limited_and_logged_without_the_secret(server, caplog):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(5):
        assert call(server, "/login", "POST", form, f"user={BOSS}&secret=guess-xyz")[0] == 401
    status, _, body = call(server, "/login", "POST", form, f"user={BOSS}&secret={BOSS_SECRET}")
    assert status == 429 and b"too many failed logins" in body
    assert call(server, "/live", headers=basic(BOSS, "guess-xyz"))[0] == 429
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "login failed user='boss'" in logged and "guess-xyz" not in logged


def test_security_headers_on_pages_api_and_errors(server):
    for path, headers in (("/wallboard", basic(BOSS, BOSS_SECRET)), ("/live", {}),
                          ("/static/wallboard.js", {}), ("/login", {})):
        _, h, _ = call(server, path, headers=headers)
        assert "default-src 'none'" in h["Content-Security-Policy"] and "http" not in \
            h["Content-Security-Policy"], path
        assert (h["X-Frame-Options"], h["X-Content-Type-Options"], h["Referrer-Policy"]) == (
            "SAMEORIGIN", "nosniff", "no-referrer"), path


# --- protocol edges ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py",
                                  "/static/..%2fapp.py", "/static/..\\app.py",
                                  "/static/../../../etc/passwd"])
def test_path_traversal_reads_nothing_outside_the_static_folder(server, path):
    status, _, body = call(server, path)
    assert status in (400, 404), path
    assert b"import" not in body and b"root:" not in body


def test_an_oversized_body_is_413_and_a_malformed_authorization_400(server):
    status, _, body = call(server, "/login", "POST", {
        "Content-Type": "application/x-www-form-urlencoded"}, b"user=" + b"a" * 100_000)
    assert status == 413 and json.loads(body)["status"] == 413
    status, _, _ = call(server, "/live", headers={"Authorization": "Basic !!!notbase64"})
    assert status == 400


def raw_socket(api):
    return gevent.socket.create_connection(api.address, timeout=30)


def test_slow_clients_are_cut_at_the_request_deadline_and_do_not_starve_others(
        center, users, monkeypatch):
    """Eight clients trickling a request a byte at a time hold nothing past the deadline."""
    from daemon.live.web import server as srv

    monkeypatch.setattr(srv.Handler, "deadline_s", 1.0)
    live = two_tenant_state()
    api = HttpApi("127.0.0.1:0", live.snapshot, center, max_connections=8).start()
    try:
        slow = [raw_socket(api) for _ in range(8)]

        def trickle(sock):
            try:
                for byte in b"GET /live HTTP/1.1\r\nHost: x\r\n":
                    sock.sendall(bytes([byte]))
                    gevent.sleep(0.3)
            except OSError:
                return "cut"
            return "sent"

        started = time.monotonic()
        jobs = [gevent.spawn(trickle, s) for s in slow]
        gevent.sleep(1.5)  # the deadline passed for all eight
        status, _, body = call(api, "/live")  # a normal client still gets in
        assert status == 200 and b"demo-call" in body
        assert time.monotonic() - started < 5
        for s in slow:
            s.settimeout(2)
            assert s.recv(100) == b""  # closed by the server
        gevent.killall(jobs)
    finally:
        api.stop()


def test_a_stream_client_that_stops_reading_does_not_slow_the_others(server):
    """A stalled reader keeps one slot (the newest view), not a growing backlog."""
    sock = raw_socket(server)
    auth = basic(BOSS, BOSS_SECRET)["Authorization"]
    sock.sendall(f"GET /live/stream HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
                 .encode())
    gevent.sleep(0.3)
    assert len(server.hub.clients) == 1
    stalled = next(iter(server.hub.clients))
    for i in range(200):  # changes keep coming; the stalled client never reads
        server.hub.notify({"kind": "member", "key": DEMO_Q, "data": {}})
        gevent.sleep(0.005)
    assert stalled.latest is None or isinstance(stalled.latest, bytes)  # one slot at most
    fresh = read_stream(server, basic(BOSS, BOSS_SECRET), b"event: board")
    assert b"event: board" in fresh
    sock.close()


def test_tls_directly_with_secure_cookies_and_hsts(center, users, tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    api = HttpApi("127.0.0.1:0", two_tenant_state().snapshot, center, users=users,
                  tls_cert=str(cert), tls_key=str(key)).start()
    try:
        def go():
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.check_hostname = False
            conn = http.client.HTTPSConnection(*api.address, timeout=30, context=ctx)
            try:
                conn.request("POST", "/login", body=f"user={BOSS}&secret={BOSS_SECRET}",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                resp.read()
                return resp.status, dict(resp.getheaders())
            finally:
                conn.close()
        status, headers = blocking(go)
        assert status == 302 and "Secure" in headers["Set-Cookie"]
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        with pytest.raises(ValueError, match="go together"):
            HttpApi("127.0.0.1:0", two_tenant_state().snapshot, center, tls_cert=str(cert))
    finally:
        api.stop()
