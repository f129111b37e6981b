"""Roll-ups: 15-minute sums per tenant x queue x agent that long reports read instead of raw rows.

What is rolled up
-----------------
Every KPI whose definition is a count, a sum or a maximum over queue stays, talk/hold/
wrap-up, rings, surveys and call starts (``ROLLED``: offered, answered, service level,
ASA, AHT, ...). Two tables: ``rollup_queue`` (segments, by the queue entry) and
``rollup_calls`` (calls, by their start), one row per (15-minute bucket, tenant, queue,
agent); ``rollup_queue_total`` holds rollup_queue summed over agents, what reports by
tenant or queue read. The counts over thresholds (service level, short abandons) are taken with the
queue thresholds of the model, recorded in ``rollup_thresholds``; a report whose
thresholds differ reads the raw rows (the job re-rolls the tenant when the model changes).

Not rolled up, always read from raw rows (``kpi.compute``): first-call resolution (a
repeat call is found across intervals), the agent-time KPIs (occupancy, calls per hour,
adherence, attendance: spans clipped to intervals, open ones to "now"), QA scores (their
time is looked up per score), turnover, and the groupings by number, IVR and
disposition (keys the roll-up does not hold).

How it stays exact
------------------
Triggers on ``segments`` and ``calls`` (migration 0105_rollups) mark the bucket of every
inserted or updated row, and its old bucket when an update moved it, in
``rollup_changes``: a late or corrected record marks its bucket like a new one. ``refresh``
(the roll-up job, a singleton of the leader daemon) takes the marks, deletes them and
recomputes those buckets from the raw rows in one transaction; marks written meanwhile
survive the delete and are taken next time. A report reads the roll-up rows of the
buckets without a mark and computes the marked buckets of its range from raw rows with
the same SELECT the job uses, so it is exact even when the job is behind.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Connection

from daemon.stats import kpi as K
from daemon.storage import schema

logger = logging.getLogger(__name__)

BUCKET_MS = schema.ROLLUP_BUCKET_MS
# More marked buckets than this in a report's range: the report reads raw rows (the job
# is far behind, e.g. right after the migration marked all history).
MAX_DIRTY_BUCKETS = 2000
SERVED_BYS = frozenset({"tenant", "queue", "agent", "team"})


@dataclass(frozen=True, order=True)
class Threshold:
    queue: str  # qualified
    sl_ms: int
    short_ms: int


def thresholds_of(scope: K.Scope) -> tuple[Threshold, ...]:
    return tuple(sorted(Threshold(t.queue, t.service_level_s * 1000, t.short_abandon_s * 1000)
                        for t in scope.thresholds))


# --- raw rows -> roll-up rows ---------------------------------------------------------------


def _bucket(col: Any) -> Any:
    return (col // BUCKET_MS) * BUCKET_MS  # integer division (SQLAlchemy 2: "/" is true division)


def _per_queue(col: Any, values: dict[str, int], default: int) -> Any:
    if not values:
        return literal(default, BigInteger)
    return case(values, value=col, else_=literal(default, BigInteger))


def _ranges(buckets: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted bucket starts as merged [start, end) ranges."""
    out: list[tuple[int, int]] = []
    for b in sorted(set(buckets)):
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + BUCKET_MS)
        else:
            out.append((b, b + BUCKET_MS))
    return out


def _in(col: Any, ranges: Sequence[tuple[int, int]]) -> Any:
    return or_(*[and_(col >= lo, col < hi) for lo, hi in ranges])


def queue_rows(tenant: str, thresholds: Sequence[Threshold], ranges: Sequence[tuple[int, int]],
               queue: str | None = None, agent: str | None = None) -> Any:
    """SELECT of the ``rollup_queue`` rows of ``tenant`` in ``ranges``, from raw segments.

    The predicates are kpi.py's, row for row: a queue stay's outcome, its wait against
    the queue's thresholds, talk/hold/wrap-up durations (NULL counts 0), the answering
    agent's ring time, survey scores.
    """
    s = schema.segments
    sl = _per_queue(s.c.queue, {t.queue: t.sl_ms for t in thresholds},
                    K.DEFAULT_SERVICE_LEVEL_S * 1000)
    short = _per_queue(s.c.queue, {t.queue: t.short_ms for t in thresholds},
                       K.DEFAULT_SHORT_ABANDON_S * 1000)
    t = case((s.c.kind == "survey", func.coalesce(s.c.queue_entered_ms, s.c.started_ms)),
             else_=s.c.queue_entered_ms)
    wait = s.c.duration_ms
    dur = func.coalesce(s.c.duration_ms, 0)
    q = s.c.kind == "queue"
    answered = and_(q, s.c.outcome.in_(K.ANSWERED))
    abandoned = and_(q, s.c.outcome.in_(K.ABANDONED))
    ring_ok = and_(s.c.kind == "ring", s.c.outcome == "answered")
    survey = s.c.kind == "survey"

    def n(pred: Any) -> Any:
        return func.coalesce(func.sum(case((pred, 1), else_=0)), 0)

    def total(pred: Any, value: Any) -> Any:
        return func.coalesce(func.sum(case((pred, value), else_=0)), 0)

    bucket = _bucket(t).label("bucket_ms")
    conds = [s.c.tenant == tenant,
             s.c.kind.in_(("queue", "ring", "talk", "hold", "wrapup", "survey")),
             _in(t, ranges)]
    if queue is not None:
        conds.append(s.c.queue == queue)
    if agent is not None:
        conds.append(s.c.agent == agent)
    return (select(
        bucket, s.c.tenant, s.c.queue, s.c.agent,
        n(q).label("offered"), n(answered).label("answered"), n(abandoned).label("abandoned"),
        n(and_(abandoned, func.coalesce(wait, 0) <= short)).label("short_abandoned"),
        n(and_(q, s.c.outcome == "transferred-out")).label("transferred"),
        n(and_(answered, wait <= sl)).label("answered_in_sl"),
        total(and_(answered, wait.is_not(None)), wait).label("wait_answered_ms"),
        total(and_(abandoned, wait.is_not(None)), wait).label("wait_abandoned_ms"),
        total(and_(q, wait.is_not(None)), wait).label("wait_ended_ms"),
        n(and_(q, wait.is_not(None))).label("wait_ended_n"),
        func.max(case((q, wait))).label("wait_max_ms"),
        total(s.c.kind == "talk", dur).label("talk_ms"),
        total(s.c.kind == "hold", dur).label("hold_ms"),
        total(s.c.kind == "wrapup", dur).label("wrapup_ms"),
        n(ring_ok).label("rings_answered"),
        total(ring_ok, dur).label("ring_answered_ms"),
        n(and_(survey, s.c.score.is_not(None))).label("scored_n"),
        total(and_(survey, s.c.score.is_not(None)), s.c.score).label("score_sum"),
        n(and_(survey, s.c.score >= K.SATISFIED_MIN_SCORE)).label("satisfied_n"),
        n(and_(s.c.kind == "talk", s.c.visit_id.is_(None))).label("talks_without_stay"))
        .where(*conds)
        .group_by(bucket, s.c.tenant, s.c.queue, s.c.agent))


def call_rows(tenant: str, ranges: Sequence[tuple[int, int]], queue: str | None = None) -> Any:
    """SELECT of the ``rollup_calls`` rows of ``tenant`` in ``ranges``, from raw calls."""
    c = schema.calls

    def n(pred: Any) -> Any:
        return func.coalesce(func.sum(case((pred, 1), else_=0)), 0)

    bucket = _bucket(c.c.started_ms).label("bucket_ms")
    conds = [c.c.tenant == tenant, c.c.direction == "inbound", _in(c.c.started_ms, ranges)]
    if queue is not None:
        conds.append(c.c.first_queue == queue)
    return (select(bucket, c.c.tenant, c.c.first_queue.label("queue"), func.count().label("calls"),
                   n(c.c.outcome == "blocked").label("blocked"),
                   n(c.c.outcome == "ivr-only").label("ivr_only"),
                   n(c.c.first_queue.is_not(None)).label("queued"))
            .where(*conds).group_by(bucket, c.c.tenant, c.c.first_queue))


# --- the job -------------------------------------------------------------------------------


def pending(conn: Connection) -> int:
    """How many bucket marks wait for the job (its lag, in marks)."""
    return conn.execute(select(func.count()).select_from(schema.rollup_changes)).scalar_one()


def refresh(conn: Connection, thresholds: dict[str, tuple[Threshold, ...]],
            max_buckets: int = 5000) -> int:
    """Roll up the marked buckets (at most ``max_buckets`` per tenant); returns how many.

    ``thresholds``: per tenant domain, the model's queue thresholds (a tenant missing from
    it is rolled with the published defaults). Run inside a transaction (``engine.begin()``);
    PostgreSQL: an advisory transaction lock keeps two refreshes from interleaving.
    """
    rc, th = schema.rollup_changes, schema.rollup_thresholds
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(1414)")  # 'rollup' (issue 14)
    done = 0
    tenants = [r[0] for r in conn.execute(select(rc.c.tenant).distinct())]
    for tenant in sorted(set(tenants) | set(thresholds)):
        want = tuple(sorted(thresholds.get(tenant, ())))
        have = tuple(sorted(Threshold(r.queue, r.sl_ms, r.short_ms) for r in conn.execute(
            select(th).where(th.c.tenant == tenant))))
        if want != have:
            _reroll_all(conn, tenant, want)
        buckets = [r[0] for r in conn.execute(
            select(rc.c.bucket_ms).where(rc.c.tenant == tenant).distinct()
            .order_by(rc.c.bucket_ms).limit(max_buckets))]
        if not buckets:
            continue
        for start in range(0, len(buckets), 200):  # keep OR lists and IN lists short
            part = buckets[start:start + 200]
            ranges = _ranges(part)
            # the marks first: a mark written after this statement survives for next time,
            # and the rows it stands for are visible to the recompute below (READ COMMITTED)
            conn.execute(delete(rc).where(rc.c.tenant == tenant, rc.c.bucket_ms.in_(part)))
            for table, rows in ((schema.rollup_queue, queue_rows(tenant, want, ranges)),
                                (schema.rollup_calls, call_rows(tenant, ranges)),
                                (schema.rollup_queue_total, _totals(tenant, part))):
                conn.execute(delete(table).where(table.c.tenant == tenant,
                                                 table.c.bucket_ms.in_(part)))
                conn.execute(insert(table).from_select(list(rows.selected_columns.keys()), rows))
        done += len(buckets)
    return done


def _totals(tenant: str, buckets: Sequence[int]) -> Any:
    """rollup_queue rows of ``buckets`` summed over agents (rollup_queue_total's rows)."""
    rq = schema.rollup_queue
    sums = [func.sum(rq.c[c.name]).label(c.name) if c.name != "wait_max_ms"
            else func.max(rq.c.wait_max_ms).label(c.name)
            for c in schema.rollup_queue_total.columns if c.name not in _KEYS]
    return (select(rq.c.bucket_ms, rq.c.tenant, rq.c.queue, *sums)
            .where(rq.c.tenant == tenant, rq.c.bucket_ms.in_(buckets))
            .group_by(rq.c.bucket_ms, rq.c.tenant, rq.c.queue))


_KEYS = ("bucket_ms", "tenant", "queue", "agent")


def _reroll_all(conn: Connection, tenant: str, want: tuple[Threshold, ...]) -> None:
    """The model's thresholds changed: drop the tenant's roll-ups and mark all its buckets."""
    th, rc, s, c = (schema.rollup_thresholds, schema.rollup_changes, schema.segments,
                    schema.calls)
    logger.info("roll-ups of %s: queue thresholds changed, rolling up all its buckets again",
                tenant)
    for table in (schema.rollup_queue, schema.rollup_queue_total, schema.rollup_calls, th):
        conn.execute(delete(table).where(table.c.tenant == tenant))
    if want:
        conn.execute(insert(th), [{"tenant": tenant, "queue": t.queue, "sl_ms": t.sl_ms,
                                   "short_ms": t.short_ms} for t in want])
    seg_b = _bucket(func.coalesce(s.c.queue_entered_ms, s.c.started_ms))
    marks = union_all(select(literal(tenant).label("tenant"), seg_b.label("bucket_ms"))
                      .where(s.c.tenant == tenant).distinct(),
                      select(literal(tenant), _bucket(c.c.started_ms))
                      .where(c.c.tenant == tenant).distinct()).subquery()
    conn.execute(insert(rc).from_select(["tenant", "bucket_ms"],
                                        select(marks.c.tenant, marks.c.bucket_ms).distinct()))


def thresholds_by_tenant(center: Any) -> dict[str, tuple[Threshold, ...]]:
    """The queue thresholds of every tenant of a model ``CallCenter``, by domain."""
    return {t.domain: thresholds_of(K.scope_for(t, (), now_ms=0)) for t in center.tenants}


def refresh_center(conn: Connection, center: Any) -> int:
    """``refresh`` with the thresholds of every tenant of a model ``CallCenter``."""
    return refresh(conn, thresholds_by_tenant(center))


# --- reading -------------------------------------------------------------------------------


def _count(col: str) -> Any:
    return lambda r, th: func.sum(r.c[col])


def _handled(r: Any) -> Any:
    return func.sum(r.c.answered + r.c.talks_without_stay)


ROLLED: dict[str, tuple[str, Any, Any]] = {
    # kpi id: (table, numerator, denominator) — aggregates over roll-up rows; the scale,
    # unit and groupings are the KPI's own (kpi.KPIS)
    "offered": ("queue", _count("offered"), None),
    "answered": ("queue", _count("answered"), None),
    "abandoned": ("queue", _count("abandoned"), None),
    "short_abandoned": ("queue", _count("short_abandoned"), None),
    "abandon_rate": ("queue", lambda r, th: func.sum(r.c.abandoned - r.c.short_abandoned),
                     lambda r, th: func.sum(r.c.offered - r.c.short_abandoned)),
    "answered_pct": ("queue", _count("answered"), _count("offered")),
    "service_level": ("queue", _count("answered_in_sl"),
                      lambda r, th: func.sum(r.c.offered - r.c.short_abandoned)),
    "asa": ("queue", _count("wait_answered_ms"), _count("answered")),
    "avg_queue_time": ("queue", _count("wait_ended_ms"), _count("wait_ended_n")),
    "avg_abandon_time": ("queue", _count("wait_abandoned_ms"), _count("abandoned")),
    "longest_wait": ("queue", lambda r, th: func.max(r.c.wait_max_ms), None),
    "transfer_rate": ("queue", _count("transferred"), _count("answered")),
    # handled calls: answered stays + conversations without a stay (kpi._handled)
    "avg_talk_time": ("queue", _count("talk_ms"), lambda r, th: _handled(r)),
    "avg_hold_time": ("queue", _count("hold_ms"), lambda r, th: _handled(r)),
    "acw": ("queue", _count("wrapup_ms"), lambda r, th: _handled(r)),
    "aht": ("queue", lambda r, th: func.sum(r.c.talk_ms + r.c.hold_ms + r.c.wrapup_ms),
            lambda r, th: _handled(r)),
    "avg_rings": ("queue", lambda r, th: func.sum(
        r.c.ring_answered_ms * 1.0 / func.coalesce(th.c.ring_ms, K.DEFAULT_RING_CYCLE_S * 1000)),
        _count("rings_answered")),
    "avg_ring_time": ("queue", _count("ring_answered_ms"), _count("rings_answered")),
    "satisfaction": ("queue", _count("score_sum"), _count("scored_n")),
    "satisfied_pct": ("queue", _count("satisfied_n"), _count("scored_n")),
    "total_calls": ("calls", _count("calls"), None),
    "blocked": ("calls", _count("blocked"), None),
    "ivr_only": ("calls", _count("ivr_only"), None),
    "blocked_rate": ("calls", _count("blocked"), _count("calls")),
    "queue_placement_rate": ("calls", _count("queued"), _count("calls")),
    "cost_per_call": ("calls", lambda r, th: func.max(r.iv.c.cost), _count("calls")),
}


# the scale of each rolled KPI's Measure in kpi.py (tests/test_rollup.py checks they agree)
SCALES: dict[str, float] = {
    **{k: 100.0 for k in ("abandon_rate", "answered_pct", "service_level", "transfer_rate",
                          "satisfied_pct", "blocked_rate", "queue_placement_rate")},
    **{k: 0.001 for k in ("asa", "avg_queue_time", "avg_abandon_time", "longest_wait",
                          "avg_talk_time", "avg_hold_time", "acw", "aht", "avg_ring_time")},
}


def servable(scope: K.Scope) -> bool:
    """Whether the scope's intervals and grouping can be read from roll-ups at all."""
    return (scope.by in SERVED_BYS and bool(scope.intervals)
            and all(iv.start_ms % BUCKET_MS == 0 and iv.end_ms % BUCKET_MS == 0
                    for iv in scope.intervals))


def compute(conn: Connection, scope: K.Scope, kpi_ids: Sequence[str]
            ) -> dict[tuple[int, str | None], dict[str, float | None]]:
    """``kpi.compute``, reading roll-ups for the ``ROLLED`` KPIs where they serve the scope.

    Same result as ``kpi.compute`` (tests/test_rollup.py proves it KPI by KPI); the
    KPIs roll-ups cannot give, and scopes they cannot serve, are computed from raw rows.
    """
    agent_filter = scope.agent is not None
    wanted = [k for k in kpi_ids if K.applicable(k, scope.by, agent_filter)]
    rolled = [k for k in wanted if k in ROLLED]
    plan = _plan(conn, scope) if rolled else None
    if plan is None:
        return K.compute(conn, scope, kpi_ids)
    raw = [k for k in wanted if k not in ROLLED]
    parts = [K.compute(conn, scope, raw)] if raw else []
    for table in ("queue", "calls"):
        ids = [k for k in rolled if ROLLED[k][0] == table]
        if ids:
            parts.append(_compute_rolled(conn, scope, table, ids, plan))
    out: dict[tuple[int, str | None], dict[str, float | None]] = {}
    for part in parts:
        for key, vals in part.items():
            out.setdefault(key, {}).update(vals)
    for vals in out.values():  # a key one part did not see: what kpi.compute gives for no rows
        for k in wanted:
            vals.setdefault(k, K.zero_value(k))
    return out


def _plan(conn: Connection, scope: K.Scope) -> list[tuple[int, int]] | None:
    """The marked (not yet rolled) buckets of the scope as ranges; None: read raw rows."""
    if not servable(scope):
        return None
    th = schema.rollup_thresholds
    have = tuple(sorted(Threshold(r.queue, r.sl_ms, r.short_ms) for r in conn.execute(
        select(th).where(th.c.tenant == scope.tenant))))
    if have != thresholds_of(scope):
        logger.info("roll-ups of %s were made with other queue thresholds: raw rows read",
                    scope.tenant)
        return None
    rc = schema.rollup_changes
    dirty = [r[0] for r in conn.execute(
        select(rc.c.bucket_ms).distinct()
        .where(rc.c.tenant == scope.tenant, rc.c.bucket_ms >= scope.from_ms,
               rc.c.bucket_ms < scope.to_ms).limit(MAX_DIRTY_BUCKETS + 1))]
    if len(dirty) > MAX_DIRTY_BUCKETS:
        return None
    return _ranges(dirty)


class _Rolled:
    """Roll-up rows of the scope (+ marked buckets from raw rows), each with its interval."""

    def __init__(self, scope: K.Scope, table: str, dirty: list[tuple[int, int]]) -> None:
        # by tenant or queue, without an agent filter: the agents' sums (far fewer rows)
        total = table == "queue" and scope.by in ("tenant", "queue") and scope.agent is None
        rt = (schema.rollup_calls if table == "calls" else schema.rollup_queue_total if total
              else schema.rollup_queue)
        conds = [rt.c.tenant == scope.tenant, rt.c.bucket_ms >= scope.from_ms,
                 rt.c.bucket_ms < scope.to_ms]
        if dirty:
            conds.append(~_in(rt.c.bucket_ms, dirty))
        if scope.queue is not None:
            conds.append(rt.c.queue == scope.queue)
        if table == "queue" and scope.agent is not None:
            conds.append(rt.c.agent == scope.agent)
        rolled = select(*rt.c).where(*conds)
        if dirty:
            fresh = (queue_rows(scope.tenant, thresholds_of(scope), dirty, scope.queue,
                                scope.agent) if table == "queue"
                     else call_rows(scope.tenant, dirty, scope.queue))
            if total:  # per agent from raw rows; summed below like the totals
                f = fresh.subquery("fresh")
                fresh = select(*[f.c[c.name] for c in rt.columns])
            rolled = union_all(rolled, fresh)
        sub = rolled.subquery("rolled")
        iv = K._intervals_cte(scope)
        idx = K.bucket(sub.c.bucket_ms, scope.intervals)
        self.th = K._thresholds_cte(scope)
        tm = K._teams_cte(scope) if scope.by == "team" else None
        frm = sub.join(iv, iv.c.idx == idx)
        if table == "queue":
            frm = frm.outerjoin(self.th, self.th.c.queue == sub.c.queue)
        if tm is not None:
            frm = frm.outerjoin(tm, tm.c.agent == sub.c.agent)
        self.frm, self.c, self.tm = frm, sub.c, tm
        self.iv = iv
        self.group = (None if scope.by == "tenant" else sub.c.queue if scope.by == "queue"
                      else sub.c.agent if scope.by == "agent" else K._team(tm, sub.c.agent))


def _compute_rolled(conn: Connection, scope: K.Scope, table: str, ids: Sequence[str],
                    dirty: list[tuple[int, int]]
                    ) -> dict[tuple[int, str | None], dict[str, float | None]]:
    r = _Rolled(scope, table, dirty)
    keys = [r.iv.c.idx.label("idx")] + ([r.group.label("g")] if r.group is not None else [])
    cols = []
    for k in ids:
        _, num, den = ROLLED[k]
        cols.append(num(r, r.th).label(f"{k}__num"))
        if den is not None:
            cols.append(den(r, r.th).label(f"{k}__den"))
    stmt = select(*keys, *cols).select_from(r.frm).group_by(*keys)
    out: dict[tuple[int, str | None], dict[str, float | None]] = {}
    for rec in conn.execute(stmt).mappings():
        key = (rec["idx"], rec["g"] if r.group is not None else None)
        out[key] = {k: _value(k, rec[f"{k}__num"], rec.get(f"{k}__den"),
                              ROLLED[k][2] is not None) for k in ids}
    return out


def _value(kpi_id: str, num: Any, den: Any, has_den: bool) -> float | None:
    """kpi._value for rolled aggregates: sums of counts come back as int (or Decimal)."""
    k = K.KPIS[kpi_id]
    scale = SCALES.get(kpi_id, 1.0)
    if not has_den:
        if num is None:
            return 0 if k.unit == K.COUNT else None
        return int(num) if scale == 1.0 else float(num) * scale
    den = float(den or 0)
    if den == 0 or num is None:  # sums of roll-up rows are never NULL; a max of none is
        return None
    return float(num) / den * scale
