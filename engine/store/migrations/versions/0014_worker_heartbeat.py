"""worker heartbeat: each timer worker records when its loop last ran

Revision ID: 0014_worker_heartbeat
Revises: 0013_audit_seals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014_worker_heartbeat'
down_revision = '0013_audit_seals'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'worker_heartbeat',
        sa.Column('worker', sa.String(length=200), nullable=False),
        sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('loops', sa.Integer(), nullable=False),
        sa.Column('timers_fired', sa.Integer(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('worker'),
    )


def downgrade() -> None:
    op.drop_table('worker_heartbeat')
