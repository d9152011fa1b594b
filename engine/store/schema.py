"""Creating and migrating the database schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session

from engine.audit import chain as audit
from engine.runtime import clock
from engine.store.db import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic configuration for the engine's migrations and a database URL."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, actor: str = "system") -> None:
    """Bring the database to the newest schema (creating it if empty); log it as an operation."""
    cfg = alembic_config(db.url)
    with db.engine.connect() as connection:
        before = sorted(MigrationContext.configure(connection).get_current_heads())
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
        after = sorted(MigrationContext.configure(connection).get_current_heads())
        if after != before:
            with Session(bind=connection) as s:
                audit.append_ops(s, audit.NewEvent("schema_migrated", actor, clock.now(), {
                    "from": ", ".join(before) or None, "to": ", ".join(after)}))
                s.flush()
        connection.commit()
