"""Monthly partitions on PostgreSQL, one table on SQLite, and the retention of old months."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, func, select, text

from daemon.engine.records import CallRecord, EngineOutput, Segment
from daemon.storage import partitions as P
from daemon.storage import schema
from daemon.storage.store import Store, alembic_config, migrate

NOW = P.epoch_ms(dt.date(2026, 12, 10))


def month_ms(y: int, m: int, day: int = 5) -> int:
    return P.epoch_ms(dt.date(y, m, day))


def call_out(call_id: str, started: int, outcome: str = "in-progress") -> EngineOutput:
    out = EngineOutput()
    out.calls.append(CallRecord(call_id, "hotline.test", "fs1", "13800138000", "4008001234",
                                started, None, outcome))
    out.segments.append(Segment(f"{call_id}:queue:v", call_id, "hotline.test", "fs1", "queue",
                                started, started + 5000 if outcome != "in-progress" else None,
                                queue="billing@hotline.test", outcome=outcome, visit_id="v",
                                queue_entered_ms=started))
    return out


def write(url, tmp_path, *outs: EngineOutput) -> None:
    with Store(url, spill_dir=tmp_path / "spill") as store:
        for out in outs:
            store.write(out)
        store.flush()


def count(conn, table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_postgres_partitions_calls_and_segments_by_month_and_upserts_stay_idempotent(
        empty_db_url, tmp_path):
    migrate(empty_db_url)
    engine = create_engine(empty_db_url)
    march = month_ms(2026, 3)
    # the same call twice (in progress, then answered): one row each, the last version
    write(empty_db_url, tmp_path, call_out("c1", march), call_out("c1", march, "answered"))
    write(empty_db_url, tmp_path, call_out("c1", march, "answered"))
    with engine.begin() as conn:
        assert count(conn, schema.calls) == 1 and count(conn, schema.segments) == 1
        assert conn.execute(select(schema.segments.c.outcome)).scalar_one() == "answered"
        if conn.dialect.name == "sqlite":
            assert not P.is_partitioned(conn, "segments")
            return
        assert P.is_partitioned(conn, "calls") and P.is_partitioned(conn, "segments")
        # March 2026 is older than the migration's months: its rows wait in the default
        where = conn.execute(text("SELECT tableoid::regclass::text FROM segments")).scalar_one()
        assert where == "segments_pdefault"
        done = P.maintain(conn, march, ahead_months=1)
        assert set(done.created) == {"calls_p202603", "calls_p202604", "segments_p202603",
                                     "segments_p202604"}
        assert done.moved_from_default == 2  # the call and its segment
        where = conn.execute(text("SELECT tableoid::regclass::text FROM segments")).scalar_one()
        assert where == "segments_p202603"
        assert P.maintain(conn, march, ahead_months=1).created == ()  # idempotent
    # upserts still find the row in its month's partition
    write(empty_db_url, tmp_path, call_out("c1", march, "abandoned"))
    with engine.connect() as conn:
        assert conn.execute(select(schema.segments.c.outcome)).all() == [("abandoned",)]
    engine.dispose()


def test_retention_drops_old_months_and_keeps_their_rollups(empty_db_url, tmp_path):
    from daemon.stats import rollup as R

    migrate(empty_db_url)
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        P.maintain(conn, month_ms(2026, 1), ahead_months=11)  # Jan..Dec 2026 (PostgreSQL)
    write(empty_db_url, tmp_path, *[call_out(f"c{m}", month_ms(2026, m), "answered")
                                    for m in range(1, 13)])
    with engine.begin() as conn:
        R.refresh(conn, {})
        assert count(conn, schema.rollup_queue) == 12
        done = P.maintain(conn, NOW, ahead_months=2, retention_months=6)  # keep Jun..Dec
        assert count(conn, schema.segments) == count(conn, schema.calls) == 7
        assert conn.execute(select(func.min(schema.calls.c.started_ms))).scalar() == \
            month_ms(2026, 6)
        if conn.dialect.name == "postgresql":
            assert done.dropped == tuple(f"{t}_p2026{m:02d}" for t in ("calls", "segments")
                                         for m in range(1, 6))
            assert P.months(conn, "segments")[0] == dt.date(2026, 6, 1)
            assert P.months(conn, "segments")[-1] >= dt.date(2027, 2, 1)  # NOW + 2 months
        else:
            assert done.deleted_rows == 10
        # the roll-ups of the dropped months stay: summable KPIs of old months still report
        assert count(conn, schema.rollup_queue) == 12
        assert R.pending(conn) == 0
    engine.dispose()


def test_migrating_a_database_with_calls_keeps_every_row(empty_db_url, tmp_path):
    """0002 -> 0003 on a database with data: rows copied into the new (partitioned) tables."""
    from alembic import command

    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        cfg = alembic_config(empty_db_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0105_rollups")
        for n, started in enumerate((month_ms(2025, 11), month_ms(2026, 2), NOW)):
            conn.execute(schema.calls.insert().values(
                call_id=f"old{n}", tenant="t", node="fs1", direction="inbound", caller="",
                caller_name="", dialed="", started_ms=started, outcome="answered", ivr_path=""))
    migrate(empty_db_url)
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(select(schema.calls.c.call_id))) == \
            ["old0", "old1", "old2"]
        if conn.dialect.name == "postgresql":
            got = P.months(conn, "calls")
            assert got[0] == dt.date(2025, 11, 1)  # from the oldest row to months ahead
            assert conn.execute(text(
                "SELECT count(*) FROM calls_pdefault")).scalar_one() == 0
    engine.dispose()


def test_the_engine_never_moves_a_records_start_so_id_and_start_key_stay_unique(empty_db_url):
    """The keys are (id, started_ms): a record re-emitted with another start would be a
    second row. Every capture replayed: one row per call id and per segment id."""
    from pathlib import Path

    from daemon.definition.config import load_center
    from daemon.storage.replay import replay

    repo = Path(__file__).resolve().parent.parent
    captures = repo / "tests" / "data" / "captures"
    migrate(empty_db_url)
    replay(sorted(captures.glob("*.esl")) + [captures / "busy_hour.esl.gz"], empty_db_url,
           load_center(repo / "config"))
    engine = create_engine(empty_db_url)
    with engine.connect() as conn:
        for table, key in (("calls", "call_id"), ("segments", "segment_id")):
            rows, ids = conn.execute(text(
                f"SELECT count(*), count(DISTINCT {key}) FROM {table}")).one()
            assert rows == ids > 100, table
    engine.dispose()
