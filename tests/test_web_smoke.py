"""The web app serves its login page and an agent's inbox."""

from __future__ import annotations

import json
import re

import pytest

from engine import accounts
from engine.actors import Actor
from tests.conftest import FIXTURES
from tests.webhelpers import csrf_of
from webapp import create_app


@pytest.fixture
def app(make_engine, sqlite_url, tmp_path):
    engine = make_engine(sqlite_url, FIXTURES / "mini")
    with engine.db.transaction() as s:
        accounts.create_user(s, "agent_a", "password-a", "agent", department="dept_a",
                             display_name="代办员甲", now=engine.clock())
    engine.start_case("mini", {"due": None, "project": {"name": "示范项目"}},
                      Actor("office", "office", "leading_group_office"))
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


def login(client, username, password):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token})


def test_the_inbox_needs_a_login(app):
    response = app.test_client().get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_agent_sees_the_department_tasks(app):
    client = app.test_client()
    assert login(client, "agent_a", "password-a").status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "示范项目" in page and "填写" in page


def test_a_wrong_password_is_refused_clearly(app):
    response = login(app.test_client(), "agent_a", "wrong-password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.get_data(as_text=True)


def test_forms_without_csrf_token_are_refused(app):
    response = app.test_client().post("/login", data={"username": "agent_a",
                                                      "password": "password-a"})
    assert response.status_code == 400




def test_an_agent_fixes_a_wrong_value_and_completes_the_task(app, make_engine):
    engine = app.extensions["zerorun"]
    with engine.db.transaction() as s:
        accounts.create_user(s, "agent_b", "password-b", "agent", department="dept_b",
                             now=engine.clock())
    [task] = engine.list_tasks(department="dept_a")
    client = app.test_client()
    login(client, "agent_a", "password-a")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "总数" in page and 'name="total"' in page
    wrong = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": task.version, "action": "complete",
        "total": "-5", "divisor": "2"})
    assert wrong.status_code == 422
    text = wrong.get_data(as_text=True)
    assert "请修正" in text and 'value="-5"' in text and "不能小于 0" in text
    done = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": task.version, "action": "complete",
        "total": "10", "divisor": "2"}, follow_redirects=True)
    assert "已完成" in done.get_data(as_text=True)
    again = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": task.version, "action": "complete",
        "total": "10", "divisor": "2"})
    assert again.status_code == 409
    assert "该任务已由 代办员甲 于" in again.get_data(as_text=True)
    other = app.test_client()
    login(other, "agent_b", "password-b")
    assert "审核" in other.get("/").get_data(as_text=True)
    [review] = engine.list_tasks(department="dept_b")
    # agent_a's department reads the case, so it reads dept_b's task too, read-only
    # (issue 28 row 5): no button to complete it
    seen = client.get(f"/tasks/{review.id}")
    assert seen.status_code == 200 and 'value="complete"' not in seen.get_data(as_text=True)


def test_the_case_page_shows_the_diagram_states_and_timeline(app):
    engine = app.extensions["zerorun"]
    [task] = engine.list_tasks(department="dept_a")
    engine.complete_task(task.id, {"total": 4, "divisor": 2}, Actor("a", "agent", "dept_a"))
    client = app.test_client()
    login(client, "agent_a", "password-a")
    page = client.get(f"/cases/{task.case_id}").get_data(as_text=True)
    assert "示范项目" in page and "bpmn-viewer.js" in page
    data = json.loads(re.search(r'id="case-diagram-data">(.*?)</script>', page, re.S).group(1))
    assert "<bpmn:userTask" in data["diagrams"]["mini"]
    assert "fill" in data["states"]["mini"]["completed"]
    assert data["states"]["mini"]["active"] == ["review"]
    assert 'data-event="task_completed"' in page and "已完成" in page


def test_claim_and_release_from_the_inbox(app):
    engine = app.extensions["zerorun"]
    [task] = engine.list_tasks(department="dept_a")
    client = app.test_client()
    login(client, "agent_a", "password-a")
    page = client.get("/").get_data(as_text=True)
    claimed = client.post(f"/tasks/{task.id}/claim", data={
        "csrf_token": csrf_of(page), "version": task.version}, follow_redirects=True)
    assert "已认领" in claimed.get_data(as_text=True)
    assert engine.list_tasks(assignee="agent_a")[0].id == task.id
    stale = client.post(f"/tasks/{task.id}/claim", data={
        "csrf_token": csrf_of(page), "version": task.version}, follow_redirects=True)
    assert "已被他人认领、释放或保存过" in stale.get_data(as_text=True)
    fresh = engine.list_tasks(assignee="agent_a")[0]
    client.post(f"/tasks/{task.id}/release", data={
        "csrf_token": csrf_of(page), "version": fresh.version})
    assert engine.list_tasks(assignee="agent_a") == []
