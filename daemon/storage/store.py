"""The statistics database writer: migrations, batched idempotent upserts, outage buffer.

``migrate(url)`` brings a database to the current schema with Alembic (the
migrations directory ships inside the package, no alembic.ini needed).

``Store(url)`` takes the engine's output (``write(EngineOutput)``), keeps the
latest version of each record in memory (a record re-emitted with the same id
replaces the earlier one before it ever reaches the database) and writes them
in batched transactions of ``INSERT ... ON CONFLICT DO UPDATE`` (PostgreSQL and
SQLite), so writing the same records twice leaves the same rows.

Two ways to drive it:

* synchronous (replay, CLI): ``write`` buffers and writes a batch whenever
  ``batch_size`` records are pending; ``flush()`` writes the rest and raises
  ``StoreUnavailable`` (keeping everything buffered) if the database is down;
* the daemon: ``start_writer()`` runs ONE writer (a greenlet when gevent has
  patched threading, else a thread) that flushes every ``flush_interval_s`` or
  as soon as a batch is full; ``close()`` stops it after a last flush.

Database outage: the writer retries with exponential backoff (``retry_initial_s``
doubling up to ``retry_max_s``) and never raises into the daemon. While it
waits, records keep collecting in memory; beyond ``max_buffer`` records the
buffer is spilled to ``spill_dir`` as JSON lines (``spill-<n>.jsonl``, written
to a temporary name, fsynced, then renamed). Spill files are replayed oldest
first before the memory buffer, so the newest version of a record is always
the last one written: nothing lost, nothing duplicated. Spill files left by a
stopped daemon are written by the next ``Store`` on the same ``spill_dir``.

Spill files are ours and nobody else's: ``spill_dir`` is made 0700 and not used at
all (``spill_problem`` says why, logged as an error; records then stay in memory during
an outage - the journal has every event anyway) when it is a symlink, not owned by us,
or writable by group or others; each file is written 0600 and ends with a trailer line holding its row count
and SHA-256. A file that is not ours (owner, mode, symlink) or not exactly what we
write (trailer, tables, columns, types) is never written to the database: it is
renamed ``refused-<name>`` and logged. The default ``spill_dir`` (replay, CLI) lives
in the user's state directory (``$XDG_STATE_HOME/hotline``, ``~/.local/state/hotline``),
never in a shared ``/tmp``; the daemon keeps its spill next to the journal.
What is only in memory when the process dies is recovered from the journal,
which is written before the engine sees an event: ``when_committed(action)``
runs an action once everything written before it is committed, which is how the
daemon's checkpoints (``daemon.storage.checkpoint``) mark how far the database
holds the journal, and the next daemon replays the journal from there.

Convergence (``remove_stale_segments``, ``remove_stale_intervals``): after a
replay, rows of the replayed calls and span that the replay did not produce are
deleted, so rows an older daemon left under other ids do not outlive a replay.

A record the database refuses for a reason other than connectivity (e.g. a
constraint) is written row by row so one bad row cannot block the others; rows
still refused are logged and kept in ``rejected-<n>.jsonl`` in ``spill_dir``.

A database that refuses us for good - it does not exist, the password or the role
is wrong - is not an outage: the writer still retries (someone may create it) but
logs it as an error, and ``problem`` holds the reason for ``/health``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from sqlalchemy import String, Table, create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from daemon.engine.records import AgentInterval, CallRecord, EngineOutput, Segment
from daemon.storage import schema

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000  # a reader (hotline report) may hold the file briefly
PG_CONNECT_TIMEOUT_S = 5
PG_PAGE_ROWS = 1000  # rows per upsert statement on PostgreSQL

TABLES: dict[str, Table] = {
    "calls": schema.calls,
    "segments": schema.segments,
    "agent_intervals": schema.agent_intervals,
    "dispositions": schema.dispositions,
}
# the single-column primary key of each table the store writes
_PK = {name: next(iter(t.primary_key.columns)).name for name, t in TABLES.items()}
# write order inside one transaction (no foreign keys; calls first reads naturally)
TABLE_ORDER = ("calls", "segments", "agent_intervals", "dispositions")


class StoreUnavailable(RuntimeError):
    """The database cannot be reached; the records stay buffered.

    ``permanent`` is the reason when waiting will not help (see ``permanent_reason``).
    """

    def __init__(self, message: str, permanent: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent


class SpillDirError(RuntimeError):
    """The spill directory is not private to us (owner, mode, symlink)."""


# What a server says when retrying cannot help: PostgreSQL's FATAL errors at connect
# (psycopg2 gives them no SQLSTATE, only the text) and SQLite's missing directory.
_PERMANENT_ERRORS = (
    ("does not exist", "the database (or role) does not exist"),
    ("password authentication failed", "authentication failed"),
    ("authentication failed", "authentication failed"),
    ("no pg_hba.conf entry", "the server does not accept this user from here (pg_hba.conf)"),
    ("permission denied", "permission denied"),
    ("unable to open database file", "the SQLite file cannot be created or opened"),
)


def permanent_reason(exc: BaseException) -> str | None:
    """Why ``exc`` (a connectivity error) is no outage, or None for a real outage."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    for needle, reason in _PERMANENT_ERRORS:
        if needle in text:
            return reason
    return None


# --- engine and migrations --------------------------------------------------------------------


def make_engine(url: str) -> Engine:
    """An engine with the pragmas/timeouts Hotline relies on.

    SQLite: WAL (readers do not block the writer), a busy timeout, synchronous=NORMAL
    (durable at each WAL checkpoint, which is what WAL is designed for).
    PostgreSQL: pre-ping (connections dead after an outage are replaced) and a
    connect timeout, so an unreachable server is an error, not a hang.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no branch
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                cur.execute("PRAGMA synchronous=NORMAL")
            finally:
                cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Create or upgrade the schema to the newest revision (idempotent)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


# --- rows ----------------------------------------------------------------------------------------


def _lengths(table: Table) -> dict[str, int | None]:
    # every text column (String and Text), with its length limit if it has one
    return {c.name: c.type.length for c in table.columns if isinstance(c.type, String)}


_LENGTHS = {name: _lengths(t) for name, t in TABLES.items()}
_CALL_COLS = [c.name for c in schema.calls.columns]
_SEG_COLS = [c.name for c in schema.segments.columns if c.name not in ("duration_ms", "attrs")]
_INT_COLS = [c.name for c in schema.agent_intervals.columns if c.name != "duration_ms"]


def _fit(table: str, row: dict[str, Any]) -> dict[str, Any]:
    # PostgreSQL refuses over-long VARCHARs and NUL characters (SQLite does not): a caller
    # name is caller-controlled ("%00" decodes to NUL), so clean rather than let one row
    # poison a batch.
    for name, length in _LENGTHS[table].items():
        value = row.get(name)
        if value.__class__ is str:
            if "\x00" in value:
                value = row[name] = value.replace("\x00", "")
            if length and len(value) > length:
                row[name] = value[:length]
    return row


def call_row(c: CallRecord) -> dict[str, Any]:
    return _fit("calls", {name: getattr(c, name) for name in _CALL_COLS})


def segment_row(s: Segment) -> dict[str, Any]:
    row = {name: getattr(s, name) for name in _SEG_COLS}
    row["duration_ms"] = s.duration_ms
    row["attrs"] = json.dumps(dict(s.attrs), sort_keys=True) if s.attrs else None
    return _fit("segments", row)


def interval_row(i: AgentInterval) -> dict[str, Any]:
    row = {name: getattr(i, name) for name in _INT_COLS}
    row["duration_ms"] = i.duration_ms
    return _fit("agent_intervals", row)


def disposition_row(s: Segment) -> dict[str, Any]:
    """The dispositions-table row of a talk segment that carries a disposition code."""
    attrs = dict(s.attrs)
    entered = attrs.get("disposition_ms")
    try:
        entered_ms = int(entered) if entered is not None else None
    except ValueError:
        entered_ms = None
    if entered_ms is None:
        entered_ms = s.ended_ms if s.ended_ms is not None else s.started_ms
    return _fit("dispositions", {"call_id": s.call_id, "agent": s.agent, "code": s.disposition,
                                 "source": "phone", "entered_ms": entered_ms})


def rows_of(out: EngineOutput) -> list[tuple[str, str, dict[str, Any]]]:
    """(table, primary key, row) for every record of an engine output; live changes are not rows."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for c in out.calls:
        rows.append(("calls", c.call_id, call_row(c)))
    for s in out.segments:
        rows.append(("segments", s.segment_id, segment_row(s)))
        if s.disposition:
            rows.append(("dispositions", s.call_id, disposition_row(s)))
    for i in out.intervals:
        rows.append(("agent_intervals", i.interval_id, interval_row(i)))
    return rows


_ROW_OF = {"calls": call_row, "segments": segment_row, "agent_intervals": interval_row,
           "dispositions": disposition_row}


def _as_rows(items: Iterable[tuple[Key, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) for buffered values: the store buffers the engine's records as they
    come and builds rows only for the versions that reach the database or a spill file
    (most records are replaced by a newer version within the same batch); rows read back
    from a spill file or kept from a failed batch are buffered as rows already."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for (table, key), value in items:
        try:
            rows.append((table, value if value.__class__ is dict else _ROW_OF[table](value)))
        except Exception:  # a bug in building one row must not cost the others
            logger.exception("record cannot be stored, dropped: %s %s", table, key)
    return rows


def close_superseded_intervals(conn: Any, agents: Iterable[str]) -> None:
    """An agent has one status and one state at a time: an interval left open by an
    earlier stream (a daemon that stopped, a capture replayed on its own) ends where the
    agent's next interval of the same kind begins. Idempotent, so replays stay exact."""
    ai = schema.agent_intervals
    later = schema.agent_intervals.alias("later")
    next_start = (select(func.min(later.c.started_ms))
                  .where(later.c.agent == ai.c.agent, later.c.kind == ai.c.kind,
                         later.c.started_ms > ai.c.started_ms)
                  .scalar_subquery())
    agents = sorted(agents)
    for i in range(0, len(agents), 500):  # keep IN lists within every driver's limits
        conn.execute(
            update(ai)
            .where(ai.c.ended_ms.is_(None), ai.c.agent.in_(agents[i:i + 500]),
                   next_start.is_not(None))
            .values(ended_ms=next_start, duration_ms=next_start - ai.c.started_ms))


def _upsert_statement(table: Table, dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the two supported databases
        raise ValueError(f"unsupported database dialect {dialect!r} (use sqlite or postgresql)")
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    update = {c.name: stmt.excluded[c.name] for c in table.columns if not c.primary_key}
    where = None
    if table is schema.dispositions:
        # a disposition entered by a supervisor (source "cli") is not overwritten by a replay
        where = table.c.source == "phone"
    return stmt.on_conflict_do_update(index_elements=keys, set_=update, where=where)


@functools.lru_cache(maxsize=None)
def _pg_upsert_sql(table: Table) -> str:
    """``INSERT ... SELECT FROM json_populate_recordset(%s) ON CONFLICT DO UPDATE``: a page
    of rows as ONE JSON parameter (same semantics as ``_upsert_statement``). Each row's
    keys are the table's columns; the server converts each value to its column's type."""
    cols = [c.name for c in table.columns]
    keys = [c.name for c in table.primary_key.columns]
    quoted = ", ".join(f'"{c}"' for c in cols)
    conflict = ", ".join(f'"{k}"' for k in keys)
    update = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in cols if c not in keys)
    sql = (f'INSERT INTO "{table.name}" ({quoted}) SELECT {quoted} '
           f'FROM json_populate_recordset(NULL::"{table.name}", %s::json) '
           f'ON CONFLICT ({conflict}) DO UPDATE SET {update}')
    if table is schema.dispositions:
        sql += f' WHERE "{table.name}"."source" = \'phone\''
    return sql


def _is_connectivity(exc: BaseException) -> bool:
    """Worth retrying (the database is away or busy) - as opposed to refusing these rows."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError)):
        return True
    try:  # raised by psycopg2 itself (execute_values on the raw cursor)
        import psycopg2

        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return True
    except ImportError:  # pragma: no cover - SQLite-only installation
        pass
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


# --- the store -----------------------------------------------------------------------------------


@dataclass
class StoreStats:
    rows_written: int = 0  # upserted rows (a row re-written after an outage counts again)
    batches: int = 0
    failures: int = 0  # failed write attempts (outage)
    spilled_rows: int = 0
    spill_files: int = 0
    rejected_rows: int = 0


def default_spill_dir(url: str) -> Path:
    """Private to the user (never a shared /tmp where another user can plant files)."""
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hotline" / f"spill-{digest}"


Key = tuple[str, str]


class Store:
    """Batched, idempotent writer of engine output (see the module docstring)."""

    def __init__(self, url: str, *, batch_size: int = 500, max_buffer: int = 20_000,
                 spill_dir: str | Path | None = None, flush_interval_s: float = 0.2,
                 retry_initial_s: float = 0.5, retry_max_s: float = 30.0,
                 migrate_schema: bool = True,
                 outbox: Callable[[Any, dict[str, list[dict[str, Any]]]], None] | None = None,
                 ) -> None:
        self.url = url
        # called inside each write transaction with its rows (daemon/storage/outbox.py)
        self.outbox = outbox
        self.batch_size = max(1, batch_size)
        self.max_buffer = max(1, max_buffer)
        self.flush_interval_s = flush_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.spill_dir = Path(spill_dir) if spill_dir else default_spill_dir(url)
        # the directory is checked before anything in it is read; one that is not ours
        # alone is not used at all (records then stay in memory during an outage)
        self.spill_problem: str | None = None
        try:
            private_dir(self.spill_dir)
        except SpillDirError as exc:
            self.spill_problem = str(exc)
            logger.error("%s: spill files there are ignored, and records stay in memory "
                         "while the database is away", exc)
        self.stats = StoreStats()
        self.problem: str | None = None  # why the database refuses us for good (not an outage)
        self._last_caught_up = time.monotonic()
        self._migrated = not migrate_schema
        self._migration_deferred = False
        self._migrate_if_needed(raise_unavailable=False)
        self.engine = make_engine(url)
        self._statements = {name: _upsert_statement(t, self.engine.dialect.name)
                            for name, t in TABLES.items()}
        self._multi_values = (self.engine.dialect.name == "postgresql"
                              and self.engine.dialect.driver == "psycopg2")
        self._lock = threading.Lock()  # guards _pending, spill numbering, _spill_gen
        self._io = threading.RLock()  # one database writer at a time
        self._pending: dict[Key, Any] = {}  # a record, or a row (see _as_rows)
        # when_committed callbacks, in order: each runs once everything buffered before it is
        self._marks: list[Callable[[], None]] = []
        self._spill_gen = 0
        self._refused: set[Path] = set()
        self._next_spill = self._first_spill_number()
        self._wake = threading.Event()
        self._stopping = False
        self._writer: Any = None
        self._healthy = True

    # -- public API ------------------------------------------------------------------------------

    def write(self, out: EngineOutput) -> None:
        """Buffer an engine output; never blocks on the database when the writer runs."""
        calls, segments, intervals = out.calls, out.segments, out.intervals
        if not (calls or segments or intervals):
            return  # most events change no record
        # the records themselves are buffered (see _as_rows), keyed like rows_of's rows;
        # the last version of a record wins
        with self._lock:
            pending = self._pending
            for c in calls:
                pending[("calls", c.call_id)] = c
            for seg in segments:
                pending[("segments", seg.segment_id)] = seg
                if seg.disposition:
                    pending[("dispositions", seg.call_id)] = seg
            for i in intervals:
                pending[("agent_intervals", i.interval_id)] = i
            n = len(pending)
        if n >= self.max_buffer:
            self._spill_memory()
            n = len(self._pending)
        if self._writer is not None:
            if n >= self.batch_size:
                self._wake.set()
        elif n >= self.batch_size:
            self.flush()  # synchronous use: StoreUnavailable reaches the caller, records stay

    def when_committed(self, action: Callable[[], None]) -> None:
        """Run ``action()`` (in the writer) once every record written before this call is
        committed to the database - the daemon's checkpoints wait on it. Never run if the
        process ends first; run after a later successful flush if the database is down now.
        An action that raises is logged and dropped."""
        with self._lock:
            self._marks.append(action)
        if self._writer is not None:
            self._wake.set()

    def remove_stale_segments(self, produced: dict[str, set[str]]) -> int:
        """Delete the segments of the calls in ``produced`` (call id -> the segment ids a
        replay of the call's whole life produced) that are not among those ids: rows an
        older daemon left under ids a clean run never has. Call after ``flush``; returns
        how many rows went. Idempotent."""
        seg = schema.segments
        call_ids = sorted(produced)
        stale: list[str] = []
        try:
            with self._io, self.engine.begin() as conn:
                for i in range(0, len(call_ids), 500):
                    chunk = call_ids[i:i + 500]
                    for call_id, seg_id in conn.execute(select(seg.c.call_id, seg.c.segment_id)
                                                        .where(seg.c.call_id.in_(chunk))):
                        if seg_id not in produced[call_id]:
                            stale.append(seg_id)
                for i in range(0, len(stale), 500):
                    conn.execute(seg.delete().where(seg.c.segment_id.in_(stale[i:i + 500])))
        except Exception as exc:
            if _is_connectivity(exc):
                raise StoreUnavailable(_short(exc)) from exc
            raise
        if stale:
            logger.info("%d stale segments of replayed calls removed", len(stale))
        return len(stale)

    def remove_stale_intervals(self, node: str, first_ms: int, last_ms: int,
                               produced: set[str], agents: set[str]) -> int:
        """Delete the agent intervals of ``node`` that began within [first_ms, last_ms] - the
        span of a replayed stream of that node - and are not among ``produced``: a replay
        of a stream starts an interval at every change it holds (an engine that never
        stopped starts one at fewer), so one of the ``agents`` whose changes it holds that it
        did not produce was left by an older daemon that restarted with a fresh engine. The interval such a row had cut short goes on
        to its real successor (``close_superseded_intervals``). Returns how many went."""
        ai = schema.agent_intervals
        try:
            with self._io, self.engine.begin() as conn:
                rows = conn.execute(select(ai.c.interval_id, ai.c.agent, ai.c.kind,
                                           ai.c.started_ms)
                                    .where(ai.c.node == node, ai.c.started_ms >= first_ms,
                                           ai.c.started_ms <= last_ms)).all()
                stale = [r for r in rows if r.interval_id not in produced and r.agent in agents]
                for r in stale:
                    conn.execute(ai.delete().where(ai.c.interval_id == r.interval_id))
                    conn.execute(update(ai).where(ai.c.agent == r.agent, ai.c.kind == r.kind,
                                                  ai.c.ended_ms == r.started_ms)
                                 .values(ended_ms=None, duration_ms=None))
                if stale:
                    close_superseded_intervals(conn, {r.agent for r in stale})
        except Exception as exc:
            if _is_connectivity(exc):
                raise StoreUnavailable(_short(exc)) from exc
            raise
        if stale:
            logger.info("%d stale agent intervals of node %s removed", len(stale), node)
        return len(stale)

    @property
    def pending(self) -> int:
        """Records waiting in memory (spilled ones not counted)."""
        return len(self._pending)

    def spilled_files(self) -> list[Path]:
        return self._spill_files()

    @property
    def healthy(self) -> bool:
        """False while the last write attempt failed (the database is unreachable)."""
        return self._healthy

    @property
    def lag_s(self) -> float:
        """Seconds since the writer last had nothing waiting (0 when nothing waits now)."""
        if not self._pending and self._healthy:
            return 0.0
        return time.monotonic() - self._last_caught_up

    def flush(self) -> None:
        """Write everything buffered (spill files first, oldest first); raise StoreUnavailable."""
        with self._io:
            try:
                self._flush_all()
            except StoreUnavailable as exc:
                self._healthy = False
                if exc.permanent and exc.permanent != self.problem:
                    logger.error("the database refuses the daemon: %s (%s). This is not an "
                                 "outage: fix database_url. Events are still journaled and "
                                 "records buffered; retrying every %.0f s", exc.permanent, exc,
                                 self.retry_max_s)
                self.problem = exc.permanent
                raise
            self._healthy = True
            self.problem = None
            if not self._pending:
                self._last_caught_up = time.monotonic()

    def start_writer(self) -> None:
        """Run the single background writer (a greenlet under gevent, else a thread)."""
        if self._writer is not None:
            return
        self._stopping = False
        if _gevent_patched():
            import gevent

            _make_psycopg2_cooperative()
            self._writer = gevent.spawn(self._run)
        else:
            self._writer = threading.Thread(target=self._run, name="hotline-store-writer",
                                            daemon=True)
            self._writer.start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wake the writer and wait until nothing is pending (memory and spill); True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (not self._pending and not self._marks and not self._spill_files()
                    and self._healthy):
                return True
            self._wake.set()
            time.sleep(0.02)  # cooperative under gevent (monkey-patched)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer after a last flush; what cannot be written now is spilled to disk."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._stopping = True
            self._wake.set()
            writer.join(timeout)
        try:
            self.flush()
        except StoreUnavailable:
            logger.warning("database unreachable at close: %d records spilled to %s",
                           len(self._pending), self.spill_dir)
            self._spill_memory()
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer ----------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.0
        retry_at = 0.0
        while True:
            timeout = max(0.0, retry_at - time.monotonic()) if delay else self.flush_interval_s
            self._wake.wait(timeout)
            self._wake.clear()
            stopping = self._stopping
            if delay and not stopping and time.monotonic() < retry_at:
                continue  # a full batch woke us during an outage: keep to the backoff
            try:
                if self._pending or self._marks or self._spill_files() or not self._migrated:
                    self.flush()
                if delay:
                    logger.info("database reachable again; buffered records written")
                delay = 0.0
            except StoreUnavailable as exc:
                if exc.permanent:  # said loudly once (flush); retried slowly, not logged each time
                    delay = self.retry_max_s
                else:
                    delay = min(self.retry_max_s, max(self.retry_initial_s, delay * 2))
                    logger.warning("database write failed (%s); %d records buffered, retry in "
                                   "%.1fs", exc, len(self._pending), delay)
                retry_at = time.monotonic() + delay
                if stopping:
                    return  # close() spills what is left
            except Exception:  # the writer must outlive any surprise; the records stay buffered
                logger.exception("store writer error")
                delay = self.retry_initial_s
                retry_at = time.monotonic() + delay
            if stopping:
                return

    # -- flushing --------------------------------------------------------------------------------

    def _migrate_if_needed(self, raise_unavailable: bool = True) -> None:
        if self._migrated:
            return
        try:
            migrate(self.url)
        except Exception as exc:
            if not _is_connectivity(exc):
                raise
            # the daemon starts (and journals, and buffers) while the database is down;
            # said once - the writer's retries log the outage themselves
            if not self._migration_deferred:
                reason = permanent_reason(exc)
                if reason:
                    logger.error("the database refuses the daemon: %s (%s); schema migration "
                                 "deferred, events are still journaled", reason, _short(exc))
                else:
                    logger.warning("database unreachable, schema migration deferred: %s",
                                   _short(exc))
            self._migration_deferred = True
            if raise_unavailable:
                raise StoreUnavailable(_short(exc), permanent_reason(exc)) from exc
            return
        self._migrated = True
        if self._migration_deferred:
            logger.info("database reachable: schema migrated")

    def _flush_all(self) -> None:
        self._migrate_if_needed()
        while True:
            for path in self._spill_files():
                try:
                    rows = _read_spill(path)
                except FileNotFoundError:  # another store on the same spill_dir took it
                    continue
                except SpillFileError as exc:
                    if not _refuse(path, exc):
                        self._refused.add(path)  # could not move it: never read it again
                    continue
                self._write_rows(rows)
                path.unlink(missing_ok=True)
                logger.info("spill file %s written to the database", path.name)
            with self._lock:
                if self._spill_files():
                    continue  # spilled meanwhile: older than memory, so written first
                batch, self._pending = self._pending, {}
                marks, self._marks = self._marks, []
                gen = self._spill_gen
                number = self._next_spill  # reserved: sorts before any spill made while we write
                self._next_spill += 1
            break
        if not batch:
            self._run_marks(marks)
            return
        try:
            items = list(batch.items())
            step = self.batch_size
            for start in range(0, len(items), step):
                chunk = items[start:start + step]
                self._write_rows(_as_rows(chunk))
                for key, _row in chunk:
                    batch.pop(key, None)  # committed: not re-buffered if a later chunk fails
        except StoreUnavailable:
            with self._lock:
                if self._spill_gen != gen and self._spill_dir_usable():
                    # newer versions may sit in a spill file: ours must be written before them
                    self._write_spill(number, _as_rows(batch.items()))
                else:
                    for key, row in batch.items():
                        self._pending.setdefault(key, row)  # a newer version in memory wins
                self._marks[:0] = marks  # still waiting for these records
            raise
        self._run_marks(marks)

    @staticmethod
    def _run_marks(marks: list[Callable[[], None]]) -> None:
        for action in marks:
            try:
                action()
            except Exception:  # a checkpoint not written costs a longer replay at start, no data
                logger.exception("action after commit failed")

    def _write_rows(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        # one row per primary key, the last version winning: a multi-row INSERT ... ON
        # CONFLICT DO UPDATE refuses to touch a row twice (the memory buffer is keyed
        # already; spill files written by an older daemon or joined by hand need not be)
        keyed: dict[str, dict[Any, dict[str, Any]]] = {}
        for table, row in rows:
            keyed.setdefault(table, {})[row.get(_PK[table])] = row
        by_table = {table: list(versions.values()) for table, versions in keyed.items()}
        if not by_table:
            return
        try:
            with self.engine.begin() as conn:
                for table in TABLE_ORDER:
                    chunk = by_table.get(table)
                    if chunk:
                        self._upsert(conn, table, chunk)
                if by_table.get("agent_intervals"):
                    close_superseded_intervals(
                        conn, {row["agent"] for row in by_table["agent_intervals"]})
                if self.outbox is not None:
                    self.outbox(conn, by_table)
        except Exception as exc:
            if _is_connectivity(exc):
                self.stats.failures += 1
                raise StoreUnavailable(_short(exc), permanent_reason(exc)) from exc
            self._write_one_by_one(by_table, exc)
            return
        self.stats.batches += 1
        self.stats.rows_written += sum(len(v) for v in by_table.values())

    def _upsert(self, conn: Any, table: str, rows: list[dict[str, Any]]) -> None:
        if self._multi_values:
            # psycopg2's executemany is one round trip per row (~5k rows/s), and SQLAlchemy
            # compiling a multi-row VALUES is slower still; psycopg2's execute_values sends
            # pages of rows in one statement but quotes every value in Python (~13 us a
            # row). A page of rows as one JSON document (json.dumps runs in C) costs a
            # fifth of that. Keys are unique within a batch (coalesced), as a multi-row
            # ON CONFLICT DO UPDATE requires. Not ASCII-escaped: the text goes through the
            # connection's encoding like any other parameter.
            sql = _pg_upsert_sql(TABLES[table])
            cursor = conn.connection.cursor()
            try:
                for start in range(0, len(rows), PG_PAGE_ROWS):
                    page = json.dumps(rows[start:start + PG_PAGE_ROWS], ensure_ascii=False,
                                      separators=(",", ":"))
                    cursor.execute(sql, (page,))
            finally:
                cursor.close()
        else:
            conn.execute(self._statements[table], rows)  # sqlite3's executemany runs in C

    def _write_one_by_one(self, by_table: dict[str, list[dict[str, Any]]],
                          first: Exception) -> None:
        logger.warning("batch refused (%s); writing row by row", _short(first))
        rejected: list[tuple[str, dict[str, Any]]] = []
        for table in TABLE_ORDER:
            for row in by_table.get(table, ()):
                try:
                    with self.engine.begin() as conn:
                        self._upsert(conn, table, [row])
                        if self.outbox is not None:
                            self.outbox(conn, {table: [row]})
                    self.stats.rows_written += 1
                except Exception as exc:
                    if _is_connectivity(exc):
                        self.stats.failures += 1
                        raise StoreUnavailable(_short(exc), permanent_reason(exc)) from exc
                    logger.error("row refused by the database, kept in rejected file: %s %s: %s",
                                 table, row.get(next(iter(row))), _short(exc))
                    rejected.append((table, row))
        if rejected:
            self.stats.rejected_rows += len(rejected)
            if not self._spill_dir_usable():
                logger.error("%d refused rows not kept: %s", len(rejected), self.spill_problem)
                return
            with self._lock:
                number = self._next_spill
                self._next_spill += 1
            _dump_rows(self.spill_dir / f"rejected-{number:012d}.jsonl", rejected)

    # -- spilling --------------------------------------------------------------------------------

    def _first_spill_number(self) -> int:
        if self.spill_problem:
            return 1
        numbers = [int(p.stem.split("-", 1)[1]) for p in self._spill_files()]
        numbers += [int(p.stem.split("-", 1)[1]) for p in self.spill_dir.glob("rejected-*.jsonl")
                    if p.stem.split("-", 1)[1].isdigit()]
        return max(numbers, default=0) + 1

    def _spill_files(self) -> list[Path]:
        if self.spill_problem or not self.spill_dir.is_dir():
            return []
        return sorted(p for p in self.spill_dir.glob("spill-*.jsonl")
                      if p.stem[6:].isdigit() and p not in self._refused)

    def _spill_dir_usable(self) -> bool:
        if self.spill_problem is None:
            try:
                private_dir(self.spill_dir)  # again: it may have been changed under us
            except SpillDirError as exc:
                self.spill_problem = str(exc)
                logger.error("%s: records stay in memory while the database is away", exc)
        return self.spill_problem is None

    def _spill_memory(self) -> None:
        if not self._spill_dir_usable():
            return  # no private place on disk: memory it is (the journal has every event)
        with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            number = self._next_spill
            self._next_spill += 1
            self._write_spill(number, _as_rows(batch.items()))

    def _write_spill(self, number: int, rows: list[tuple[str, dict[str, Any]]]) -> None:
        # caller holds self._lock and checked _spill_dir_usable()
        _dump_rows(self.spill_dir / f"spill-{number:012d}.jsonl", rows)
        self._spill_gen += 1
        self.stats.spilled_rows += len(rows)
        self.stats.spill_files += 1
        logger.warning("database unavailable: %d records spilled to %s", len(rows),
                       self.spill_dir / f"spill-{number:012d}.jsonl")


class SpillFileError(ValueError):
    """A spill file we did not write, or not as we write them."""


_TRAILER = "hotline-spill"


def private_dir(path: Path) -> None:
    """Make ``path`` (0700) or check an existing one is ours alone; raise SpillDirError."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise SpillDirError(f"spill directory {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SpillDirError(f"spill directory {path} is not a directory (a symlink?); "
                            f"refusing to use it")
    if st.st_uid != os.geteuid():
        raise SpillDirError(f"spill directory {path} belongs to uid {st.st_uid}, not to us "
                            f"(uid {os.geteuid()}); refusing to use it")
    if st.st_mode & 0o022:
        raise SpillDirError(f"spill directory {path} is writable by others (mode "
                            f"{stat.S_IMODE(st.st_mode):o}); refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)  # ours and not writable by others: just no longer readable


def _dump_rows(path: Path, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
    tmp = path.with_suffix(".tmp")
    digest = hashlib.sha256()
    count = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        for table, row in rows:
            line = json.dumps([table, row], separators=(",", ":"), default=str) + "\n"
            digest.update(line.encode("utf-8"))
            count += 1
            fh.write(line)
        fh.write(json.dumps({_TRAILER: 1, "rows": count, "sha256": digest.hexdigest()}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_spill(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The rows of a spill file we wrote; SpillFileError for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise SpillFileError(f"cannot be opened safely ({exc.strerror})") from None
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SpillFileError("is not a regular file")
        if st.st_uid != os.geteuid():
            raise SpillFileError(f"belongs to uid {st.st_uid}, not to us")
        if st.st_mode & 0o022:
            raise SpillFileError(f"is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
        lines = fh.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise SpillFileError("is empty (no trailer)")
    try:
        trailer = json.loads(lines.pop())
    except ValueError:
        raise SpillFileError("has no trailer line (cut short, or not written by hotline)") from None
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line + b"\n")
    if (not isinstance(trailer, dict) or trailer.get(_TRAILER) != 1
            or trailer.get("rows") != len(lines) or trailer.get("sha256") != digest.hexdigest()):
        raise SpillFileError("does not match its trailer (rows, SHA-256): changed or cut short")
    rows: list[tuple[str, dict[str, Any]]] = []
    for n, line in enumerate(lines, 1):
        try:
            table, row = json.loads(line)
        except ValueError:
            raise SpillFileError(f"line {n} is not a [table, row] pair") from None
        problem = _row_problem(table, row)
        if problem:
            raise SpillFileError(f"line {n}: {problem}")
        rows.append((table, row))
    return rows


def _row_problem(table: Any, row: Any) -> str | None:
    if table not in TABLES or not isinstance(row, dict):
        return f"unknown table {str(table)[:40]!r}"
    columns = TABLES[table].columns
    for name, value in row.items():
        column = columns.get(name) if isinstance(name, str) else None
        if column is None:
            return f"unknown column {str(name)[:40]!r} of {table}"
        if value is None:
            if not column.nullable:
                return f"{table}.{name} is empty"
            continue
        python_type = column.type.python_type
        if python_type is int:
            if type(value) is not int:
                return f"{table}.{name} is not a whole number"
        elif python_type is str:
            if not isinstance(value, str):
                return f"{table}.{name} is not text"
            length = getattr(column.type, "length", None)
            if length and len(value) > length:
                return f"{table}.{name} is longer than {length}"
    if not row.get(_PK[table]):
        return f"{table} row without {_PK[table]}"
    return None


def _refuse(path: Path, exc: SpillFileError) -> bool:
    """Move a refused spill file aside (kept for a look, never read again); True if moved."""
    target = path.with_name(f"refused-{path.name}")
    try:
        os.replace(path, target)
    except OSError as err:
        logger.error("spill file %s %s; NOT written to the database, and it cannot be moved "
                     "aside (%s)", path, exc, err)
        return False
    logger.error("spill file %s %s; NOT written to the database, kept as %s", path, exc,
                 target.name)
    return True


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("threading"))


def _make_psycopg2_cooperative() -> None:
    # psycopg2 blocks in C; with a wait callback its I/O goes through (monkey-patched) select,
    # so a slow or unreachable PostgreSQL does not freeze the gevent hub.
    try:
        import psycopg2.extensions
        import psycopg2.extras
    except ImportError:
        return
    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
