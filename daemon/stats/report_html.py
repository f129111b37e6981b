"""The HTML report: one self-contained page (inline SVG charts, inline CSS), printable.

Charts are drawn with matplotlib (SVG backend) at report time and embedded in the
page, so the page needs no script and no network when it is opened or printed:
offered vs answered vs abandoned per interval, service level against its target,
ASA per interval, and agent occupancy over the whole range.
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
    build_report,
    fmt_value,
    resolve_range,
    tenants_of,
    thresholds_text,
)

logger = logging.getLogger(__name__)

CHART_KPIS = ("offered", "answered", "abandoned", "service_level", "asa")


@dataclass(frozen=True)
class TenantCharts:
    tenant: str
    timezone: str
    volume: Markup
    service_level: Markup
    asa: Markup
    occupancy: Markup | None
    target_pct: float


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
    step = max(1, len(labels) // 16)  # at most ~16 tick labels
    return xs, [lab if i % step == 0 else "" for i, lab in enumerate(labels)]


def _volume_chart(plt, labels, rows) -> Markup:
    fig, ax = plt.subplots(figsize=(9, 3))
    xs, ticks = _x(labels)
    w = 0.28
    for off, key, color in ((-w, "offered", "#4c72b0"), (0, "answered", "#55a868"),
                            (w, "abandoned", "#c44e52")):
        ax.bar([x + off for x in xs], [r[key] or 0 for r in rows], width=w, label=key,
               color=color)
    ax.set_xticks(xs, ticks, rotation=45, ha="right")
    ax.set_ylabel("calls")
    ax.set_title("Offered, answered and abandoned calls per interval")
    ax.legend(loc="upper left", frameon=False, ncols=3)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _line_chart(plt, labels, values, title, ylabel, target=None) -> Markup:
    fig, ax = plt.subplots(figsize=(9, 2.6))
    xs, ticks = _x(labels)
    ys = [float("nan") if v is None else v for v in values]
    ax.plot(xs, ys, marker="o", markersize=3, color="#4c72b0", label=ylabel)
    if target is not None:
        ax.axhline(target, color="#c44e52", linestyle="--", linewidth=1,
                   label=f"target {target:g}%")
        ax.set_ylim(0, 105)
        ax.legend(loc="lower left", frameon=False, ncols=2)
    ax.set_xticks(xs, ticks, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _occupancy_chart(plt, agents: list[tuple[str, float | None]]) -> Markup | None:
    if not agents:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(agents) + 1))
    names = [a for a, _ in agents]
    vals = [v or 0 for _, v in agents]
    ax.barh(names, vals, color="#8172b2")
    for y, (_, v) in enumerate(agents):
        ax.text((v or 0) + 1, y, "-" if v is None else f"{v:.1f}%", va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.invert_yaxis()
    ax.set_xlabel("occupancy %")
    ax.set_title("Agent occupancy over the whole range")
    svg = _svg(fig)
    plt.close(fig)
    return svg


def render_html(conn: Connection, center: CallCenter | None, req: ReportRequest,
                *, now_ms: int | None = None) -> str:
    """The report as a self-contained HTML page."""
    if now_ms is None:
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    report = build_report(conn, center, req, now_ms=now_ms)
    chart_req = ReportRequest(req.start, req.end, req.interval, "tenant", req.tenant, req.queue,
                              req.agent, CHART_KPIS, utc=req.utc)
    totals = build_report(conn, center, chart_req, now_ms=now_ms)
    plt = _plt()
    charts: list[TenantCharts] = []
    tenants = {t.id: t for t in tenants_of(conn, center)}
    for tr in totals.tenants:
        tenant = tenants[tr.tenant]
        rows = [r for r in totals.rows if r["tenant"] == tr.tenant]
        labels = [_interval_label(r["interval_start"], req.interval) for r in rows]
        targets = {t.service_level_target_pct for t in tr.thresholds}
        target = targets.pop() if len(targets) == 1 else K.DEFAULT_SERVICE_LEVEL_TARGET_PCT
        start, end = resolve_range(conn, tenant, req, now_ms)
        scope = K.scope_for(tenant, [Interval(start, end, tr.timezone)], by="agent",
                            queue=None, agent=tenant.qualified(req.agent) if req.agent else None,
                            now_ms=now_ms)
        occ = K.compute(conn, scope, ("occupancy",))
        agents = [(_local(tenant, g), v["occupancy"]) for (_, g), v in sorted(
            occ.items(), key=lambda kv: kv[0][1] or "") if g]
        charts.append(TenantCharts(
            tr.tenant, tr.timezone, _volume_chart(plt, labels, rows),
            _line_chart(plt, labels, [r["service_level"] for r in rows],
                        "Service level per interval", "service level %", target),
            _line_chart(plt, labels, [r["asa"] for r in rows],
                        "Average speed of answer per interval", "ASA (s)"),
            _occupancy_chart(plt, agents), target))
    return _env().get_template("report.html").render(
        report=report, request=req, charts=charts, kpis=[K.KPIS[k] for k in report.kpis],
        keys=report.group_keys, label=lambda r: _interval_label(r["interval_start"], req.interval),
        fmt=fmt_value, thresholds=thresholds_text(report),
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


__all__ = ["render_html"]
