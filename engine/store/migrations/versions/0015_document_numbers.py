"""document numbers: a per-year counter and each document's number

Revision ID: 0015_document_numbers
Revises: 0014_worker_heartbeat
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015_document_numbers'
down_revision = '0014_worker_heartbeat'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('document_counter',
                    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('last', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('year'))
    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.drop_column('number')
    op.drop_table('document_counter')
