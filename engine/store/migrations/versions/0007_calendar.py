"""calendar: holidays and make-up working days kept by the office over the published ones

Revision ID: 0007_calendar
Revises: 0006_green_channel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_calendar'
down_revision = '0006_green_channel'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'calendar_day',
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=False),
        sa.Column('changed_by', sa.String(length=100), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('day'),
    )


def downgrade() -> None:
    op.drop_table('calendar_day')
