"""outbound campaigns: contacts, attempts, do-not-call list, run states; callback requests

Revision ID: 0104_outbound
Revises: 0103_sms_opt_out

A frozen snapshot of the campaign tables of daemon/storage/schema.py at this revision.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0104_outbound'
down_revision = '0103_sms_opt_out'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('callback_requests',
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('queue', sa.String(length=160), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('joined_ms', sa.BigInteger(), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('requested_ms', sa.BigInteger(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('agent_misses', sa.Integer(), nullable=False),
    sa.Column('next_ms', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('agent', sa.String(length=160), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('claimed_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('call_id')
    )
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.create_index('ix_callback_requests_open', ['status', 'joined_ms'], unique=False)

    op.create_table('campaign_attempts',
    sa.Column('attempt_id', sa.String(length=200), nullable=False),
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('campaign', sa.String(length=128), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('agent', sa.String(length=160), nullable=True),
    sa.Column('started_ms', sa.BigInteger(), nullable=False),
    sa.Column('answered_ms', sa.BigInteger(), nullable=True),
    sa.Column('bridged_ms', sa.BigInteger(), nullable=True),
    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
    sa.Column('result', sa.String(length=16), nullable=True),
    sa.Column('cause', sa.String(length=48), nullable=True),
    sa.Column('disposition', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('attempt_id')
    )
    with op.batch_alter_table('campaign_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_attempts_call', ['call_id'], unique=False)
        batch_op.create_index('ix_campaign_attempts_campaign_started', ['tenant', 'campaign', 'started_ms'], unique=False)
        batch_op.create_index('ix_campaign_attempts_contact', ['contact_id'], unique=False)

    op.create_table('campaign_contacts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('campaign', sa.String(length=128), nullable=False),
    sa.Column('contact_key', sa.String(length=128), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('fields', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_result', sa.String(length=16), nullable=True),
    sa.Column('next_ms', sa.BigInteger(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_ms', sa.BigInteger(), nullable=True),
    sa.Column('imported_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('campaign_contacts', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_contacts_due', ['tenant', 'campaign', 'status', 'next_ms', 'id'], unique=False)
        batch_op.create_index('ix_campaign_contacts_number', ['tenant', 'number'], unique=False)
        batch_op.create_index('ux_campaign_contacts_key', ['tenant', 'campaign', 'contact_key'], unique=True)

    op.create_table('campaign_runs',
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('campaign', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('changed_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'campaign')
    )
    op.create_table('dnc_numbers',
    sa.Column('tenant', sa.String(length=128), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('added_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'number')
    )


def downgrade() -> None:
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_requests_open')

    op.drop_table('callback_requests')
    op.drop_table('dnc_numbers')
    op.drop_table('campaign_runs')
    with op.batch_alter_table('campaign_contacts', schema=None) as batch_op:
        batch_op.drop_index('ux_campaign_contacts_key')
        batch_op.drop_index('ix_campaign_contacts_number')
        batch_op.drop_index('ix_campaign_contacts_due')

    op.drop_table('campaign_contacts')
    with op.batch_alter_table('campaign_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_attempts_contact')
        batch_op.drop_index('ix_campaign_attempts_campaign_started')
        batch_op.drop_index('ix_campaign_attempts_call')

    op.drop_table('campaign_attempts')
