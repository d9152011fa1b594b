"""what-if runs: recorded cases re-executed against a draft by the worker, with each case's
outcome (identical, diverged, failed); nothing of the cases themselves is written

Revision ID: 0026_whatif_runs
Revises: 0025_item_pauses
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0026_whatif_runs'
down_revision = '0025_item_pauses'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'whatif_run',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('process_id', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('case_ids', sa.JSON(), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('requested_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('worker', sa.String(length=200), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['version_id'], ['process_version.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_whatif_run_version_id', 'whatif_run', ['version_id'])
    op.create_index('ix_whatif_run_state', 'whatif_run', ['state'])
    op.create_table(
        'whatif_result',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('migratable', sa.Boolean(), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['whatif_run.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'case_id'),
    )


def downgrade() -> None:
    op.drop_table('whatif_result')
    op.drop_index('ix_whatif_run_state', table_name='whatif_run')
    op.drop_index('ix_whatif_run_version_id', table_name='whatif_run')
    op.drop_table('whatif_run')
