"""audit seals: signed Merkle roots over every stream's head, their leaves and sealed hashes

Revision ID: 0013_audit_seals
Revises: 0011_messages_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_audit_seals'
down_revision = '0011_messages_jobs'
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
    _protect(op.get_bind().dialect.name)


TABLES = ('audit_seal', 'audit_seal_leaf', 'audit_sealed_event')


def _protect(dialect: str) -> None:
    """Seals are append-only at the database level too, like events."""
    if dialect == "sqlite":
        for table in TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON "
                           f"{table} BEGIN SELECT RAISE(ABORT, 'audit seals are append-only'); "
                           "END")
    elif dialect == "postgresql":
        op.execute("CREATE FUNCTION zerorun_seal_append_only() RETURNS trigger AS $$ "
                   "BEGIN RAISE EXCEPTION 'audit seals are append-only'; END $$ "
                   "LANGUAGE plpgsql")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION zerorun_seal_append_only()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS zerorun_seal_append_only()")
    op.drop_table('audit_sealed_event')
    op.drop_index('ix_audit_seal_leaf_stream', table_name='audit_seal_leaf')
    op.drop_table('audit_seal_leaf')
    op.drop_table('audit_seal')
