"""``hotline campaign`` and ``hotline dnc``: what an operator types, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from daemon.cli import hotline

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config")
REVISIT = str(REPO / "config/cityutil/contacts/revisit.csv")


def run(*args: str):
    result = CliRunner().invoke(hotline, list(args))
    return result.exit_code, result.output


def test_import_twice_start_status_and_the_dnc_list(empty_db_url):
    db = ("--db", empty_db_url, "--config", CONFIG)
    code, out = run("campaign", "import", REVISIT, "--campaign", "revisit", "--tenant",
                    "cityutil", *db)
    assert code == 0 and "4 contact(s) for campaign revisit: 4 new" in out, out
    code, out = run("campaign", "import", REVISIT, "--campaign", "revisit", "--tenant",
                    "cityutil", *db, "--json")
    assert code == 0 and json.loads(out)["new"] == 0 and json.loads(out)["updated"] == 4
    code, out = run("dnc", "add", "0086 138-0013-8003", "--tenant", "cityutil", *db)
    assert code == 0 and "1 number(s) added" in out
    assert run("campaign", "start", "revisit", "--tenant", "cityutil", *db) == \
        (0, "campaign revisit: stopped -> running\n")
    code, out = run("campaign", "start", "revisit", "--tenant", "cityutil", *db)
    assert code == 1 and "is running; it cannot be set to running" in out
    assert run("campaign", "pause", "revisit", "--tenant", "cityutil", *db)[0] == 0
    code, out = run("campaign", "status", "revisit", "--tenant", "cityutil", *db, "--json")
    status = json.loads(out)
    assert (status["state"], status["contacts"], status["pending"], status["dnc"]) == \
        ("paused", 4, 3, 1)
    code, out = run("dnc", "list", "--tenant", "cityutil", *db, "--json")
    assert [r["number"] for r in json.loads(out)] == ["+8613800138003"]


def test_a_bad_csv_lists_its_lines_and_exits_1(tmp_path, empty_db_url):
    bad = tmp_path / "bad.csv"
    bad.write_text("number,work_order,district\nabc,W1,x\n13800138001,,x\n", encoding="utf-8")
    code, out = run("campaign", "import", str(bad), "--campaign", "revisit", "--tenant",
                    "cityutil", "--db", empty_db_url, "--config", CONFIG)
    assert code == 1
    assert f"{bad}:3: empty field(s) work_order" in out
    assert f"{bad}:2: 'abc' is not a phone number" in out
    assert "2 error(s), nothing imported" in out


def test_unknown_campaign_and_tenant_are_one_line_errors(empty_db_url):
    code, out = run("campaign", "status", "nope", "--tenant", "cityutil", "--db", empty_db_url,
                    "--config", CONFIG)
    assert code == 1 and "has no campaign 'nope' (it has: revisit, outage_notice)" in out
    code, out = run("dnc", "add", "123", "--tenant", "acme", "--db", empty_db_url,
                    "--config", CONFIG)
    assert code == 1 and "no tenant 'acme'" in out


def test_read_commands_never_create_a_database(tmp_path):
    db = tmp_path / "none.db"
    code, out = run("campaign", "list", "--tenant", "cityutil", "--db", f"sqlite:///{db}",
                    "--config", CONFIG, "--json")
    assert code == 0 and [r["state"] for r in json.loads(out)] == ["stopped", "stopped"]
    for args in (("campaign", "status", "revisit"), ("campaign", "results", "revisit"),
                 ("dnc", "list")):
        code, out = run(*args, "--tenant", "cityutil", "--db", f"sqlite:///{db}", "--config",
                        CONFIG)
        assert code == 1 and "does not exist" in out, (args, out)
    assert not db.exists()
