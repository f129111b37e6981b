"""SMS opt-out list: numbers that asked for no more SMS, per tenant.

Revision ID: 0103_sms_opt_out
Revises: 0102_customers
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0103_sms_opt_out'
down_revision = '0102_customers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sms_opt_out',
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'number')
    )


def downgrade() -> None:
    op.drop_table('sms_opt_out')
