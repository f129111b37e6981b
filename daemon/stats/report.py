"""Interval reports: KPI rows per interval and group, as table, CSV or JSON (HTML: report_html).

A report is computed per tenant, in the tenant's time zone: intervals are
aligned to its wall clock and every interval of the requested range gets a row
for every group (a queue, team or agent of the model, plus any group met in the
data), with zeros for counts and null for ratios/averages that have no
denominator. Which KPIs mean what is in ``daemon.stats.kpi`` and docs/KPIS.md.

Default range (no --from/--to): the whole range of the tenant's data (the
intervals from its first to its last call), or today when there is no data —
a manager running ``hotline report`` after a replay sees every call.
--from/--to are read in the tenant's zone (in UTC with ``utc``; the words are those of
``daemon.definition.moments``: ISO, today, yesterday); --to given as a date is
inclusive (the whole day), as a date-time exclusive. The range is widened to whole
intervals.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import func, select, union_all
from sqlalchemy.engine import Connection

from daemon.definition.model import CallCenter, Tenant
from daemon.definition.moments import MomentError, parse_ms
from daemon.stats import kpi as K
from daemon.stats import rollup
from daemon.stats.intervals import (
    SIZES,
    Interval,
    floor_ms,
    from_ms,
    intervals,
    local_midnight_ms,
)
from daemon.storage import schema

logger = logging.getLogger(__name__)

NO_GROUP = "(none)"


class ReportError(ValueError):
    """A request that cannot be answered (unknown tenant/queue/agent/KPI, bad date)."""


@dataclass(frozen=True)
class ReportRequest:
    start: str | None = None
    end: str | None = None
    interval: str = "day"
    by: str = "tenant"
    tenant: str | None = None
    queue: str | None = None
    agent: str | None = None
    kpis: tuple[str, ...] = ()  # empty: all
    utc: bool = False  # --from/--to and the intervals in UTC instead of the tenant's zone


@dataclass(frozen=True)
class TenantRange:
    tenant: str
    timezone: str
    start: str  # ISO with offset
    end: str
    thresholds: tuple[K.QueueThresholds, ...]


@dataclass
class Report:
    request: ReportRequest
    kpis: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[TenantRange] = field(default_factory=list)

    @property
    def group_keys(self) -> list[str]:
        return ["tenant"] + ([self.request.by] if self.request.by != "tenant" else [])


# --- environment --------------------------------------------------------------------------


def make_engine(url: str):
    """The store's engine (pragmas, timeouts); report queries only read."""
    from daemon.storage.store import make_engine as store_engine

    return store_engine(url)


def load_environment(db: str | None, config: str | None) -> tuple[str, CallCenter | None]:
    """Resolve --db/--config against the settings; the model is None when no config dir exists.

    Raises ``daemon.definition.config.ConfigErrors`` when the config exists but is wrong.
    """
    from daemon.definition.settings import load_settings

    settings = load_settings()
    db_url = db or settings.database_url
    config_dir = config or settings.config_dir
    center = None
    if Path(config_dir).exists():
        from daemon.definition.config import load_center

        center = load_center(config_dir)
    return db_url, center


def _check_schema(conn: Connection) -> None:
    from sqlalchemy import inspect

    if not inspect(conn).has_table("segments"):
        raise ReportError("the database has no statistics yet: run the daemon or "
                          "`hotline replay` first (or give --db)")


def tenants_of(conn: Connection, center: CallCenter | None) -> list[Tenant]:
    """The model's tenants; without a model, one UTC tenant per domain found in the data."""
    if center is not None and center.tenants:
        return list(center.tenants)
    found = union_all(select(schema.calls.c.tenant), select(schema.segments.c.tenant)).subquery()
    domains = conn.execute(select(found.c.tenant).distinct().order_by(found.c.tenant)).scalars()
    return [Tenant(id=d, domain=d, timezone="UTC") for d in domains]


# --- time bounds -----------------------------------------------------------------------------


def report_zone(tenant: Tenant, req: ReportRequest) -> str:
    """The zone a report reads --from/--to in and aligns its intervals to: the tenant's
    wall clock, or UTC with --utc (shifts and rosters stay on the tenant's clock)."""
    return "UTC" if req.utc else tenant.timezone


def parse_bound(text: str, tz: str, *, end: bool, now_ms: int | None = None,
                option: str = "--from") -> int:
    """A --from/--to value (see ``daemon.definition.moments``) -> epoch ms."""
    now = None if now_ms is None else dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc)
    try:
        return parse_ms(text, tz, end=end, now=now, option=option)
    except MomentError as exc:
        raise ReportError(str(exc)) from None


def data_range(conn: Connection, tenant: str) -> tuple[int, int] | None:
    """First and last moment a call of ``tenant`` started or entered a queue."""
    c, s = schema.calls, schema.segments
    a = conn.execute(select(func.min(c.c.started_ms), func.max(c.c.started_ms))
                     .where(c.c.tenant == tenant)).one()
    b = conn.execute(select(func.min(s.c.queue_entered_ms), func.max(s.c.queue_entered_ms))
                     .where(s.c.tenant == tenant, s.c.kind == "queue")).one()
    lows = [x for x in (a[0], b[0]) if x is not None]
    highs = [x for x in (a[1], b[1]) if x is not None]
    if not lows:
        return None
    return min(lows), max(highs) + 1


def resolve_range(conn: Connection, tenant: Tenant, req: ReportRequest,
                  now_ms: int) -> tuple[int, int]:
    tz = report_zone(tenant, req)
    today = from_ms(now_ms, tz).date()
    start = (parse_bound(req.start, tz, end=False, now_ms=now_ms, option="--from")
             if req.start else None)
    end = parse_bound(req.end, tz, end=True, now_ms=now_ms, option="--to") if req.end else None
    if start is None or end is None:
        found = data_range(conn, tenant.domain)
        if found is None:
            found = (local_midnight_ms(today, tz),
                     local_midnight_ms(today + dt.timedelta(days=1), tz))
        if start is None:
            start = found[0] if end is None or found[0] < end else floor_ms(end - 1, "day", tz)
        if end is None:
            end = found[1] if found[1] > start else start + 1
    if end <= start:
        raise ReportError("--to must be after --from")
    return start, end


# --- building ------------------------------------------------------------------------------


def _local(tenant: Tenant, name: str) -> str:
    suffix = "@" + tenant.domain
    return name[: -len(suffix)] if name.endswith(suffix) else name


def _groups(tenant: Tenant, by: str, req: ReportRequest) -> list[str | None]:
    q = tenant.qualified
    if by == "tenant":
        return [None]
    if by == "queue":
        return [q(x.id) for x in tenant.queues if req.queue in (None, x.id)]
    if by == "agent":
        return [q(a.id) for a in tenant.agents if req.agent in (None, a.id)]
    if by == "number":
        return [n.did for n in tenant.numbers]
    if by == "disposition":
        return [d.code for d in tenant.dispositions]
    if by == "ivr":  # IVR paths are those met in the data
        return []
    teams = [t.id for t in tenant.teams]
    teams += sorted({a.team for a in tenant.agents if a.team and a.team not in teams})
    if req.agent is not None:
        a = tenant.agent(req.agent)
        teams = [a.team] if a is not None and a.team else []
    return list(teams)


def _check_request(tenant: Tenant | None, req: ReportRequest, has_model: bool) -> None:
    if req.interval not in SIZES:
        raise ReportError(f"unknown interval {req.interval!r}: use one of {', '.join(SIZES)}")
    if req.by not in K.BYS:
        raise ReportError(f"unknown --by {req.by!r}: use one of {', '.join(K.BYS)}")
    unknown = [k for k in req.kpis if k not in K.KPIS]
    if unknown:
        raise ReportError(f"unknown KPI {unknown[0]!r}: see docs/KPIS.md for the ids")
    if tenant is not None and has_model:
        if req.queue is not None and tenant.queue(req.queue) is None:
            raise ReportError(f"tenant {tenant.id!r} has no queue {req.queue!r}")
        if req.agent is not None and tenant.agent(req.agent) is None:
            raise ReportError(f"tenant {tenant.id!r} has no agent {req.agent!r}")


def _select_tenants(conn: Connection, center: CallCenter | None,
                    req: ReportRequest) -> list[Tenant]:
    """The tenants a request covers: --tenant, else every tenant (with --queue/--agent: every
    tenant that has that queue/agent)."""
    tenants = tenants_of(conn, center)
    if req.tenant is not None:
        tenants = [t for t in tenants if req.tenant in (t.id, t.domain)]
        if not tenants:
            raise ReportError(f"no tenant {req.tenant!r}")
        return tenants
    if center is not None and (req.queue or req.agent):
        having = [t for t in tenants if (req.queue is None or t.queue(req.queue))
                  and (req.agent is None or t.agent(req.agent))]
        if not having:
            what = f"queue {req.queue!r}" if req.queue else f"agent {req.agent!r}"
            raise ReportError(f"no tenant has {what}")
        return having
    return tenants


def build_report(conn: Connection, center: CallCenter | None, req: ReportRequest,
                 *, now_ms: int | None = None) -> Report:
    """Compute the report rows (see module doc); raises ReportError for a bad request."""
    if now_ms is None:
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    kpi_ids = tuple(req.kpis) or tuple(K.KPIS)
    _check_request(None, req, False)
    _check_schema(conn)
    tenants = _select_tenants(conn, center, req)
    report = Report(req, kpi_ids)
    for tenant in tenants:
        _check_request(tenant, req, center is not None)
        start, end = resolve_range(conn, tenant, req, now_ms)
        tz = report_zone(tenant, req)
        ivs = intervals(start, end, req.interval, tz)
        scope = K.scope_for(tenant, ivs, by=req.by,
                            queue=tenant.qualified(req.queue) if req.queue else None,
                            agent=tenant.qualified(req.agent) if req.agent else None,
                            now_ms=now_ms)
        values = rollup.compute(conn, scope, kpi_ids)  # raw rows where roll-ups cannot serve
        used = {q.queue for q in scope.thresholds}
        report.tenants.append(TenantRange(
            tenant.id, tz, ivs[0].start.isoformat(), ivs[-1].end.isoformat(),
            tuple(t for t in scope.thresholds if req.queue is None
                  or t.queue == tenant.qualified(req.queue))
            # queues met in the data but not in the model get the published defaults
            + tuple(K.QueueThresholds(g) for g in sorted(
                {g for _, g in values if req.by == "queue" and g and g not in used}))))
        report.rows.extend(_rows(tenant, req, ivs, kpi_ids, values))
    return report


def _rows(tenant: Tenant, req: ReportRequest, ivs: Sequence[Interval], kpi_ids: Sequence[str],
          values: dict[tuple[int, str | None], dict[str, float | None]]) -> list[dict[str, Any]]:
    groups = _groups(tenant, req.by, req)
    seen = {g for _, g in values}
    if req.by in ("agent", "team"):
        seen.discard(None)  # unanswered calls have no agent: not an agent's or a team's row
    # '' is an agent without a team
    groups += sorted((g for g in seen if g and g not in groups))
    if "" in seen:
        groups.append("")
    # calls that reached no queue (IVR-only, blocked) have a row of their own by queue
    # whenever a call-start KPI is asked for, with data or not
    if req.by == "queue" and req.queue is None and (None in seen or any(
            K.KPIS[k].fn.__name__ in _CALL_START_KPIS for k in kpi_ids)):
        groups.append(None)
    # calls of no known number, without IVR choices, answered calls without a code
    if req.by in ("number", "ivr", "disposition") and None in seen:
        groups.append(None)
    agent_filter = req.agent is not None
    plan = [(k, K.applicable(k, req.by, agent_filter), K.zero_value(k)) for k in kpi_ids]
    labels = {g: (NO_GROUP if not g else _local(tenant, g)) for g in groups}
    out = []
    for n, iv in enumerate(ivs):
        start, end = iv.start.isoformat(), iv.end.isoformat()
        for g in groups:
            row: dict[str, Any] = {"interval_start": start, "interval_end": end,
                                   "tenant": tenant.id}
            if req.by != "tenant":
                row[req.by] = labels[g]
            got = values.get((n, g), {})
            for k, ok, zero in plan:
                if not ok:
                    row[k] = None
                elif k in got:
                    row[k] = _round(got[k])
                else:
                    row[k] = zero
            out.append(row)
    return out


_CALL_START_KPIS = {"total_calls", "blocked", "ivr_only", "blocked_rate", "queue_placement_rate",
                    "cost_per_call"}


def _round(v: float | None) -> float | None:
    if v is None or isinstance(v, int):
        return v
    return round(float(v), 4)


# --- drill-down ----------------------------------------------------------------------------


def drill_calls(conn: Connection, center: CallCenter | None, req: ReportRequest, kpi_id: str,
                *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The rows (calls, or agent-time stretches) making up one KPI's numerator and denominator."""
    if kpi_id not in K.KPIS:
        raise ReportError(f"unknown KPI {kpi_id!r}: see docs/KPIS.md for the ids")
    if now_ms is None:
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    _check_schema(conn)
    tenants = _select_tenants(conn, center, req)
    k = K.KPIS[kpi_id]
    if req.agent is not None and not K.applicable(kpi_id, "agent", True):
        raise ReportError(f"{kpi_id} is a queue measure, not defined per agent")
    out: list[dict[str, Any]] = []
    for tenant in tenants:
        _check_request(tenant, req, center is not None)
        start, end = resolve_range(conn, tenant, req, now_ms)
        tz = report_zone(tenant, req)
        whole = [Interval(start, end, tz)]
        scope = K.scope_for(tenant, whole, queue=tenant.qualified(req.queue) if req.queue else None,
                            agent=tenant.qualified(req.agent) if req.agent else None,
                            now_ms=now_ms)
        for r in K.drill(conn, scope, kpi_id):
            ms_value = k.unit == K.SECONDS or K.SOURCES[r.source].join == "span"
            out.append({
                "tenant": tenant.id, "part": r.part, "call_id": r.call_id,
                "queue": _local(tenant, r.queue) if r.queue else None,
                "agent": _local(tenant, r.agent) if r.agent else None,
                "at": (from_ms(r.at_ms, tz).isoformat()
                       if r.at_ms is not None else None),
                "value": (None if r.value is None else
                          round(r.value / 1000, 3) if ms_value else round(r.value, 4)),
                "source": r.source, "row_id": r.row_id,
            })
    return out


# --- formats -------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    return json.dumps(report.rows, indent=2, ensure_ascii=False)


def to_csv(report: Report) -> str:
    cols = ["interval_start", "interval_end"] + report.group_keys + list(report.kpis)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in report.rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


def fmt_value(kpi_id: str, v: Any) -> str:
    if v is None:
        return "-"
    unit = K.KPIS[kpi_id].unit
    if unit == K.COUNT:
        return str(int(v))
    if unit in (K.RINGS, K.SCORE, K.MONEY, K.PER_HOUR):
        return f"{v:.2f}"
    return f"{v:.1f}"


def _interval_label(start_iso: str, size: str) -> str:
    d = dt.datetime.fromisoformat(start_iso)
    if size == "month":
        return d.strftime("%Y-%m")
    if size in ("day", "week"):
        return d.strftime("%Y-%m-%d")
    return d.strftime("%Y-%m-%d %H:%M")


def thresholds_text(report: Report) -> list[str]:
    lines = []
    for t in report.tenants:
        for q in t.thresholds:
            lines.append(f"  {q.queue}: SL {q.service_level_s} s "
                         f"(target {q.service_level_target_pct:g}%), short abandon "
                         f"<= {q.short_abandon_s} s, ring cycle {q.ring_cycle_s} s, "
                         f"FCR {q.fcr_window_h} h")
    return lines


def threshold_notes(report: Report) -> list[str]:
    """One line per queue stating the thresholds a report used, for the formats whose
    body must stay plain rows (csv, json): the CLI writes them to stderr."""
    return [f"thresholds used: {line.strip()}" for line in thresholds_text(report)]


def to_table(report: Report, width: int = 100) -> str:
    """A terminal table; KPI columns are split into blocks that fit ``width`` columns."""
    req = report.request
    keys = ["interval"] + (["tenant"] if len(report.tenants) > 1 else []) + (
        [req.by] if req.by != "tenant" else [])
    key_cells = [[_interval_label(r["interval_start"], req.interval)]
                 + ([str(r["tenant"])] if len(report.tenants) > 1 else [])
                 + ([str(r[req.by])] if req.by != "tenant" else []) for r in report.rows]
    key_w = [max([len(k)] + [len(c[i]) for c in key_cells]) for i, k in enumerate(keys)]
    cols = []
    for k in report.kpis:
        cells = [fmt_value(k, r[k]) for r in report.rows]
        cols.append((k, cells, max([len(k)] + [len(c) for c in cells])))
    fixed = sum(key_w) + 2 * len(keys)
    blocks: list[list[tuple[str, list[str], int]]] = [[]]
    used = fixed
    for col in cols:
        if blocks[-1] and used + col[2] + 2 > width:
            blocks.append([])
            used = fixed
        blocks[-1].append(col)
        used += col[2] + 2
    lines = []
    for t in report.tenants:
        lines.append(f"{t.tenant} ({t.timezone}) {t.start} .. {t.end}, interval {req.interval}, "
                     f"by {req.by}")
    for block in blocks:
        lines.append("")
        head = "  ".join(k.ljust(w) for k, w in zip(keys, key_w))
        head += "  " + "  ".join(name.rjust(w) for name, _, w in block)
        lines.append(head.rstrip())
        lines.append("-" * min(width, len(head)))
        for n, kc in enumerate(key_cells):
            line = "  ".join(c.ljust(w) for c, w in zip(kc, key_w))
            line += "  " + "  ".join(cells[n].rjust(w) for _, cells, w in block)
            lines.append(line.rstrip())
    th = thresholds_text(report)
    lines.append("")
    if th:
        lines.append("Thresholds used:")
        lines.extend(th)
    lines.append("Times in seconds, ratios in %; '-' = undefined (nothing to divide by) "
                 f"or not defined by {req.by}.")
    lines.append("A call counts in the interval it entered the queue. Definitions: docs/KPIS.md")
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return to_json(report) + "\n"
    if fmt == "csv":
        return to_csv(report)
    if fmt == "table":
        return to_table(report)
    raise ReportError(f"unknown format {fmt!r}")


def drill_text(rows: list[dict[str, Any]], kpi_id: str, fmt: str = "table") -> str:
    """Drill-down rows as a table (or CSV), with the totals that make the KPI."""
    cols = ["part", "call_id", "queue", "agent", "at", "value"]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["tenant"] + cols + ["source", "row_id"])
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in ["tenant"] + cols
                        + ["source", "row_id"]])
        return buf.getvalue()
    k = K.KPIS[kpi_id]
    cells = [[("" if r.get(c) is None else str(r[c])) for c in cols] for r in rows]
    cells = [[c[0], c[1] or r["row_id"], *c[2:]] for c, r in zip(cells, rows)]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(cols)]
    lines = [f"{kpi_id} ({k.title}): {k.doc.splitlines()[0] if k.doc else ''}".rstrip(), ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(cols, widths)).rstrip())
    lines.append("-" * min(100, sum(widths) + 2 * (len(cols) - 1)))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    num = sum(1 for r in rows if r["part"] in ("numerator", "both"))
    den = sum(1 for r in rows if r["part"] in ("denominator", "both"))
    lines.append("")
    lines.append(f"{num} row(s) in the numerator, {den} in the denominator "
                 "('both' = counted in each). value: seconds for times.")
    return "\n".join(lines) + "\n"
