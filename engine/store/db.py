"""Database connection: SQLite (WAL) by default, PostgreSQL through DATABASE_URL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def make_db_engine(url: str, **kwargs: Any) -> Engine:
    """Create a SQLAlchemy engine tuned for the engine's one-transaction-per-command use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **kwargs)
        _tune_sqlite(engine)
        return engine
    if "prepare_threshold" in parsed.query:
        # Behind PgBouncer in transaction pooling, `?prepare_threshold=none` keeps psycopg
        # from preparing statements on a server connection the next transaction may not get.
        raw = str(parsed.query["prepare_threshold"]).lower()
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args["prepare_threshold"] = None if raw in ("", "none") else int(raw)
        kwargs["connect_args"] = connect_args
        url = parsed.difference_update_query(["prepare_threshold"]).render_as_string(
            hide_password=False)
    engine = create_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


IDLE_BEFORE_PING = 10.0  # seconds a pooled connection may rest before it is checked


def _ping_idle_connections(engine: Engine) -> None:
    # `pool_pre_ping` would cost a round trip on every checkout. Only a connection that
    # rested long enough to have been dropped (server restart, PgBouncer, firewall) is
    # pinged; a dead one is replaced before the command uses it.
    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["zerorun_idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("zerorun_idle_since")
        if since is None or time.monotonic() - since < IDLE_BEFORE_PING:
            return
        try:
            cursor = dbapi_conn.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_conn.rollback()
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("pooled connection was dropped") from exc


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite opens transactions lazily and only before DML; writers must take the
    # write lock up front (BEGIN IMMEDIATE) so that two commands on one case serialize
    # instead of failing with "database is locked" at commit.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("zerorun_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: Engine) -> bool:
    """Whether the database is PostgreSQL (row locks available)."""
    return engine.dialect.name == "postgresql"


class Database:
    """The engine's handle on its database: a SQLAlchemy engine and a session factory."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.url = url
        self.engine = make_db_engine(url, **kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        reads = self.engine.execution_options(zerorun_read_only=True)
        if self.postgres:
            # Reads run without a transaction: psycopg would send BEGIN and COMMIT as round
            # trips of their own, three for a one-statement read. Under READ COMMITTED each
            # statement of a transaction sees its own snapshot anyway, so the answers are the
            # same. Nothing is flushed from a read session (see `reading`), so nothing is
            # written outside a transaction.
            reads = reads.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessions = sessionmaker(reads, expire_on_commit=False,
                                          autoflush=not self.postgres)

    @property
    def postgres(self) -> bool:
        return is_postgres(self.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit if the block succeeds, roll back and re-raise otherwise."""
        with self.sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for queries only.

        On PostgreSQL a read that went well ends with COMMIT, not ROLLBACK: psycopg drops
        every prepared statement of the connection on a rollback (and sends DEALLOCATE ALL
        with the next statement), so each read would cost a round trip and the prepared
        statements of the commands that follow on that connection."""
        with self.read_sessions() as session:
            yield session
            # Objects changed in a reading session (e.g. for display) are never written:
            # such a session still ends with a rollback.
            if self.postgres and session.in_transaction() and not (
                    session.new or session.dirty or session.deleted):
                session.commit()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
