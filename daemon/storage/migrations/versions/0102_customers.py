"""Customer directory: per tenant, keyed by the caller's E.164 number.

Revision ID: 0102_customers
Revises: 0101_webhook_outbox
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0102_customers'
down_revision = '0101_webhook_outbox'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('vip', sa.Integer(), nullable=False),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'number')
    )


def downgrade() -> None:
    op.drop_table('customers')
