"""service team: overdue warnings sent once per level and person, agents' absences and
substitutes, training sessions with attendance

Revision ID: 0008_service_team
Revises: 0007_calendar
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_service_team'
down_revision = '0007_calendar'
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


    op.create_table(
        'agent_absence',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=100), nullable=False),
        sa.Column('substitute', sa.String(length=100), nullable=False),
        sa.Column('starts_on', sa.Date(), nullable=False),
        sa.Column('ends_on', sa.Date(), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('agent_absence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_absence_username'), ['username'],
                              unique=False)
    op.create_table(
        'training_session',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('held_on', sa.Date(), nullable=False),
        sa.Column('hours', sa.Float(), nullable=False),
        sa.Column('topics', sa.Text(), nullable=False),
        sa.Column('invited', sa.JSON(), nullable=False),
        sa.Column('attended', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('training_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_session_held_on'), ['held_on'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('training_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_session_held_on'))
    op.drop_table('training_session')
    with op.batch_alter_table('agent_absence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_absence_username'))
    op.drop_table('agent_absence')
    op.drop_table('warning_sent')
