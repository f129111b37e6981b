"""The HTML report: one self-contained page (inline SVG charts, inline CSS), printable.

Charts are drawn with matplotlib (SVG backend) at report time and embedded in the
page, so the page needs no script and no network when it is opened or printed:
offered vs answered vs abandoned per interval, service level against its target and
ASA per interval — per tenant, or per group when the report is ``--by`` queue, agent...
(a "no calls" note where a group had none) — and agent occupancy over the whole range
with the same figures as a table under it. The KPIs follow in themed tables (volume,
service, handling, quality, agents, cost), each narrow enough for a printed page.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy.engine import Connection

from daemon.definition.model import CallCenter
from daemon.stats import kpi as K
from daemon.stats.intervals import Interval
from daemon.stats.report import (
    ReportRequest,
    _interval_label,
    _local,
    _round,
    build_report,
    fmt_value,
    resolve_range,
    tenants_of,
    thresholds_text,
)

logger = logging.getLogger(__name__)

CHART_KPIS = ("offered", "answered", "abandoned", "service_level", "asa")
MAX_GROUP_CHARTS = 24  # past that, the charts of the rest would be a wall: the tables have them

# the report's KPI tables, one per theme (36 KPIs side by side do not fit any page)
SECTIONS = (
    ("Volume", ("offered", "answered", "abandoned", "short_abandoned", "total_calls", "blocked",
                "ivr_only", "blocked_rate", "queue_placement_rate")),
    ("Service", ("service_level", "answered_pct", "abandon_rate", "asa", "avg_queue_time",
                 "avg_abandon_time", "longest_wait", "avg_rings", "avg_ring_time")),
    ("Handling", ("avg_talk_time", "avg_hold_time", "acw", "aht", "transfer_rate", "fcr")),
    ("Quality", ("satisfaction", "satisfied_pct", "qa_score")),
    ("Agents", ("occupancy", "calls_per_hour", "adherence", "attendance", "turnover")),
    ("Cost", ("cost_per_call",)),
)


@dataclass(frozen=True)
class GroupCharts:
    """The charts of one tenant, or of one group (queue, agent...) of it; None: no calls."""

    title: str
    volume: Markup | None
    service_level: Markup | None
    asa: Markup | None
    no_calls: bool


@dataclass(frozen=True)
class TenantCharts:
    tenant: str
    timezone: str
    groups: tuple[GroupCharts, ...]
    occupancy: Markup | None
    occupancy_rows: tuple[tuple[str, float | None], ...]  # the chart's numbers, as a table
    target_pct: float
    more_groups: int  # groups left out of the charts (MAX_GROUP_CHARTS)


@dataclass(frozen=True)
class Section:
    title: str
    kpis: tuple[Any, ...]


def _env() -> Environment:
    return Environment(loader=PackageLoader("daemon.stats", "templates"), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html"]), trim_blocks=True,
                       lstrip_blocks=True)


def _svg(fig: Any) -> Markup:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    # inline <svg>: drop the XML declaration and DOCTYPE of the stand-alone file
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return Markup(text)


def _plt():
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams.update({"svg.hashsalt": "hotline", "svg.fonttype": "none",
                                "font.size": 9, "axes.spines.top": False,
                                "axes.spines.right": False})
    import matplotlib.pyplot as plt

    return plt


def _x(labels: Sequence[str]) -> tuple[list[int], list[str]]:
    xs = list(range(len(labels)))
    days = {lab.split(" ")[0] for lab in labels}
    if len(days) == 1 and all(" " in lab for lab in labels):  # one day: the time says it all
        labels = [lab.split(" ", 1)[1] for lab in labels]
    step = max(1, len(labels) // 16)  # at most ~16 tick labels
    return xs, [lab if i % step == 0 else "" for i, lab in enumerate(labels)]


def _legend_outside(ax: Any) -> None:
    # beside the plot, never over it: bars and lines stay readable whatever their height
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0)


def _volume_chart(plt, labels, rows, title) -> Markup | None:
    keys = [k for k in ("offered", "answered", "abandoned")
            if any(r.get(k) is not None for r in rows)]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(9, 2.8))
    xs, ticks = _x(labels)
    w = 0.8 / len(keys)
    colors = {"offered": "#4c72b0", "answered": "#55a868", "abandoned": "#c44e52"}
    for i, key in enumerate(keys):
        off = (i - (len(keys) - 1) / 2) * w
        ax.bar([x + off for x in xs], [r[key] or 0 for r in rows], width=w, label=key,
               color=colors[key])
    ax.set_xticks(xs, ticks, rotation=45, ha="right")
    ax.set_ylabel("calls")
    ax.set_title(f"{title}: {', '.join(keys)} calls", loc="left")
    _legend_outside(ax)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _line_chart(plt, labels, values, title, ylabel, target=None) -> Markup | None:
    if all(v is None for v in values):
        return None
    fig, ax = plt.subplots(figsize=(9, 2.4))
    xs, ticks = _x(labels)
    ys = [float("nan") if v is None else v for v in values]
    ax.plot(xs, ys, marker="o", markersize=3, color="#4c72b0", label=ylabel)
    if target is not None:
        ax.axhline(target, color="#c44e52", linestyle="--", linewidth=1,
                   label=f"target {target:g}%")
        ax.set_ylim(0, 105)
    _legend_outside(ax)
    ax.set_xticks(xs, ticks, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _occupancy_chart(plt, agents: Sequence[tuple[str, float | None]]) -> Markup | None:
    if not agents:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(agents) + 1))
    names = [a for a, _ in agents]
    vals = [v or 0 for _, v in agents]
    ax.barh(names, vals, color="#8172b2")
    for y, (_, v) in enumerate(agents):
        # the same rounding as the table under it (fmt_value)
        ax.text((v or 0) + 1, y, fmt_value("occupancy", v), va="center", fontsize=8)
    ax.set_xlim(0, max([110.0] + [v * 1.12 for v in vals]))  # labels of >100 % stay inside
    ax.invert_yaxis()
    ax.set_xlabel("occupancy %")
    ax.set_title("Agent occupancy over the whole range", loc="left")
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _group_charts(plt, title: str, rows: list[dict[str, Any]], interval: str,
                  target: float) -> GroupCharts:
    labels = [_interval_label(r["interval_start"], interval) for r in rows]
    no_calls = not any((r.get("offered") or 0) or (r.get("answered") or 0) for r in rows)
    if no_calls:  # a note instead of empty axes
        return GroupCharts(title, None, None, None, True)
    return GroupCharts(
        title, _volume_chart(plt, labels, rows, title),
        _line_chart(plt, labels, [r.get("service_level") for r in rows],
                    f"{title}: service level", "service level %", target),
        _line_chart(plt, labels, [r.get("asa") for r in rows],
                    f"{title}: average speed of answer", "ASA (s)"), False)


def sections(kpi_ids: Sequence[str]) -> list[Section]:
    """The requested KPIs in themed tables (an unknown theme's KPIs go to "Other")."""
    placed = {k for _, ks in SECTIONS for k in ks}
    out = [Section(title, tuple(K.KPIS[k] for k in ks if k in kpi_ids)) for title, ks in SECTIONS]
    rest = tuple(K.KPIS[k] for k in kpi_ids if k not in placed)
    if rest:
        out.append(Section("Other", rest))
    return [s for s in out if s.kpis]


def render_html(conn: Connection, center: CallCenter | None, req: ReportRequest,
                *, now_ms: int | None = None) -> str:
    """The report as a self-contained HTML page."""
    if now_ms is None:
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    report = build_report(conn, center, req, now_ms=now_ms)
    # charts per group of the request (--by queue: one set per queue), tenant totals otherwise
    chart_req = ReportRequest(req.start, req.end, req.interval, req.by, req.tenant, req.queue,
                              req.agent, CHART_KPIS, utc=req.utc)
    totals = build_report(conn, center, chart_req, now_ms=now_ms)
    plt = _plt()
    charts: list[TenantCharts] = []
    tenants = {t.id: t for t in tenants_of(conn, center)}
    for tr in totals.tenants:
        tenant = tenants[tr.tenant]
        rows = [r for r in totals.rows if r["tenant"] == tr.tenant]
        targets = {t.service_level_target_pct for t in tr.thresholds}
        target = targets.pop() if len(targets) == 1 else K.DEFAULT_SERVICE_LEVEL_TARGET_PCT
        if req.by == "tenant":
            names: list[str] = [tr.tenant]
            by_group = {tr.tenant: rows}
        else:  # the groups of the tables, in their order: a group without chart data gets a note
            names = list(dict.fromkeys(r[req.by] for r in report.rows if r["tenant"] == tr.tenant))
            by_group = {n: [r for r in rows if r[req.by] == n] for n in names}
        shown = names[:MAX_GROUP_CHARTS]
        groups = tuple(_group_charts(plt, f"{req.by} {n}" if req.by != "tenant" else n,
                                     by_group[n], req.interval, target) for n in shown)
        start, end = resolve_range(conn, tenant, req, now_ms)
        scope = K.scope_for(tenant, [Interval(start, end, tr.timezone)], by="agent",
                            queue=None, agent=tenant.qualified(req.agent) if req.agent else None,
                            now_ms=now_ms)
        occ = K.compute(conn, scope, ("occupancy",))
        agents = tuple((_local(tenant, g), _round(v["occupancy"])) for (_, g), v in sorted(
            occ.items(), key=lambda kv: kv[0][1] or "") if g)
        charts.append(TenantCharts(tr.tenant, tr.timezone, groups, _occupancy_chart(plt, agents),
                                   agents, target, len(names) - len(shown)))
    return _env().get_template("report.html").render(
        report=report, request=req, charts=charts, sections=sections(report.kpis),
        keys=report.group_keys, label=lambda r: _interval_label(r["interval_start"], req.interval),
        fmt=fmt_value, thresholds=thresholds_text(report),
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


__all__ = ["render_html"]
