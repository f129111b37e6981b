"""The customer directory: numbers normalised per tenant, a CSV import that is checked row by
row and all-or-nothing, ``hotline customers show``, and the caller's entry on the webhooks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from daemon.cli import hotline
from daemon.definition import model as m
from daemon.definition.config import ConfigErrors, load_center
from daemon.integrations.customers import caller_key, normalise
from daemon.storage import outbox, schema
from tests.test_webhooks import SECRET, outbox_rows, write_capture

REPO = Path(__file__).resolve().parent.parent
DEMO_CSV = REPO / "config" / "customers" / "demo.csv"


def run(*args: str):
    return CliRunner().invoke(hotline, list(args), catch_exceptions=False)


def count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(schema.customers)).scalar()
    engine.dispose()
    return n


@pytest.mark.parametrize("dialled", ["13800138001", "013800138001", "+86 138 0013 8001",
                                     "008613800138001", "0086-138-0013-8001"])
def test_every_way_a_chinese_mobile_is_written_is_one_customer(dialled):
    assert normalise(dialled, "CN") == "+8613800138001"


def test_a_berlin_number_with_its_trunk_zero_and_an_extension_that_is_no_number():
    assert normalise("030 1234567", "DE") == normalise("+49 30 1234567", None) == "+49301234567"
    assert normalise("1001", "CN") is None and caller_key("1001", "CN") == "1001"


def test_the_tenants_country_comes_from_yaml_and_a_bad_one_points_at_its_line(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "tenants:\n  demo:\n    domain: hotline.test\n    timezone: Europe/Berlin\n"
        "    country: cn\n  other:\n    domain: other.test\n    timezone: UTC\n"
        "    country: China\n")
    with pytest.raises(ConfigErrors) as info:
        load_center(tmp_path, env={})
    (error,) = info.value.errors  # "cn" is read as CN
    assert error.line == 9
    assert "'country' of tenant 'other' is 'China', which is not a two-letter ISO 3166" in str(error)


def test_importing_the_example_directory_twice_gives_the_same_four_customers(empty_db_url):
    first = run("customers", "import", str(DEMO_CSV), "--tenant", "demo", "--db", empty_db_url,
                "--config", str(REPO / "config"))
    assert first.exit_code == 0 and first.output.strip() == "4 customers imported into tenant 'demo'"
    again = run("customers", "import", str(DEMO_CSV), "--tenant", "demo", "--db", empty_db_url,
                "--config", str(REPO / "config"))
    assert again.exit_code == 0 and count(empty_db_url) == 4
    shown = run("customers", "show", "0086 138 0013 8002", "--tenant", "hotline.test", "--db",
                empty_db_url, "--config", str(REPO / "config"), "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == {
        "number": "+8613800138002", "name": "李娜", "account_id": "ACC-1002", "vip": 2,
        "tags": ["vip", "outage-2026-11"], "language": "zh-CN",
        "notes": 'Prefers callbacks, "after 18:00"'}
    missing = run("customers", "show", "13999999999", "--tenant", "demo", "--db", empty_db_url,
                  "--config", str(REPO / "config"))
    assert missing.exit_code == 1 and "no customer +8613999999999" in missing.output


def test_a_file_with_bad_rows_reports_each_with_its_line_and_writes_nothing(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    bad = tmp_path / "bad.csv"
    bad.write_text("number,name,vip,language\n"
                   "13800138001,Wang Fang,0,zh\n"  # good - but not written either
                   "abc,Nobody,0,en\n"
                   "13800138005,,12,english language\n"
                   "\n"
                   "013800138001,Wang Again,0,zh\n", encoding="utf-8")
    result = CliRunner().invoke(
        hotline, ["customers", "import", str(bad), "--tenant", "demo", "--db", db,
                  "--config", str(REPO / "config")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[:-1] == [
        f"{bad}:3: 'abc' is not a phone number in CN.",
        f"{bad}:4: the name is empty.",
        f"{bad}:4: vip is '12', but it must be a whole number from 0 (not a VIP) to 9.",
        f"{bad}:4: language is 'english language', which is not a language tag like en or zh-CN.",
        f"{bad}:6: number 013800138001 is +8613800138001, already given at line 2.",
    ]
    assert lines[-1] == f"Error: {bad}: 5 errors, nothing imported"
    from daemon.storage.store import migrate

    migrate(db)  # the import did not even touch the database
    assert count(db) == 0


def test_a_header_without_a_name_column_is_refused_at_line_1(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,fullname\n13800138001,Wang Fang\n")
    result = CliRunner().invoke(
        hotline, ["customers", "import", str(bad), "--tenant", "demo", "--db",
                  f"sqlite:///{tmp_path / 'h.db'}", "--config", str(REPO / "config")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}:1: the header needs the column(s) number, name and "
                                    f"has unknown column(s) phone, fullname")


def test_the_answered_webhook_carries_the_callers_directory_entry(empty_db_url):
    imported = run("customers", "import", str(DEMO_CSV), "--tenant", "demo", "--db",
                   empty_db_url, "--config", str(REPO / "config"))
    assert imported.exit_code == 0, imported.output
    sub = m.WebhookSubscription(name="crm", url="http://127.0.0.1:9/", secret=SECRET,
                                events=("call.answered", "call.abandoned", "call.ended"))
    center = m.CallCenter((m.Tenant(id="demo", domain="hotline.test", timezone="Europe/Berlin",
                                    country="CN", webhooks=(sub,)),))
    write_capture(empty_db_url, outbox.OutboxWriter(center), "answered_ivr", "queue_timeout")
    payloads = {(r["event"], json.loads(r["payload"])["data"]["caller"]):
                json.loads(r["payload"])["data"] for r in outbox_rows(empty_db_url)}
    answered = payloads[("call.answered", "13800138001")]
    assert answered["customer"]["name"] == "Wang Fang"
    assert answered["customer"]["account_id"] == "ACC-1001"
    unknown = [d for (ev, caller), d in payloads.items() if caller != "13800138001"
               and ev == "call.ended"]
    assert unknown and all(d["customer"] is None for d in unknown)
