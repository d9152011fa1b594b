"""messages and external jobs: message waits of running cases, service tasks done by workers

Revision ID: 0011_messages_jobs
Revises: 0006_green_channel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_messages_jobs'
down_revision = '0006_green_channel'
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


def downgrade() -> None:
    op.drop_table('external_job')
    op.drop_table('message_wait')
