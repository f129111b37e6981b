"""Workforce planning for one queue and one day: ``hotline staffing``.

Per interval of the day (tenant time zone): forecast calls (``daemon.stats.forecast``),
traffic intensity A = calls × AHT / interval length, the Erlang C agents required for
the service-level target (``daemon.stats.erlang``) with the predicted service level, ASA and
occupancy at that staffing, the headcount to schedule once shrinkage is allowed for
(ceil(required / (1 − shrinkage))), the agents the YAML schedules for that interval and
the difference (scheduled − needed: positive = over, negative = under).

Who counts as scheduled: an agent with a tier in the queue (explicit, or generated from
skills), on the roster that day (start_date <= day <= end_date, open ends allowed),
with a shift on that weekday that covers the whole interval. A shift whose end is not
after its start runs past midnight into the next day.

The figures are returned as frozen data; the table and ``--json`` are both printed
from ``StaffingPlan.to_dict()``.
"""
from __future__ import annotations

import datetime as dt
import difflib
import logging
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from daemon.definition.model import Agent, CallCenter, Queue, Tenant
from daemon.stats import erlang
from daemon.stats.forecast import (
    Forecast,
    ForecastError,
    Interval,
    day_intervals,
    from_file,
    from_history,
)

logger = logging.getLogger(__name__)

ANSWERED_OUTCOMES = ("answered", "transferred-out")
HANDLE_KINDS = ("talk", "hold", "wrapup")


class StaffingError(ValueError):
    """A mistake the user can fix (bad argument, unknown queue, no history): one sentence."""


@dataclass(frozen=True)
class Target:
    """Service-level target: ``pct`` % of calls answered within ``seconds``."""

    pct: float
    seconds: int

    def __str__(self) -> str:
        return f"{self.pct:g}/{self.seconds}"


_TARGET_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*/\s*(\d+)\s*s?\s*$")
_PCT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_target(value: str) -> Target:
    """``"80/20"`` (80 % within 20 s) → Target(80, 20)."""
    m = _TARGET_RE.match(value or "")
    if not m:
        raise StaffingError(
            "--target must look like 80/20 (percent of calls / answer time in seconds), "
            f"not {value!r}"
        )
    pct, seconds = float(m.group(1)), int(m.group(2))
    if not 0 < pct < 100:
        raise StaffingError(
            f"the service-level percentage must be above 0 and below 100, not {pct:g}"
        )
    return Target(pct, seconds)


def parse_percent(
    value: str, option: str, *, allow_zero: bool = True, allow_100: bool = False
) -> float:
    """``"30%"`` or ``"30"`` → 0.30 (always read as a percentage)."""
    m = _PCT_RE.match(value or "")
    if not m:
        raise StaffingError(f"{option} must be a percentage such as 30%, not {value!r}")
    pct = float(m.group(1))
    low_ok = pct > 0 or (allow_zero and pct == 0)
    high_ok = pct < 100 or (allow_100 and pct == 100)
    if not (low_ok and high_ok):
        low = "0" if allow_zero else "above 0"
        high = "100" if allow_100 else "below 100"
        raise StaffingError(f"{option} must be from {low} to {high} percent, not {value.strip()}")
    return pct / 100.0


def find_queue(
    center: CallCenter, queue: str, tenant_id: str | None = None
) -> tuple[Tenant, Queue]:
    """The tenant and queue named ``queue`` (``billing`` or ``billing@domain``)."""
    tenants = center.tenants
    if tenant_id is not None:
        tenant = center.tenant(tenant_id)
        if tenant is None:
            raise StaffingError(_unknown("tenant", tenant_id, [t.id for t in tenants]))
        tenants = (tenant,)
    local, _, domain = queue.partition("@")
    matches = [
        (t, q) for t in tenants for q in t.queues
        if q.id == local and (not domain or t.domain == domain)
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise StaffingError(
            f"queue {queue} exists in several tenants ({', '.join(t.id for t, _ in matches)}): "
            "name one with --tenant or write the queue as queue@domain"
        )
    known = [t.qualified(q.id) for t in tenants for q in t.queues] if domain else \
        [q.id for t in tenants for q in t.queues]
    raise StaffingError(_unknown("queue", queue, known))


def _unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {name!r}: did you mean {close[0]!r}?"
    if known:
        shown = sorted(set(known))[:8]
        return f"unknown {what} {name!r}; known: {', '.join(shown)}"
    return f"unknown {what} {name!r}: the configuration defines none"


@dataclass(frozen=True)
class AhtEstimate:
    seconds: float
    method: str  # "option" | "history"
    description: str
    answered: int = 0  # history: answered calls it is the mean of


def aht_from_history(
    db_url: str, queue_qualified: str, start_ms: int, end_ms: int
) -> tuple[float | None, int]:
    """Mean handle time (talk + hold + wrap-up) per answered call of ``queue_qualified``
    among calls that entered it in [start_ms, end_ms); (None, 0) with no answered call."""
    kinds = ", ".join(f"'{k}'" for k in HANDLE_KINDS)
    answered = ", ".join(f"'{o}'" for o in ANSWERED_OUTCOMES)
    sql = text(
        "SELECT "
        "(SELECT COALESCE(SUM(duration_ms), 0) FROM segments "
        f" WHERE queue = :q AND kind IN ({kinds})"
        "  AND queue_entered_ms >= :s AND queue_entered_ms < :e), "
        "(SELECT COUNT(*) FROM segments "
        f" WHERE queue = :q AND kind = 'queue' AND outcome IN ({answered})"
        "  AND queue_entered_ms >= :s AND queue_entered_ms < :e)"
    )
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            params = {"q": queue_qualified, "s": start_ms, "e": end_ms}
            handle_ms, n = conn.execute(sql, params).one()
    finally:
        engine.dispose()
    n = int(n or 0)
    if n == 0:
        return None, 0
    return float(handle_ms) / 1000.0 / n, n


@dataclass(frozen=True)
class IntervalPlan:
    start: str  # ISO 8601, tenant time zone
    end: str
    start_ms: int
    end_ms: int
    calls: float  # forecast
    traffic: float  # Erlangs
    required: int  # Erlang C agents on the phones for the target
    service_level_pct: float  # predicted at ``required`` agents
    asa_s: float | None  # predicted at ``required`` agents; None = infinite
    p_wait_pct: float
    occupancy_pct: float | None
    required_scheduled: int  # with shrinkage: ceil(required / (1 - shrinkage))
    scheduled: int  # agents the YAML schedules for this interval
    scheduled_agents: tuple[str, ...]
    difference: int  # scheduled - required_scheduled (+ over, - under)

    @property
    def label(self) -> str:
        return self.start[11:16]


@dataclass(frozen=True)
class StaffingPlan:
    tenant: str
    queue: str  # qualified
    date: dt.date
    timezone: str
    interval_min: int
    target: Target
    target_source: str  # "--target" | "queue YAML"
    shrinkage: float  # 0..1
    max_occupancy: float | None  # 0..1
    aht: AhtEstimate
    forecast: Forecast
    intervals: tuple[IntervalPlan, ...]
    # in the queue and on the roster, but with no shifts in the YAML: never counted as
    # scheduled, listed so the gap is not mistaken for a real shortage
    without_shifts: tuple[str, ...] = ()

    @property
    def under_intervals(self) -> int:
        return sum(1 for iv in self.intervals if iv.difference < 0)

    @property
    def over_intervals(self) -> int:
        return sum(1 for iv in self.intervals if iv.difference > 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "queue": self.queue,
            "date": self.date.isoformat(),
            "timezone": self.timezone,
            "interval_minutes": self.interval_min,
            "target": {
                "service_level_pct": self.target.pct,
                "answer_time_s": self.target.seconds,
                "source": self.target_source,
            },
            "shrinkage_pct": round(self.shrinkage * 100, 2),
            "max_occupancy_pct": (
                None if self.max_occupancy is None else round(self.max_occupancy * 100, 2)
            ),
            "aht": {
                "seconds": round(self.aht.seconds, 1),
                "method": self.aht.method,
                "description": self.aht.description,
                "answered_calls": self.aht.answered,
            },
            "forecast": {
                "method": self.forecast.method,
                "description": self.forecast.description,
                "weeks": self.forecast.weeks,
                "weeks_used": [d.isoformat() for d in self.forecast.weeks_used],
                "source": self.forecast.source or None,
            },
            "model": "Erlang C (Poisson arrivals, exponential handle times, no abandonment)",
            "agents_without_shifts": list(self.without_shifts),
            "intervals": [
                {
                    "interval_start": iv.start,
                    "interval_end": iv.end,
                    "calls": round(iv.calls, 2),
                    "traffic_erlangs": round(iv.traffic, 3),
                    "agents_required": iv.required,
                    "service_level_pct": round(iv.service_level_pct, 2),
                    "asa_s": None if iv.asa_s is None else round(iv.asa_s, 1),
                    "p_wait_pct": round(iv.p_wait_pct, 2),
                    "occupancy_pct": (
                        None if iv.occupancy_pct is None else round(iv.occupancy_pct, 2)
                    ),
                    "agents_with_shrinkage": iv.required_scheduled,
                    "agents_scheduled": iv.scheduled,
                    "scheduled_agents": list(iv.scheduled_agents),
                    "over_under": iv.difference,
                }
                for iv in self.intervals
            ],
            "totals": {
                "calls": round(sum(iv.calls for iv in self.intervals), 2),
                "peak_agents_required": max((iv.required for iv in self.intervals), default=0),
                "peak_agents_with_shrinkage": max(
                    (iv.required_scheduled for iv in self.intervals), default=0
                ),
                "intervals_under": self.under_intervals,
                "intervals_over": self.over_intervals,
                "agent_hours_required": round(
                    sum(iv.required_scheduled for iv in self.intervals) * self.interval_min / 60, 2
                ),
                "agent_hours_scheduled": round(
                    sum(iv.scheduled for iv in self.intervals) * self.interval_min / 60, 2
                ),
            },
        }


# --- who is scheduled ------------------------------------------------------------------------

def queue_agent_ids(tenant: Tenant, queue: Queue) -> tuple[str, ...]:
    """Agents (unqualified ids) taking calls from ``queue``: explicit or skill-generated tiers."""
    try:
        from daemon.definition.tiers import effective_tiers
    except ImportError:  # daemon.definition.tiers is another helper's module: stay usable without it
        effective_tiers = None
    if effective_tiers is not None:
        tiers = effective_tiers(tenant, queue)
        return tuple(dict.fromkeys(t.agent for t in tiers))
    ids = [t.agent for t in queue.tiers]
    if queue.skills:
        for agent in tenant.agents:
            levels = dict(agent.skills)
            if all(levels.get(req.skill, 0) >= req.min_level for req in queue.skills):
                ids.append(agent.id)
    return tuple(dict.fromkeys(ids))


def on_roster(agent: Agent, day: dt.date) -> bool:
    if agent.start_date is not None and day < agent.start_date:
        return False
    if agent.end_date is not None and day > agent.end_date:
        return False
    return True


def _minutes(t: dt.time) -> int:
    if t == dt.time.max:
        return 24 * 60
    return t.hour * 60 + t.minute


def shift_covers(agent: Agent, day: dt.date, start_min: int, end_min: int) -> bool:
    """Whether the agent's shifts cover local minutes [start_min, end_min) of ``day``.

    Back-to-back shifts count as one stretch (09:00-12:10 and 12:10-18:00 cover 12:00-12:15).
    """
    weekday = day.weekday()
    spans: list[tuple[int, int]] = []
    for shift in agent.shifts:
        s, e = _minutes(shift.start), _minutes(shift.end)
        if e <= s:
            e += 24 * 60  # runs past midnight (the YAML splits at 24:00, but be lenient)
        if shift.weekday == weekday:
            spans.append((s, e))
        elif shift.weekday == (weekday - 1) % 7 and e > 24 * 60:
            spans.append((0, e - 24 * 60))  # yesterday's shift reaching into today
    reach = start_min
    for s, e in sorted(spans):
        if s > reach:
            break
        reach = max(reach, e)
        if reach >= end_min:
            return True
    return False


def _local_minutes(iv: Interval, day: dt.date) -> tuple[int, int]:
    start = (iv.start.date() - day).days * 1440 + iv.start.hour * 60 + iv.start.minute
    end = (iv.end.date() - day).days * 1440 + iv.end.hour * 60 + iv.end.minute
    if end <= start:  # clocks went back inside the interval: keep it non-empty
        end = start + int((iv.end_ms - iv.start_ms) / 60000)
    return start, end


def scheduled_agents(tenant: Tenant, queue: Queue, day: dt.date, iv: Interval) -> tuple[str, ...]:
    start, end = _local_minutes(iv, day)
    out = []
    for agent_id in queue_agent_ids(tenant, queue):
        agent = tenant.agent(agent_id)
        if agent is None or not on_roster(agent, day):
            continue
        if shift_covers(agent, day, start, end):
            out.append(agent_id)
    return tuple(out)


# --- the plan --------------------------------------------------------------------------------

def plan(
    tenant: Tenant,
    queue: Queue,
    day: dt.date,
    forecast: Forecast,
    aht: AhtEstimate,
    target: Target,
    *,
    target_source: str = "--target",
    shrinkage: float = 0.0,
    max_occupancy: float | None = None,
) -> StaffingPlan:
    """Erlang C staffing for each forecast interval, compared with the YAML schedule."""
    if not 0 <= shrinkage < 1:
        raise StaffingError("shrinkage must be from 0 to below 100 percent")
    rows: list[IntervalPlan] = []
    for iv, calls in zip(forecast.intervals, forecast.calls):
        # a short last interval (clock change) still spreads its calls over its real length
        length_s = (iv.end_ms - iv.start_ms) / 1000.0
        traffic = erlang.traffic_intensity(calls, aht.seconds, length_s)
        required = erlang.agents_required(
            traffic, aht.seconds, target.seconds, target.pct / 100.0, max_occupancy
        )
        figures = erlang.evaluate(required, traffic, aht.seconds, target.seconds)
        with_shrinkage = math.ceil(required / (1.0 - shrinkage) - 1e-9) if required else 0
        who = scheduled_agents(tenant, queue, day, iv)
        rows.append(IntervalPlan(
            start=iv.start.isoformat(),
            end=iv.end.isoformat(),
            start_ms=iv.start_ms,
            end_ms=iv.end_ms,
            calls=calls,
            traffic=traffic,
            required=required,
            service_level_pct=figures.service_level * 100,
            asa_s=figures.asa_s,
            p_wait_pct=figures.p_wait * 100,
            occupancy_pct=None if figures.occupancy is None else figures.occupancy * 100,
            required_scheduled=with_shrinkage,
            scheduled=len(who),
            scheduled_agents=who,
            difference=len(who) - with_shrinkage,
        ))
    without = tuple(
        a.id for a in (tenant.agent(i) for i in queue_agent_ids(tenant, queue))
        if a is not None and on_roster(a, day) and not a.shifts
    )
    return StaffingPlan(
        tenant=tenant.id,
        queue=tenant.qualified(queue.id),
        date=day,
        timezone=tenant.timezone,
        interval_min=forecast.interval_min,
        target=target,
        target_source=target_source,
        shrinkage=shrinkage,
        max_occupancy=max_occupancy,
        aht=aht,
        forecast=forecast,
        intervals=tuple(rows),
        without_shifts=without,
    )


def build_plan(
    center: CallCenter,
    queue: str,
    day: dt.date,
    *,
    tenant_id: str | None = None,
    target: str | None = None,
    aht_s: float | None = None,
    shrinkage: str | None = None,
    max_occupancy: str | None = None,
    interval_min: int = 30,
    weeks: int = 4,
    volume: str | Path | None = None,
    db_url: str | None = None,
) -> StaffingPlan:
    """Everything ``hotline staffing`` does, from arguments as the user typed them.

    Raises ``StaffingError`` (a ``ValueError``) for anything the user can fix.
    """
    if db_url is not None and (volume is None or aht_s is None):
        _check_database(db_url)
    try:
        return _build_plan(
            center, queue, day, tenant_id=tenant_id, target=target, aht_s=aht_s,
            shrinkage=shrinkage, max_occupancy=max_occupancy, interval_min=interval_min,
            weeks=weeks, volume=volume, db_url=db_url,
        )
    except SQLAlchemyError as exc:
        # a database that is down or has no statistics tables is the user's setup to fix
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StaffingError(f"cannot read the statistics database: {detail}") from exc


def _check_database(db_url: str) -> None:
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise StaffingError(f"--db is not a database URL: {db_url!r}") from exc
    # SQLite would quietly create an empty file and then fail on the missing tables
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            raise StaffingError(
                f"the database file {url.database} does not exist (give --volume FILE and "
                "--aht SECONDS to plan without history)"
            )


def _build_plan(
    center: CallCenter,
    queue: str,
    day: dt.date,
    *,
    tenant_id: str | None,
    target: str | None,
    aht_s: float | None,
    shrinkage: str | None,
    max_occupancy: str | None,
    interval_min: int,
    weeks: int,
    volume: str | Path | None,
    db_url: str | None,
) -> StaffingPlan:
    tenant, q = find_queue(center, queue, tenant_id)
    if target is not None:
        tgt, target_source = parse_target(target), "--target"
    else:
        tgt, target_source = Target(q.service_level_target_pct, q.service_level_s), "queue YAML"
        if not 0 < tgt.pct < 100:
            raise StaffingError(
                f"queue {q.id} sets service_level_target_pct to {tgt.pct:g}, which Erlang C "
                "cannot plan for: give --target such as 80/20"
            )
    shrink = parse_percent(shrinkage, "--shrinkage") if shrinkage is not None else 0.0
    max_occ = (
        parse_percent(max_occupancy, "--max-occupancy", allow_zero=False, allow_100=True)
        if max_occupancy is not None else None
    )
    if interval_min not in (15, 30):
        raise StaffingError(f"--interval must be 15 or 30 minutes, not {interval_min}")
    if not 1 <= weeks <= 52:
        raise StaffingError(f"--weeks must be between 1 and 52, not {weeks}")
    if aht_s is not None and not 0 < aht_s < 24 * 3600:
        raise StaffingError(f"--aht must be a number of seconds above 0, not {aht_s:g}")
    qualified = tenant.qualified(q.id)
    try:
        if volume is not None:
            fc = from_file(volume, day, tenant.timezone, interval_min)
        else:
            if db_url is None:
                raise StaffingError(
                    "a database is needed for a forecast from history (or give --volume FILE)"
                )
            fc = from_history(db_url, qualified, day, tenant.timezone, interval_min, weeks)
    except ForecastError as exc:
        raise StaffingError(str(exc)) from exc
    if aht_s is not None:
        aht = AhtEstimate(float(aht_s), "option", f"--aht {aht_s:g} s")
    else:
        if db_url is None:
            raise StaffingError(
                "give --aht SECONDS, or a database to take the handle time from history"
            )
        first = day_intervals(day - dt.timedelta(weeks=weeks), tenant.timezone, interval_min)[0]
        last = day_intervals(day, tenant.timezone, interval_min)[0]
        mean, n = aht_from_history(db_url, qualified, first.start_ms, last.start_ms)
        if mean is None or mean <= 0:
            raise StaffingError(
                f"no answered calls with handle time in {qualified} in the {weeks} weeks before "
                f"{day.isoformat()}: give --aht SECONDS"
            )
        start_day = day - dt.timedelta(weeks=weeks)
        aht = AhtEstimate(
            mean,
            "history",
            f"mean talk + hold + wrap-up of {n} answered calls in {qualified} that entered the "
            f"queue from {start_day.isoformat()} to {(day - dt.timedelta(days=1)).isoformat()}",
            answered=n,
        )
    return plan(
        tenant, q, day, fc, aht, tgt,
        target_source=target_source, shrinkage=shrink, max_occupancy=max_occ,
    )


def format_table(data: dict[str, object]) -> str:
    """The human table, from the same dict ``--json`` prints (fits 100 columns)."""
    target = data["target"]  # type: ignore[index]
    aht = data["aht"]  # type: ignore[index]
    fc = data["forecast"]  # type: ignore[index]
    totals = data["totals"]  # type: ignore[index]
    lines = [
        f"Staffing for {data['queue']} on {data['date']} ({data['timezone']}, "
        f"{data['interval_minutes']}-minute intervals)",
        f"Target: {target['service_level_pct']:g}% answered within {target['answer_time_s']} s "
        f"(from {target['source']}); shrinkage {data['shrinkage_pct']:g}%"
        + (f"; max occupancy {data['max_occupancy_pct']:g}%"
           if data["max_occupancy_pct"] is not None else ""),
        f"AHT: {aht['seconds']:g} s ({aht['description']})",
        f"Forecast: {fc['description']}",
        f"Model: {data['model']}",
    ]
    if data["agents_without_shifts"]:
        names = ", ".join(data["agents_without_shifts"])  # type: ignore[arg-type]
        lines.append(f"Not counted as scheduled (no shifts in the YAML): {names}")
    # the descriptions can be long: keep the page within 100 columns
    lines = [wrapped for line in lines
             for wrapped in textwrap.wrap(line, 100, subsequent_indent="  ")]
    lines.append("")
    header = (
        f"{'interval':<11} {'calls':>7} {'erlangs':>8} {'need':>5} {'SL%':>6} {'ASA s':>7} "
        f"{'occ%':>6} {'+shrink':>7} {'sched':>6} {'over/under':>10}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for row in data["intervals"]:  # type: ignore[union-attr]
        start, end = row["interval_start"][11:16], row["interval_end"][11:16]
        asa = "inf" if row["asa_s"] is None else f"{row['asa_s']:.1f}"
        occ = "-" if row["occupancy_pct"] is None else f"{row['occupancy_pct']:.1f}"
        diff = f"{row['over_under']:+d}" if row["over_under"] else "0"
        lines.append(
            f"{start}-{end:<5} {row['calls']:>7.1f} {row['traffic_erlangs']:>8.2f} "
            f"{row['agents_required']:>5} {row['service_level_pct']:>6.1f} {asa:>7} {occ:>6} "
            f"{row['agents_with_shrinkage']:>7} {row['agents_scheduled']:>6} {diff:>10}"
        )
    lines.append("")
    lines.append(
        f"Total calls {totals['calls']:g}; peak need {totals['peak_agents_required']} on the "
        f"phones, {totals['peak_agents_with_shrinkage']} with shrinkage."
    )
    lines.append(
        f"Agent-hours needed {totals['agent_hours_required']:g}, scheduled "
        f"{totals['agent_hours_scheduled']:g}; intervals under {totals['intervals_under']}, "
        f"over {totals['intervals_over']}."
    )
    return "\n".join(lines)
