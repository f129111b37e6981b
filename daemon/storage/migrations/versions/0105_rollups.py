"""Roll-ups: rollup_queue(_total), rollup_calls, rollup_changes, rollup_thresholds; the triggers that
mark changed 15-minute buckets; every bucket of the existing rows marked for a first roll-up.

Revision ID: 0105_rollups
Revises: 0104_outbound
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0105_rollups'
down_revision = '0104_outbound'
branch_labels = None
depends_on = None

BUCKET = 900000  # ms; schema.ROLLUP_BUCKET_MS at this revision
# the time a row is reported under: a segment's queue entry (a survey without one: its start),
# a call's start
SEG_T = "COALESCE({r}.queue_entered_ms, {r}.started_ms)"
CALL_T = "{r}.started_ms"


def _counts(name: str) -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=False)]


def upgrade() -> None:
    big = [
        "offered", "answered", "abandoned", "short_abandoned", "transferred", "answered_in_sl",
        "wait_answered_ms", "wait_abandoned_ms", "wait_ended_ms", "wait_ended_n"]
    after = ["talk_ms", "hold_ms", "wrapup_ms", "rings_answered", "ring_answered_ms",
             "scored_n", "score_sum", "satisfied_n", "talks_without_stay"]
    op.create_table(
        'rollup_queue',
        sa.Column('bucket_ms', sa.BigInteger(), nullable=False),
        sa.Column('tenant', sa.String(length=128), nullable=False),
        sa.Column('queue', sa.String(length=160), nullable=True),
        sa.Column('agent', sa.String(length=160), nullable=True),
        *[c for n in big for c in _counts(n)],
        sa.Column('wait_max_ms', sa.BigInteger(), nullable=True),
        *[c for n in after for c in _counts(n)])
    op.create_index('ix_rollup_queue_tenant_bucket', 'rollup_queue', ['tenant', 'bucket_ms'])
    op.create_table(
        'rollup_queue_total',
        sa.Column('bucket_ms', sa.BigInteger(), nullable=False),
        sa.Column('tenant', sa.String(length=128), nullable=False),
        sa.Column('queue', sa.String(length=160), nullable=True),
        *[c for n in big for c in _counts(n)],
        sa.Column('wait_max_ms', sa.BigInteger(), nullable=True),
        *[c for n in after for c in _counts(n)])
    op.create_index('ix_rollup_queue_total_tenant_bucket', 'rollup_queue_total',
                    ['tenant', 'bucket_ms'])
    op.create_table(
        'rollup_calls',
        sa.Column('bucket_ms', sa.BigInteger(), nullable=False),
        sa.Column('tenant', sa.String(length=128), nullable=False),
        sa.Column('queue', sa.String(length=160), nullable=True),
        *[c for n in ("calls", "blocked", "ivr_only", "queued") for c in _counts(n)])
    op.create_index('ix_rollup_calls_tenant_bucket', 'rollup_calls', ['tenant', 'bucket_ms'])
    op.create_table(
        'rollup_changes',
        sa.Column('tenant', sa.String(length=128), nullable=False),
        sa.Column('bucket_ms', sa.BigInteger(), nullable=False))
    op.create_index('ix_rollup_changes_tenant_bucket', 'rollup_changes', ['tenant', 'bucket_ms'])
    op.create_table(
        'rollup_thresholds',
        sa.Column('tenant', sa.String(length=128), nullable=False),
        sa.Column('queue', sa.String(length=160), nullable=False),
        sa.Column('sl_ms', sa.BigInteger(), nullable=False),
        sa.Column('short_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('tenant', 'queue'))
    for table, t in (("segments", SEG_T), ("calls", CALL_T)):
        create_triggers(table, t)
    op.execute(f"INSERT INTO rollup_changes (tenant, bucket_ms) "
               f"SELECT DISTINCT tenant, ({SEG_T.format(r='segments')} / {BUCKET}) * {BUCKET} "
               f"FROM segments UNION SELECT DISTINCT tenant, (started_ms / {BUCKET}) * {BUCKET} "
               f"FROM calls")


def create_triggers(table: str, t: str) -> None:
    """After every insert and update of ``table``: mark the row's bucket (and, on an update
    that moved it, its old bucket) in rollup_changes. Also used by later revisions that
    re-create ``table``."""
    new_b = f"({t.format(r='NEW')} / {BUCKET}) * {BUCKET}"
    old_b = f"({t.format(r='OLD')} / {BUCKET}) * {BUCKET}"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
CREATE OR REPLACE FUNCTION hotline_rollup_mark_{table}() RETURNS trigger AS $$
BEGIN
  INSERT INTO rollup_changes (tenant, bucket_ms) VALUES (NEW.tenant, {new_b});
  IF TG_OP = 'UPDATE' AND (OLD.tenant <> NEW.tenant OR {old_b} <> {new_b}) THEN
    INSERT INTO rollup_changes (tenant, bucket_ms) VALUES (OLD.tenant, {old_b});
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
        op.execute(f"CREATE TRIGGER rollup_mark_{table} AFTER INSERT OR UPDATE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION hotline_rollup_mark_{table}()")
        return
    op.execute(f"""
CREATE TRIGGER rollup_mark_{table}_insert AFTER INSERT ON {table} BEGIN
  INSERT INTO rollup_changes (tenant, bucket_ms) VALUES (NEW.tenant, {new_b});
END""")
    op.execute(f"""
CREATE TRIGGER rollup_mark_{table}_update AFTER UPDATE ON {table} BEGIN
  INSERT INTO rollup_changes (tenant, bucket_ms) VALUES (NEW.tenant, {new_b});
  INSERT INTO rollup_changes (tenant, bucket_ms) SELECT OLD.tenant, {old_b}
    WHERE OLD.tenant <> NEW.tenant OR {old_b} <> {new_b};
END""")


def downgrade() -> None:
    for table in ("segments", "calls"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS rollup_mark_{table} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS hotline_rollup_mark_{table}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS rollup_mark_{table}_insert")
            op.execute(f"DROP TRIGGER IF EXISTS rollup_mark_{table}_update")
    for table in ("rollup_thresholds", "rollup_changes", "rollup_calls", "rollup_queue_total",
                  "rollup_queue"):
        op.drop_table(table)
