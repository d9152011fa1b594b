"""What people see (issue 29): labelled phone rows, a task form that names its item and
offers its own materials, accounts that are found and deactivated deliberately, absences
a leader records, names instead of codes."""

from __future__ import annotations

import re

import pytest

from engine.runtime.clock import MovableClock
from tests.conftest import START
from tests.webhelpers import text_of
from tests.workspace import logged_in, make_workspace


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path, MovableClock(START))


def test_each_inbox_cell_is_labelled_with_its_column(ws):
    ws.start()
    page = logged_in(ws.app, "agent_approval_bureau").get("/").get_data(as_text=True)
    row = page[page.index("<tr class=\"due-row"):]
    row = row[:row.index("</tr>")]
    labels = re.findall(r'data-label="([^"]*)"', row)
    assert labels == ["案件", "任务", "事项", "阶段", "环节", "期限", "已等待", "办理人"]


def test_the_inbox_names_the_phase_instead_of_its_digit(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    page = logged_in(ws.app, "agent_approval_bureau").get("/").get_data(as_text=True)
    phases = re.findall(r'data-label="阶段">(.*?)</td>', page)
    named = [text_of(p).strip() for p in phases if p]
    assert named and all(n.startswith("第1阶段（") for n in named), named


def _preparation(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    tasks = [t for t in ws.ready(case_id, "prepare_materials")]
    assert tasks
    return tasks[0]


def test_a_task_form_names_its_item_and_offers_only_its_materials(ws):
    task = _preparation(ws)
    client = logged_in(ws.app, "agent_approval_bureau")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    heading = text_of(page[page.index("<h1>"):page.index("</h1>")])
    assert task.item_name and task.item_name in heading
    checklist = page[page.index('id="f-prepared_materials"'):]
    checklist = checklist[:checklist.index("</span>")]
    offered = re.findall(r'value="([^"]+)"', checklist)
    item = ws.engine.get_case(task.case_id).data
    own = {m["code"] for m in item["materials"] if task.item_code in (m.get("items") or [])}
    assert own and set(offered) == own
    assert len(offered) < 10
