"""service team: overdue warnings sent once per level and person

Revision ID: 0008_service_team
Revises: 0006_green_channel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_service_team'
down_revision = '0006_green_channel'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'warning_sent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('level', sa.String(length=10), nullable=False),
        sa.Column('username', sa.String(length=100), nullable=False),
        sa.Column('task_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['case.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('case_id', 'subject', 'level', 'username', name='uq_warning_sent'))


def downgrade() -> None:
    op.drop_table('warning_sent')
