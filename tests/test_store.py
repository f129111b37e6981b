"""The store: migrations, idempotent batched upserts, and a real database outage.

The outage tests put a TCP proxy of our own between the Store and the real
PostgreSQL and cut it: connections die and new ones are refused, exactly what
a crashed or unreachable server looks like to the driver.
"""
from __future__ import annotations

import json
import re
import socket
import threading

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from daemon.engine.records import AgentInterval, CallRecord, EngineOutput, Segment
from daemon.storage import partitions, schema
from daemon.storage.store import Store, StoreUnavailable, _dump_rows, migrate, rows_of

# --- helpers ---------------------------------------------------------------------------------


def call(call_id: str, outcome: str = "in-progress", ended: int | None = None, **kw) -> CallRecord:
    return CallRecord(call_id=call_id, tenant="hotline.test", node="vm", caller="13800138000",
                      dialed="4008001234", started_ms=1_795_345_627_000, ended_ms=ended,
                      outcome=outcome, **kw)


def seg(call_id: str, kind: str, n: int = 0, ended: int | None = None, **kw) -> Segment:
    return Segment(segment_id=f"{call_id}:{kind}:{n}", call_id=call_id, tenant="hotline.test",
                   node="vm", kind=kind, started_ms=1_795_345_627_000 + n, ended_ms=ended, **kw)


def day_of_calls(n: int, version: int = 0) -> EngineOutput:
    out = EngineOutput()
    for i in range(n):
        cid = f"call-{i:05d}"
        out.calls.append(call(cid, outcome="answered" if version else "in-progress",
                              ended=1_795_345_700_000 + version if version else None))
        out.segments.append(seg(cid, "queue", 0, ended=1_795_345_630_000 + version,
                                queue="billing@hotline.test", outcome="answered"))
    return out


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (schema.calls, schema.segments, schema.agent_intervals,
                              schema.dispositions)}
    finally:
        engine.dispose()


def table_rows(url: str, table) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
    finally:
        engine.dispose()


def wait_until(condition, timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


class TcpProxy:
    """A localhost TCP proxy to a real server that the test can cut and restore."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.closed = False
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()  # the server is "gone": connection dies at once
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.down = True
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def pg_via_proxy(pg_database_url):
    """(direct URL, URL through a cuttable proxy) of the session's PostgreSQL database, wiped."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_database_url)
    engine = create_engine(pg_database_url)
    schema.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield pg_database_url, proxied, proxy
    proxy.close()


# --- migrations ------------------------------------------------------------------------------


def test_migrate_creates_every_table_and_index_and_running_it_again_changes_nothing(empty_db_url):
    migrate(empty_db_url)
    migrate(empty_db_url)
    engine = create_engine(empty_db_url)
    insp = inspect(engine)
    assert {"calls", "segments", "agent_intervals", "qa_scores", "dispositions",
            "alembic_version"} <= set(insp.get_table_names())
    indexes = {i["name"] for t in insp.get_table_names() for i in insp.get_indexes(t)}
    expected = {ix.name for t in schema.metadata.tables.values() for ix in t.indexes}
    assert expected <= indexes
    with engine.connect() as conn:
        from alembic.script import ScriptDirectory

        from daemon.storage.store import alembic_config

        head = ScriptDirectory.from_config(alembic_config(empty_db_url)).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    engine.dispose()


def test_migrated_database_matches_schema_py_exactly(empty_db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate(empty_db_url)
    engine = create_engine(empty_db_url)
    with engine.connect() as conn:
        # PostgreSQL's monthly partitions of calls and segments are tables of their own
        # that schema.py does not list (migration 0106_partitions, storage/partitions.py)
        ctx = MigrationContext.configure(conn, opts={"include_name": _not_a_partition})
        diff = compare_metadata(ctx, schema.metadata)
        assert conn.dialect.name == "sqlite" or partitions.is_partitioned(conn, "segments")
    engine.dispose()
    assert diff == [], "schema.py changed without a migration in daemon/migrations/versions"


def _not_a_partition(name, type_, parent_names) -> bool:
    return not (type_ == "table" and re.match(r"^(calls|segments)_p(\d{6}|default)$", name or ""))


def test_sqlite_store_uses_wal_and_a_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = Store(url, spill_dir=tmp_path / "spill")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    store.close()


# --- upserts ---------------------------------------------------------------------------------


def test_writing_the_same_records_twice_leaves_the_same_rows(empty_db_url, tmp_path):
    out = day_of_calls(20, version=1)
    out.intervals.append(AgentInterval("1001@hotline.test:status:1", "hotline.test", "vm",
                                       "1001@hotline.test", "status", "On Break", 1, 5, "lunch"))
    for _ in range(2):
        store = Store(empty_db_url, spill_dir=tmp_path / "spill")
        store.write(out)
        store.write(out)
        store.close()
    assert counts(empty_db_url) == {"calls": 20, "segments": 20, "agent_intervals": 1,
                                    "dispositions": 0}
    interval = table_rows(empty_db_url, schema.agent_intervals)[0]
    assert interval[-4:] == ("lunch", 1, 5, 4)  # reason, started, ended, duration


def test_the_last_version_of_a_record_wins_within_a_batch_and_across_batches(empty_db_url, tmp_path):
    store = Store(empty_db_url, batch_size=7, spill_dir=tmp_path / "spill")
    store.write(day_of_calls(10, version=0))  # open calls
    store.flush()
    store.write(day_of_calls(10, version=1))
    store.write(day_of_calls(10, version=2))  # the final version, same ids
    store.close()
    rows = table_rows(empty_db_url, schema.calls)
    assert len(rows) == 10
    assert {r[8] for r in rows} == {1_795_345_700_002}  # ended_ms of version 2
    segs = table_rows(empty_db_url, schema.segments)
    assert {(r[6], r[7]) for r in segs} == {(1_795_345_630_002, 3002)}  # ended, duration


def test_a_spill_file_holding_two_versions_of_a_record_is_written_in_one_batch_newest_last(
        empty_db_url, tmp_path, caplog):
    # a multi-row ON CONFLICT DO UPDATE may not touch a row twice: the store keeps one
    # version per key (the last) instead of falling back to row-by-row writes
    spill = tmp_path / "spill"
    spill.mkdir(mode=0o700)
    rows = rows_of(day_of_calls(600, version=1)) + rows_of(day_of_calls(600, version=2))
    _dump_rows(spill / "spill-000000000001.jsonl", [(table, row) for table, _key, row in rows])
    store = Store(empty_db_url, spill_dir=spill, batch_size=2000)
    store.flush()
    store.close()
    assert "batch refused" not in caplog.text
    assert store.stats.batches == 1 and store.stats.rows_written == 1200
    assert store.stats.rejected_rows == 0 and not list(spill.glob("*.jsonl"))
    assert {r[8] for r in table_rows(empty_db_url, schema.calls)} == {1_795_345_700_002}
    assert len(table_rows(empty_db_url, schema.segments)) == 600


def test_a_segment_with_a_disposition_code_fills_the_dispositions_table(empty_db_url, tmp_path):
    talk = seg("c1", "talk", 1, ended=1_795_345_640_000, agent="1001@hotline.test",
               disposition="SALE", attrs=(("disposition_ms", "1795345639500"),))
    store = Store(empty_db_url, spill_dir=tmp_path / "spill")
    store.write(EngineOutput(calls=[call("c1")], segments=[talk]))
    store.close()
    assert table_rows(empty_db_url, schema.dispositions) == [
        ("c1", "1001@hotline.test", "SALE", "phone", 1_795_345_639_500)]
    segment = table_rows(empty_db_url, schema.segments)[0]
    assert segment[-1] == '{"disposition_ms": "1795345639500"}'  # attrs as a JSON object


def test_a_disposition_entered_at_the_cli_is_not_overwritten_by_a_replay(empty_db_url, tmp_path):
    migrate(empty_db_url)
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(schema.dispositions.insert().values(
            call_id="c1", agent="1001@hotline.test", code="CORRECTED", source="cli", entered_ms=9))
    engine.dispose()
    talk = seg("c1", "talk", 1, ended=5, agent="1001@hotline.test", disposition="SALE")
    store = Store(empty_db_url, spill_dir=tmp_path / "spill")
    store.write(EngineOutput(segments=[talk]))
    store.close()
    assert table_rows(empty_db_url, schema.dispositions)[0][2:4] == ("CORRECTED", "cli")


def test_a_caller_controlled_overlong_name_is_cut_instead_of_refused(empty_db_url, tmp_path):
    store = Store(empty_db_url, spill_dir=tmp_path / "spill")
    store.write(EngineOutput(calls=[call("c1", caller_name="x" * 1000)]))
    store.close()
    assert table_rows(empty_db_url, schema.calls)[0][5] == "x" * 128


def test_the_background_writer_writes_what_the_daemon_hands_it(empty_db_url, tmp_path):
    store = Store(empty_db_url, batch_size=50, spill_dir=tmp_path / "spill")
    store.start_writer()
    for i in range(5):
        store.write(day_of_calls(40, version=i))
    assert store.wait_idle(timeout=30)
    store.close()
    assert counts(empty_db_url)["calls"] == 40
    assert {r[8] for r in table_rows(empty_db_url, schema.calls)} == {1_795_345_700_004}


def test_rows_of_an_engine_output_cover_calls_segments_intervals_and_dispositions():
    out = EngineOutput(calls=[call("c1")], segments=[seg("c1", "talk", disposition="X")],
                       intervals=[AgentInterval("a:state:1", "t", "n", "a", "state", "Idle", 1, None)])
    assert [(t, k) for t, k, _ in rows_of(out)] == [
        ("calls", "c1"), ("segments", "c1:talk:0"), ("dispositions", "c1"),
        ("agent_intervals", "a:state:1")]


# --- outage ----------------------------------------------------------------------------------


def test_postgres_down_and_back_buffers_spills_and_writes_everything_exactly_once(pg_via_proxy, tmp_path):
    direct, proxied, proxy = pg_via_proxy
    spill = tmp_path / "spill"
    store = Store(proxied, batch_size=10_000, max_buffer=50, spill_dir=spill)
    store.write(day_of_calls(30, version=0))
    store.flush()
    assert counts(direct)["calls"] == 30

    proxy.cut()  # the database goes away mid-day
    store.write(day_of_calls(30, version=1))  # 60 records pending: over max_buffer -> spilled
    assert store.spilled_files(), "memory is bounded: the buffer went to disk"
    assert store.pending == 0
    extra = EngineOutput(calls=[call(f"late-{i}") for i in range(20)])
    store.write(extra)
    store.write(day_of_calls(5, version=2))  # newer versions of 5 spilled records, in memory
    with pytest.raises(StoreUnavailable):
        store.flush()
    assert not store.healthy
    assert store.pending == 30  # nothing dropped by the failed attempt

    proxy.restore()
    store.flush()
    assert store.healthy and store.pending == 0 and not store.spilled_files()
    store.close()
    assert counts(direct) == {"calls": 50, "segments": 30, "agent_intervals": 0, "dispositions": 0}
    ended = {r[0]: r[8] for r in table_rows(direct, schema.calls)}
    assert [ended[f"call-{i:05d}"] for i in range(5)] == [1_795_345_700_002] * 5  # newest won
    assert {ended[f"call-{i:05d}"] for i in range(5, 30)} == {1_795_345_700_001}
    assert ended["late-0"] is None


def test_postgres_outage_never_reaches_the_daemon_and_the_writer_catches_up(pg_via_proxy, tmp_path):
    direct, proxied, proxy = pg_via_proxy
    store = Store(proxied, batch_size=20, max_buffer=100, spill_dir=tmp_path / "spill",
                  flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.05)
    store.start_writer()
    store.write(day_of_calls(10, version=0))
    assert store.wait_idle(timeout=30)
    proxy.cut()
    for version in range(1, 8):  # the daemon goes on handing over records; write() never raises
        store.write(day_of_calls(60, version=version))
    assert wait_until(lambda: store.stats.failures > 0), "the writer met the outage"
    assert store.spilled_files(), "over max_buffer the records went to disk"
    proxy.restore()
    assert store.wait_idle(timeout=60)
    store.close()
    rows = table_rows(direct, schema.calls)
    assert len(rows) == 60
    assert {r[8] for r in rows} == {1_795_345_700_007}


def test_spill_files_left_by_a_stopped_daemon_are_written_by_the_next_store(pg_via_proxy, tmp_path):
    direct, proxied, proxy = pg_via_proxy
    spill = tmp_path / "spill"
    store = Store(proxied, spill_dir=spill)
    proxy.cut()
    store.write(day_of_calls(15, version=3))
    store.close()  # cannot write: everything goes to disk
    assert len(list(spill.glob("spill-*.jsonl"))) == 1
    proxy.restore()
    again = Store(proxied, spill_dir=spill)
    again.flush()
    again.close()
    assert counts(direct)["calls"] == 15 and counts(direct)["segments"] == 15
    assert not list(spill.glob("spill-*.jsonl"))


GEVENT_WRITER = r"""
from gevent import monkey; monkey.patch_all()
import sys, gevent
from daemon.engine.records import CallRecord, EngineOutput
from daemon.storage.store import Store
store = Store(sys.argv[1], spill_dir=sys.argv[2], batch_size=10)
store.start_writer()
kind = type(store._writer).__name__
ticks = []
def other_greenlet():
    for _ in range(20):
        ticks.append(1)
        gevent.sleep(0)
runner = gevent.spawn(other_greenlet)
for i in range(100):
    store.write(EngineOutput(calls=[CallRecord(f"g{i}", "t", "n", "", "", i, None, "in-progress")]))
idle = store.wait_idle(30)
runner.join()
store.close()
print(kind, "idle" if idle else "busy", len(ticks))
"""


def test_under_gevent_the_single_writer_is_a_greenlet_and_postgres_io_yields(pg_via_proxy, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    direct, _proxied, _proxy = pg_via_proxy
    done = subprocess.run([sys.executable, "-c", GEVENT_WRITER, direct, str(tmp_path / "spill")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Greenlet", "idle", "20"]
    assert counts(direct)["calls"] == 100


def test_the_daemon_starts_while_postgres_is_down_and_migrates_once_it_is_back(pg_via_proxy, tmp_path):
    direct, proxied, proxy = pg_via_proxy
    proxy.cut()
    store = Store(proxied, spill_dir=tmp_path / "spill")  # must not raise
    store.write(day_of_calls(3, version=1))
    with pytest.raises(StoreUnavailable):
        store.flush()
    proxy.restore()
    store.flush()
    store.close()
    assert counts(direct)["calls"] == 3


def test_a_nul_in_a_caller_name_is_dropped_not_refused(empty_db_url, tmp_path):
    store = Store(empty_db_url, spill_dir=tmp_path / "spill")
    store.write(EngineOutput(calls=[call("c1", caller_name="Eve\x00\nCC-Action: x")]))
    store.close()
    assert table_rows(empty_db_url, schema.calls)[0][5] == "Eve\nCC-Action: x"


def test_a_row_postgres_refuses_is_set_aside_and_the_rest_of_the_batch_is_written(pg_via_proxy, tmp_path):
    direct, _proxied, _proxy = pg_via_proxy
    spill = tmp_path / "spill"
    bad = seg("c1", "survey", 1, ended=5, score=2 ** 40)  # out of INTEGER range
    store = Store(direct, spill_dir=spill)
    store.write(EngineOutput(calls=[call("c1"), call("c2")], segments=[bad, seg("c2", "ivr", 0)]))
    store.flush()
    store.close()
    assert counts(direct)["calls"] == 2 and counts(direct)["segments"] == 1
    assert store.stats.rejected_rows == 1
    [rejected] = spill.glob("rejected-*.jsonl")
    assert json.loads(rejected.read_text().splitlines()[0])[1]["segment_id"] == "c1:survey:1"


def status(agent: str, started: int, value: str, ended: int | None = None) -> AgentInterval:
    return AgentInterval(interval_id=f"{agent}:status:{started}", tenant="hotline.test",
                         node="vm", agent=agent, kind="status", value=value,
                         started_ms=started, ended_ms=ended)


def test_an_interval_left_open_by_an_earlier_stream_ends_where_the_next_one_begins(empty_db_url):
    """A daemon stopped with agent 1001 Available; after the restart the switch reports
    1001 On Break at t+60 s: the old interval is 60 s long, not open for ever, and the
    agent's other kind (state) and other agents are left alone."""
    t = 1_795_345_627_000
    earlier = EngineOutput(intervals=[
        status("1001@hotline.test", t, "Available"),
        status("1002@hotline.test", t, "Available"),
        AgentInterval("1001@hotline.test:state:1", "hotline.test", "vm", "1001@hotline.test",
                      "state", "Waiting", t, None)])
    later = EngineOutput(intervals=[status("1001@hotline.test", t + 60_000, "On Break")])
    with Store(empty_db_url) as store:
        store.write(earlier)
        store.flush()
        store.write(later)
        store.flush()
        store.write(earlier)  # a replay of the earlier stream re-sends its open version
        store.flush()
    columns = schema.agent_intervals.c.keys()
    named = [dict(zip(columns, row)) for row in table_rows(empty_db_url, schema.agent_intervals)]
    rows = {(r["agent"], r["kind"], r["started_ms"]): (r["ended_ms"], r["duration_ms"])
            for r in named}
    assert rows[("1001@hotline.test", "status", t)] == (t + 60_000, 60_000)
    assert rows[("1001@hotline.test", "status", t + 60_000)] == (None, None)
    assert rows[("1001@hotline.test", "state", t)] == (None, None)
    assert rows[("1002@hotline.test", "status", t)] == (None, None)
