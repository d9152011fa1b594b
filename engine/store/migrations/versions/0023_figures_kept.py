# ruff: noqa: S608 - trigger DDL assembled from this file's own constants, no input
"""figures kept: the dashboard's finished items (one row per case and approval item handed
over, with its span) and the departments the case data gives its items, kept by the
database itself with every write of the task index and of a case's data

Also an index giving the heatmap a version's tasks per element, with their states and times,
in its order.

Both tables are what a GROUP BY over `human_task` and a walk through each case's JSON used
to give on every dashboard; triggers refresh the rows of the one case and item a write
touches, in the writing transaction, whatever command (or bulk load) wrote it. Existing
rows are filled here.

Revision ID: 0023_figures_kept
Revises: 0021_warn_moments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023_figures_kept'
down_revision = '0021_warn_moments'
branch_labels = None
depends_on = None

# The tasks whose completion hands an item over (agency.oversight.ITEM_DONE_TASKS).
DONE = "('handover_results', 'hand_back_materials')"
ENDED = f"max(CASE WHEN state = 'completed' AND spec_name IN {DONE} THEN completed_at END)"
# A finished item's row, from its tasks (none while it is not handed over).
SPANS = (f"SELECT case_id, item_code, min(created_at), {ENDED}, max(item_name) FROM human_task "
         "WHERE item_code IS NOT NULL AND state != 'cancelled' {where} "
         f"GROUP BY case_id, item_code HAVING {ENDED} IS NOT NULL")
INSERT_SPANS = "INSERT INTO item_span (case_id, item_code, started_at, ended_at, item_name) "
# Task columns a finished item's row is computed from.
SPAN_COLUMNS = "case_id, item_code, item_name, spec_name, state, created_at, completed_at"

# SQLite: each `items` entry of the case data that is an object with a text code; the last
# entry of a code wins (INSERT OR REPLACE in the array's order), as a dict built from it.
SQLITE_ITEMS = (
    "INSERT OR REPLACE INTO case_item (case_id, item_code, department) "
    "SELECT {case}, json_extract(e.value, '$.code'), "
    "CASE WHEN json_type(e.value, '$.department') = 'text' "
    "THEN json_extract(e.value, '$.department') END "
    "FROM {source} json_each({data}, '$.items') AS e "
    "WHERE e.type = 'object' AND json_type(e.value, '$.code') = 'text' ORDER BY {order} e.key")
POSTGRES_ITEMS = (
    "INSERT INTO case_item (case_id, item_code, department) "
    "SELECT DISTINCT ON ({case}, e.value->>'code') {case}, e.value->>'code', "
    "CASE WHEN json_typeof(e.value->'department') = 'string' "
    "THEN e.value->>'department' END "
    "FROM {source} json_array_elements(CASE WHEN json_typeof({data}->'items') = 'array' "
    "THEN {data}->'items' ELSE '[]'::json END) WITH ORDINALITY AS e(value, n) "
    "WHERE json_typeof(e.value) = 'object' AND json_typeof(e.value->'code') = 'string' "
    "ORDER BY {case}, e.value->>'code', e.n DESC")


def upgrade() -> None:
    op.create_table('item_span',
                    sa.Column('case_id', sa.Integer(), nullable=False),
                    sa.Column('item_code', sa.String(length=100), nullable=False),
                    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('item_name', sa.String(length=300), nullable=True),
                    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('case_id', 'item_code'))
    op.create_table('case_item',
                    sa.Column('case_id', sa.Integer(), nullable=False),
                    sa.Column('item_code', sa.Text(), nullable=False),
                    sa.Column('department', sa.Text(), nullable=True),
                    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('case_id', 'item_code'))
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
        op.execute(POSTGRES_ITEMS.format(case='"case".id', source='"case",',
                                         data='"case".data'))
    else:
        _sqlite_triggers()
        op.execute(SQLITE_ITEMS.format(case='"case".id', source='"case",', data='"case".data',
                                       order='"case".id,'))
    op.execute(INSERT_SPANS + SPANS.format(where=""))
    op.create_index('ix_human_task_element_state', 'human_task',
                    ['process_id', 'spec_name', 'state', 'case_id', 'created_at', 'completed_at'],
                    unique=False)


def _sqlite_triggers() -> None:
    def refresh(row: str) -> str:
        return (f"DELETE FROM item_span WHERE case_id = {row}.case_id "
                f"AND item_code = {row}.item_code; " + INSERT_SPANS
                + SPANS.format(where=f"AND case_id = {row}.case_id "
                               f"AND item_code = {row}.item_code") + ";")

    op.execute("CREATE TRIGGER item_span_inserted AFTER INSERT ON human_task "
               f"WHEN NEW.item_code IS NOT NULL BEGIN {refresh('NEW')} END")
    op.execute(f"CREATE TRIGGER item_span_updated AFTER UPDATE OF {SPAN_COLUMNS} ON human_task "
               "WHEN OLD.item_code IS NOT NULL OR NEW.item_code IS NOT NULL "
               f"BEGIN {refresh('OLD')} {refresh('NEW')} END")
    op.execute("CREATE TRIGGER item_span_deleted AFTER DELETE ON human_task "
               f"WHEN OLD.item_code IS NOT NULL BEGIN {refresh('OLD')} END")
    items = ("DELETE FROM case_item WHERE case_id = NEW.id; "
             + SQLITE_ITEMS.format(case="NEW.id", source="", data="NEW.data", order="") + ";")
    op.execute(f'CREATE TRIGGER case_item_inserted AFTER INSERT ON "case" BEGIN {items} END')
    # Most commands write the case's data without touching its items: nothing to do.
    op.execute(f'CREATE TRIGGER case_item_updated AFTER UPDATE OF data ON "case" '
               "WHEN json_extract(OLD.data, '$.items') IS NOT json_extract(NEW.data, '$.items') "
               f"BEGIN {items} END")


def _postgres_triggers() -> None:
    op.execute(f"""
CREATE FUNCTION item_span_refresh(the_case integer, the_item varchar) RETURNS void AS $$
BEGIN
  DELETE FROM item_span WHERE case_id = the_case AND item_code = the_item;
  {INSERT_SPANS} {SPANS.format(where="AND case_id = the_case AND item_code = the_item")};
END $$ LANGUAGE plpgsql""")
    # A write can only change an item's row if the item has one, or if the written task is a
    # completed hand-over (nothing else makes an item finished): most writes (a task raised,
    # an ordinary task done) cost one primary-key lookup.
    op.execute(f"""
CREATE FUNCTION item_span_changed() RETURNS trigger AS $$
DECLARE
  refreshed boolean := false;
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.item_code IS NOT NULL AND (
      (OLD.state = 'completed' AND OLD.spec_name IN {DONE}) OR EXISTS (
        SELECT 1 FROM item_span WHERE case_id = OLD.case_id AND item_code = OLD.item_code))
  THEN
    PERFORM item_span_refresh(OLD.case_id, OLD.item_code);
    refreshed := true;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.item_code IS NOT NULL
      AND NOT (refreshed AND OLD.case_id = NEW.case_id AND OLD.item_code = NEW.item_code)
      AND ((NEW.state = 'completed' AND NEW.spec_name IN {DONE}) OR EXISTS (
        SELECT 1 FROM item_span WHERE case_id = NEW.case_id AND item_code = NEW.item_code))
  THEN
    PERFORM item_span_refresh(NEW.case_id, NEW.item_code);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
    op.execute(f"CREATE TRIGGER item_span_changed AFTER INSERT OR DELETE OR UPDATE OF "
               f"{SPAN_COLUMNS} ON human_task FOR EACH ROW EXECUTE FUNCTION item_span_changed()")
    items = POSTGRES_ITEMS.format(case="NEW.id", source="", data="NEW.data")
    op.execute(f"""
CREATE FUNCTION case_item_changed() RETURNS trigger AS $$
BEGIN
  DELETE FROM case_item WHERE case_id = NEW.id;
  {items};
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
    op.execute('CREATE TRIGGER case_item_inserted AFTER INSERT ON "case" '
               "FOR EACH ROW EXECUTE FUNCTION case_item_changed()")
    # Most commands write the case's data without touching its items: nothing to do.
    op.execute('CREATE TRIGGER case_item_updated AFTER UPDATE OF data ON "case" FOR EACH ROW '
               "WHEN ((OLD.data -> 'items')::text IS DISTINCT FROM (NEW.data -> 'items')::text) "
               "EXECUTE FUNCTION case_item_changed()")


def downgrade() -> None:
    op.drop_index('ix_human_task_element_state', table_name='human_task')
    if op.get_bind().dialect.name == "postgresql":
        op.execute('DROP TRIGGER case_item_updated ON "case"')
        op.execute('DROP TRIGGER case_item_inserted ON "case"')
        op.execute("DROP TRIGGER item_span_changed ON human_task")
        op.execute("DROP FUNCTION case_item_changed()")
        op.execute("DROP FUNCTION item_span_changed()")
        op.execute("DROP FUNCTION item_span_refresh(integer, varchar)")
    else:
        for name in ("case_item_updated", "case_item_inserted", "item_span_deleted",
                     "item_span_updated", "item_span_inserted"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table('case_item')
    op.drop_table('item_span')
