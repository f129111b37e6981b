"""Monthly partitions of calls and segments on PostgreSQL, and the retention of old months.

PostgreSQL (migration 0106_partitions): ``calls`` and ``segments`` are partitioned by RANGE
of ``started_ms``, one partition per calendar month (UTC), named ``<table>_pYYYYMM``, plus
``<table>_pdefault`` for a row of a month nobody created (a clock far off, maintenance
behind). ``maintain`` (a singleton job of the leader daemon) creates the partitions of the
coming months ahead of time, moves any rows the default partition holds for a month
into that month's new partition, and drops the months older than the retention.

SQLite keeps one table per kind; retention there deletes the old rows.

Dropping raw months leaves the roll-ups (daemon/stats/rollup.py) in place: the summable
KPIs of those months stay reportable; the raw-only ones (first-call resolution, agent
time) have no rows left to count.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlalchemy import delete, text
from sqlalchemy.engine import Connection

from daemon.storage import schema

logger = logging.getLogger(__name__)

PARTITIONED = ("calls", "segments")
_NAME = re.compile(r"^(calls|segments)_p(\d{4})(\d{2})$")


@dataclass(frozen=True)
class Maintenance:
    """What one ``maintain`` run did."""

    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    moved_from_default: int = 0
    deleted_rows: int = 0  # SQLite retention


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(day: dt.date, n: int) -> dt.date:
    m = day.year * 12 + day.month - 1 + n
    return dt.date(m // 12, m % 12 + 1, 1)


def epoch_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
               * 1000)


def month_of_ms(ms: int) -> dt.date:
    return month_start(dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date())


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = 'public'::regnamespace"), {"t": table}).first())


def months(conn: Connection, table: str) -> list[dt.date]:
    """The monthly partitions ``table`` has, oldest first (the default one not counted)."""
    rows = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t"), {"t": table})
    out = []
    for (name,) in rows:
        m = _NAME.match(name)
        if m and m.group(1) == table:
            out.append(dt.date(int(m.group(2)), int(m.group(3)), 1))
    return sorted(out)


def create_month(conn: Connection, table: str, month: dt.date) -> int:
    """Create ``table``'s partition of ``month``; returns the rows moved into it from the
    default partition (a partition cannot be attached while the default holds its rows)."""
    name = partition_name(table, month)
    lo, hi = epoch_ms(month), epoch_ms(add_months(month, 1))
    default = f"{table}_pdefault"
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS '
                      f'INCLUDING CONSTRAINTS)'))
    moved = conn.execute(text(
        f'WITH gone AS (DELETE FROM "{default}" WHERE started_ms >= :lo AND started_ms < :hi '
        f'RETURNING *) INSERT INTO "{name}" SELECT * FROM gone'), {"lo": lo, "hi": hi}).rowcount
    conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" '
                      f'FOR VALUES FROM ({lo}) TO ({hi})'))
    if moved:
        logger.warning("%s: %d rows of %s moved out of %s", table, moved, month, default)
    return moved


def maintain(conn: Connection, now_ms: int, *, ahead_months: int = 3,
             retention_months: int | None = None) -> Maintenance:
    """Create this month's and the next ``ahead_months`` partitions; drop (PostgreSQL) or
    delete (SQLite) what started before the first of the month ``retention_months`` ago.

    Run in a transaction (``engine.begin()``). Idempotent.
    """
    this = month_of_ms(now_ms)
    cutoff = add_months(this, -retention_months) if retention_months else None
    created: list[str] = []
    dropped: list[str] = []
    moved = deleted = 0
    for table in PARTITIONED:
        if not is_partitioned(conn, table):
            if cutoff is not None:
                t = schema.metadata.tables[table]
                deleted += conn.execute(
                    delete(t).where(t.c.started_ms < epoch_ms(cutoff))).rowcount or 0
            continue
        have = set(months(conn, table))
        for n in range(ahead_months + 1):
            m = add_months(this, n)
            if m not in have:
                moved += create_month(conn, table, m)
                created.append(partition_name(table, m))
        if cutoff is not None:
            for m in sorted(have):
                if add_months(m, 1) <= cutoff:
                    conn.execute(text(f'DROP TABLE "{partition_name(table, m)}"'))
                    dropped.append(partition_name(table, m))
            deleted += conn.execute(text(
                f'DELETE FROM "{table}_pdefault" WHERE started_ms < :c'),
                {"c": epoch_ms(cutoff)}).rowcount or 0
    if created or dropped or deleted:
        logger.info("partitions: created %s, dropped %s, %d old rows deleted",
                    ", ".join(created) or "none", ", ".join(dropped) or "none", deleted)
    return Maintenance(tuple(created), tuple(dropped), moved, deleted)
