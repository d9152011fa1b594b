"""Lists of entries (arrays of objects) and nested objects in forms rendered from JSON Schema."""

from __future__ import annotations

import json

from werkzeug.datastructures import MultiDict

from tests.conftest import ROOT
from webapp.forms import data_from_form, fields_for

MINUTES = json.loads((ROOT / "processes/forms/meeting_minutes.schema.json").read_text("utf-8"))


def test_rows_are_read_in_index_order_and_empty_rows_dropped():
    form = MultiDict([("follow_ups-3-task", "补充用地材料"), ("follow_ups-3-department", "water"),
                      ("follow_ups-0-task", "召开专题会"), ("follow_ups-0-department", "drc"),
                      ("follow_ups-1-task", ""), ("follow_ups-1-department", "")])
    data = data_from_form(MINUTES, form)
    tasks = [(row["task"], row["department"]) for row in data["follow_ups"]]
    assert tasks == [("召开专题会", "drc"), ("补充用地材料", "water")]


def test_row_errors_are_shown_at_their_cells_with_the_values_kept():
    values = {"follow_ups": [{"task": "", "department": "drc"}]}
    fields = {f.key: f for f in fields_for(MINUTES, values, {"follow_ups.0.task": "此项必填。"})}
    rows = fields["follow_ups"]
    assert rows.widget == "rows"
    cells = {c.key: c for c in rows.rows[0]}
    assert cells["task"].error == "此项必填。" and cells["department"].value == "drc"
    assert cells["task"].name == "follow_ups-0-task"
    assert {c.name.split("-")[1] for c in rows.columns} == {"__index__"}


def test_nested_objects_use_dotted_names():
    schema = {"type": "object", "properties": {"project": {"type": "object", "properties": {
        "name": {"type": "string"}, "key": {"type": "boolean"}}}}}
    form = MultiDict([("project.name", " 示范 "), ("project.key", "on")])
    assert data_from_form(schema, form) == {"project": {"name": "示范", "key": True}}
    [project] = fields_for(schema, {"project": {"name": "示范"}}, {"project.name": "太短"})
    assert project.widget == "object"
    assert [(c.name, c.value, c.error) for c in project.columns][0] == (
        "project.name", "示范", "太短")
