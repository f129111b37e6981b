"""The CRM lookup against real HTTP servers on 127.0.0.1: a good one, one that hangs, one
that is down, one that answers garbage. A slow or dead CRM never delays a caller by more
than its timeout, its breaker stops asking it, and the call goes on without context."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from daemon.definition import model as m
from daemon.definition.config import ConfigErrors, load_center
from daemon.engine.records import LiveChange
from daemon.integrations.crm import CrmClient
from daemon.integrations.screenpop import ScreenPop, crm_lookup
from tests.webhook_receiver import Receiver


class Crm:
    """mode: "ok" (Li Na for +8613800138002, 404 otherwise), "hang", "garbage", "500"."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.asked: list[str] = []
        crm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                crm.asked.append(self.path)
                if crm.mode == "hang":
                    time.sleep(3)
                if crm.mode == "garbage":
                    body, status = b"<html>oops</html>", 200
                elif crm.mode == "500":
                    body, status = b"{}", 500
                elif self.path.endswith("%2B8613800138002"):
                    body, status = json.dumps({"name": "李娜", "account_id": "ACC-1002",
                                               "vip": 2, "tags": ["vip"]}).encode(), 200
                else:
                    body, status = b"{}", 404
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout)
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lookup?n={{number}}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm():
    server = Crm()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conf(url: str, **kw) -> m.CrmLookup:
    return m.CrmLookup(url=url, **{"timeout_ms": 300, "cache_ttl_s": 60, "breaker_failures": 3,
                                   "breaker_open_s": 30, **kw})


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start


def test_a_known_caller_comes_back_and_is_cached_for_its_ttl(crm):
    clock = Clock()
    client = CrmClient(conf(crm.url), clock)
    found = client.lookup("+8613800138002")
    assert (found.name, found.account_id, found.vip, found.tags) == ("李娜", "ACC-1002", 2, ("vip",))
    assert client.lookup("+8613800138002") == found and len(crm.asked) == 1  # cached
    assert client.lookup("+8613800138009") is None  # 404: not a customer, cached too
    assert client.lookup("+8613800138009") is None and len(crm.asked) == 2
    clock.now += 61
    client.lookup("+8613800138002")
    assert len(crm.asked) == 3  # the TTL ran out


@pytest.mark.parametrize("mode", ["hang", "garbage", "500", "down"])
def test_a_bad_crm_costs_at_most_its_timeout_then_its_breaker_stops_asking_it(crm, mode):
    clock = Clock()
    if mode == "down":
        crm.close()
        url = Receiver().reserve_port().url + "?n={number}"
    else:
        crm.mode, url = mode, crm.url
    client = CrmClient(conf(url), clock)
    for _ in range(3):
        found, took = timed(client.lookup, "+8613800138002")
        assert found is None and took < 0.3 + 0.2
    assert client.open and client.failed == 3
    asked = len(crm.asked)
    found, took = timed(client.lookup, "+8613800138002")
    assert found is None and took < 0.01 and len(crm.asked) == asked  # not asked at all
    clock.now += 31  # half open: one lookup tries again
    crm.mode = "ok"
    if mode != "down":
        assert client.lookup("+8613800138002").name == "李娜" and not client.open


def test_the_screen_pop_of_a_caller_goes_out_without_context_when_the_crm_hangs(crm):
    crm.mode = "hang"
    tenant = m.Tenant(id="demo", domain="hotline.test", timezone="Europe/Berlin", country="CN",
                      screen_pop=True, crm_lookup=conf(crm.url))
    client = CrmClient(tenant.crm_lookup)
    sent: list[tuple[float, str]] = []
    pop = ScreenPop(m.CallCenter((tenant,)),
                    lambda d, caller, country: crm_lookup(client, caller, country),
                    {"n1": lambda text: sent.append((time.monotonic(), text))})
    start = time.monotonic()
    pop.apply([LiveChange("member", "billing@hotline.test",
                          (("action", "join"), ("call_id", "c0ffee00-0000-4000-8000-000000000001"),
                           ("caller", "13800138002"), ("joined_ms", 1795345631492)),
                          1795345631492)])
    pop.pool.join(timeout=5)
    assert [text for _at, text in sent] == [
        "api uuid_setvar c0ffee00-0000-4000-8000-000000000001 effective_caller_id_name "
        "13800138002 · billing 12:07"]
    assert sent[0][0] - start < 0.3 + 0.2


def test_crm_lookup_yaml_needs_a_number_placeholder_and_sane_bounds(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "tenants:\n  demo:\n    domain: hotline.test\n    timezone: Europe/Berlin\n"
        "    crm_lookup:\n      url: https://crm.example/who\n      timeout_ms: 60000\n")
    with pytest.raises(ConfigErrors) as info:
        load_center(tmp_path, env={})
    lines = [str(e) for e in info.value.errors]
    assert any(":6:" in s and "needs a {number}" in s for s in lines), lines
    assert any(":7:" in s and "between 10 and 5000" in s for s in lines), lines
    (tmp_path / "t.yaml").write_text(
        "tenants:\n  demo:\n    domain: hotline.test\n    timezone: Europe/Berlin\n"
        "    crm_lookup:\n      url: https://crm.example/who?n={number}\n"
        "      token: ${CRM_TOKEN}\n")
    lookup = load_center(tmp_path, env={"CRM_TOKEN": "t0k"}).tenant("demo").crm_lookup
    assert (lookup.url, lookup.token, lookup.timeout_ms) == ("https://crm.example/who?n={number}",
                                                             "t0k", 300)
    assert "t0k" not in repr(lookup)
