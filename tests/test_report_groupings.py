"""Report groupings by call type: dialed number, IVR choices, disposition code.

The dataset is test_kpi's call dataset of Monday 2 March 2026, 09:00-10:00 (Asia/Shanghai),
with two DIDs and IVR choices added:

* 4008001234 (billing line): b1..b10 (IVR choice "1"); b7 is transferred to sales and
  stays on its number.
* 4008005678 (sales line): s2, s3 (IVR choice "2"), i1 (IVR-only, choice "3"), k1
  (blocked before the IVR: no choice).

Dispositions of the answered calls: b1 "1" (phone, dispositions table), b4 "2" (CLI),
b6 "1" on its talk segment but corrected to "2" in the dispositions table (the table wins);
b2, b3, b5 and both stays of b7 have none.
"""
from __future__ import annotations

import pytest
from test_kpi import DOMAIN, D, at, call_data, center, migrated, run

from daemon.definition.model import Number
from daemon.stats import kpi as K

BILLING_DID, SALES_DID = "4008001234", "4008005678"


def grouped_data():
    d = call_data()
    sales_calls = {"s2", "s3", "i1", "k1"}
    ivr = {"s2": "2", "s3": "2", "i1": "3", "k1": ""}
    for c in d.calls:
        if c["call_id"] in sales_calls:
            c["dialed"] = SALES_DID
        c["ivr_path"] = ivr.get(c["call_id"], "1")
    for s in d.segments:
        if s["call_id"] in sales_calls:
            s["dialed"] = SALES_DID
    d.dispositions.append(dict(call_id="b6", agent=f"1003@{DOMAIN}", code="2", source="cli",
                               entered_ms=at(D, 9, 40)))
    return d


@pytest.fixture
def grouped_db(empty_db_url):
    url = migrated(empty_db_url)
    grouped_data().insert(url)
    return url


def model():
    # the sales line is in the YAML; the billing line only in the data
    return center(numbers=(Number(SALES_DID, "Sales line", ()),))


def test_total_calls_and_queue_measures_by_dialed_number(grouped_db):
    rows = run(grouped_db, by="number", end="2026-03-02T11:00", model=model(),
               kpis=("total_calls", "blocked", "ivr_only", "offered", "answered",
                    "service_level", "occupancy"))
    by = {(r["interval_start"][11:16], r["number"]): r for r in rows}
    # the YAML's number first, then the numbers met in the data; every hour has every number
    assert [r["number"] for r in rows] == [SALES_DID, BILLING_DID] * 2
    billing, sales = by["09:00", BILLING_DID], by["09:00", SALES_DID]
    assert (billing["total_calls"], billing["blocked"], billing["ivr_only"]) == (10, 0, 0)
    assert (sales["total_calls"], sales["blocked"], sales["ivr_only"]) == (4, 1, 1)
    # queue stays keep the number of their call: b1..b10 + b7's stay in sales = 11 offered,
    # 8 answered; the sales line: s2 (a counted abandon with sales' 10 s) and s3 (timeout)
    assert (billing["offered"], billing["answered"]) == (11, 8)
    assert (sales["offered"], sales["answered"]) == (2, 0)
    # billing line SL: 5 of billing's within 20 s + b7's sales stay within 30 s = 6 of
    # 11 offered - 1 short abandon (b8)
    assert billing["service_level"] == pytest.approx(60.0)
    assert sales["service_level"] == pytest.approx(0.0)
    assert billing["occupancy"] is None  # agent time has no number
    empty = by["10:00", SALES_DID]
    assert (empty["total_calls"], empty["offered"], empty["service_level"]) == (0, 0, None)


def test_total_calls_by_ivr_choice(grouped_db):
    rows = run(grouped_db, by="ivr", model=model(),
               kpis=("total_calls", "ivr_only", "blocked", "queue_placement_rate", "offered"))
    by = {r["ivr"]: r for r in rows}
    assert list(by) == ["1", "2", "3", "(none)"]
    assert [by[k]["total_calls"] for k in by] == [10, 2, 1, 1]
    assert by["3"]["ivr_only"] == 1 and by["(none)"]["blocked"] == 1
    assert by["1"]["queue_placement_rate"] == pytest.approx(100.0)
    assert by["3"]["queue_placement_rate"] == pytest.approx(0.0)
    assert by["1"]["offered"] is None  # a queue measure is not defined by IVR choice


def test_answered_calls_by_disposition_code(grouped_db):
    rows = run(grouped_db, by="disposition", model=model(),
               kpis=("answered", "aht", "fcr", "offered"))
    by = {r["disposition"]: r for r in rows}
    assert list(by) == ["1", "2", "(none)"]  # the YAML's codes, then calls without one
    assert [by[k]["answered"] for k in by] == [1, 2, 5]
    # "1": b1 talk 100 + wrap-up 10; "2": b4 90 + 20 and b6 (talk 150, hold 60, wrap-up 5)
    assert by["1"]["aht"] == pytest.approx(110.0)
    assert by["2"]["aht"] == pytest.approx((110 + 215) / 2)
    # without a code: b2 (B called again after 96 h), b3 (C within 72 h), b5 (anonymous:
    # left out), b7 in billing (G after 26 h, 72 h window), b7 in sales (24 h window)
    assert by["(none)"]["fcr"] == pytest.approx(50.0)
    assert by["1"]["offered"] is None  # unanswered calls have no disposition


def test_every_grouping_of_a_kpi_is_a_known_one():
    for k in K.KPIS.values():
        assert k.bys <= set(K.BYS), k.id
    assert "disposition" in K.KPIS["aht"].bys and "ivr" in K.KPIS["total_calls"].bys


def test_cli_table_and_html_by_call_type(grouped_db, tmp_path):
    from click.testing import CliRunner
    from test_report import ACME_YAML

    from cli import hotline

    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "acme.yaml").write_text(ACME_YAML, encoding="utf-8")
    common = ["report", "--db", grouped_db, "--config", str(cfg), "--from", "2026-03-02T09:00",
              "--to", "2026-03-02T10:00", "--interval", "1h"]
    result = CliRunner().invoke(hotline, common + ["--by", "ivr", "--kpi", "total_calls"])
    assert result.exit_code == 0, result.output
    lines = {ln.split()[2]: ln.split()[3] for ln in result.stdout.splitlines()
             if ln.startswith("2026-03-02 09:00")}
    assert lines == {"1": "10", "2": "2", "3": "1", "(none)": "1"}
    page = tmp_path / "r.html"
    result = CliRunner().invoke(hotline, common + ["--by", "disposition", "--format", "html",
                                                   "--out", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert '<th class="key">disposition</th>' in html
    # one hour, one row per code in each themed KPI table (report_html.SECTIONS)
    from daemon.stats.report_html import SECTIONS

    assert html.count('<td class="key">(none)</td>') == len(SECTIONS)
    # charts per code: answered calls and ASA (the queue measures are not per code)
    for code in ("1", "2"):
        assert f"disposition {code}: answered calls" in html, code
        assert f"disposition {code}: average speed of answer" in html, code
    assert "disposition 1: service level" not in html
    assert html.count('<div class="group">') == 3  # 1, 2 and (none), as in the tables
