"""Persistence: SQLAlchemy models, the database connection, schema migrations, stored files.

`models` declares every table the engine writes (process versions, cases, snapshots, the
human-task index, timers, hash-chained events, users, attachments); `db` opens SQLite or
PostgreSQL with one transaction per unit of work; `schema` runs the Alembic chain in
`migrations/`; `files` keeps uploaded files content-addressed. May import `engine.errors`
and `engine.audit.chain` (the schema migration is an operations event); nothing above it.
"""
