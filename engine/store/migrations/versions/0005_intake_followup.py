"""intake and follow-up: task results and subjects, project imports, enterprise links

Revision ID: 0005_intake
Revises: 0004_documents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_intake'
down_revision = '0004_documents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('result', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('subject', sa.JSON(), nullable=True))

    op.create_table('project_import',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=300), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('rows', sa.JSON(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('case_ids', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('project_import', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_import_status'), ['status'], unique=False)

    op.create_table('enterprise_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('recipient', sa.String(length=200), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_digest')
    )
    with op.batch_alter_table('enterprise_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enterprise_link_case_id'), ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('enterprise_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enterprise_link_case_id'))
    op.drop_table('enterprise_link')
    with op.batch_alter_table('project_import', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_import_status'))
    op.drop_table('project_import')
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_column('subject')
        batch_op.drop_column('result')
