"""Webhook outbox: one row per (subscription, event), with its delivery state (SMS too).

Revision ID: 0101_webhook_outbox
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0101_webhook_outbox'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_outbox',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('subscription', sa.String(length=128), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=250), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('occurred_ms', sa.BigInteger(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_ms', sa.BigInteger(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('delivered_ms', sa.BigInteger(), nullable=True),
    sa.Column('recipient', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_outbox_due', ['status', 'next_attempt_ms'], unique=False)
        batch_op.create_index('ix_webhook_outbox_tenant_occurred', ['tenant', 'occurred_ms'], unique=False)
        batch_op.create_index('ix_webhook_outbox_recipient', ['recipient', 'created_ms'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_outbox_recipient')
        batch_op.drop_index('ix_webhook_outbox_tenant_occurred')
        batch_op.drop_index('ix_webhook_outbox_due')
    op.drop_table('webhook_outbox')
