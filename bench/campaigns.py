"""Campaign benchmarks: importing contacts, choosing the next batch, dial decisions.

    .venv/bin/python bench/campaigns.py [--pg URL] [--contacts 1000000] [--import-rows 100000]

1. Import: a CSV of ``--import-rows`` contacts through ``import_contacts`` (parse, validate
   and normalise every number with phonenumbers, upsert in one transaction): rows/s.
2. Next batch on PostgreSQL: the campaign is filled to ``--contacts`` rows with SQL
   (``generate_series``; a realistic mix: 30 % done, 20 % waiting for a retry later, the
   rest due) plus a do-not-call list of 10,000 numbers, ANALYZEd; then ``claim_batch`` of 50
   contacts, each in its own transaction, 200 times: ms per batch (median, p99).
3. Dial decisions: ``pacing.plan`` for 10 busy progressive campaigns sharing 200 agents and
   one route, and the simulated busy hour of tests/campaign_sim.py: decisions per second.

Short runs (under a minute on the shared machine); figures, not tests.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from daemon.definition.config import load_center  # noqa: E402
from daemon.storage import campaigns as cs  # noqa: E402
from daemon.storage.store import make_engine, migrate  # noqa: E402
from daemon.switch.pacing import CampaignLive, plan  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--import-rows", type=int, default=100_000)
    args = ap.parse_args()
    city = load_center(REPO / "config", env={}).tenant("cityutil")
    revisit = city.campaign("revisit")
    name = f"hotline_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.pg.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        engine = make_engine(url)
        # 1. import
        lines = ["number,name,external_id,work_order,district"]
        lines += [f"139{i:08d},客户{i},E{i},W{i},xuhui" for i in range(args.import_rows)]
        csv_text = "\n".join(lines) + "\n"
        t = time.perf_counter()
        got = cs.import_contacts(engine, city, revisit, csv_text, "bench.csv")
        dt_import = time.perf_counter() - t
        print(f"import: {got.rows} rows in {dt_import:.1f} s = {got.rows / dt_import:,.0f} rows/s")
        t = time.perf_counter()
        again = cs.import_contacts(engine, city, revisit, csv_text, "bench.csv")
        dt_again = time.perf_counter() - t
        print(f"re-import (all known): {again.updated} rows in {dt_again:.1f} s = "
              f"{again.rows / dt_again:,.0f} rows/s")
        # 2. fill to N and claim
        extra = args.contacts - got.rows
        now = int(time.time() * 1000)
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO campaign_contacts (tenant, campaign, contact_key, number, name,
                    external_id, fields, status, attempts, next_ms, imported_ms, updated_ms)
                SELECT 'cityutil', 'revisit', 'id:X' || g, '+86137' || lpad(g::text, 8, '0'),
                       'n' || g, 'X' || g, '{}',
                       CASE WHEN g % 10 < 3 THEN 'done' ELSE 'pending' END,
                       CASE WHEN g % 10 < 5 THEN 1 ELSE 0 END,
                       CASE WHEN g % 10 IN (3, 4) THEN :later ELSE 0 END, :now, :now
                FROM generate_series(1, :n) AS g"""), {"n": extra, "now": now,
                                                      "later": now + 3_600_000})
            conn.execute(text("""
                INSERT INTO dnc_numbers (tenant, number, reason, source, added_ms)
                SELECT 'cityutil', '+86137' || lpad((g * 97)::text, 8, '0'), '', 'import', :now
                FROM generate_series(1, 10000) AS g ON CONFLICT DO NOTHING"""), {"now": now})
            conn.execute(text("ANALYZE campaign_contacts"))
            conn.execute(text("ANALYZE dnc_numbers"))
        print(f"filled to {args.contacts:,} contacts in {time.perf_counter() - t:.1f} s")
        times = []
        claimed = 0
        for _ in range(200):
            t = time.perf_counter()
            with engine.begin() as conn:
                claimed += len(cs.claim_batch(conn, "cityutil", "revisit", 50, "bench", now))
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(f"claim_batch(50) x200 on {args.contacts:,} contacts: median {statistics.median(times):.2f}"
              f" ms, p99 {times[int(len(times) * 0.99) - 1]:.2f} ms, max {times[-1]:.2f} ms "
              f"({claimed} claimed)")
        with engine.connect() as conn:
            plan_text = "\n".join(r[0] for r in conn.execute(text(
                "EXPLAIN " + cs._CLAIM_SQL.format(materialized="MATERIALIZED",
                                                  lock=" FOR UPDATE SKIP LOCKED")),
                {"owner": "x", "now": now, "tenant": "cityutil", "campaign": "revisit",
                 "limit": 50}))
        print("plan uses ix_campaign_contacts_due:", "ix_campaign_contacts_due" in plan_text)
        # the statement alone (no commit): EXPLAIN ANALYZE in a transaction rolled back
        execs = []
        for _ in range(20):
            with engine.connect() as conn:
                out = [r[0] for r in conn.execute(text(
                    "EXPLAIN ANALYZE " + cs._CLAIM_SQL.format(
                        materialized="MATERIALIZED", lock=" FOR UPDATE SKIP LOCKED")),
                    {"owner": "x", "now": now, "tenant": "cityutil", "campaign": "revisit",
                     "limit": 50})]
                conn.rollback()
            execs.append(float(next(x for x in out if x.startswith("Execution Time"))
                               .split(":")[1].split()[0]))
        print(f"  the claim statement alone (EXPLAIN ANALYZE, no commit): median "
              f"{statistics.median(execs):.2f} ms")
        engine.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
    # 3. decisions
    camps = [dataclasses.replace(revisit, id=f"c{i}", max_concurrent=30, priority=1 + i % 10,
                                 route_max_concurrent=150) for i in range(10)]
    agents = tuple(f"a{i}@x" for i in range(200))
    lives = [CampaignLive("cityutil", c, True, True, 5, agents[i * 20:(i + 1) * 20 + 10],
                          400, 8 + i) for i, c in enumerate(camps)]
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 2.0:
        plan(lives, {"pstn": 60})
        n += 1
    el = time.perf_counter() - t
    print(f"plan(): {n / el:,.0f} rounds/s for 10 campaigns x 200 agents = "
          f"{n * 10 / el:,.0f} campaign decisions/s")
    from tests.campaign_sim import simulate

    t = time.perf_counter()
    res = simulate(dataclasses.replace(revisit, max_concurrent=40))
    el = time.perf_counter() - t
    print(f"simulated busy hour (20 agents, 1 s rounds): {res.decisions / el:,.0f} rounds/s "
          f"with the simulation itself; {res.dialed} dialed, {res.answered} answered, "
          f"abandon rate {res.abandon_rate:.1%}")


if __name__ == "__main__":
    main()
