"""integration hardening: who may deliver a message, and webhook secrets kept encrypted

`message_wait.department`: the department a waiting element lets deliver its message (the
value of its `departmentExpression`, or its lane's department, when the wait began); waits
that declare none (and those recorded before) take the message only from the office,
administrators and accounts granted it. `message_grant`: an account (another system's)
allowed to deliver one message to every element that waits for it. The webhook secret
column grows to hold the secret encrypted (existing plain secrets are encrypted by the
service at start-up, with the key kept outside the database).

Revision ID: 0027_integration_hardening
Revises: 0026_whatif_runs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0027_integration_hardening'
down_revision = '0026_whatif_runs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message_wait') as batch:
        batch.add_column(sa.Column('department', sa.String(length=64), nullable=True))
    op.create_table(
        'message_grant',
        sa.Column('username', sa.String(length=100), nullable=False),
        sa.Column('message', sa.String(length=200), nullable=False),
        sa.Column('granted_by', sa.String(length=100), nullable=False),
        sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('username', 'message'))
    with op.batch_alter_table('webhook_subscription') as batch:
        batch.alter_column('secret', type_=sa.String(length=400),
                           existing_type=sa.String(length=100), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_subscription') as batch:
        batch.alter_column('secret', type_=sa.String(length=100),
                           existing_type=sa.String(length=400), existing_nullable=False)
    op.drop_table('message_grant')
    with op.batch_alter_table('message_wait') as batch:
        batch.drop_column('department')
