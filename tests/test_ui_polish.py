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
    ("auditor", "/audit/"), ("admin", "/admin/processes"), ("office", "/"),
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
    if home != "/":
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
