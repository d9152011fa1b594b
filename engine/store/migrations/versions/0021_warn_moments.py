"""warn moments: each task's "nears its limit" moment kept in the task index, so pages count
overdue levels with SQL; and indexes serving the dashboard's raised warnings and handling
times (finished items grouped per item and case) from the index alone

Existing open tasks get their moments from the service (`zerorun setup` recomputes them
with the working-day calendar: `agency.oversight.store_warn_moments`).

Revision ID: 0021_warn_moments
Revises: 0018_pages_at_scale
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021_warn_moments'
down_revision = '0018_pages_at_scale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task') as batch:
        batch.add_column(sa.Column('warn_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_human_task_spec_state', 'human_task',
                    ['spec_name', 'state', 'case_id', 'item_code'], unique=False)
    op.create_index('ix_human_task_item_spans', 'human_task',
                    ['item_code', 'case_id', 'state', 'spec_name', 'created_at', 'completed_at',
                     'item_name', 'department'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_human_task_item_spans', table_name='human_task')
    op.drop_index('ix_human_task_spec_state', table_name='human_task')
    with op.batch_alter_table('human_task') as batch:
        batch.drop_column('warn_at')
