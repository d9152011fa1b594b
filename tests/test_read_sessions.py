"""A read on PostgreSQL ends with COMMIT, so psycopg keeps the connection's prepared
statements: a ROLLBACK makes it drop them all (and send DEALLOCATE ALL with the next
statement), which cost every read-only request a round trip and the commands after it
their prepared statements."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from engine.store.db import Database
from engine.store.models import Department


@pytest.mark.postgres
def test_reads_keep_the_prepared_statements():
    from tests.conftest import _postgres_database

    for url in _postgres_database():
        db = Database(url, pool_size=1, max_overflow=0)
        try:
            with db.transaction() as s:
                s.execute(text("CREATE TABLE department (code varchar(64) PRIMARY KEY, "
                               "name varchar(200))"))
            for _ in range(8):  # psycopg prepares a statement from its 5th execution
                with db.reading() as s:
                    s.execute(select(Department.code).where(Department.code == "x")).all()
            with db.reading() as s:
                prepared = s.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
            assert prepared and prepared > 0
            with db.reading() as s:  # and the answers are those of a transaction
                assert s.execute(select(Department.code)).all() == []
        finally:
            db.dispose()


@pytest.mark.postgres
def test_objects_changed_in_a_read_are_not_written():
    from tests.conftest import _postgres_database

    for url in _postgres_database():
        db = Database(url)
        try:
            with db.transaction() as s:
                s.execute(text("CREATE TABLE department (code varchar(64) PRIMARY KEY, "
                               "name varchar(200), name_en varchar(200), leader varchar(100),"
                               " agent varchar(100), position integer)"))
                s.execute(text("INSERT INTO department VALUES ('a', 'A', '', '', '', 0)"))
            with db.reading() as s:
                s.get(Department, "a").name = "changed for display"
            with db.reading() as s:
                assert s.get(Department, "a").name == "A"
        finally:
            db.dispose()
