"""audit search: indexes for searching cases by agent, item and start date

Revision ID: 0003_audit
Revises: 0002_workspace
Create Date: 2026-11-25 13:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0003_audit'
down_revision = '0002_workspace'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.create_index('ix_human_task_completed_by', ['completed_by', 'case_id'], unique=False)
        batch_op.create_index('ix_human_task_item_code', ['item_code', 'case_id'], unique=False)
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.create_index('ix_case_started_at', ['started_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_index('ix_case_started_at')
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_index('ix_human_task_item_code')
        batch_op.drop_index('ix_human_task_completed_by')
