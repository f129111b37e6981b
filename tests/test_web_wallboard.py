"""The wallboard's figures, /metrics and /health: the same numbers as the report, real databases.

A capture replayed into SQLite and PostgreSQL; the wallboard's "today so far" for that
day must equal ``hotline report`` for the same day, queue by queue and agent by agent.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import gevent
import pytest
from click.testing import CliRunner
from test_kpi import migrated

from cli import hotline
from daemon.definition.config import load_center
from daemon.engine.records import LiveChange
from daemon.live.http_api import HttpApi, _report_engine
from daemon.live.state import MemoryLiveState
from daemon.live.web.board import TODAY_KPIS, CallsSeen, TodayFigures, board

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "tests" / "data" / "captures"
NAMES = ["answered_ivr", "abandoned_long", "abandoned_short", "hold", "queue_timeout",
         "blind_transfer"]


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


def replayed(url: str, center) -> str:
    from daemon.storage.replay import replay

    url = migrated(url)
    replay([CAPTURES / f"{n}.esl" for n in NAMES], url, center)
    return url


def capture_day(url: str) -> tuple[str, int]:
    """The captures' day in Berlin (tenant demo) and a moment late that day."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        first = conn.execute(text("SELECT min(started_ms) FROM calls")).scalar()
    engine.dispose()
    day = dt.datetime.fromtimestamp(first / 1000, ZoneInfo("Europe/Berlin")).date()
    late = dt.datetime.combine(day, dt.time(23, 0), ZoneInfo("Europe/Berlin"))
    return day.isoformat(), int(late.timestamp() * 1000)


def report_json(url: str, day: str, by: str, kpis: str) -> dict[str, dict]:
    result = CliRunner().invoke(hotline, [
        "report", "--db", url, "--config", str(REPO / "config"), "--tenant", "demo",
        "--from", day, "--to", day, "--by", by, "--kpi", kpis, "--format", "json"])
    assert result.exit_code == 0, result.output
    return {r[by]: r for r in json.loads(result.stdout)}


def test_today_so_far_equals_hotline_report_for_the_day_after_replaying_captures(
        empty_db_url, center):
    url = replayed(empty_db_url, center)
    day, late_ms = capture_day(url)
    engine = _report_engine(url)
    try:
        today = TodayFigures(engine, center, now_ms=lambda: late_ms)
        figures = today.refresh()["demo"]
    finally:
        engine.dispose()
    assert today.error is None
    by_queue = report_json(url, day, "queue", ",".join(TODAY_KPIS))
    assert figures["queues"]["billing"]["offered"] > 0  # the captures did reach the board
    for queue in ("billing", "outage", "sales"):
        assert figures["queues"][queue] == {k: by_queue[queue][k] for k in TODAY_KPIS}, queue
    by_agent = report_json(url, day, "agent", "answered")
    assert {a: n for a, n in figures["agents"].items() if n} == \
        {a: r["answered"] for a, r in by_agent.items() if r["answered"]}
    # the daemon computes them in a worker process (off its GIL): the same figures
    from daemon.live.web.today_worker import TodayProcess

    worker = TodayProcess(url, str(REPO / "config"), lambda: late_ms)
    try:
        assert worker.refresh()["demo"] == figures and worker.error is None
    finally:
        worker.close()
    # and the view the page gets carries them, per queue and per agent
    view = board({"at_ms": late_ms, "agents": {}, "queues": {}}, center, {"demo": figures},
                 CallsSeen(), tenant="demo")
    [tenant] = view["tenants"]
    billing = next(q for q in tenant["queues"] if q["id"] == "billing@hotline.test")
    assert billing["today"] == figures["queues"]["billing"]
    assert billing["sl_threshold_s"] == 20 and tenant["day"] == day


def test_an_agent_on_a_call_shows_the_caller_and_queue_the_stream_saw_join(center):
    calls = CallsSeen()
    calls.note({"kind": "member", "key": "billing@hotline.test",
                "data": {"action": "join", "call_id": "c1", "caller": "13800138000"}})
    snap = {"at_ms": 10_000, "queues": {},
            "agents": {"1001@hotline.test": {"status": "Available", "state": "In a queue call",
                                             "call_id": "c1", "since_ms": 4_000}}}
    view = board(snap, center, {}, calls, tenant=None)
    demo = next(t for t in view["tenants"] if t["id"] == "demo")
    agent = next(a for a in demo["agents"] if a["id"] == "1001@hotline.test")
    assert (agent["caller"], agent["queue"], agent["since_ms"]) == ("13800138000", "billing",
                                                                    4_000)
    billing = next(q for q in demo["queues"] if q["id"] == "billing@hotline.test")
    assert billing["agents_by_state"] == {"In a queue call": 1}  # agents not seen yet: not counted


def get(api, path):
    def go():
        conn = http.client.HTTPConnection(*api.address, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
    return gevent.get_hub().threadpool.apply(go)


def test_metrics_scrape_in_prometheus_format_with_live_and_daemon_figures(center, tmp_path):
    from tests.test_http_api import http_service

    live = MemoryLiveState()
    live.apply([LiveChange("member", "billing@hotline.test", (
        ("call_id", "c1"), ("caller", "1"), ("joined_ms", 1_000), ("action", "join")), 1_000),
        LiveChange("agent", "1001@hotline.test", (("status", "Available"),
                                                  ("state", "Waiting")), 1_000)])
    api = HttpApi("127.0.0.1:0", live.snapshot, center,
                  database_url=f"sqlite:///{tmp_path / 'm.db'}")
    from daemon.definition.model import EslNode
    from tests.test_http_api import closed_port

    service, _ = http_service([EslNode("fs1", "127.0.0.1", closed_port())], live, api)
    api.service = service
    greenlet = gevent.spawn(service.run)
    try:
        for _ in range(100):
            if api.address and service.supervisors:
                break
            gevent.sleep(0.02)
        service.supervisors[0].events_received = 3  # as if the switch had sent three events
        status, body = get(api, "/metrics")
        text = body.decode()
        assert status == 200
        assert 'hotline_events_received_total{node="fs1"} 3.0' in text
        assert 'hotline_queue_callers_waiting{queue="billing@hotline.test"} 1.0' in text
        assert 'hotline_queue_longest_wait_seconds{queue="billing@hotline.test"}' in text
        assert ('hotline_queue_agents{queue="billing@hotline.test",state="Waiting",'
                'status="Available"} 1.0') in text
        assert 'hotline_node_up{node="fs1"}' in text and "hotline_engine_errors_total 0.0" in text
    finally:
        service.stop()
        greenlet.join(5)


def test_health_says_not_ok_while_the_database_is_unreachable(center):
    live = MemoryLiveState()
    # a PostgreSQL port nobody listens on: the ping fails at once
    api = HttpApi("127.0.0.1:0", live.snapshot, center,
                  database_url="postgresql+psycopg2://postgres@127.0.0.1:1/none").start(
        lambda: {"ok": True, "nodes": {"fs1": {"connected": True}}})
    try:
        status, body = get(api, "/health")
        data = json.loads(body)
        assert status == 503 and data["ok"] is False
        assert data["database"]["connected"] is False and "unreachable" in data["database"]
        assert data["nodes"]["fs1"]["connected"] is True
    finally:
        api.stop()


def test_every_metric_the_docs_and_the_grafana_dashboard_name_is_scraped(tmp_path):
    import re

    from daemon.definition.model import Settings
    from daemon.live.metrics import ServiceCollector, render
    from daemon.service import build_service

    service = build_service(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                                     journal_dir=str(tmp_path / "j"),
                                     config_dir=str(tmp_path / "none"),
                                     http_listen="127.0.0.1:0"))
    try:
        text = render(ServiceCollector(service.live.snapshot, service,
                                       redis_up=lambda: True)).decode()
    finally:
        service.store.close()
        for close in service.closers:
            close()
    scraped = set(re.findall(r"^# TYPE (hotline_\w+)", text, re.M))
    scraped |= {n + "_total" for n in scraped}  # counters are named without it in TYPE
    docs = (REPO / "docs" / "WEB.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(hotline_[a-z_]+)`", docs))
    dashboard = set(re.findall(r"hotline_[a-z_]+", (REPO / "docs" / "grafana-hotline.json")
                               .read_text(encoding="utf-8")))
    assert dashboard <= documented
    assert documented <= scraped, documented - scraped
