"""QA scores and CLI dispositions: stored, validated against the model, and counted by the KPIs."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from test_kpi import call_data, migrated, run
from test_report import ACME_YAML

from cli import hotline
from daemon.stats.report import make_engine
from daemon.storage import schema


@pytest.fixture
def acme(empty_db_url, tmp_path):
    url = migrated(empty_db_url)
    call_data().insert(url)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "acme.yaml").write_text(ACME_YAML, encoding="utf-8")
    return url, str(cfg)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(hotline, list(args))
    return result.exit_code, result.output


def rows_of(url: str, table) -> list[dict]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = [dict(r) for r in conn.execute(select(table)).mappings()]
    engine.dispose()
    return out


def test_qa_score_is_stored_and_moves_the_agents_qa_score(acme):
    url, cfg = acme
    code, out = cli("qa", "score", "b3", "100", "--agent", "1002", "--by", "Li Na",
                    "--note", "calm and clear", "--db", url, "--config", cfg, "--json")
    assert code == 0, out
    saved = json.loads(out)
    assert saved["agent"] == "1002@acme.test" and saved["score"] == 100 and saved["call_known"]
    stored = [r for r in rows_of(url, schema.qa_scores) if r["scored_by"] == "Li Na"]
    assert stored[0]["note"] == "calm and clear" and stored[0]["call_id"] == "b3"
    # 1002 had 70 on b3; now (70 + 100) / 2, in the interval where b3 entered the queue
    rows = {r["agent"]: r for r in run(url, by="agent", kpis=("qa_score",))}
    assert rows["1002"]["qa_score"] == pytest.approx(85.0)


@pytest.mark.parametrize("args,message", [
    (("b3", "101", "--agent", "1002"), "a QA score is 0-100"),
    (("b3", "50", "--agent", "1009"), "has no agent '1009'"),
    (("b3", "50", "--agent", "1001"), "did not talk to the caller of call b3"),
])
def test_qa_score_refuses_bad_input(acme, args, message):
    url, cfg = acme
    code, out = cli("qa", "score", *args, "--by", "QA", "--db", url, "--config", cfg)
    assert code == 1
    assert message in out
    assert len(rows_of(url, schema.qa_scores)) == 3  # nothing added


def test_disposition_checks_the_tenants_codes(acme):
    url, cfg = acme
    code, out = cli("disposition", "b3", "7", "--db", url, "--config", cfg)
    assert code == 1
    assert "has no disposition '7'" in out and "1 (Solved)" in out


def test_disposition_resolves_the_call_for_fcr(acme):
    url, cfg = acme
    before = run(url)[0]["fcr"]
    assert before == pytest.approx(500 / 7, abs=1e-3)
    code, out = cli("disposition", "b3", "1", "--db", url, "--config", cfg)
    assert code == 0, out
    assert "disposition 1 (Solved, resolved)" in out
    stored = {r["call_id"]: r for r in rows_of(url, schema.dispositions)}
    assert stored["b3"]["source"] == "cli" and stored["b3"]["agent"] == "1002@acme.test"
    # b3 had a repeat call within 72 h; a resolved code now counts it: 6 of 7
    assert run(url)[0]["fcr"] == pytest.approx(600 / 7, abs=1e-3)
    # a second code replaces the first
    code, out = cli("disposition", "b3", "2", "--db", url, "--config", cfg, "--json")
    assert code == 0 and json.loads(out)["resolved"] is False
    assert run(url)[0]["fcr"] == pytest.approx(500 / 7, abs=1e-3)


def test_a_disposition_or_qa_score_for_a_call_that_does_not_exist_is_refused(acme):
    url, cfg = acme
    code, out = cli("disposition", "no-such-call", "42", "--db", url, "--config", cfg)
    assert code == 1 and "no call no-such-call in the database" in out
    code, out = cli("qa", "score", "no-such-call", "90", "--agent", "1002", "--by", "lead",
                    "--db", url, "--config", cfg)
    assert code == 1 and "no call no-such-call in the database" in out
    assert "no-such-call" not in {r["call_id"] for r in rows_of(url, schema.dispositions)}
    assert "no-such-call" not in {r["call_id"] for r in rows_of(url, schema.qa_scores)}
