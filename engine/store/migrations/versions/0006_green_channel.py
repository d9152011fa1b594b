"""green channel: tasks of green-channel items are marked in the task index

Revision ID: 0006_green_channel
Revises: 0005_intake
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_green_channel'
down_revision = '0005_intake'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('green_channel', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_column('green_channel')
