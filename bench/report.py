"""Report benchmark: ~5 million segments over 30 days in PostgreSQL, then time two reports.

    /work/venv/bin/python bench/report.py [--admin-url URL] [--calls 850000] [--reuse] [--keep]

Creates a scratch database (``hotline_bench_report``), builds the schema with the
store's migrations, generates the data inside PostgreSQL with generate_series
(no round trips: a realistic mix of IVR-only, blocked, short and long abandons,
timeouts, answered and transferred calls over 5 queues and 100 agents, business
hours 08:00-20:00 in Asia/Shanghai, rings, talk split around holds, wrap-up,
surveys, agent status/state intervals and shifts), ANALYZEs, and prints the time
of the two reports the issue names, computed by the real code path
(``daemon.stats.report.build_report``, every KPI):

* a 30-day daily report by queue;
* a one-day 15-minute report by agent;

and, for comparison, the 30-day report with a manager's usual columns only and
with first-call resolution only (its repeat-call search is the costliest part).

The mix (per call, from hashes of its number): 3 % IVR-only, 1 % blocked; of the
queued calls 10 % short abandons, 4 % abandons, 2 % timeouts, 4 % transferred to
a second queue (answered there), the rest answered; one in five first rings an
agent who does not answer; one in seven answered calls has a hold; a third of
the answered ones are surveyed; one call in seven comes from the number of a call a
day before or after (a repeat call: about one answered call in seven is not resolved
at the first call). 850,000 calls give 5.0 million segments.

Each report is run three times; the best and the first (cold) time are printed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from daemon.definition.model import Agent, CallCenter, Cost, Queue, Shift, Team, Tenant  # noqa: E402
from daemon.stats.intervals import local_midnight_ms  # noqa: E402
from daemon.stats.report import ReportRequest, build_report, make_engine  # noqa: E402
from daemon.storage.store import migrate  # noqa: E402

TZ = "Asia/Shanghai"
DOMAIN = "bench.test"
FIRST = dt.date(2026, 10, 1)
DAYS = 30
QUEUES = ("billing", "outage", "sales", "newconn", "operator")
AGENTS = 100
DB = "hotline_bench_report"


def model() -> CallCenter:
    shifts = tuple(Shift(d, dt.time(8), dt.time(17)) for d in range(7))
    agents = tuple(Agent(str(1000 + n), f"Agent {n}", str(1000 + n), "pw", team=f"team{n % 5}",
                         shifts=shifts) for n in range(AGENTS))
    tenant = Tenant(
        "bench", DOMAIN, TZ, queues=tuple(Queue(q, q.title()) for q in QUEUES), agents=agents,
        teams=tuple(Team(f"team{n}", f"Team {n}") for n in range(5)),
        costs=(Cost(FIRST, FIRST + dt.timedelta(days=DAYS - 1), 3_000_000.0),))
    return CallCenter((tenant,))


def generate(conn, calls: int) -> None:
    t0 = local_midnight_ms(FIRST, TZ)
    p = {"n": calls, "t0": t0, "dom": DOMAIN}
    base = f"""
      WITH c AS (
        SELECT i, 'c' || i AS call_id,
          :t0 + (i % {DAYS})::bigint * 86400000 + 28800000 + (i::bigint * 7919) % 43200000 AS st,
          (i * 31) % 100 AS kind_r, (i * 53) % 100 AS out_r,
          '{QUEUES[0]}@' || :dom AS q0,
          (ARRAY{list(QUEUES)})[1 + (i * 17) % 5] || '@' || :dom AS q,
          (ARRAY{list(QUEUES)})[1 + (i * 17 + 1) % 5] || '@' || :dom AS q2,
          (1000 + (i * 7) % {AGENTS})::text || '@' || :dom AS ag,
          (1000 + (i * 7 + 3) % {AGENTS})::text || '@' || :dom AS ag2,
          -- one call in seven comes from the number of the call 29 calls earlier, which
          -- (i % 30 days) lies a day away: a repeat call for first-call resolution
          '1380' || lpad((((CASE WHEN i % 7 = 0 AND i > 29 THEN i - 29 ELSE i END) * 48271)
                          % 2000000)::text, 7, '0') AS caller,
          (i * 13) % 60000 AS w_ans, 2000 + (i * 13) % 18000 AS w_short,
          21000 + (i * 13) % 100000 AS w_long,
          2000 + (i * 11) % 10000 AS ring, 30000 + (i * 101) % 400000 AS talk,
          CASE WHEN (i * 3) % 7 = 0 THEN 10000 + (i * 5) % 60000 ELSE 0 END AS hold,
          10000 + (i * 23) % 50000 AS wrap
        FROM generate_series(1::bigint, :n) AS i),
      v AS (
        SELECT *, st + 20000 AS qe,
          CASE WHEN kind_r < 3 THEN 'ivr-only' WHEN kind_r = 3 THEN 'blocked'
               WHEN out_r < 10 THEN 'short-abandon' WHEN out_r < 14 THEN 'abandoned'
               WHEN out_r < 16 THEN 'timeout' WHEN out_r < 20 THEN 'transferred-out'
               ELSE 'answered' END AS oc
        FROM c),
      a AS (
        SELECT *, CASE oc WHEN 'short-abandon' THEN w_short WHEN 'abandoned' THEN w_long
                          WHEN 'timeout' THEN 120000 ELSE w_ans END AS wait
        FROM v)
    """
    seg_cols = ("segment_id, call_id, tenant, node, kind, started_ms, ended_ms, duration_ms, "
                "caller, dialed, queue, agent, outcome, visit_id, queue_entered_ms, score")

    def seg(select_sql: str) -> None:
        conn.execute(text(f"{base} INSERT INTO segments ({seg_cols}) {select_sql}"), p)

    conn.execute(text(f"""{base}
      INSERT INTO calls (call_id, tenant, node, direction, caller, caller_name, dialed,
                         started_ms, ended_ms, outcome, ivr_path, first_queue)
      SELECT call_id, :dom, 'fs1', 'inbound', caller, '', '4008001234', st,
             st + 20000 + wait + talk + hold, CASE oc WHEN 'transferred-out' THEN 'answered'
             WHEN 'short-abandon' THEN 'abandoned' ELSE oc END, '1',
             CASE WHEN oc IN ('ivr-only', 'blocked') THEN NULL ELSE q END
      FROM a"""), p)
    answered = "oc IN ('answered', 'transferred-out')"
    queued = "oc NOT IN ('ivr-only', 'blocked')"
    seg("""SELECT call_id || ':ivr:1', call_id, :dom, 'fs1', 'ivr', st, st + 20000, 20000,
               caller, '4008001234', NULL, NULL, NULL, NULL, NULL, NULL FROM a""")
    seg(f"""SELECT call_id || ':queue:v1', call_id, :dom, 'fs1', 'queue', qe, qe + wait, wait,
               caller, '4008001234', q, CASE WHEN {answered} THEN ag END, oc, call_id || 'v1',
               qe, NULL FROM a WHERE {queued}""")
    seg(f"""SELECT call_id || ':ring:v1:' || ag, call_id, :dom, 'fs1', 'ring', qe + wait - ring,
               qe + wait, ring, caller, '4008001234', q, ag, 'answered', call_id || 'v1', qe,
               NULL FROM a WHERE {answered}""")
    seg(f"""SELECT call_id || ':ring:v1:' || ag2, call_id, :dom, 'fs1', 'ring', qe,
               qe + 5000, 5000, caller, '4008001234', q, ag2, 'no-answer', call_id || 'v1', qe,
               NULL FROM a WHERE {queued} AND (i * 19) % 5 = 0""")
    seg(f"""SELECT call_id || ':talk:v1:0', call_id, :dom, 'fs1', 'talk', qe + wait,
               qe + wait + talk / 2, talk / 2, caller, '4008001234', q, ag, NULL,
               call_id || 'v1', qe, NULL FROM a WHERE {answered}""")
    seg(f"""SELECT call_id || ':hold:v1:0', call_id, :dom, 'fs1', 'hold', qe + wait + talk / 2,
               qe + wait + talk / 2 + hold, hold, caller, '4008001234', q, ag, NULL,
               call_id || 'v1', qe, NULL FROM a WHERE {answered} AND hold > 0""")
    seg(f"""SELECT call_id || ':talk:v1:1', call_id, :dom, 'fs1', 'talk',
               qe + wait + talk / 2 + hold, qe + wait + talk + hold, talk - talk / 2, caller,
               '4008001234', q, ag, NULL, call_id || 'v1', qe, NULL FROM a WHERE {answered}""")
    seg(f"""SELECT call_id || ':wrapup:v1', call_id, :dom, 'fs1', 'wrapup',
               qe + wait + talk + hold, qe + wait + talk + hold + wrap, wrap, caller,
               '4008001234', q, ag, NULL, call_id || 'v1', qe, NULL FROM a WHERE {answered}""")
    seg("""SELECT call_id || ':transfer:1', call_id, :dom, 'fs1', 'transfer',
               qe + wait + talk + hold, qe + wait + talk + hold, 0, caller, '4008001234', q, ag,
               NULL, call_id || 'v1', qe, NULL FROM a WHERE oc = 'transferred-out'""")
    # the transferred call's second queue stay, answered by another agent
    seg("""SELECT call_id || ':queue:v2', call_id, :dom, 'fs1', 'queue',
               qe + wait + talk + hold, qe + wait + talk + hold + 4000, 4000, caller,
               '4008001234', q2, ag2, 'answered', call_id || 'v2', qe + wait + talk + hold, NULL
               FROM a WHERE oc = 'transferred-out'""")
    seg("""SELECT call_id || ':talk:v2:0', call_id, :dom, 'fs1', 'talk',
               qe + wait + talk + hold + 4000, qe + wait + 2 * talk + hold + 4000, talk, caller,
               '4008001234', q2, ag2, NULL, call_id || 'v2', qe + wait + talk + hold, NULL
               FROM a WHERE oc = 'transferred-out'""")
    seg("""SELECT call_id || ':survey:1', call_id, :dom, 'fs1', 'survey',
               qe + wait + talk + hold, qe + wait + talk + hold + 8000, 8000, caller,
               '4008001234', q, ag, NULL, call_id || 'v1', qe,
               CASE WHEN i % 6 = 0 THEN NULL ELSE 1 + (i * 7) % 5 END
               FROM a WHERE oc = 'answered' AND (i * 29) % 3 = 0""")
    # agent status (Available 08-12, On Break 12-13, Available 13-17, Logged Out 17-08) and state
    conn.execute(text(f"""
      INSERT INTO agent_intervals (interval_id, tenant, node, agent, kind, value, reason,
                                   started_ms, ended_ms, duration_ms)
      SELECT ag || ':' || k || ':' || s, :dom, 'fs1', ag, k, val, NULL, s, e, e - s
      FROM (SELECT (1000 + a)::text || '@' || :dom AS ag,
                   :t0 + d::bigint * 86400000 AS day0
            FROM generate_series(0, {AGENTS - 1}) a, generate_series(0, {DAYS - 1}) d) x,
      LATERAL (VALUES
        ('status', 'Available', day0 + 8 * 3600000, day0 + 12 * 3600000),
        ('status', 'On Break', day0 + 12 * 3600000, day0 + 13 * 3600000),
        ('status', 'Available', day0 + 13 * 3600000, day0 + 17 * 3600000),
        ('status', 'Logged Out', day0 + 17 * 3600000, day0 + 32 * 3600000),
        ('state', 'Waiting', day0 + 8 * 3600000, day0 + 12 * 3600000),
        ('state', 'Waiting', day0 + 13 * 3600000, day0 + 17 * 3600000)) AS v(k, val, s, e)
    """), p)


INDEXES = ("ix_segments_tenant_kind_entered", "ix_segments_queue_entered",
           "ix_segments_agent_started", "ix_segments_call", "ix_segments_visit")


def timed(engine, center, req: ReportRequest, runs: int = 3) -> tuple[float, float, int]:
    times = []
    rows = 0
    for _ in range(runs):
        with engine.connect() as conn:
            t = time.perf_counter()
            rows = len(build_report(conn, center, req).rows)
            times.append(time.perf_counter() - t)
    return times[0], min(times), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--admin-url",
                    default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--calls", type=int, default=850_000,
                    help="calls to generate (~5.9 segments each: 850000 -> 5 million)")
    ap.add_argument("--reuse", action="store_true", help="reuse the data of an earlier run")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    url = args.admin_url.rsplit("/", 1)[0] + "/" + DB
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}"'))
            conn.execute(text(f'CREATE DATABASE "{DB}"'))
        migrate(url)
        engine = create_engine(url)
        t = time.perf_counter()
        with engine.begin() as conn:
            for ix in INDEXES:  # bulk load first, index after
                conn.execute(text(f"DROP INDEX IF EXISTS {ix}"))
            generate(conn, args.calls)
        with engine.begin() as conn:
            from daemon.storage import schema
            for ix in schema.segments.indexes:
                ix.create(conn, checkfirst=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(f"generated in {time.perf_counter() - t:.1f} s")
        engine.dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        segs = conn.execute(text("SELECT count(*) FROM segments")).scalar()
        calls = conn.execute(text("SELECT count(*) FROM calls")).scalar()
        ai = conn.execute(text("SELECT count(*) FROM agent_intervals")).scalar()
    print(f"{segs:,} segments, {calls:,} calls, {ai:,} agent intervals over {DAYS} days")
    center = model()
    last = (FIRST + dt.timedelta(days=DAYS - 1)).isoformat()
    day = (FIRST + dt.timedelta(days=14)).isoformat()
    for title, req in (
        ("30-day daily report by queue (all KPIs)",
         ReportRequest(FIRST.isoformat(), last, "day", "queue")),
        ("one-day 15-minute report by agent (all KPIs)",
         ReportRequest(day, day, "15m", "agent")),
        ("30-day daily report by queue (offered,answered,abandoned,service_level,"
         "abandon_rate,asa,aht)",
         ReportRequest(FIRST.isoformat(), last, "day", "queue",
                       kpis=("offered", "answered", "abandoned", "service_level",
                             "abandon_rate", "asa", "aht"))),
        ("30-day daily report by queue, fcr only",
         ReportRequest(FIRST.isoformat(), last, "day", "queue", kpis=("fcr",))),
    ):
        cold, best, rows = timed(engine, center, req)
        print(f"{title}: {rows} rows, first run {cold:.2f} s, best of 3 {best:.2f} s")
    engine.dispose()
    if not args.keep:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}"'))
    admin.dispose()


if __name__ == "__main__":
    main()
