"""Initial schema: calls, segments, agent_intervals, qa_scores, dispositions and their indexes.

A frozen snapshot of daemon/schema.py at this revision (later changes get their own revision).

Revision ID: 0001
Revises: 
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_intervals',
    sa.Column('interval_id', sa.String(length=220), nullable=False),
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('agent', sa.String(length=160), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('value', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('started_ms', sa.BigInteger(), nullable=False),
    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
    sa.Column('duration_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('interval_id')
    )
    with op.batch_alter_table('agent_intervals', schema=None) as batch_op:
        batch_op.create_index('ix_agent_intervals_agent_started', ['agent', 'kind', 'started_ms'], unique=False)
        batch_op.create_index('ix_agent_intervals_tenant_started', ['tenant', 'started_ms'], unique=False)

    op.create_table('calls',
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('caller_name', sa.String(length=128), nullable=False),
    sa.Column('dialed', sa.String(length=64), nullable=False),
    sa.Column('started_ms', sa.BigInteger(), nullable=False),
    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('ivr_path', sa.String(length=64), nullable=False),
    sa.Column('first_queue', sa.String(length=160), nullable=True),
    sa.PrimaryKeyConstraint('call_id')
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_caller_started', ['caller', 'started_ms'], unique=False)
        batch_op.create_index('ix_calls_tenant_started', ['tenant', 'started_ms'], unique=False)

    op.create_table('dispositions',
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('agent', sa.String(length=160), nullable=True),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('entered_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('call_id')
    )
    op.create_table('qa_scores',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('agent', sa.String(length=160), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('scored_by', sa.String(length=128), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('scored_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('qa_scores', schema=None) as batch_op:
        batch_op.create_index('ix_qa_scores_agent', ['agent', 'scored_ms'], unique=False)
        batch_op.create_index('ix_qa_scores_call', ['call_id'], unique=False)

    op.create_table('segments',
    sa.Column('segment_id', sa.String(length=200), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('started_ms', sa.BigInteger(), nullable=False),
    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
    sa.Column('duration_ms', sa.BigInteger(), nullable=True),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('dialed', sa.String(length=64), nullable=False),
    sa.Column('queue', sa.String(length=160), nullable=True),
    sa.Column('agent', sa.String(length=160), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('visit_id', sa.String(length=64), nullable=True),
    sa.Column('queue_entered_ms', sa.BigInteger(), nullable=True),
    sa.Column('menu', sa.String(length=128), nullable=True),
    sa.Column('digits', sa.String(length=32), nullable=True),
    sa.Column('target', sa.String(length=160), nullable=True),
    sa.Column('transfer_type', sa.String(length=16), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('disposition', sa.String(length=32), nullable=True),
    sa.Column('recording', sa.Text(), nullable=True),
    sa.Column('hangup_by', sa.String(length=16), nullable=True),
    sa.Column('attrs', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('segment_id')
    )
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.create_index('ix_segments_agent_started', ['agent', 'kind', 'started_ms'], unique=False)
        batch_op.create_index('ix_segments_call', ['call_id'], unique=False)
        batch_op.create_index('ix_segments_queue_entered', ['queue', 'kind', 'queue_entered_ms'], unique=False)
        batch_op.create_index('ix_segments_tenant_kind_entered', ['tenant', 'kind', 'queue_entered_ms'], unique=False)
        batch_op.create_index('ix_segments_visit', ['visit_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_index('ix_segments_visit')
        batch_op.drop_index('ix_segments_tenant_kind_entered')
        batch_op.drop_index('ix_segments_queue_entered')
        batch_op.drop_index('ix_segments_call')
        batch_op.drop_index('ix_segments_agent_started')

    op.drop_table('segments')
    with op.batch_alter_table('qa_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_qa_scores_call')
        batch_op.drop_index('ix_qa_scores_agent')

    op.drop_table('qa_scores')
    op.drop_table('dispositions')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_tenant_started')
        batch_op.drop_index('ix_calls_caller_started')

    op.drop_table('calls')
    with op.batch_alter_table('agent_intervals', schema=None) as batch_op:
        batch_op.drop_index('ix_agent_intervals_tenant_started')
        batch_op.drop_index('ix_agent_intervals_agent_started')

    op.drop_table('agent_intervals')
