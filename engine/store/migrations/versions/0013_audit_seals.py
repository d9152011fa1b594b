"""audit seals: signed Merkle roots over every stream's head, their leaves and sealed hashes

Revision ID: 0013_audit_seals
Revises: 0006_green_channel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_audit_seals'
down_revision = '0006_green_channel'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_seal',
        sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('root', sa.String(length=64), nullable=False),
        sa.Column('tree_size', sa.Integer(), nullable=False),
        sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('prev_root', sa.String(length=64), nullable=False),
        sa.Column('prev_seal', sa.String(length=64), nullable=False),
        sa.Column('public_key', sa.String(length=64), nullable=False),
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint('number'),
    )
    op.create_table(
        'audit_seal_leaf',
        sa.Column('seal_number', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('stream', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('events_root', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['seal_number'], ['audit_seal.number']),
        sa.PrimaryKeyConstraint('seal_number', 'position'),
    )
    op.create_index('ix_audit_seal_leaf_stream', 'audit_seal_leaf', ['stream', 'seal_number'])
    op.create_table(
        'audit_sealed_event',
        sa.Column('stream', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('seal_number', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['seal_number'], ['audit_seal.number']),
        sa.PrimaryKeyConstraint('stream', 'seq'),
    )


def downgrade() -> None:
    op.drop_table('audit_sealed_event')
    op.drop_index('ix_audit_seal_leaf_stream', table_name='audit_seal_leaf')
    op.drop_table('audit_seal_leaf')
    op.drop_table('audit_seal')
