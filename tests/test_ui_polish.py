"""Rough edges people met: where each role lands, words that mislead, what looks clickable."""

from __future__ import annotations

import pytest

from engine.runtime.clock import MovableClock
from tests.conftest import START
from tests.webhelpers import csrf_of, text_of
from tests.workspace import PASSWORD, logged_in, make_workspace


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path, MovableClock(START))


@pytest.mark.parametrize(("username", "home"), [
    ("auditor", "/audit/"), ("admin", "/admin/processes"), ("office", "/dashboard"),
    ("agent_drc", "/"), ("leader_drc", "/")])
def test_each_role_lands_on_its_own_first_page(ws, username, home):
    client = ws.app.test_client()
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": username, "password": PASSWORD,
                                           "csrf_token": csrf_of(page)})
    assert response.status_code == 302
    assert response.headers["Location"] == home
    # Roles without an inbox who open it anyway are taken to their own area.
    inbox = client.get("/")
    if home == "/dashboard":  # the office lands on its dashboard and keeps its inbox
        assert inbox.status_code == 200
    elif home != "/":
        assert inbox.status_code == 302 and inbox.headers["Location"] == home
    else:
        assert inbox.status_code == 200


def test_releasing_a_task_reads_as_release_not_reject(ws):
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    agent = logged_in(ws.app, "agent_approval_bureau")
    agent.post(f"/tasks/{task.id}/claim", data={"csrf_token": csrf_of(
        agent.get(f"/tasks/{task.id}").get_data(as_text=True))})
    inbox = agent.get("/").get_data(as_text=True)
    form = inbox[inbox.index(f"/tasks/{task.id}/release"):]
    button = text_of(form[:form.index("</form>")])
    assert "释放" in button and "退回" not in button


def test_terminating_a_case_is_styled_as_danger_and_asks_first(ws):
    case_id = ws.start()
    page = logged_in(ws.app, "office").get(f"/cases/{case_id}").get_data(as_text=True)
    form = page[page.index('class="terminate"'):]
    form = form[:form.index("</form>")]
    assert "data-confirm=" in form and "不能撤销" in form
    assert 'class="danger"' in form


def test_the_csv_template_names_its_charset_once(ws):
    response = logged_in(ws.app, "office").get("/intake/template.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"


def test_comments_on_a_case_and_a_task_reach_the_departments_involved(ws):
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    office = logged_in(ws.app, "office")
    page = office.get(f"/cases/{case_id}").get_data(as_text=True)
    response = office.post(f"/cases/{case_id}/comments", data={
        "text": "请住建局优先核对材料清单。", "csrf_token": csrf_of(page)})
    assert response.status_code == 302 and response.headers["Location"].endswith("#comments")
    agent = logged_in(ws.app, "agent_approval_bureau")
    task_page = agent.get(f"/tasks/{task.id}").get_data(as_text=True)
    agent.post(f"/cases/{case_id}/comments", data={
        "text": "已联系企业补充选址意见。", "task_id": task.id, "csrf_token": csrf_of(task_page)})
    case_text = text_of(agent.get(f"/cases/{case_id}").get_data(as_text=True))
    assert "请住建局优先核对材料清单。" in case_text and "已联系企业补充选址意见。" in case_text
    task_text = text_of(agent.get(f"/tasks/{task.id}").get_data(as_text=True))
    assert "已联系企业补充选址意见。" in task_text and "请住建局优先" not in task_text
    # Audited: each comment is an event of the case's chain, and the case still verifies.
    comments = [e for e in ws.engine.case_events(case_id) if e.type == "comment_added"]
    assert [(e.actor, e.data["task_id"]) for e in comments] == [
        ("office", None), ("agent_approval_bureau", task.id)]
    assert ws.engine.verify_case(case_id).ok


def test_a_comment_from_outside_the_case_or_empty_is_refused_and_nothing_is_stored(ws):
    case_id = ws.start()
    water = logged_in(ws.app, "agent_water")  # water has no task in this case yet
    token = csrf_of(water.get("/").get_data(as_text=True))
    refused = water.post(f"/cases/{case_id}/comments", data={"text": "x", "csrf_token": token})
    assert refused.status_code in (403, 404)
    office = logged_in(ws.app, "office")
    token = csrf_of(office.get("/").get_data(as_text=True))
    office.post(f"/cases/{case_id}/comments", data={"text": "   ", "csrf_token": token})
    too_long = office.post(f"/cases/{case_id}/comments",
                           data={"text": "长" * 2001, "csrf_token": token},
                           follow_redirects=True)
    assert "2000" in text_of(too_long.get_data(as_text=True))
    auditor = logged_in(ws.app, "auditor")
    token = csrf_of(auditor.get("/audit/").get_data(as_text=True))
    assert auditor.post(f"/cases/{case_id}/comments",
                        data={"text": "x", "csrf_token": token}).status_code == 403
    assert not [e for e in ws.engine.case_events(case_id) if e.type == "comment_added"]
