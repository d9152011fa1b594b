"""messages, external jobs and webhooks: message waits of running cases, service tasks done
by workers, webhook subscriptions and their delivery outbox

Revision ID: 0011_messages_jobs
Revises: 0009_login_hardening
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_messages_jobs'
down_revision = '0009_login_hardening'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'message_wait',
        sa.Column('task_id', sa.String(36), primary_key=True),
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('case.id'), nullable=False),
        sa.Column('message', sa.String(200), primary_key=True),
        sa.Column('element', sa.String(200), nullable=False),
        sa.Column('process_id', sa.String(200), nullable=False),
        sa.Column('correlation_key', sa.String(200), nullable=True),
    )
    op.create_index('ix_message_wait_case_id', 'message_wait', ['case_id'])
    op.create_index('ix_message_wait_name', 'message_wait', ['message', 'correlation_key'])
    op.create_table(
        'external_job',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('case.id'), nullable=False),
        sa.Column('process_id', sa.String(200), nullable=False),
        sa.Column('element', sa.String(200), nullable=False),
        sa.Column('topic', sa.String(100), nullable=False),
        sa.Column('state', sa.String(20), nullable=False),
        sa.Column('retries', sa.Integer(), nullable=True),
        sa.Column('worker_id', sa.String(100), nullable=True),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_external_job_case_id', 'external_job', ['case_id'])
    op.create_index('ix_external_job_topic', 'external_job', ['topic', 'state'])
    op.create_table(
        'webhook_subscription',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('url', sa.String(500), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('secret', sa.String(100), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_by', sa.String(100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('subscription_id', sa.Integer(), sa.ForeignKey('webhook_subscription.id'),
                  nullable=False),
        sa.Column('event_type', sa.String(40), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_webhook_delivery_due', 'webhook_delivery', ['status', 'next_attempt_at'])
    op.create_index('ix_webhook_delivery_subscription', 'webhook_delivery',
                    ['subscription_id', 'id'])


def downgrade() -> None:
    op.drop_table('webhook_delivery')
    op.drop_table('webhook_subscription')
    op.drop_table('external_job')
    op.drop_table('message_wait')
