"""item pauses: the stops of an approval item's clock (行政许可法 §45, rule R12)

Revision ID: 0025_item_pauses
Revises: 0024_task_tallies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0025_item_pauses'
down_revision = '0024_task_tallies'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('item_pause',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('case_id', sa.Integer(), nullable=False),
                    sa.Column('item_code', sa.String(length=100), nullable=False),
                    sa.Column('reason', sa.String(length=40), nullable=False),
                    sa.Column('kind', sa.String(length=20), nullable=False),
                    sa.Column('started_on', sa.String(length=10), nullable=False),
                    sa.Column('planned_days', sa.Integer(), nullable=False),
                    sa.Column('ends_on', sa.String(length=10), nullable=False),
                    sa.Column('resumed_on', sa.String(length=10), nullable=True),
                    sa.Column('days', sa.Integer(), nullable=False),
                    sa.Column('note', sa.String(length=500), nullable=False),
                    sa.Column('paused_by', sa.String(length=100), nullable=False),
                    sa.Column('event_seq', sa.Integer(), nullable=False),
                    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_item_pause_case_item', 'item_pause', ['case_id', 'item_code'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_item_pause_case_item', table_name='item_pause')
    op.drop_table('item_pause')
