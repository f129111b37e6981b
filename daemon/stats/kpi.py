"""The KPI library: one function per KPI, each computed in SQL over segments and agent intervals.

How a KPI is built
------------------
Every KPI is a function decorated with ``@kpi``. It receives the *sources* of
one report (SQL subqueries over the tables, see below) and returns a
``Measure``: a numerator and an optional denominator, each an ``Agg`` — one SQL
aggregate (count / sum / max / count distinct) of a value over the rows of one
source that satisfy a predicate. The report runs ONE grouped query per source
holding the aggregates of every requested KPI (``GROUP BY interval, group``),
then divides numerator by denominator per output row (``None`` when the
denominator is 0: undefined, never 0). The same predicates drive the drill-down
(``drill``): the rows listed are exactly the rows that were counted.

Which interval a row belongs to
-------------------------------
* A call belongs to the interval in which it entered the queue
  (``queue_entered_ms``): queue visits, rings, talk, hold, wrap-up, surveys, QA.
* A call that never queued (``total_calls``, ``blocked``, ``ivr_only``) belongs
  to the interval of the call's start (``calls.started_ms``).
* Agent time (logged-in, ready, waiting, scheduled) is clipped to each interval.
* Roster events (hire/leave dates) belong to the interval containing them.

Intervals are computed in Python (``daemon.stats.intervals``) and reach the SQL as a
``VALUES`` CTE of integer bounds; each row finds its interval with a
binary-search ``CASE`` on those bounds (``bucket``) and joins it by index. No
database time-zone function is used, so SQLite and PostgreSQL run the same SQL.
Model data (queue thresholds, agent -> team, shifts, roster) are ``VALUES`` CTEs
too.

Measured (bench/report.py, 5 million segments over 30 days, PostgreSQL, 2 CPUs):
see the figures in the bench's output. The FCR repeat-call test, a hash
semi-join on the caller number (see ``_repeats``), and the talk/hold/wrap-up scan
are the costliest parts of a 30-day report.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    distinct,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from daemon.stats.intervals import Interval, local_midnight_ms, local_ms
from daemon.storage import schema

logger = logging.getLogger(__name__)

# Defaults when a queue is not in the model (DOMAIN.md's published defaults).
DEFAULT_SERVICE_LEVEL_S = 20
DEFAULT_SERVICE_LEVEL_TARGET_PCT = 80.0
DEFAULT_SHORT_ABANDON_S = 20
DEFAULT_RING_CYCLE_S = 6
DEFAULT_FCR_WINDOW_H = 72
SATISFIED_MIN_SCORE = 4  # a survey score of 4 or 5 (of 1-5) is "satisfied"
# An agent status/state interval, or a talk/hold/wrap-up segment, that started more than
# this before the report range is not looked for: it keeps the range scans on the indexes
# (a stretch longer than a day that began before the range is only counted from when it is
# within a day of the range's start).
SPAN_LOOKBACK_MS = 24 * 3600_000
# The same for talk/hold/wrap-up segments, counted from their queue entry.
WORK_LOOKBACK_MS = 6 * 3600_000

ANSWERED = ("answered", "transferred-out")
ABANDONED = ("abandoned", "short-abandon")
LOGGED_OUT = "Logged Out"
READY = ("Available", "Available (On Demand)")
# Groupings (--by): tenant, queue, team, agent; and the call types of DOMAIN.md's "total
# calls by call type": number (the DID dialed), ivr (the IVR choices, calls.ivr_path), and
# disposition (the answered call's disposition code).
BYS = ("tenant", "queue", "team", "agent", "number", "ivr", "disposition")
CALL_BYS = frozenset({"tenant", "queue", "number"})  # queue-stay measures
ALL_BYS = frozenset({"tenant", "queue", "team", "agent", "number"})
ANSWERED_BYS = ALL_BYS | {"disposition"}  # measures of answered calls only
CALLS_BYS = frozenset({"tenant", "queue", "number", "ivr"})  # calls as they reach the system
AGENT_BYS = frozenset({"tenant", "team", "agent"})

# Units: how a value is shown (times are seconds, ratios percentages 0-100).
COUNT, PCT, SECONDS, SCORE, MONEY, PER_HOUR, RINGS = (
    "count", "%", "s", "score", "money", "calls/h", "rings")


# --- the scope of one report ---------------------------------------------------------------


@dataclass(frozen=True)
class QueueThresholds:
    queue: str  # qualified
    service_level_s: int = DEFAULT_SERVICE_LEVEL_S
    service_level_target_pct: float = DEFAULT_SERVICE_LEVEL_TARGET_PCT
    short_abandon_s: int = DEFAULT_SHORT_ABANDON_S
    ring_cycle_s: int = DEFAULT_RING_CYCLE_S
    fcr_window_h: int = DEFAULT_FCR_WINDOW_H


@dataclass(frozen=True)
class RosterEntry:
    agent: str  # qualified
    team: str | None
    start_ms: int | None  # first instant of the start date (None: always employed)
    leave_ms: int | None  # first instant after the end date (None: still employed)


@dataclass(frozen=True)
class Scope:
    """What a KPI query needs besides the database: tenant, intervals, filters, model data."""

    tenant: str  # tenant domain as stored in the tables
    tz: str
    intervals: tuple[Interval, ...]
    by: str = "tenant"
    queue: str | None = None  # qualified filter
    agent: str | None = None  # qualified filter
    thresholds: tuple[QueueThresholds, ...] = ()
    roster: tuple[RosterEntry, ...] = ()
    shifts: tuple[tuple[str, int, int], ...] = ()  # (qualified agent, start_ms, end_ms)
    costs: tuple[float | None, ...] = ()  # per interval, aligned with ``intervals``
    resolved_codes: tuple[str, ...] = ()
    now_ms: int = 0  # open intervals/segments end here

    @property
    def from_ms(self) -> int:
        return self.intervals[0].start_ms

    @property
    def to_ms(self) -> int:
        return self.intervals[-1].end_ms

    def threshold(self, queue: str) -> QueueThresholds:
        return next((t for t in self.thresholds if t.queue == queue), QueueThresholds(queue))


def scope_for(tenant: Any, intervals: Sequence[Interval], *, by: str = "tenant",
              queue: str | None = None, agent: str | None = None,
              now_ms: int | None = None) -> Scope:
    """Build a Scope from a model ``Tenant``: thresholds, roster, shifts, costs, resolved codes."""
    if now_ms is None:
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    tz = tenant.timezone
    q = tenant.qualified
    thresholds = tuple(
        QueueThresholds(q(x.id), x.service_level_s, x.service_level_target_pct, x.short_abandon_s,
                        x.ring_cycle_s, x.fcr_window_h) for x in tenant.queues)
    roster = tuple(
        RosterEntry(q(a.id), a.team,
                    local_midnight_ms(a.start_date, tz) if a.start_date else None,
                    local_midnight_ms(a.end_date + dt.timedelta(days=1), tz)
                    if a.end_date else None)
        for a in tenant.agents)
    shifts = _shift_windows(tenant, intervals)
    costs = tuple(_cost_of(tenant, iv) for iv in intervals)
    resolved = tuple(d.code for d in tenant.dispositions if d.resolved)
    return Scope(tenant.domain, tz, tuple(intervals), by, queue, agent, thresholds, roster, shifts,
                 costs, resolved, now_ms)


def _shift_windows(tenant: Any, intervals: Sequence[Interval]) -> tuple[tuple[str, int, int], ...]:
    """Every scheduled shift of every agent that overlaps the report, as epoch-ms windows."""
    if not intervals:
        return ()
    tz = tenant.timezone
    first = intervals[0].start.date() - dt.timedelta(days=1)  # overnight shifts of the day before
    last = intervals[-1].end.date()
    out: list[tuple[str, int, int]] = []
    for a in tenant.agents:
        if not a.shifts:
            continue
        day = first
        while day <= last:
            employed = ((a.start_date is None or a.start_date <= day)
                        and (a.end_date is None or day <= a.end_date))
            for s in a.shifts:
                if not employed or s.weekday != day.weekday():
                    continue
                start = local_ms(day, s.start, tz)
                end = local_ms(day, s.end, tz)
                if end <= start:  # an overnight shift ends the next day
                    end = local_ms(day + dt.timedelta(days=1), s.end, tz)
                if start < intervals[-1].end_ms and end > intervals[0].start_ms:
                    out.append((tenant.qualified(a.id), start, end))
            day += dt.timedelta(days=1)
    return tuple(sorted(out))


def _cost_of(tenant: Any, iv: Interval) -> float | None:
    """The configured cost falling in ``iv``: each cost period spread evenly over its time."""
    total: float | None = None
    for c in tenant.costs:
        start = local_midnight_ms(c.first, tenant.timezone)
        end = local_midnight_ms(c.last + dt.timedelta(days=1), tenant.timezone)
        overlap = min(end, iv.end_ms) - max(start, iv.start_ms)
        if overlap > 0 and end > start:
            total = (total or 0.0) + c.amount * overlap / (end - start)
    return total


# --- literal row sets (the portable "VALUES") ---------------------------------------------


def _sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    # standard SQL string; a colon is escaped because text() reads ":name" as a parameter
    return "'" + str(v).replace("'", "''").replace(":", "\\:") + "'"


def rows_cte(name: str, columns: Sequence[tuple[str, Any]], rows: Iterable[Sequence[Any]]):
    """A CTE of literal rows: ``WITH raw AS (VALUES ...), name AS (SELECT CAST(...) FROM raw)``.

    The VALUES list is written as literal SQL (numbers, and quoted strings from the model):
    compiling one bound SELECT per row took longer than running the KPI queries. A VALUES
    list names its columns column1, column2, ... in both SQLite and PostgreSQL; the CAST
    layer gives every column its type even when all its values are NULL.
    """
    data = [tuple(r) for r in rows]
    if not data:
        nulls = [cast(None, typ).label(col) for col, typ in columns]
        return select(*nulls).where(false()).cte(name)
    body = "VALUES " + ", ".join("(" + ", ".join(_sql_literal(v) for v in r) + ")" for r in data)
    raw = (text(body).columns(*[column(f"column{n + 1}") for n in range(len(columns))])
           .cte(f"{name}_raw"))
    return select(*[cast(raw.c[f"column{n + 1}"], typ).label(col)
                    for n, (col, typ) in enumerate(columns)]).cte(name)


def _intervals_cte(sc: Scope):
    costs = sc.costs or tuple(None for _ in sc.intervals)
    return rows_cte("iv", [("idx", Integer), ("start_ms", BigInteger), ("end_ms", BigInteger),
                           ("cost", Float)],
                    [(n, iv.start_ms, iv.end_ms, costs[n]) for n, iv in enumerate(sc.intervals)])


def _thresholds_cte(sc: Scope, name: str = "th"):
    return rows_cte(name, [("queue", String), ("sl_ms", BigInteger), ("short_ms", BigInteger),
                           ("ring_ms", BigInteger), ("fcr_ms", BigInteger)],
                    [(t.queue, t.service_level_s * 1000, t.short_abandon_s * 1000,
                      t.ring_cycle_s * 1000, t.fcr_window_h * 3600_000) for t in sc.thresholds])


def _teams_cte(sc: Scope):
    return rows_cte("tm", [("agent", String), ("team", String)],
                    [(r.agent, r.team) for r in sc.roster if r.team])


def _team(tm: Any, agent_col: Any) -> ColumnElement:
    """The agent's team; '' for an agent without one, NULL where there is no agent."""
    if tm is None:  # not grouping by team
        return literal(None, String).label("team")
    return case((agent_col.is_(None), None), else_=func.coalesce(tm.c.team, "")).label("team")


def _tj(frm: Any, tm: Any, agent_col: Any) -> Any:
    """``frm`` joined to the agent -> team mapping, when there is one."""
    return frm if tm is None else frm.outerjoin(tm, tm.c.agent == agent_col)


def _number(col: Any) -> ColumnElement:
    """The dialed number (DID) as a group key; NULL ('(none)') when unknown."""
    return func.nullif(col, "").label("number")


def _with_disposition(sc: Scope, frm: Any, seg: Any) -> tuple[Any, ColumnElement]:
    """``frm`` joined to the disposition code of each queue-stay row ``seg`` belongs to,
    and that code as a group key — only --by disposition (else NULL, and no join).

    The code of the stay's call in the ``dispositions`` table (the latest entered, phone or
    CLI) wins; else the code its agent entered on the stay's talk segment; NULL ('(none)')
    without one. Both are hash/index joins: a lookup per row took 38 s on the 30-day bench.
    """
    if sc.by != "disposition":
        return frm, literal(None, String).label("disposition")
    d, talk = schema.dispositions.alias("disp_code"), schema.segments.alias("disp_talk")
    on_talk = (select(talk.c.visit_id, func.max(talk.c.disposition).label("code"))
               .where(talk.c.tenant == sc.tenant, talk.c.kind == "talk", _seg_range(talk, sc),
                      talk.c.disposition.is_not(None), talk.c.disposition != "")
               .group_by(talk.c.visit_id).subquery("disp_talk_codes"))
    frm = (frm.outerjoin(d, d.c.call_id == seg.c.call_id)
           .outerjoin(on_talk, on_talk.c.visit_id == seg.c.visit_id))
    return frm, func.coalesce(d.c.code, on_talk.c.code).label("disposition")


def _greatest(a, b):
    return case((a > b, a), else_=b)


def _least(a, b):
    return case((a < b, a), else_=b)


# --- sources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceDef:
    name: str
    join: str  # point (column t in the interval) | span (s,e overlap) | cross (every interval)
    bys: frozenset[str]
    build: Callable[[Scope, Any], Any]  # (scope, ctes) -> subquery


def _seg_range(s, sc: Scope, col=None):
    col = s.c.queue_entered_ms if col is None else col
    return and_(col >= sc.from_ms, col < sc.to_ms)


def _filters(sc: Scope, queue_col, agent_col) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if sc.queue is not None and queue_col is not None:
        out.append(queue_col == sc.queue)
    if sc.agent is not None and agent_col is not None:
        out.append(agent_col == sc.agent)
    return out


def _visits(sc: Scope, ctes: dict) -> Any:
    """Queue stays: one row per visit, with the thresholds of its queue."""
    s, th, tm = schema.segments, ctes["th"], ctes["tm"]
    frm, disposition = _with_disposition(
        sc, _tj(s.outerjoin(th, th.c.queue == s.c.queue), tm, s.c.agent), s)
    return (select(
        s.c.segment_id.label("row_id"), s.c.call_id, s.c.visit_id, s.c.queue, s.c.agent,
        _team(tm, s.c.agent), s.c.caller, func.coalesce(s.c.outcome, "").label("outcome"),
        s.c.queue_entered_ms.label("t"), s.c.duration_ms.label("wait_ms"),
        func.coalesce(th.c.sl_ms, DEFAULT_SERVICE_LEVEL_S * 1000).label("sl_ms"),
        func.coalesce(th.c.short_ms, DEFAULT_SHORT_ABANDON_S * 1000).label("short_ms"),
        _number(s.c.dialed), disposition)
        .select_from(frm)
        .where(s.c.tenant == sc.tenant, s.c.kind == "queue", _seg_range(s, sc),
               *_filters(sc, s.c.queue, s.c.agent))
        .subquery("visits"))


class _hash_key(FunctionElement):
    """``col`` as a join key that PostgreSQL cannot look up in an index, so it hashes it.

    On PostgreSQL it renders ``(col || '')``: the same value, but no index matches the
    expression. Used for the FCR repeat-call search, where the planner, misled by the row
    estimates of the interval bucketing, otherwise picks one index probe of
    ``ix_calls_caller_started`` per answered call (measured 1.0 s for 720,000 answered
    calls) over one hash semi-join on the caller number (0.65 s). SQLite has no hash join:
    there the column is left as it is, so its index keeps serving the lookups. Known cost:
    a number with very many calls in the range (a switchboard calling in all day) makes
    its answered calls walk a long hash chain — still linear in its calls per stay.
    """

    type = String()
    inherit_cache = True
    name = "hash_key"


@compiles(_hash_key)
def _hash_key_default(element: _hash_key, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_hash_key, "postgresql")
def _hash_key_pg(element: _hash_key, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} || '')"


def _repeats(sc: Scope, ctes: dict) -> Any:
    """Answered stays (known caller number) NOT resolved at the first call.

    That is: another inbound call from the same number started within the queue's FCR
    window after the stay's queue entry, and the call has no resolved disposition. Both
    tests are EXISTS / NOT EXISTS in the WHERE clause, so PostgreSQL can run them as
    semi/anti joins; the same tests inside a CASE became one index probe per answered
    call. The repeat-call test matches the caller number through ``_hash_key`` so that
    PostgreSQL hashes the calls of the range once instead of probing the caller index
    per answered call (30-day bench: 1.0 s -> 0.65 s for this source). A window function
    (next call of the caller by time) was measured too: sorting 1.6 million calls and
    stays by caller number took 2.4 s.
    """
    s, th, tm = schema.segments, ctes["th"], ctes["tm"]
    c, d, talk = schema.calls, schema.dispositions, schema.segments.alias("talk_seg")
    longest = max([t.fcr_window_h for t in sc.thresholds] + [DEFAULT_FCR_WINDOW_H]) * 3600_000
    window = func.coalesce(th.c.fcr_ms, DEFAULT_FCR_WINDOW_H * 3600_000)
    conds = [
        s.c.tenant == sc.tenant, s.c.kind == "queue", _seg_range(s, sc),
        s.c.outcome.in_(ANSWERED), s.c.caller != "", *_filters(sc, s.c.queue, s.c.agent),
        exists().where(c.c.tenant == sc.tenant, _hash_key(c.c.caller) == s.c.caller,
                       c.c.call_id != s.c.call_id, c.c.direction == "inbound",
                       # only calls that can be repeats: keeps the hashed calls to the range
                       c.c.started_ms > sc.from_ms, c.c.started_ms <= sc.to_ms + longest,
                       c.c.started_ms > s.c.queue_entered_ms,
                       c.c.started_ms <= s.c.queue_entered_ms + window)]
    codes = sc.resolved_codes
    if codes:
        conds.append(~exists().where(d.c.call_id == s.c.call_id, d.c.code.in_(codes)))
        conds.append(~exists().where(talk.c.call_id == s.c.call_id, talk.c.kind == "talk",
                                     talk.c.disposition.in_(codes)))
    frm, disposition = _with_disposition(
        sc, _tj(s.outerjoin(th, th.c.queue == s.c.queue), tm, s.c.agent), s)
    return (select(
        s.c.segment_id.label("row_id"), s.c.call_id, s.c.visit_id, s.c.queue, s.c.agent,
        _team(tm, s.c.agent), s.c.queue_entered_ms.label("t"), _number(s.c.dialed),
        disposition)
        .select_from(frm)
        .where(*conds)
        .subquery("repeats"))


def _handling(sc: Scope, ctes: dict) -> Any:
    s, tm = schema.segments, ctes["tm"]
    frm, disposition = _with_disposition(sc, _tj(s, tm, s.c.agent), s)
    return (select(
        s.c.segment_id.label("row_id"), s.c.call_id, s.c.visit_id, s.c.queue, s.c.agent,
        _team(tm, s.c.agent),
        s.c.kind, func.coalesce(s.c.duration_ms, 0).label("dur_ms"),
        s.c.queue_entered_ms.label("t"), _number(s.c.dialed), disposition)
        .select_from(frm)
        .where(s.c.tenant == sc.tenant, s.c.kind.in_(("talk", "hold", "wrapup")), _seg_range(s, sc),
               *_filters(sc, s.c.queue, s.c.agent))
        .subquery("handling"))


def _rings(sc: Scope, ctes: dict) -> Any:
    s, th, tm = schema.segments, ctes["th"], ctes["tm"]
    return (select(
        s.c.segment_id.label("row_id"), s.c.call_id, s.c.visit_id, s.c.queue, s.c.agent,
        _team(tm, s.c.agent),
        func.coalesce(s.c.outcome, "").label("outcome"),
        func.coalesce(s.c.duration_ms, 0).label("ring_ms"), s.c.queue_entered_ms.label("t"),
        func.coalesce(th.c.ring_ms, DEFAULT_RING_CYCLE_S * 1000).label("cycle_ms"),
        _number(s.c.dialed))
        .select_from(_tj(s.outerjoin(th, th.c.queue == s.c.queue), tm, s.c.agent))
        .where(s.c.tenant == sc.tenant, s.c.kind == "ring", _seg_range(s, sc),
               *_filters(sc, s.c.queue, s.c.agent))
        .subquery("rings"))


def _surveys(sc: Scope, ctes: dict) -> Any:
    s, tm = schema.segments, ctes["tm"]
    # a survey without a queue stay (should not happen) falls back to its own start
    t = func.coalesce(s.c.queue_entered_ms, s.c.started_ms)
    in_range = or_(_seg_range(s, sc),
                   and_(s.c.queue_entered_ms.is_(None), _seg_range(s, sc, s.c.started_ms)))
    return (select(
        s.c.segment_id.label("row_id"), s.c.call_id, s.c.visit_id, s.c.queue, s.c.agent,
        _team(tm, s.c.agent),
        s.c.score, t.label("t"), _number(s.c.dialed))
        .select_from(_tj(s, tm, s.c.agent))
        .where(s.c.tenant == sc.tenant, s.c.kind == "survey", in_range,
               *_filters(sc, s.c.queue, s.c.agent))
        .subquery("surveys"))


def _calls(sc: Scope, ctes: dict) -> Any:
    c = schema.calls
    return (select(
        c.c.call_id.label("row_id"), c.c.call_id, literal(None, String).label("visit_id"),
        c.c.first_queue.label("queue"), literal(None, String).label("agent"),
        literal(None, String).label("team"), c.c.outcome, c.c.started_ms.label("t"),
        _number(c.c.dialed), func.nullif(c.c.ivr_path, "").label("ivr"))
        .where(c.c.tenant == sc.tenant, c.c.direction == "inbound",
               c.c.started_ms >= sc.from_ms, c.c.started_ms < sc.to_ms,
               *_filters(sc, c.c.first_queue, None))
        .subquery("calls_src"))


def _qa(sc: Scope, ctes: dict) -> Any:
    qa, s, c, tm = schema.qa_scores, schema.segments, schema.calls, ctes["tm"]
    # the scored call's queue entry (by that agent), else the call's start, else the scoring time
    entered = (select(func.min(s.c.queue_entered_ms))
               .where(s.c.call_id == qa.c.call_id, s.c.kind == "queue", s.c.agent == qa.c.agent)
               .scalar_subquery())
    started = select(c.c.started_ms).where(c.c.call_id == qa.c.call_id).scalar_subquery()
    t = func.coalesce(entered, started, qa.c.scored_ms)
    inner = (select(
        cast(qa.c.id, String).label("row_id"), qa.c.call_id,
        literal(None, String).label("visit_id"), literal(None, String).label("queue"), qa.c.agent,
        _team(tm, qa.c.agent), qa.c.score, t.label("t"))
        .select_from(_tj(qa, tm, qa.c.agent))
        .where(qa.c.agent.like(f"%@{sc.tenant}"), *_filters(sc, None, qa.c.agent))
        .subquery("qa_all"))
    return select(inner).where(inner.c.t >= sc.from_ms, inner.c.t < sc.to_ms).subquery("qa")


def _agent_time(sc: Scope, ctes: dict) -> Any:
    ai, s, tm = schema.agent_intervals, schema.segments, ctes["tm"]
    now = literal(sc.now_ms, BigInteger)
    statuses = (select(
        ai.c.interval_id.label("row_id"), ai.c.agent, ai.c.kind.label("typ"), ai.c.value,
        ai.c.started_ms.label("s"), func.coalesce(ai.c.ended_ms, now).label("e"))
        .where(ai.c.tenant == sc.tenant, ai.c.started_ms < sc.to_ms,
               ai.c.started_ms >= sc.from_ms - SPAN_LOOKBACK_MS,
               func.coalesce(ai.c.ended_ms, now) > sc.from_ms, *_filters(sc, None, ai.c.agent)))
    work = (select(
        s.c.segment_id.label("row_id"), s.c.agent, literal("segment", String).label("typ"),
        s.c.kind.label("value"), s.c.started_ms.label("s"),
        func.coalesce(s.c.ended_ms, now).label("e"))
        .where(s.c.tenant == sc.tenant, s.c.kind.in_(("talk", "hold", "wrapup")),
               s.c.queue_entered_ms >= sc.from_ms - WORK_LOOKBACK_MS,
               s.c.queue_entered_ms < sc.to_ms, s.c.agent.is_not(None),
               func.coalesce(s.c.ended_ms, now) > sc.from_ms, *_filters(sc, None, s.c.agent)))
    both = union_all(statuses, work).subquery("at_rows")
    return (select(both, literal(None, String).label("call_id"),
                   literal(None, String).label("queue"),
                   _team(tm, both.c.agent))
            .select_from(_tj(both, tm, both.c.agent)).subquery("agent_time"))


def _schedule(sc: Scope, ctes: dict) -> Any:
    sh, tm, ai = ctes["sh"], ctes["tm"], schema.agent_intervals
    now = literal(sc.now_ms, BigInteger)
    logged_in = exists().where(
        ai.c.agent == sh.c.agent, ai.c.kind == "status", ai.c.value != LOGGED_OUT,
        ai.c.started_ms < sh.c.end_ms, func.coalesce(ai.c.ended_ms, now) > sh.c.start_ms)
    return (select(
        (sh.c.agent + literal(":") + cast(sh.c.start_ms, String)).label("row_id"), sh.c.agent,
        _team(tm, sh.c.agent), sh.c.start_ms.label("s"), sh.c.end_ms.label("e"),
        case((logged_in, 1), else_=0).label("attended"),
        literal(None, String).label("call_id"), literal(None, String).label("queue"))
        .select_from(_tj(sh, tm, sh.c.agent))
        .where(*_filters(sc, None, sh.c.agent))
        .subquery("schedule"))


def _ready_in_shift(sc: Scope, ctes: dict) -> Any:
    sh, tm, ai = ctes["sh"], ctes["tm"], schema.agent_intervals
    now = literal(sc.now_ms, BigInteger)
    a_end = func.coalesce(ai.c.ended_ms, now)
    return (select(
        ai.c.interval_id.label("row_id"), sh.c.agent, _team(tm, sh.c.agent),
        _greatest(ai.c.started_ms, sh.c.start_ms).label("s"), _least(a_end, sh.c.end_ms).label("e"),
        literal(None, String).label("call_id"), literal(None, String).label("queue"))
        .select_from(_tj(sh.join(ai, and_(ai.c.agent == sh.c.agent, ai.c.kind == "status",
                                          ai.c.value.in_(READY), ai.c.started_ms < sh.c.end_ms,
                                          a_end > sh.c.start_ms)), tm, sh.c.agent))
        .where(*_filters(sc, None, sh.c.agent))
        .subquery("ready_in_shift"))


def _roster(sc: Scope, ctes: dict) -> Any:
    ro = ctes["ro"]
    return (select(ro.c.agent.label("row_id"), ro.c.agent,
                   func.coalesce(ro.c.team, "").label("team"), ro.c.start_ms, ro.c.leave_ms,
                   literal(None, String).label("call_id"), literal(None, String).label("queue"))
            .where(*_filters(sc, None, ro.c.agent)).subquery("roster"))


SOURCES: dict[str, SourceDef] = {s.name: s for s in (
    SourceDef("visits", "point", ANSWERED_BYS, _visits),
    SourceDef("repeats", "point", ANSWERED_BYS, _repeats),
    SourceDef("handling", "point", ANSWERED_BYS, _handling),
    SourceDef("rings", "point", ALL_BYS, _rings),
    SourceDef("surveys", "point", ALL_BYS, _surveys),
    SourceDef("calls", "point", CALLS_BYS, _calls),
    SourceDef("qa", "point", AGENT_BYS, _qa),
    SourceDef("agent_time", "span", AGENT_BYS, _agent_time),
    SourceDef("schedule", "span", AGENT_BYS, _schedule),
    SourceDef("ready_in_shift", "span", AGENT_BYS, _ready_in_shift),
    SourceDef("roster", "cross", AGENT_BYS, _roster),
)}


def bucket(col: Any, ivs: Sequence[Interval]) -> ColumnElement:
    """The index of the interval containing ``col`` (NULL outside), as a binary-search CASE.

    Intervals are contiguous and sorted, so ~log2(n) comparisons per row find the
    interval: much cheaper than a range join, which PostgreSQL can only run as a
    nested loop over every (row, interval) pair.
    """
    bounds = [iv.start_ms for iv in ivs] + [ivs[-1].end_ms]

    def lit(v: int) -> ColumnElement:
        return literal_column(str(int(v)))

    def node(lo: int, hi: int) -> ColumnElement:
        if hi - lo == 1:
            return lit(lo)
        mid = (lo + hi) // 2
        return case((col < lit(bounds[mid]), node(lo, mid)), else_=node(mid, hi))

    return case((or_(col < lit(bounds[0]), col >= lit(bounds[-1])), None), else_=node(0, len(ivs)))


class _IvCols:
    def __init__(self, j: Any) -> None:
        self.c = SimpleNamespace(idx=j.c.iv_idx, start_ms=j.c.iv_start_ms, end_ms=j.c.iv_end_ms,
                                 cost=j.c.iv_cost)


class Rows:
    """One source's rows, each paired with the interval(s) it belongs to.

    ``.c``: the source's columns; ``.iv.c``: the interval's (idx, start_ms, end_ms, cost);
    ``.ov`` (span sources): the part of the row's time inside the interval, in ms.
    Point rows find their interval with ``bucket`` and join it by equality; span rows
    inside one interval do the same, and only rows crossing an interval edge take the
    overlap join.
    """

    def __init__(self, name: str, sub: Any, iv: Any, scope: Scope) -> None:
        self.name, self.sub, self.scope = name, sub, scope
        self.join = SOURCES[name].join
        ivc = [iv.c.idx.label("iv_idx"), iv.c.start_ms.label("iv_start_ms"),
               iv.c.end_ms.label("iv_end_ms"), iv.c.cost.label("iv_cost")]
        ivs = scope.intervals
        if self.join == "point":
            joined = select(sub, *ivc).select_from(
                sub.join(iv, iv.c.idx == bucket(sub.c.t, ivs))).subquery(f"{name}_j")
        elif self.join == "span":
            # both branches read the source: a CTE (referenced twice, so PostgreSQL
            # materializes it) keeps it to one scan, and the first and last interval of
            # each row are computed there once
            lo = literal_column(str(scope.from_ms))
            hi = literal_column(str(scope.to_ms))
            s_in, e_in = _greatest(sub.c.s, lo), _least(sub.c.e, hi)
            base = select(sub, bucket(s_in, ivs).label("b_s"), bucket(e_in - 1, ivs).label("b_e"),
                          (e_in - s_in).label("in_ms")).cte(f"{name}_src")
            inside = select(base, *ivc, base.c.in_ms.label("ov")).select_from(
                base.join(iv, iv.c.idx == base.c.b_s)).where(base.c.b_s == base.c.b_e)
            cross = select(base).where(base.c.b_s != base.c.b_e).cte(f"{name}_cross")
            ov = _least(cross.c.e, iv.c.end_ms) - _greatest(cross.c.s, iv.c.start_ms)
            across = select(cross, *ivc, ov.label("ov")).select_from(
                cross.join(iv, and_(iv.c.idx >= cross.c.b_s, iv.c.idx <= cross.c.b_e)))
            joined = union_all(inside, across).subquery(f"{name}_j")
        else:
            joined = select(sub, *ivc).select_from(sub.join(iv, true())).subquery(f"{name}_j")
        self.joined = joined
        self.c = joined.c
        self.iv = _IvCols(joined)

    @property
    def ov(self) -> ColumnElement:
        return self.c.ov

    # aggregate builders
    def count(self, where: ColumnElement[bool] | None = None) -> "Agg":
        return Agg(self.name, "count", where, None)

    def sum(self, value: ColumnElement, where: ColumnElement[bool] | None = None) -> "Agg":
        return Agg(self.name, "sum", where, value)

    def max(self, value: ColumnElement, where: ColumnElement[bool] | None = None) -> "Agg":
        return Agg(self.name, "max", where, value)

    def distinct(self, value: ColumnElement, where: ColumnElement[bool] | None = None) -> "Agg":
        return Agg(self.name, "distinct", where, value)


@dataclass(frozen=True)
class Agg:
    """One SQL aggregate over the rows of one source that satisfy ``where``."""

    source: str
    fn: str  # count | sum | max | distinct
    where: ColumnElement[bool] | None
    value: ColumnElement | None

    def sql(self) -> ColumnElement:
        pred = true() if self.where is None else self.where
        if self.fn == "count":
            return func.count(case((pred, 1)))
        if self.fn == "sum":
            return func.sum(case((pred, self.value)))
        if self.fn == "max":
            return func.max(case((pred, self.value)))
        if self.fn == "distinct":
            return func.count(distinct(case((pred, self.value))))
        raise ValueError(self.fn)


@dataclass(frozen=True)
class Measure:
    """value = (num - less) / (den + more) * scale (num * scale without a denominator); None
    when the denominator is 0. ``less`` (optional) is a subset of the numerator's rows counted
    from another source, e.g. the calls that were not resolved at the first call; ``more``
    (optional) adds denominator rows of another source, e.g. connected callbacks, which are
    handled contacts without a queue stay."""

    num: Agg
    den: Agg | None = None
    scale: float = 1.0
    less: Agg | None = None
    more: Agg | None = None


@dataclass(frozen=True)
class Kpi:
    id: str
    title: str
    unit: str
    bys: frozenset[str]
    fn: Callable[["Sources"], Measure] = field(repr=False)
    doc: str = ""


KPIS: dict[str, Kpi] = {}


def kpi(kpi_id: str, title: str, unit: str, bys: frozenset[str]):
    """Register a KPI function under its stable id."""
    def deco(fn: Callable[["Sources"], Measure]) -> Callable[["Sources"], Measure]:
        KPIS[kpi_id] = Kpi(kpi_id, title, unit, bys, fn, (fn.__doc__ or "").strip())
        return fn
    return deco


class Sources:
    """The sources of one report, built lazily (attribute access: ``src.visits``)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.ctes: dict[str, Any] = {
            "iv": _intervals_cte(scope), "th": _thresholds_cte(scope),
            # the agent -> team mapping only matters when grouping by team
            "tm": _teams_cte(scope) if scope.by == "team" else None,
            "sh": rows_cte("sh", [("agent", String), ("start_ms", BigInteger),
                                  ("end_ms", BigInteger)], scope.shifts),
            "ro": rows_cte("ro", [("agent", String), ("team", String), ("start_ms", BigInteger),
                                  ("leave_ms", BigInteger)],
                           [(r.agent, r.team, r.start_ms, r.leave_ms) for r in scope.roster]),
        }
        self._built: dict[str, Rows] = {}

    def __getattr__(self, name: str) -> Rows:
        if name.startswith("_") or name not in SOURCES:
            raise AttributeError(name)
        if name not in self._built:
            sub = SOURCES[name].build(self.scope, self.ctes)
            self._built[name] = Rows(name, sub, self.ctes["iv"], self.scope)
        return self._built[name]


# --- the KPIs ------------------------------------------------------------------------------
# Predicates on queue visits (one row per queue stay; wait_ms = time in that queue).


def _answered(v: Rows) -> ColumnElement[bool]:
    return v.c.outcome.in_(ANSWERED)


def _abandoned(v: Rows) -> ColumnElement[bool]:
    return v.c.outcome.in_(ABANDONED)


def _short(v: Rows) -> ColumnElement[bool]:
    # recomputed from the queue's configured threshold, so the report uses what it states
    return and_(_abandoned(v), func.coalesce(v.c.wait_ms, 0) <= v.c.short_ms)


def _not_short(v: Rows) -> ColumnElement[bool]:
    return or_(~_abandoned(v), func.coalesce(v.c.wait_ms, 0) > v.c.short_ms)


@kpi("offered", "Offered", COUNT, CALL_BYS)
def offered(src: Sources) -> Measure:
    """Queue stays that began in the interval: every call that entered the queue, any outcome."""
    v = src.visits
    return Measure(v.count())


@kpi("answered", "Answered", COUNT, ANSWERED_BYS)
def answered(src: Sources) -> Measure:
    """Offered calls bridged to an agent (outcome answered or transferred-out)."""
    v = src.visits
    return Measure(v.count(_answered(v)))


@kpi("abandoned", "Abandoned", COUNT, CALL_BYS)
def abandoned(src: Sources) -> Measure:
    """Offered calls whose caller hung up while waiting, short abandons included."""
    v = src.visits
    return Measure(v.count(_abandoned(v)))


@kpi("short_abandoned", "Short abandons", COUNT, CALL_BYS)
def short_abandoned(src: Sources) -> Measure:
    """Abandoned calls that waited no longer than the queue's short-abandon threshold."""
    v = src.visits
    return Measure(v.count(_short(v)))


@kpi("abandon_rate", "Abandon rate", PCT, CALL_BYS)
def abandon_rate(src: Sources) -> Measure:
    """(abandoned − short abandons) ÷ (offered − short abandons) × 100."""
    v = src.visits
    return Measure(v.count(and_(_abandoned(v), _not_short(v))), v.count(_not_short(v)), 100.0)


@kpi("answered_pct", "Answered %", PCT, CALL_BYS)
def answered_pct(src: Sources) -> Measure:
    """answered ÷ offered × 100."""
    v = src.visits
    return Measure(v.count(_answered(v)), v.count(), 100.0)


@kpi("service_level", "Service level", PCT, CALL_BYS)
def service_level(src: Sources) -> Measure:
    """answered within the queue's X s ÷ (offered − short abandons) × 100."""
    v = src.visits
    within = and_(_answered(v), v.c.wait_ms <= v.c.sl_ms)
    return Measure(v.count(within), v.count(_not_short(v)), 100.0)


@kpi("asa", "Average speed of answer", SECONDS, ANSWERED_BYS)
def asa(src: Sources) -> Measure:
    """total queue wait of answered calls ÷ answered calls."""
    v = src.visits
    return Measure(v.sum(v.c.wait_ms, _answered(v)), v.count(_answered(v)), 0.001)


@kpi("avg_queue_time", "Average queue time", SECONDS, CALL_BYS)
def avg_queue_time(src: Sources) -> Measure:
    """total wait of offered calls whose wait has ended ÷ their number."""
    v = src.visits
    ended = v.c.wait_ms.is_not(None)
    return Measure(v.sum(v.c.wait_ms, ended), v.count(ended), 0.001)


@kpi("avg_abandon_time", "Average abandon time", SECONDS, CALL_BYS)
def avg_abandon_time(src: Sources) -> Measure:
    """total wait of abandoned calls (short ones included) ÷ abandoned calls."""
    v = src.visits
    return Measure(v.sum(v.c.wait_ms, _abandoned(v)), v.count(_abandoned(v)), 0.001)


@kpi("longest_wait", "Longest wait", SECONDS, CALL_BYS)
def longest_wait(src: Sources) -> Measure:
    """the longest ended wait in queue among the interval's offered calls."""
    v = src.visits
    return Measure(v.max(v.c.wait_ms), None, 0.001)


@kpi("transfer_rate", "Transfer rate", PCT, ANSWERED_BYS)
def transfer_rate(src: Sources) -> Measure:
    """answered calls the agent transferred out ÷ answered × 100."""
    v = src.visits
    return Measure(v.count(v.c.outcome == "transferred-out"), v.count(_answered(v)), 100.0)


@kpi("fcr", "First-call resolution", PCT, ANSWERED_BYS)
def fcr(src: Sources) -> Measure:
    """answered calls (known caller number) with a resolved disposition or no new call
    from the same number within the queue's FCR window ÷ those answered calls × 100."""
    v, r = src.visits, src.repeats
    known = and_(_answered(v), v.c.caller.is_not(None), v.c.caller != "")
    return Measure(v.count(known), v.count(known), 100.0, less=r.count())


def _handled(src: Sources) -> tuple[Agg, Agg]:
    """Handled contacts: answered stays, plus conversations without a stay (a connected
    callback's talk), so that every conversation in a handling numerator is also counted
    in its denominator."""
    v, h = src.visits, src.handling
    return v.count(_answered(v)), h.count(and_(h.c.kind == "talk", h.c.visit_id.is_(None)))


def _per_handled(src: Sources, total_ms: Agg) -> Measure:
    """``total_ms`` in seconds per handled call (``_handled``)."""
    stays, others = _handled(src)
    return Measure(total_ms, stays, 0.001, more=others)


@kpi("avg_talk_time", "Average talk time", SECONDS, ANSWERED_BYS)
def avg_talk_time(src: Sources) -> Measure:
    """total talk time (hold excluded) of handled calls ÷ handled calls (answered stays + connected callbacks)."""
    h = src.handling
    return _per_handled(src, h.sum(h.c.dur_ms, h.c.kind == "talk"))


@kpi("avg_hold_time", "Average hold time", SECONDS, ANSWERED_BYS)
def avg_hold_time(src: Sources) -> Measure:
    """total hold time ÷ handled calls (answered stays + connected callbacks)."""
    h = src.handling
    return _per_handled(src, h.sum(h.c.dur_ms, h.c.kind == "hold"))


@kpi("acw", "After-call work", SECONDS, ANSWERED_BYS)
def acw(src: Sources) -> Measure:
    """total wrap-up time after handled calls ÷ handled calls (answered stays + connected callbacks)."""
    h = src.handling
    return _per_handled(src, h.sum(h.c.dur_ms, h.c.kind == "wrapup"))


@kpi("aht", "Average handle time", SECONDS, ANSWERED_BYS)
def aht(src: Sources) -> Measure:
    """(talk + hold + wrap-up) ÷ handled calls (answered stays + connected callbacks)."""
    h = src.handling
    return _per_handled(src, h.sum(h.c.dur_ms))


@kpi("avg_rings", "Average rings", RINGS, ALL_BYS)
def avg_rings(src: Sources) -> Measure:
    """ring time of the answering agent's phone ÷ the queue's ring cycle, averaged over
    answered rings."""
    r = src.rings
    ok = r.c.outcome == "answered"
    return Measure(r.sum(r.c.ring_ms * 1.0 / r.c.cycle_ms, ok), r.count(ok))


@kpi("avg_ring_time", "Average ring time", SECONDS, ALL_BYS)
def avg_ring_time(src: Sources) -> Measure:
    """ring time of the answering agent's phone (offer -> answer), averaged over answered rings."""
    r = src.rings
    ok = r.c.outcome == "answered"
    return Measure(r.sum(r.c.ring_ms, ok), r.count(ok), 0.001)


@kpi("satisfaction", "Satisfaction (mean score)", SCORE, ALL_BYS)
def satisfaction(src: Sources) -> Measure:
    """mean survey score (1-5) of the answered surveys."""
    s = src.surveys
    scored = s.c.score.is_not(None)
    return Measure(s.sum(s.c.score, scored), s.count(scored))


@kpi("satisfied_pct", "Satisfied %", PCT, ALL_BYS)
def satisfied_pct(src: Sources) -> Measure:
    """surveys scored 4 or 5 ÷ surveys with a score × 100."""
    s = src.surveys
    scored = s.c.score.is_not(None)
    return Measure(s.count(s.c.score >= SATISFIED_MIN_SCORE), s.count(scored), 100.0)


@kpi("total_calls", "Total calls", COUNT, CALLS_BYS)
def total_calls(src: Sources) -> Measure:
    """inbound calls that reached the system, by the call's start (blocked, IVR-only, queued)."""
    c = src.calls
    return Measure(c.count())


@kpi("blocked", "Blocked", COUNT, CALLS_BYS)
def blocked(src: Sources) -> Measure:
    """calls rejected before reaching a queue (queue full, closed, no channels)."""
    c = src.calls
    return Measure(c.count(c.c.outcome == "blocked"))


@kpi("ivr_only", "IVR only", COUNT, CALLS_BYS)
def ivr_only(src: Sources) -> Measure:
    """calls that ended in the IVR without entering a queue."""
    c = src.calls
    return Measure(c.count(c.c.outcome == "ivr-only"))


@kpi("blocked_rate", "Blocked rate", PCT, CALLS_BYS)
def blocked_rate(src: Sources) -> Measure:
    """blocked calls ÷ total calls × 100."""
    c = src.calls
    return Measure(c.count(c.c.outcome == "blocked"), c.count(), 100.0)


@kpi("queue_placement_rate", "Queue placement rate", PCT, CALLS_BYS)
def queue_placement_rate(src: Sources) -> Measure:
    """calls that entered at least one queue ÷ total calls × 100 (each call counted once)."""
    c = src.calls
    return Measure(c.count(c.c.queue.is_not(None)), c.count(), 100.0)


@kpi("cost_per_call", "Cost per call", MONEY, frozenset({"tenant"}))
def cost_per_call(src: Sources) -> Measure:
    """configured cost falling in the interval ÷ total calls."""
    c = src.calls
    return Measure(c.max(c.iv.c.cost), c.count())


@kpi("qa_score", "QA score", SCORE, AGENT_BYS)
def qa_score(src: Sources) -> Measure:
    """mean QA score (0-100) of the agent's scored calls."""
    q = src.qa
    return Measure(q.sum(q.c.score), q.count())


@kpi("occupancy", "Occupancy", PCT, AGENT_BYS)
def occupancy(src: Sources) -> Measure:
    """(talk + hold) ÷ (talk + hold + idle-available) × 100; idle-available = state Waiting
    minus wrap-up (mod_callcenter keeps a wrapping-up agent in Waiting)."""
    a = src.agent_time
    busy = and_(a.c.typ == "segment", a.c.value.in_(("talk", "hold")))
    waiting = and_(a.c.typ == "state", a.c.value == "Waiting")
    wrap = and_(a.c.typ == "segment", a.c.value == "wrapup")
    signed = case((busy, a.ov), (waiting, a.ov), (wrap, -a.ov), else_=0)
    return Measure(a.sum(a.ov, busy), a.sum(signed, or_(busy, waiting, wrap)), 100.0)


@kpi("calls_per_hour", "Calls per hour", PER_HOUR, AGENT_BYS)
def calls_per_hour(src: Sources) -> Measure:
    """handled (answered) calls ÷ logged-in hours (status other than Logged Out)."""
    a = src.agent_time
    logged_in = and_(a.c.typ == "status", a.c.value != LOGGED_OUT)
    return Measure(_handled(src)[0], a.sum(a.ov, logged_in), 3600_000.0)


@kpi("adherence", "Adherence", PCT, AGENT_BYS)
def adherence(src: Sources) -> Measure:
    """time ready (Available) inside scheduled shifts ÷ scheduled time × 100."""
    r, s = src.ready_in_shift, src.schedule
    return Measure(r.sum(r.ov), s.sum(s.ov), 100.0)


@kpi("attendance", "Attendance", PCT, AGENT_BYS)
def attendance(src: Sources) -> Measure:
    """agents who logged in during a scheduled shift ÷ agents scheduled × 100."""
    s = src.schedule
    return Measure(s.distinct(s.c.agent, s.c.attended == 1), s.distinct(s.c.agent), 100.0)


@kpi("turnover", "Agent turnover", PCT, frozenset({"tenant", "team"}))
def turnover(src: Sources) -> Measure:
    """agents who left in the interval ÷ average headcount ((start + end) ÷ 2) × 100."""
    r = src.roster
    iv = r.iv.c

    def employed(t):
        return and_(or_(r.c.start_ms.is_(None), r.c.start_ms <= t),
                    or_(r.c.leave_ms.is_(None), r.c.leave_ms > t))
    left = and_(r.c.leave_ms > iv.start_ms, r.c.leave_ms <= iv.end_ms)
    half = case((employed(iv.start_ms), 0.5), else_=0.0) + case((employed(iv.end_ms - 1), 0.5),
                                                                  else_=0.0)
    return Measure(r.count(left), r.sum(half), 100.0)


# --- running ------------------------------------------------------------------------------


def applicable(kpi_id: str, by: str, agent_filter: bool = False) -> bool:
    """Whether a KPI is defined for a grouping; with an agent filter, only per-agent KPIs are."""
    bys = KPIS[kpi_id].bys
    return by in bys and (not agent_filter or "agent" in bys)


def _group_col(rows: Rows, by: str) -> ColumnElement | None:
    return None if by == "tenant" else rows.c[by]


def compute(conn: Connection, scope: Scope, kpi_ids: Sequence[str]
            ) -> dict[tuple[int, str | None], dict[str, float | None]]:
    """Compute KPIs for every (interval index, group) that has data.

    Returns {(interval_idx, group): {kpi_id: value}}; group is None for by=tenant
    (and for rows whose group column is empty). A KPI not defined for ``scope.by``
    is left out (the caller shows it as null). One query per source.
    """
    if not scope.intervals:
        return {}
    _no_jit(conn)
    src = Sources(scope)
    wanted = [KPIS[k] for k in kpi_ids if applicable(k, scope.by, scope.agent is not None)]
    measures = {k.id: k.fn(src) for k in wanted}
    by_source: dict[str, list[tuple[str, Agg]]] = {}
    for kid, m in measures.items():
        by_source.setdefault(m.num.source, []).append((f"{kid}__num", m.num))
        if m.den is not None:
            by_source.setdefault(m.den.source, []).append((f"{kid}__den", m.den))
        if m.less is not None:
            by_source.setdefault(m.less.source, []).append((f"{kid}__less", m.less))
        if m.more is not None:
            by_source.setdefault(m.more.source, []).append((f"{kid}__more", m.more))
    parts: dict[tuple[int, str | None], dict[str, Any]] = {}
    for name, aggs in by_source.items():
        rows = getattr(src, name)
        gcol = _group_col(rows, scope.by)
        keys = [rows.iv.c.idx.label("idx")] + ([gcol.label("g")] if gcol is not None else [])
        stmt = (select(*keys, *[a.sql().label(label) for label, a in aggs])
                .select_from(rows.joined)
                .group_by(*keys))
        for rec in conn.execute(stmt).mappings():
            key = (rec["idx"], rec["g"] if gcol is not None else None)
            bucket = parts.setdefault(key, {})
            for label, _ in aggs:
                bucket[label] = rec[label]
    out: dict[tuple[int, str | None], dict[str, float | None]] = {}
    for key, bucket in parts.items():
        out[key] = {kid: _value(m, bucket.get(f"{kid}__num"), bucket.get(f"{kid}__den"),
                                bucket.get(f"{kid}__less"), bucket.get(f"{kid}__more"))
                    for kid, m in measures.items()}
    return out


def _no_jit(conn: Connection) -> None:
    # PostgreSQL's JIT spends seconds compiling these short aggregate queries (measured
    # ~2 s of a 15 s plan); the queries are index/bucket scans that gain nothing from it
    # The grouping sorts of a month of segments spill to disk with the default 4 MB.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def _value(m: Measure, num: Any, den: Any, less: Any = None, more: Any = None) -> float | None:
    if m.den is None:
        if num is None:
            return 0 if m.num.fn in ("count", "distinct") else None
        return float(num) * m.scale if m.scale != 1.0 else num
    den = float(den or 0) + float(more or 0)
    if den == 0 or (num is None and m.num.fn == "max"):  # max of nothing: undefined
        return None
    return (float(num or 0) - float(less or 0)) / den * m.scale


def zero_value(kpi_id: str) -> float | None:
    """What a KPI shows for an interval without any rows: counts 0, everything else undefined."""
    k = KPIS[kpi_id]
    return 0 if k.unit == COUNT else None


# --- drill-down ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DrillRow:
    part: str  # numerator | denominator | both
    source: str
    row_id: str
    call_id: str | None
    queue: str | None
    agent: str | None
    at_ms: int | None
    value: float | None


def drill(conn: Connection, scope: Scope, kpi_id: str) -> list[DrillRow]:
    """The rows behind one KPI over the whole scope: which are in its numerator, its denominator."""
    k = KPIS[kpi_id]
    _no_jit(conn)
    src = Sources(scope)
    m = k.fn(src)
    parts = [("numerator", m.num)] + ([("denominator", m.den)] if m.den is not None else [])
    parts += [("denominator", m.more)] if m.more is not None else []
    out: list[DrillRow] = []
    same = m.den is not None and m.den.source == m.num.source
    if same:
        rows = getattr(src, m.num.source)
        num_p = true() if m.num.where is None else m.num.where
        den_p = true() if m.den.where is None else m.den.where
        value = m.num.value if m.num.value is not None else m.den.value
        out.extend(_drill_select(conn, rows, or_(num_p, den_p),
                                 [case((num_p, 1), else_=0), case((den_p, 1), else_=0)], value))
        parts = parts[2:]
    if parts:
        for part, agg in parts:
            rows = getattr(src, agg.source)
            pred = true() if agg.where is None else agg.where
            out.extend(_drill_select(conn, rows, pred, None, agg.value, part))
    if m.less is not None:
        # rows taken back out of the numerator (same row ids as the numerator's source)
        rows = getattr(src, m.less.source)
        pred = true() if m.less.where is None else m.less.where
        less = {r.row_id for r in _drill_select(conn, rows, pred, None, None, "less")}
        out = [replace(r, part="denominator") if r.row_id in less and r.part == "both"
               else replace(r, part="-") if r.row_id in less else r for r in out]
        out = [r for r in out if r.part != "-"]
    return sorted(out, key=lambda r: (r.at_ms or 0, r.row_id, r.part))


def _drill_select(conn: Connection, rows: Rows, pred, flags, value,
                  part: str = "") -> list[DrillRow]:
    at = (rows.c.t if rows.join == "point"
          else rows.c.s if rows.join == "span" else rows.c.start_ms)
    cols = [rows.c.row_id, rows.c.call_id, rows.c.queue, rows.c.agent, at.label("at_ms"),
            (value if value is not None else cast(None, Float)).label("value")]
    if flags:
        cols += [flags[0].label("in_num"), flags[1].label("in_den")]
    stmt = select(*cols).select_from(rows.joined).where(pred).distinct()
    out = []
    for r in conn.execute(stmt).mappings():
        if flags:
            p = ("both" if r["in_num"] and r["in_den"] else "numerator" if r["in_num"]
                 else "denominator")
        else:
            p = part
        v = r["value"]
        out.append(DrillRow(p, rows.name, str(r["row_id"]), r["call_id"], r["queue"], r["agent"],
                            r["at_ms"], float(v) if v is not None else None))
    return out
