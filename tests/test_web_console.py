"""The console's read pages over real data: the same services as the CLI, tenant-scoped."""
from __future__ import annotations

import json

import pytest
from test_kpi import call_data, migrated
from test_report import ACME_YAML, cli

from daemon.definition.config import load_center
from daemon.definition.model import WebUser
from daemon.live.http_api import HttpApi
from daemon.live.state import MemoryLiveState
from daemon.live.web.auth import hash_secret
from tests.test_web_security import basic, call

DAY = "from=2026-03-02&to=2026-03-02"


@pytest.fixture
def acme(empty_db_url, tmp_path):
    url = migrated(empty_db_url)
    call_data().insert(url)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "acme.yaml").write_text(ACME_YAML, encoding="utf-8")
    users = (WebUser("boss", hash_secret("boss-secret"), "admin", None),
             WebUser("other", hash_secret("other-secret"), "viewer", "nobody"))
    api = HttpApi("127.0.0.1:0", MemoryLiveState().snapshot, load_center(cfg), users=users,
                  database_url=url).start()
    try:
        yield api, url, str(cfg)
    finally:
        api.stop()


def test_report_pages_are_the_cli_report(acme):
    api, url, cfg = acme
    boss = basic("boss", "boss-secret")
    status, headers, page = call(api, f"/reports/view?{DAY}&interval=1h&by=queue", headers=boss)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"queue billing: offered, answered, abandoned calls" in page
    status, headers, csv_body = call(api, f"/reports/csv?{DAY}&interval=1h&by=queue",
                                     headers=boss)
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    code, out = cli("report", "--db", url, "--config", cfg, "--from", "2026-03-02", "--to",
                    "2026-03-02", "--interval", "1h", "--by", "queue", "--format", "csv")
    assert code == 0 and csv_body.decode() == out
    status, _, body = call(api, f"/reports/view?{DAY}&interval=5m", headers=boss)
    assert status == 400 and "unknown interval '5m'" in json.loads(body)["error"]
    status, _, page = call(api, f"/reports?{DAY}&by=agent", headers=boss)
    assert status == 200 and b'src="/reports/view?from=2026-03-02' in page


def test_call_log_a_call_and_the_drill_down(acme):
    api, _, _ = acme
    boss = basic("boss", "boss-secret")
    status, _, page = call(api, "/calls?from=2026-03-01&to=2026-03-03", headers=boss)
    assert status == 200 and b'href="/calls/b1"' in page and b"18 calls" in page
    status, _, page = call(api, "/calls/b1", headers=boss)
    assert status == 200 and b"Segments" in page and b"billing@acme.test" in page
    assert call(api, "/calls/nope", headers=boss)[0] == 404
    status, _, page = call(api, f"/drill?kpi=abandoned&{DAY}", headers=boss)
    assert status == 200 and b"4 rows behind abandoned" in page
    assert b'href="/calls/b8"' in page
    status, _, body = call(api, "/calls?from=yesterday-ish", headers=boss)
    assert status == 400


def test_a_tenant_login_gets_nothing_of_another_tenants_calls(acme):
    api, _, _ = acme
    other = basic("other", "other-secret")
    status, _, page = call(api, "/calls?from=2026-03-01&to=2026-03-03", headers=other)
    assert status == 200 and b"0 calls" in page and b"b1" not in page
    assert call(api, "/calls/b1", headers=other)[0] == 404
    status, _, page = call(api, f"/drill?kpi=abandoned&{DAY}", headers=other)
    assert status == 400 or b"b8" not in page
    assert call(api, f"/reports/csv?{DAY}&tenant=acme", headers=other)[0] == 403
