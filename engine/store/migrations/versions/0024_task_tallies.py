# ruff: noqa: S608 - trigger DDL assembled from this file's own constants, no input
"""task tallies: how many ready tasks the index holds per department, assignee, process,
stage, phase and item, kept by the database with every write of `human_task`

An inbox page showed counts made by counting a department's ready tasks (the page's total,
its "open" and "claimed by me" figures, the phases and items to filter by): their cost grew
with the backlog (about 40 ms a page at 10,000 open cases). The tally answers them by adding
up a few rows whatever the backlog. Keys hold '' for a NULL column, so that they can be a
primary key and an upsert's target on both databases; a key whose count falls to zero is
deleted. The overdue tasks are still counted, from an index that now holds the assignee.

SQLite (one writer at a time): row triggers update the tally as each task row is written.

PostgreSQL: the tally rows are shared by every case of a department, so transactions writing
tasks of different cases meet on them. Updated as each row is written, a transaction would
hold a tally row's lock from its first task write to its commit (serializing a department's
commands) and take the rows in the order its statements happen to touch them: a completion
that leaves a key A and raises a task under B, against one that leaves B and raises under A,
would deadlock. So statement triggers only note each statement's changes, summed per key,
as rows of the transaction in an unlogged table (undone with the statement by a rolled-back
savepoint, like the flag they set in a setting local to the transaction), and a deferred
constraint trigger applies them at commit, in one statement, in key order: the locks are
held for the commit only and always taken in the same order. Existing rows are counted here.

Revision ID: 0024_task_tallies
Revises: 0023_figures_kept
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0024_task_tallies'
down_revision = '0023_figures_kept'
branch_labels = None
depends_on = None

# The key's columns, as long as human_task's.
LENGTHS = {"department": 64, "assignee": 100, "process_id": 200, "stage": 40, "phase": 20,
           "item_code": 100, "item_name": 300}
KEY = tuple(LENGTHS)
KEY_LIST = ", ".join(KEY)
SETTING = "zerorun.task_tally"


def keyed(row: str) -> str:
    """A task row's tally key, '' for NULL columns."""
    return ", ".join(f"coalesce({row}.{column}, '')" for column in KEY)


def same_key(row: str) -> str:
    return " AND ".join(f"{column} = coalesce({row}.{column}, '')" for column in KEY)


# Every ready task counted: the tally of a database upgraded with its tasks.
COUNTED = (f"INSERT INTO task_tally ({KEY_LIST}, n) SELECT {keyed('t')}, count(*) "
           f"FROM human_task AS t WHERE t.state = 'ready' GROUP BY {keyed('t')}")


def upgrade() -> None:
    op.create_table('task_tally',
                    *(sa.Column(column, sa.String(length=length), nullable=False)
                      for column, length in LENGTHS.items()),
                    sa.Column('n', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint(*KEY))
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()
    op.execute(COUNTED)
    # The overdue figure stays a count of task rows (what is due moves with the clock, not
    # with writes): with the assignee in the index, the count reads the index alone, so it
    # costs what is overdue (0.5 ms for 3,000 overdue tasks), never the backlog.
    op.drop_index('ix_human_task_department_state', table_name='human_task')
    op.create_index('ix_human_task_department_state', 'human_task',
                    ['department', 'state', 'due_at', 'assignee'], unique=False)


def _sqlite_triggers() -> None:
    def entered(row: str) -> str:
        return (f"INSERT INTO task_tally ({KEY_LIST}, n) VALUES ({keyed(row)}, 1) "
                f"ON CONFLICT ({KEY_LIST}) DO UPDATE SET n = n + 1;")

    def left(row: str) -> str:
        return (f"UPDATE task_tally SET n = n - 1 WHERE {same_key(row)}; "
                f"DELETE FROM task_tally WHERE n = 0 AND {same_key(row)};")

    op.execute("CREATE TRIGGER task_tally_inserted AFTER INSERT ON human_task "
               f"WHEN NEW.state = 'ready' BEGIN {entered('NEW')} END")
    op.execute("CREATE TRIGGER task_tally_deleted AFTER DELETE ON human_task "
               f"WHEN OLD.state = 'ready' BEGIN {left('OLD')} END")
    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in ("state", *KEY))
    columns = ", ".join(("state", *KEY))
    op.execute(f"CREATE TRIGGER task_tally_left AFTER UPDATE OF {columns} ON human_task "
               f"WHEN OLD.state = 'ready' AND ({changed}) BEGIN {left('OLD')} END")
    op.execute(f"CREATE TRIGGER task_tally_entered AFTER UPDATE OF {columns} ON human_task "
               f"WHEN NEW.state = 'ready' AND ({changed}) BEGIN {entered('NEW')} END")


def _postgres_triggers() -> None:
    # The changes noted by the statements of transactions not yet committed: only ever
    # holds rows of running transactions (each deletes its own at commit), so it is unlogged.
    op.execute(f"CREATE UNLOGGED TABLE task_tally_noted (xid bigint NOT NULL, "
               f"{', '.join(f'{column} text NOT NULL' for column in KEY)}, d integer NOT NULL)")
    op.execute("CREATE INDEX ix_task_tally_noted_xid ON task_tally_noted (xid)")

    def ready(rows: str, d: int) -> str:
        return f"SELECT {keyed(rows)}, {d} FROM {rows} WHERE {rows}.state = 'ready'"

    # One statement's changes, summed per key, noted for the transaction (one insert, a
    # flag set: whatever the number of statements, nothing noted before is read again).
    op.execute(f"""
CREATE FUNCTION task_tally_noted() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO task_tally_noted (xid, {KEY_LIST}, d)
    SELECT txid_current(), {KEY_LIST}, sum(d) FROM ({ready('new_rows', 1)}) AS k({KEY_LIST}, d)
    GROUP BY {KEY_LIST};
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO task_tally_noted (xid, {KEY_LIST}, d)
    SELECT txid_current(), {KEY_LIST}, sum(d) FROM ({ready('old_rows', -1)}) AS k({KEY_LIST}, d)
    GROUP BY {KEY_LIST};
  ELSE
    INSERT INTO task_tally_noted (xid, {KEY_LIST}, d)
    SELECT txid_current(), {KEY_LIST}, sum(d) FROM (
      {ready('new_rows', 1)} UNION ALL {ready('old_rows', -1)}) AS k({KEY_LIST}, d)
    GROUP BY {KEY_LIST} HAVING sum(d) <> 0;
  END IF;
  IF FOUND THEN
    PERFORM set_config('{SETTING}', 'noted', true);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
    # At commit: the noted changes taken and applied in key order (one statement); keys
    # fallen to zero deleted (rows this transaction has just locked). Fired for each task
    # row that changed a tally; the first firing applies everything, the others find the
    # flag down.
    op.execute(f"""
CREATE FUNCTION task_tally_applied() RETURNS trigger AS $$
DECLARE
  applied record;
BEGIN
  IF coalesce(current_setting('{SETTING}', true), '') = '' THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('{SETTING}', '', true);
  FOR applied IN
    WITH noted AS (
      DELETE FROM task_tally_noted WHERE xid = txid_current() RETURNING {KEY_LIST}, d)
    INSERT INTO task_tally AS t ({KEY_LIST}, n)
    SELECT {KEY_LIST}, sum(d) FROM noted
    GROUP BY {KEY_LIST} HAVING sum(d) <> 0 ORDER BY {KEY_LIST}
    ON CONFLICT ({KEY_LIST}) DO UPDATE SET n = t.n + excluded.n
    RETURNING t.*
  LOOP
    IF applied.n = 0 THEN
      DELETE FROM task_tally
      WHERE {" AND ".join(f"{column} = applied.{column}" for column in KEY)};
    END IF;
  END LOOP;
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
    for event, rows in (("INSERT", "NEW TABLE AS new_rows"), ("DELETE", "OLD TABLE AS old_rows"),
                        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
        op.execute(f"CREATE TRIGGER task_tally_noted_{event.lower()} AFTER {event} ON human_task "
                   f"REFERENCING {rows} FOR EACH STATEMENT EXECUTE FUNCTION task_tally_noted()")
    changed = (f"(OLD.state, {', '.join('OLD.' + c for c in KEY)}) IS DISTINCT FROM "
               f"(NEW.state, {', '.join('NEW.' + c for c in KEY)})")
    for event, when in (("INSERT", "NEW.state = 'ready'"), ("DELETE", "OLD.state = 'ready'"),
                        ("UPDATE", f"(OLD.state = 'ready' OR NEW.state = 'ready') AND {changed}")):
        op.execute(f"CREATE CONSTRAINT TRIGGER task_tally_applied_{event.lower()} "
                   f"AFTER {event} ON human_task DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                   f"WHEN ({when}) EXECUTE FUNCTION task_tally_applied()")


def downgrade() -> None:
    op.drop_index('ix_human_task_department_state', table_name='human_task')
    op.create_index('ix_human_task_department_state', 'human_task',
                    ['department', 'state', 'due_at'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER task_tally_applied_{event} ON human_task")
            op.execute(f"DROP TRIGGER task_tally_noted_{event} ON human_task")
        op.execute("DROP FUNCTION task_tally_applied()")
        op.execute("DROP FUNCTION task_tally_noted()")
        op.execute("DROP TABLE task_tally_noted")
    else:
        for name in ("task_tally_entered", "task_tally_left", "task_tally_deleted",
                     "task_tally_inserted"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table('task_tally')
