"""calls and segments keyed by (id, started_ms); on PostgreSQL partitioned by month of started_ms.

PostgreSQL: each table is rebuilt as ``PARTITION BY RANGE (started_ms)`` with a partition
per calendar month (UTC) from its oldest row to three months ahead, plus a default
partition; the rows are copied over. A partitioned table's primary key must include the
partition key, hence (call_id, started_ms) and (segment_id, started_ms) on both databases
(the store upserts ON CONFLICT on the whole key). SQLite keeps one table per kind,
rebuilt with the new key. The roll-up triggers of 0105_rollups are re-created.

Revision ID: 0106_partitions
Revises: 0105_rollups
"""
from __future__ import annotations

import datetime as dt
import importlib
import time

import sqlalchemy as sa
from alembic import op

revision = '0106_partitions'
down_revision = '0105_rollups'
branch_labels = None
depends_on = None

AHEAD = 3
INDEXES = {
    "calls": [("ix_calls_tenant_started", ["tenant", "started_ms"]),
              ("ix_calls_caller_started", ["caller", "started_ms"])],
    "segments": [("ix_segments_tenant_kind_entered", ["tenant", "kind", "queue_entered_ms"]),
                 ("ix_segments_queue_entered", ["queue", "kind", "queue_entered_ms"]),
                 ("ix_segments_agent_started", ["agent", "kind", "started_ms"]),
                 ("ix_segments_call", ["call_id"]),
                 ("ix_segments_visit", ["visit_id"])],
}
KEYS = {"calls": ["call_id", "started_ms"], "segments": ["segment_id", "started_ms"]}
TRIGGER_T = {"calls": "{r}.started_ms", "segments": "COALESCE({r}.queue_entered_ms, {r}.started_ms)"}


def _month(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().replace(day=1)


def _next(m: dt.date) -> dt.date:
    return dt.date(m.year + (m.month == 12), m.month % 12 + 1, 1)


def _ms(m: dt.date) -> int:
    return int(dt.datetime(m.year, m.month, 1, tzinfo=dt.UTC).timestamp() * 1000)


def _rebuild(table: str, pg: bool) -> None:
    bind = op.get_bind()
    old = sa.Table(table, sa.MetaData(), autoload_with=bind)
    new = f"{table}_new"
    cols = [sa.Column(c.name, c.type, nullable=c.nullable) for c in old.columns]
    kw = {"postgresql_partition_by": "RANGE (started_ms)"} if pg else {}
    op.create_table(new, *cols, sa.PrimaryKeyConstraint(*KEYS[table], name=f"{table}_pkey"
                                                        if not pg else f"{new}_pkey"), **kw)
    if pg:
        lo, hi = bind.execute(sa.text(f"SELECT MIN(started_ms), MAX(started_ms) FROM {table}")).one()
        now = int(time.time() * 1000)
        m = _month(min(lo or now, now))
        last = _month(now)
        for _ in range(AHEAD):
            last = _next(last)
        last = max(last, _month(hi or now))
        while m <= last:
            op.execute(f'CREATE TABLE "{table}_p{m.year:04d}{m.month:02d}" PARTITION OF "{new}" '
                       f'FOR VALUES FROM ({_ms(m)}) TO ({_ms(_next(m))})')
            m = _next(m)
        op.execute(f'CREATE TABLE "{table}_pdefault" PARTITION OF "{new}" DEFAULT')
    names = ", ".join(f'"{c.name}"' for c in old.columns)
    op.execute(f'INSERT INTO "{new}" ({names}) SELECT {names} FROM "{table}"')
    op.execute(f'DROP TABLE "{table}"')  # its indexes and triggers go with it
    op.rename_table(new, table)
    if pg:
        op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{new}_pkey" TO "{table}_pkey"')
    for name, columns in INDEXES[table]:
        op.create_index(name, table, columns)
    rollups = importlib.import_module("daemon.storage.migrations.versions.0105_rollups")
    rollups.create_triggers(table, TRIGGER_T[table])


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for table in ("calls", "segments"):
        _rebuild(table, pg)


def downgrade() -> None:
    raise NotImplementedError("0106_partitions is not reversible: restore a backup instead")
