"""Alembic environment: migrates the database the engine is configured for."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from engine.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on an open connection."""
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    from engine.store.db import make_db_engine

    engine = make_db_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        run_migrations(conn)
    engine.dispose()
else:
    run_migrations(connection)
