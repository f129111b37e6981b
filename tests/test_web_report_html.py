"""The manager's HTML report: charts per group, a "no calls" note, themed KPI tables, occupancy."""
from __future__ import annotations

import re

from test_kpi import call_data, migrated
from test_report import ACME_YAML, cli

from daemon.stats import kpi as K
from daemon.stats.report_html import SECTIONS


def acme_report(empty_db_url, tmp_path, *args: str) -> str:
    url = migrated(empty_db_url)
    call_data().insert(url)
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "acme.yaml").write_text(ACME_YAML, encoding="utf-8")
    out = tmp_path / "r.html"
    code, text = cli("report", "--db", url, "--config", str(cfg), "--interval", "1h",
                     "--format", "html", "--out", str(out), *args)
    assert code == 0, text
    return out.read_text(encoding="utf-8")


def test_by_queue_each_queue_gets_its_own_charts_and_an_idle_queue_a_note(empty_db_url, tmp_path):
    page = acme_report(empty_db_url, tmp_path, "--from", "2026-03-02", "--to", "2026-03-02",
                       "--by", "queue")
    assert "queue billing: offered, answered, abandoned calls" in page
    assert "queue sales: offered, answered, abandoned calls" in page
    assert "queue billing: service level" in page and "queue sales: service level" in page
    assert re.search(r"<h3>queue vip</h3>\s*<p class=\"nocalls\">No calls in this range.</p>", page)


def test_a_range_without_calls_says_so_instead_of_drawing_empty_axes(empty_db_url, tmp_path):
    page = acme_report(empty_db_url, tmp_path, "--from", "2026-05-04", "--to", "2026-05-04")
    assert "<svg" not in page
    assert "No calls in this range." in page and "No agent time in this range" in page


def test_every_kpi_sits_in_one_themed_table_and_occupancy_matches_its_chart(empty_db_url,
                                                                           tmp_path):
    placed = [k for _, ks in SECTIONS for k in ks]
    assert sorted(placed) == sorted(K.KPIS) and len(placed) == len(set(placed))
    page = acme_report(empty_db_url, tmp_path, "--from", "2026-03-02", "--to", "2026-03-02",
                       "--by", "agent")
    for title, _ in SECTIONS:
        assert f"<h3>{title}</h3>" in page
    [chart] = [svg for svg in re.findall(r"<svg.*?</svg>", page, re.S)
               if "Agent occupancy over the whole range" in svg]
    table = re.search(r'<table class="occupancy">.*?</table>', page, re.S).group(0)
    rows = re.findall(r'<td class="key">(\w+)</td><td>([\d.]+)</td>', table)
    assert rows, table
    for agent, value in rows:  # the bar's label and the table cell: one figure
        assert f">{value}<" in chart, (agent, value)
