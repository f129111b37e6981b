"""Roll-ups: reports read from 15-minute roll-ups equal reports from raw rows, KPI by KPI.

Proved on the recorded captures (replayed through the engine like tests/test_report.py)
and on generated calls (waits on and around every threshold, open waits, surveys,
blocked and IVR-only calls, a queue missing from the model), for every interval size and
every grouping the roll-ups serve, on SQLite and PostgreSQL; and after late and corrected
records, before the job has run (marked buckets read raw) and after.
"""
from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from test_kpi import DOMAIN, NOW, TZ, Data, at, center, migrated, tenant

from daemon.engine.records import CallRecord, EngineOutput, Segment
from daemon.stats import kpi as K
from daemon.stats import rollup as R
from daemon.stats.intervals import SIZES, intervals
from daemon.stats.report import make_engine
from daemon.storage import schema
from daemon.storage.store import Store

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
D0 = dt.date(2026, 3, 2)


def generated(seed: int = 14, calls: int = 400) -> Data:
    """Calls over three days: every outcome, waits on and next to each queue's thresholds."""
    rnd = random.Random(seed)
    d = Data()
    waits = [0, 5, 9.999, 10, 10.001, 19.999, 20, 20.001, 30, 30.001, 45, 125]
    for n in range(calls):
        cid = f"g{n}"
        day = D0 + dt.timedelta(days=rnd.randrange(3))
        start = at(day, rnd.randrange(24), rnd.randrange(60), rnd.randrange(60), rnd.randrange(999))
        caller = rnd.choice(["", "13800000001", "13800000002", "13800000003", f"139{n:08d}"])
        kind = rnd.random()
        if kind < 0.08:
            d.call(cid, start, rnd.choice(["blocked", "ivr-only"]), caller)
            continue
        queue = rnd.choice(["billing", "sales", "vip", "nomodel"])
        d.call(cid, start, "answered", caller, queue)
        entered = start + rnd.randrange(30_000)
        wait = rnd.choice(waits)
        outcome = rnd.choice(["answered", "answered", "transferred-out", "abandoned",
                              "short-abandon", "timeout"])
        if outcome in ("answered", "transferred-out"):
            d.visit(cid, queue, entered, wait, outcome, agent=rnd.choice(["1001", "1002", "1003",
                                                                          "1004", "9999"]),
                    caller=caller, ring_s=rnd.choice([0, 2.5, 6, 11]),
                    talk=tuple(rnd.uniform(5, 400) for _ in range(rnd.randrange(1, 3))),
                    hold_s=rnd.choice([0, 0, 17.5]), wrap_s=rnd.choice([0, 12]),
                    disposition=rnd.choice([None, "1", "2"]))
        else:
            d.visit(cid, queue, entered, wait, outcome, caller=caller)
        if rnd.random() < 0.1:  # still waiting: no duration yet
            d.segments[-1].update(ended_ms=None, duration_ms=None)
        if rnd.random() < 0.3:
            d.seg(cid, "survey", "s", entered + 600_000, 20, score=rnd.choice([None, 1, 3, 4, 5]),
                  queue=queue, queue_entered_ms=rnd.choice([entered, None]))
    return d


def reports_equal(url: str, tenant_model, sizes=SIZES, bys=("tenant", "queue", "agent", "team"),
                  *, expect_rolled: bool = True, filters=({},)) -> int:
    """Compare roll-up and raw reports of every size x grouping; returns KPI values compared."""
    engine = make_engine(url)
    compared = 0
    try:
        with engine.connect() as conn:
            lo, hi = conn.execute(select(func.min(schema.calls.c.started_ms),
                                         func.max(schema.calls.c.started_ms))).one()
            for size in sizes:
                # sub-hour sizes over the first day (their SQL grows with the interval count)
                end = lo + 86_400_000 if size in ("15m", "30m") else hi + 86_400_000
                ivs = intervals(lo - 3_600_000, end, size, tenant_model.timezone)
                for by in bys:
                    for flt in filters:
                        scope = K.scope_for(tenant_model, ivs, by=by, now_ms=NOW, **flt)
                        assert (R._plan(conn, scope) is not None) == expect_rolled, (size, by)
                        ids = list(K.KPIS)
                        raw = K.compute(conn, scope, ids)
                        rolled = R.compute(conn, scope, ids)
                        compared += _same(raw, rolled, ids, scope, (size, by, flt))
    finally:
        engine.dispose()
    return compared


def _same(raw, rolled, ids, scope, where) -> int:
    n = 0
    for key in set(raw) | set(rolled):
        a, b = raw.get(key, {}), rolled.get(key, {})
        for k in ids:
            if not K.applicable(k, scope.by, scope.agent is not None):
                continue
            x, y = a.get(k, K.zero_value(k)), b.get(k, K.zero_value(k))
            if x is None or y is None:
                assert x is None and y is None, (where, key, k, x, y)
            else:
                assert y == pytest.approx(x, rel=1e-9, abs=1e-9), (where, key, k, x, y)
                n += int(k in R.ROLLED)
    return n


def refresh(url: str, model) -> int:
    engine = make_engine(url)
    with engine.begin() as conn:
        done = R.refresh_center(conn, model)
    engine.dispose()
    return done


def test_every_rolled_kpi_keeps_kpi_py_scale_and_groupings():
    """ROLLED mirrors kpi.py: same scale, and only KPIs of the groupings roll-ups serve."""
    probe = K.Sources(K.scope_for(tenant(), intervals(0, 900_000, "15m", "UTC"), now_ms=NOW))
    for kid in R.ROLLED:
        assert K.KPIS[kid].fn(probe).scale == R.SCALES.get(kid, 1.0), kid
    assert set(R.ROLLED) == set(K.KPIS) - {"fcr", "qa_score", "occupancy", "calls_per_hour",
                                           "adherence", "attendance", "turnover"}


def test_generated_calls_report_the_same_from_rollups_as_from_raw_rows(empty_db_url):
    url = migrated(empty_db_url)
    generated().insert(url)
    model = center()
    assert refresh(url, model) > 0
    engine = make_engine(url)
    with engine.connect() as conn:
        assert R.pending(conn) == 0
        assert conn.execute(select(func.count()).select_from(schema.rollup_queue)).scalar() > 50
    engine.dispose()
    t = model.tenants[0]
    assert reports_equal(url, t) > 1000
    # filtered reports: one queue, one agent
    assert reports_equal(url, t, sizes=("1h", "day"), bys=("tenant", "agent"),
                         filters=({"queue": f"sales@{DOMAIN}"}, {"agent": f"1003@{DOMAIN}"})) > 0


def test_recorded_captures_report_the_same_from_rollups_as_from_raw_rows(empty_db_url):
    from daemon.definition.config import load_center
    from daemon.storage.replay import replay

    url = migrated(empty_db_url)
    model = load_center(REPO / "config")
    replay(sorted(CAPTURES.glob("*.esl")) + [CAPTURES / "busy_hour.esl.gz"], url, model)
    refresh(url, model)
    for t in model.tenants:
        reports_equal(url, t)
    demo = next(t for t in model.tenants if t.domain == "hotline.test")
    assert reports_equal(url, demo, sizes=("15m", "month"), bys=("queue",)) > 40


def test_late_and_corrected_records_correct_the_rollup(empty_db_url, tmp_path):
    """An upsert that changes an old call (outcome, wait, even its queue entry moved to
    another bucket) and a late call: exact before the job runs (marked buckets are read
    raw) and after it (rolled again)."""
    url = migrated(empty_db_url)
    data = generated(seed=7, calls=120)
    data.insert(url)
    model = center()
    refresh(url, model)
    t = model.tenants[0]
    reports_equal(url, t, sizes=("day",), bys=("queue",))
    before = _offered_by_day(url, t)
    old = next(s for s in data.segments if s["kind"] == "queue" and s["outcome"] == "answered"
               and s["duration_ms"] is not None)
    moved = dict(old, outcome="abandoned", ended_ms=old["ended_ms"] + 1,
                 queue_entered_ms=old["queue_entered_ms"] + 86_400_000)  # a day later
    late_call = dict(data.calls[0], call_id="late1", started_ms=at(D0, 3, 1))
    late_seg = dict(next(s for s in data.segments if s["kind"] == "queue"),
                    segment_id="late1:queue:v", call_id="late1", visit_id="late1-v",
                    queue_entered_ms=at(D0, 3, 2), started_ms=at(D0, 3, 2))
    out = EngineOutput()
    out.segments += [_segment(moved), _segment(late_seg)]
    out.calls.append(CallRecord(**{k: late_call[k] for k in CallRecord.__dataclass_fields__}))
    with Store(url, spill_dir=tmp_path / "spill") as store:  # upserts like the daemon's
        store.write(out)
        store.flush()
    engine = make_engine(url)
    with engine.connect() as conn:
        assert R.pending(conn) >= 3  # the old bucket, the new one, the late call's
    engine.dispose()
    reports_equal(url, t, sizes=("15m", "day"), bys=("tenant", "queue", "agent"))
    after = _offered_by_day(url, t)
    day_old, day_new = (_day(old["queue_entered_ms"], t), _day(moved["queue_entered_ms"], t))
    assert after[day_old] == before[day_old] - 1 + (day_old == _day(at(D0, 3, 2), t))
    assert after[day_new] == before.get(day_new, 0) + 1
    refresh(url, model)
    reports_equal(url, t, sizes=("15m", "day"), bys=("tenant", "queue", "agent"))


def test_other_thresholds_read_raw_rows_until_the_job_rolls_again(empty_db_url):
    url = migrated(empty_db_url)
    generated(seed=3, calls=80).insert(url)
    refresh(url, center())
    from daemon.definition.model import Queue

    stricter = center(queues=(Queue("billing", "Billing", service_level_s=10, short_abandon_s=5),
                              Queue("sales", "Sales")))
    reports_equal(url, stricter.tenants[0], sizes=("day",), bys=("queue",), expect_rolled=False)
    refresh(url, stricter)
    assert reports_equal(url, stricter.tenants[0], sizes=("day",), bys=("queue",)) > 0


def test_a_report_reads_raw_rows_when_the_job_is_far_behind(empty_db_url):
    url = migrated(empty_db_url)
    generated(seed=5, calls=60).insert(url)
    engine = make_engine(url)
    with engine.begin() as conn:  # as if the job had rolled nothing of a long history
        conn.execute(schema.rollup_changes.insert(), [
            {"tenant": DOMAIN, "bucket_ms": at(D0, 0, 0) + n * R.BUCKET_MS}
            for n in range(R.MAX_DIRTY_BUCKETS + 1)])
    engine.dispose()
    reports_equal(url, center().tenants[0], sizes=("day",), bys=("tenant",),
                  expect_rolled=False)


def test_the_report_command_reads_rollups(empty_db_url, tmp_path):
    """`hotline report` goes through the roll-ups and shows what raw rows give."""
    import json

    from test_report import ACME_YAML, cli

    url = migrated(empty_db_url)
    generated(seed=9, calls=100).insert(url)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "acme.yaml").write_text(ACME_YAML, encoding="utf-8")
    args = ["report", "--db", url, "--config", str(cfg), "--interval", "day", "--by", "queue",
            "--from", "2026-03-01", "--to", "2026-03-06", "--format", "json"]
    code, raw = cli(*args)
    assert code == 0, raw
    from daemon.definition.config import load_center

    refresh(url, load_center(cfg))
    engine = make_engine(url)
    with engine.begin() as conn:  # make the raw rows disagree: only roll-ups can answer
        conn.execute(update(schema.segments).values(duration_ms=0))
        conn.execute(schema.rollup_changes.delete())
    engine.dispose()
    code, rolled = cli(*args)
    assert code == 0, rolled
    raw_rows, rolled_rows = json.loads(raw), json.loads(rolled)
    assert [r["asa"] for r in raw_rows] == [r["asa"] for r in rolled_rows]
    assert any(r["asa"] for r in rolled_rows)


def _day(ms: int, t) -> int:
    return intervals(ms, ms + 1, "day", t.timezone)[0].start_ms


def _segment(row: dict) -> Segment:
    return Segment(**{k: row[k] for k in Segment.__dataclass_fields__ if k in row})


def _offered_by_day(url: str, t) -> dict[int, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        ivs = intervals(at(D0, 0, 0) - 86_400_000, at(D0, 0, 0) + 5 * 86_400_000, "day", TZ)
        vals = R.compute(conn, K.scope_for(t, ivs, now_ms=NOW), ["offered"])
    engine.dispose()
    return {ivs[i].start_ms: v["offered"] for (i, _), v in vals.items()}
