"""`hotline report` end to end: the CLI, its formats, the docs page and the recorded captures."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_kpi import call_data, migrated

from cli import hotline
from daemon.stats import kpi as K

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"

ACME_YAML = """\
tenants:
  acme:
    name: Acme
    domain: acme.test
    timezone: Asia/Shanghai
    queues:
      billing: {name: Billing, tiers: ["1001", "1002", "1003"]}
      sales: {name: Sales, service_level_s: 30, short_abandon_s: 10, ring_cycle_s: 5,
              fcr_window_h: 24, tiers: ["1003"]}
      vip: {name: VIP, tiers: ["1004"]}
    teams:
      red: {name: Red}
      blue: {name: Blue}
    agents:
      "1001": {name: A1, password: pw, team: red, start_date: 2025-01-01,
               shifts: {mon: "09:00-17:00"}}
      "1002": {name: A2, password: pw, team: red, end_date: 2026-03-15,
               shifts: {mon: "09:00-17:00"}}
      "1003": {name: A3, password: pw, team: blue, start_date: 2026-02-01,
               shifts: {mon: "13:00-17:00"}}
      "1004": {name: A4, password: pw, team: blue, start_date: 2026-03-10}
    dispositions:
      "1": {name: Solved, resolved: true}
      "2": Pending
    costs:
      - {from: 2026-03-02, to: 2026-03-02, amount: 700}
"""


@pytest.fixture
def acme(empty_db_url, tmp_path):
    """(db url, config dir) with the hand-built call dataset of test_kpi."""
    url = migrated(empty_db_url)
    call_data().insert(url)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "acme.yaml").write_text(ACME_YAML, encoding="utf-8")
    return url, str(cfg)


def cli(*args: str) -> tuple[int, str]:
    """(exit code, stdout) on success — csv/json stay parseable, the thresholds go to
    stderr — and (exit code, everything) on failure, where the error is on stderr."""
    result = CliRunner().invoke(hotline, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_docs_define_every_kpi_and_nothing_else():
    text = (REPO / "docs" / "KPIS.md").read_text(encoding="utf-8")
    documented = re.findall(r"^### `([a-z_]+)`", text, flags=re.M)
    assert len(documented) == len(set(documented)), "a KPI is documented twice"
    assert set(documented) == set(K.KPIS)
    for kid in K.KPIS:  # each entry gives a formula and the groupings the code supports
        entry = text.split(f"### `{kid}`", 1)[1].split("\n### ", 1)[0]
        assert "Formula" in entry or "formula" in entry, kid
        groupings = re.search(r"^Groupings: ([a-z, ]+)\.", entry, flags=re.M)
        assert groupings, f"{kid}: no 'Groupings: ...' line"
        assert set(groupings.group(1).split(", ")) == K.KPIS[kid].bys, kid


def test_json_report_rows(acme):
    url, cfg = acme
    code, out = cli("report", "--db", url, "--config", cfg, "--from", "2026-03-02T09:00",
                    "--to", "2026-03-02T10:00", "--interval", "30m", "--by", "queue",
                    "--kpi", "offered,service_level,asa", "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    # 2 half-hours x (billing, sales, vip); no call-start KPI asked: no "(none)" row
    assert len(rows) == 6
    assert list(rows[0]) == ["interval_start", "interval_end", "tenant", "queue", "offered",
                             "service_level", "asa"]
    first = {r["queue"]: r for r in rows if r["interval_start"] == "2026-03-02T09:00:00+08:00"}
    # billing 09:00-09:30: b1..b6 all answered, 5 within 20 s
    assert first["billing"]["offered"] == 6
    assert first["billing"]["service_level"] == pytest.approx(500 / 6, abs=1e-3)
    assert first["vip"] == {**first["vip"], "offered": 0, "service_level": None, "asa": None}
    assert rows[-1]["interval_end"] == "2026-03-02T10:00:00+08:00"


def test_table_fits_100_columns_and_states_thresholds(acme):
    url, cfg = acme
    code, out = cli("report", "--db", url, "--config", cfg, "--from", "2026-03-02",
                    "--to", "2026-03-02", "--by", "agent")
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "sales@acme.test: SL 30 s" in out
    assert "short abandon <= 10 s" in out
    for kid in K.KPIS:  # every KPI shows up in one of the column blocks
        assert kid in out


def test_csv_report(acme):
    url, cfg = acme
    code, out = cli("report", "--db", url, "--config", cfg, "--from", "2026-03-02",
                    "--to", "2026-03-03", "--kpi", "total_calls,cost_per_call", "--format", "csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["total_calls"] for r in rows] == ["16", "2"]
    assert float(rows[0]["cost_per_call"]) == pytest.approx(43.75)
    assert rows[1]["cost_per_call"] == ""  # no cost configured for 3 March: undefined


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_csv_and_json_state_the_thresholds_on_stderr_one_line_per_queue(acme, fmt):
    url, cfg = acme
    result = CliRunner().invoke(hotline, [
        "report", "--db", url, "--config", cfg, "--from", "2026-03-02", "--to", "2026-03-02",
        "--by", "queue", "--kpi", "offered,service_level", "--format", fmt])
    assert result.exit_code == 0, result.output
    notes = result.stderr.splitlines()
    assert notes == [
        "thresholds used: billing@acme.test: SL 20 s (target 80%), short abandon <= 20 s, "
        "ring cycle 6 s, FCR 72 h",
        "thresholds used: sales@acme.test: SL 30 s (target 80%), short abandon <= 10 s, "
        "ring cycle 5 s, FCR 24 h",
        "thresholds used: vip@acme.test: SL 20 s (target 80%), short abandon <= 20 s, "
        "ring cycle 6 s, FCR 72 h"]
    # the body is still nothing but rows
    if fmt == "json":
        rows = json.loads(result.stdout)
        assert isinstance(rows, list) and {r["queue"] for r in rows} == {"billing", "sales",
                                                                           "vip"}
    else:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["queue"] for r in rows] == ["billing", "sales", "vip"]
        assert "thresholds" not in result.stdout


def test_default_range_is_the_whole_data(acme):
    url, cfg = acme
    code, out = cli("report", "--db", url, "--config", cfg, "--kpi", "total_calls",
                    "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    # first call 08:59:30 on 2 March, last (repeat call of B) on 6 March
    assert rows[0]["interval_start"] == "2026-03-02T00:00:00+08:00"
    assert rows[-1]["interval_start"] == "2026-03-06T00:00:00+08:00"
    assert [r["total_calls"] for r in rows] == [16, 2, 0, 0, 1]


def test_html_report_is_self_contained(acme, tmp_path):
    url, cfg = acme
    out_file = tmp_path / "r.html"
    code, out = cli("report", "--db", url, "--config", cfg, "--from", "2026-03-02",
                    "--to", "2026-03-02", "--interval", "1h", "--by", "queue",
                    "--format", "html", "--out", str(out_file))
    assert code == 0, out
    page = out_file.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # per queue with calls (billing, sales): volume, service level, ASA; then occupancy
    assert page.count("<svg") == 7
    assert "queue vip" in page and "No calls in this range." in page  # vip had none
    assert "<script" not in page
    # no resource is fetched: the only URLs are XML namespaces inside the SVGs
    urls = set(re.findall(r"(?:src|href)=\"(https?://[^\"]+)\"", page))
    assert urls == set()
    assert "target 80%" in page
    assert "Thresholds used" in page and "@media print" in page


def test_drill_down_cli(acme):
    url, cfg = acme
    code, out = cli("report", "calls", "--kpi", "abandon_rate", "--queue", "billing",
                    "--from", "2026-03-02T09:00", "--to", "2026-03-02T10:00", "--db", url,
                    "--config", cfg, "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    assert {r["call_id"] for r in rows if r["part"] == "both"} == {"b9", "b10"}
    assert len([r for r in rows if r["part"] == "denominator"]) == 7
    code, out = cli("report", "calls", "--kpi", "abandon_rate", "--queue", "billing",
                    "--from", "2026-03-02T09:00", "--to", "2026-03-02T10:00", "--db", url,
                    "--config", cfg)
    assert code == 0, out
    assert "2 row(s) in the numerator, 9 in the denominator" in out


@pytest.mark.parametrize("args,message", [
    (("--kpi", "nope"), "unknown KPI 'nope'"),
    (("--queue", "nope"), "no tenant has queue 'nope'"),
    (("--from", "March"), "cannot read --from 'March'"),
    (("--from", "2026-03-03", "--to", "2026-03-01"), "--to must be after --from"),
])
def test_report_user_errors(acme, args, message):
    url, cfg = acme
    code, out = cli("report", "--db", url, "--config", cfg, *args)
    assert code == 1
    assert message in out


def test_report_from_replayed_captures(empty_db_url):
    """The captures' truth files imply these KPI values (wait/talk within event resolution)."""
    from daemon.definition.config import load_center
    from daemon.storage.replay import replay

    names = ["answered_ivr", "abandoned_long", "abandoned_short", "hold", "queue_timeout",
             "ivr_only", "blind_transfer"]
    url = migrated(empty_db_url)
    replay([CAPTURES / f"{n}.esl" for n in names], url, load_center(REPO / "config"))
    visits = [v for n in names
              for c in json.loads((CAPTURES / f"{n}.truth.json").read_text())["calls"]
              for v in c.get("queue_visits", [])]
    billing = [v for v in visits if v["queue"] == "billing@hotline.test"]
    answered = [v for v in billing if v["outcome"] in ("answered", "transferred")]
    code, out = cli("report", "--db", url, "--config", str(REPO / "config"), "--tenant", "demo",
                    "--interval", "month", "--by", "queue", "--format", "json")
    assert code == 0, out
    rows = {r["queue"]: r for r in json.loads(out)}
    b = rows["billing"]
    assert (b["offered"], b["answered"], b["abandoned"], b["short_abandoned"]) == (5, 3, 2, 1)
    assert b["service_level"] == pytest.approx(75.0)  # 3 within 20 s of 5 - 1 short
    assert b["abandon_rate"] == pytest.approx(25.0)
    assert b["transfer_rate"] == pytest.approx(100 / 3, abs=1e-3)
    assert b["asa"] == pytest.approx(sum(v["wait_s"] for v in answered) / 3, abs=0.06)
    assert b["avg_talk_time"] == pytest.approx(sum(v["talk_s"] for v in answered) / 3, abs=0.06)
    assert b["avg_hold_time"] == pytest.approx(sum(v["hold_s"] for v in answered) / 3, abs=0.06)
    assert b["acw"] == pytest.approx(sum(v["wrapup_s"] for v in answered) / 3, abs=0.06)
    assert b["avg_ring_time"] == pytest.approx(sum(v["ring_s"] for v in answered) / 3, abs=0.06)
    sales, outage = rows["sales"], rows["outage"]
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (1, 0, 0)  # timeout
    assert sales["service_level"] == pytest.approx(0.0)
    assert (outage["offered"], outage["answered"]) == (1, 1)  # the transferred call
    code, out = cli("report", "--db", url, "--config", str(REPO / "config"), "--tenant", "demo",
                    "--interval", "month", "--kpi", "total_calls,ivr_only,offered,"
                    "queue_placement_rate", "--format", "json")
    t = json.loads(out)[0]
    assert (t["total_calls"], t["ivr_only"], t["offered"]) == (7, 1, 7)
    assert t["queue_placement_rate"] == pytest.approx(600 / 7, abs=1e-3)


def test_report_on_a_missing_database_or_one_without_statistics(tmp_path):
    code, out = cli("report", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 1 and "does not exist" in out
    assert not (tmp_path / "none.db").exists()
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    code, out = cli("report", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert code == 1 and "has no Hotline tables yet" in out


def test_busy_hour_capture_matches_its_truth_file(empty_db_url):
    """150 overlapping calls: every queue's counts and averages as the truth file has them."""
    from daemon.definition.config import load_center
    from daemon.storage.replay import replay

    url = migrated(empty_db_url)
    replay([CAPTURES / "busy_hour.esl.gz"], url, load_center(REPO / "config"))
    truth = json.loads((CAPTURES / "busy_hour.truth.json").read_text())
    code, out = cli("report", "--db", url, "--config", str(REPO / "config"), "--tenant", "demo",
                    "--interval", "month", "--by", "queue", "--format", "json")
    assert code == 0, out
    rows = {r["queue"]: r for r in json.loads(out)}
    for queue in ("billing", "outage"):
        visits = [v for c in truth["calls"] for v in c.get("queue_visits", [])
                  if v["queue"] == f"{queue}@hotline.test"]
        ans = [v for v in visits if v["outcome"] in ("answered", "transferred")]
        short = [v for v in visits if v["outcome"] == "short-abandon"]
        gone = [v for v in visits if v["outcome"] in ("abandoned", "short-abandon")]
        r = rows[queue]
        assert (r["offered"], r["answered"], r["abandoned"], r["short_abandoned"]) == (
            len(visits), len(ans), len(gone), len(short)), queue
        within = [v for v in ans if v["wait_s"] <= 20]
        assert r["service_level"] == pytest.approx(
            100 * len(within) / (len(visits) - len(short)), abs=1e-3)
        assert r["abandon_rate"] == pytest.approx(
            100 * (len(gone) - len(short)) / (len(visits) - len(short)), abs=1e-3)
        assert r["transfer_rate"] == pytest.approx(
            100 * sum(v["outcome"] == "transferred" for v in ans) / len(ans), abs=1e-3)
        for kpi_id, key in (("asa", "wait_s"), ("avg_talk_time", "talk_s"),
                            ("avg_hold_time", "hold_s"), ("acw", "wrapup_s"),
                            ("avg_ring_time", "ring_s")):
            expected = sum(v[key] or 0 for v in ans) / len(ans)
            assert r[kpi_id] == pytest.approx(expected, abs=0.06), (queue, kpi_id)


def test_a_connected_callback_counts_once_in_talk_and_handle_time_averages(empty_db_url):
    """Agent 2002 answers one survey-queue call (5.74 s talk) and one callback (6.02 s talk):
    both conversations are in the numerator and both are handled calls below it."""
    from daemon.definition.config import load_center
    from daemon.storage.replay import replay

    names = ["survey_call", "callback_connected"]
    url = migrated(empty_db_url)
    replay([CAPTURES / f"{n}.esl" for n in names], url, load_center(REPO / "config"))
    truth = {n: json.loads((CAPTURES / f"{n}.truth.json").read_text()) for n in names}
    talks = [truth["survey_call"]["calls"][0]["talk_s"],
             truth["callback_connected"]["calls"][0]["callback"]["talk_s"]]
    code, out = cli("report", "--db", url, "--config", str(REPO / "config"), "--tenant",
                    "cityutil", "--interval", "month", "--by", "agent", "--format", "json")
    assert code == 0, out
    agent = next(r for r in json.loads(out) if r["agent"] == "2002")
    assert agent["avg_talk_time"] == pytest.approx(sum(talks) / 2, abs=0.06)
    assert agent["aht"] >= agent["avg_talk_time"]
    code, out = cli("report", "calls", "--db", url, "--config", str(REPO / "config"),
                    "--tenant", "cityutil", "--agent", "2002", "--kpi", "avg_talk_time",
                    "--json")
    assert code == 0, out
    below = {r["call_id"] for r in json.loads(out) if r["part"] in ("denominator", "both")}
    assert below == {truth["survey_call"]["calls"][0]["call_uuid"],
                     truth["callback_connected"]["calls"][0]["call_uuid"]}
