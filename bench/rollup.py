"""Roll-up benchmark: a year of calls in PostgreSQL (monthly partitions), rolled up, then
the long reports the issue names, from roll-ups and (for comparison) from raw rows.

    /work/venv/bin/python bench/rollup.py [--calls 10000000] [--days 365] [--reuse] [--keep]

The data are bench/report.py's (same mix, queues, agents, business hours), spread over
``--days`` days from 2026-10-01, loaded with generate_series into the partitioned tables
(the roll-up triggers off during the bulk load, as for any restore: the roll-up job then
rolls up every bucket). Printed:

* load time, rows, and the time of the first full roll-up (every 15-minute bucket);
* a yearly report by month and queue, every KPI (roll-ups + the raw-only KPIs);
* the same with the rolled KPIs only (no first-call resolution, agent time, QA);
* a 30-day daily report by queue, every KPI and rolled KPIs only;
* the 30-day daily report by queue from raw rows (what bench/report.py times).

Each report runs three times; the first (cold) and the best time are printed. The
issue's target is ~10 million calls / 60 million segments a year; run smaller with
``--calls`` and read the figures as what they are (the roll-up rows grow with the
occupied (bucket, queue, agent) cells, at most 35,040 x queues x agents a year).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report as base
from sqlalchemy import create_engine, text

from daemon.stats import kpi as K
from daemon.stats import rollup as R
from daemon.stats.intervals import intervals, local_midnight_ms
from daemon.storage import partitions as P
from daemon.storage.store import make_engine, migrate

DB = "hotline_bench_rollup"


def timed(engine, scope, ids, fn, runs: int = 3) -> tuple[float, float, int]:
    times, n = [], 0
    for _ in range(runs):
        with engine.connect() as conn:
            t = time.perf_counter()
            n = len(fn(conn, scope, ids))
            times.append(time.perf_counter() - t)
    return times[0], min(times), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--admin-url",
                    default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--calls", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    base.DAYS = args.days
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    url = args.admin_url.rsplit("/", 1)[0] + "/" + DB
    center = base.model()
    tenant = center.tenants[0]
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}"'))
            conn.execute(text(f'CREATE DATABASE "{DB}"'))
        migrate(url)
        engine = create_engine(url)
        t = time.perf_counter()
        with engine.begin() as conn:
            P.maintain(conn, local_midnight_ms(base.FIRST, base.TZ),
                       ahead_months=args.days // 28 + 1)
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers
            base.generate(conn, args.calls)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(f"generated in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        done = 0
        while True:
            with engine.begin() as conn:
                n = R.refresh_center(conn, center)
            done += n
            if not n:
                break
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE rollup_queue"))
            conn.execute(text("VACUUM ANALYZE rollup_calls"))
        print(f"first roll-up of {done:,} buckets in {time.perf_counter() - t:.1f} s")
        engine.dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("segments", "calls", "rollup_queue", "rollup_calls")}
        parts = len(P.months(conn, "segments"))
    print(f"{counts['segments']:,} segments, {counts['calls']:,} calls over {args.days} days "
          f"({parts} monthly partitions); roll-up rows: {counts['rollup_queue']:,} queue, "
          f"{counts['rollup_calls']:,} calls")
    first = local_midnight_ms(base.FIRST, base.TZ)
    year = intervals(first, local_midnight_ms(base.FIRST + dt.timedelta(days=args.days),
                                              base.TZ), "month", base.TZ)
    month = intervals(first, local_midnight_ms(base.FIRST + dt.timedelta(days=30), base.TZ),
                      "day", base.TZ)
    now = local_midnight_ms(base.FIRST + dt.timedelta(days=args.days + 1), base.TZ)
    every = list(K.KPIS)
    rolled = [k for k in every if k in R.ROLLED]
    for title, ivs, ids, fn in (
            ("yearly report by month and queue, every KPI", year, every, R.compute),
            ("yearly report by month and queue, rolled KPIs", year, rolled, R.compute),
            ("30-day daily report by queue, every KPI", month, every, R.compute),
            ("30-day daily report by queue, rolled KPIs", month, rolled, R.compute),
            ("30-day daily report by queue, every KPI, raw rows", month, every, K.compute)):
        scope = K.scope_for(tenant, ivs, by="queue", now_ms=now)
        cold, best, rows = timed(engine, scope, ids, fn)
        print(f"{title}: {rows} (interval, queue) rows, first run {cold:.2f} s, "
              f"best of 3 {best:.2f} s")
    engine.dispose()
    if not args.keep:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}"'))
    admin.dispose()


if __name__ == "__main__":
    main()
