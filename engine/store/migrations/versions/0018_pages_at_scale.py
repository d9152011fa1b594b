"""pages at scale: the elements each case reached (the heatmap's GROUP BY) and an index
serving "cases where a department held a task" from the index alone

Existing cases get their element rows lazily: the heatmap of a version first indexes
the cases of that version that have none (`Engine.index_elements`), once.

Revision ID: 0018_pages_at_scale
Revises: 0015_document_numbers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018_pages_at_scale'
down_revision = '0015_document_numbers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_element',
                    sa.Column('case_id', sa.Integer(), nullable=False),
                    sa.Column('process_id', sa.String(length=200), nullable=False),
                    sa.Column('bpmn_id', sa.String(length=200), nullable=False),
                    sa.Column('process_version_id', sa.Integer(), nullable=False),
                    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ondelete='CASCADE'),
                    sa.ForeignKeyConstraint(['process_version_id'], ['process_version.id']),
                    sa.PrimaryKeyConstraint('case_id', 'process_id', 'bpmn_id'))
    op.create_index('ix_case_element_version', 'case_element',
                    ['process_version_id', 'process_id', 'bpmn_id'], unique=False)
    op.create_index('ix_human_task_department_case', 'human_task', ['department', 'case_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_human_task_department_case', table_name='human_task')
    op.drop_index('ix_case_element_version', table_name='case_element')
    op.drop_table('case_element')
