"""login hardening: failed logins per client address; a session epoch per account

Revision ID: 0009_login_hardening
Revises: 0008_service_team
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_login_hardening'
down_revision = '0008_service_team'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_throttle',
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('address'),
    )
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
    op.drop_table('login_throttle')
