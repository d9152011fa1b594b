"""Structured logs: one JSON line per request and per command, found by the request id a
user quotes from an error page or an API error; never form data or secrets."""

from __future__ import annotations

import json
import logging

import pytest

from engine import accounts
from engine.actors import Actor
from tests.conftest import FIXTURES
from tests.webhelpers import csrf_of
from webapp import create_app

OFFICE = Actor("office", "office", "leading_group_office")
PASSWORD = "correct-horse-battery"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def logged():
    handler = Lines()
    logger = logging.getLogger("zerorun")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture
def app(make_engine, sqlite_url, tmp_path):
    engine = make_engine(sqlite_url, FIXTURES / "mini")
    with engine.db.transaction() as s:
        accounts.create_user(s, "agent_a", PASSWORD, "agent", department="dept_a",
                             now=engine.clock())
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    app.engine = engine
    return app


def test_each_request_is_one_json_line_without_form_data(app, logged):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = csrf_of(page)
    logged.clear()
    response = client.post("/login?next=/", data={"username": "agent_a", "password": PASSWORD,
                                                  "csrf_token": token})
    assert response.status_code == 302
    [line] = logged
    assert line["kind"] == "request" and line["route"] == "/login"
    assert (line["method"], line["status"], line["path"]) == ("POST", 302, "/login")
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert isinstance(line["duration_ms"], float) and line["time"].endswith("Z")
    raw = json.dumps(logged)
    assert PASSWORD not in raw and token not in raw and "next=" not in raw
    logged.clear()
    client.get("/")
    assert logged[0]["user"] == "agent_a"


def test_the_callers_request_id_is_kept_and_a_bad_one_replaced(app, logged):
    client = app.test_client()
    response = client.get("/healthz", headers={"X-Request-ID": "proxy-7f3a.42"})
    assert response.headers["X-Request-ID"] == "proxy-7f3a.42"
    assert logged[-1]["request_id"] == "proxy-7f3a.42"
    response = client.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert len(response.headers["X-Request-ID"]) == 32
    response = client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert response.headers["X-Request-ID"] not in ("a b\tc", "")


def test_error_pages_and_api_errors_name_the_request_id(app, logged):
    client = app.test_client()
    page = client.get("/no-such-page", headers={"X-Request-ID": "user-report-1"})
    assert page.status_code == 404
    assert "user-report-1" in page.get_data(as_text=True)
    response = client.get("/api/v1/tasks", headers={"X-Request-ID": "api-report-2"})
    assert response.status_code == 401
    assert response.get_json()["error"]["request_id"] == "api-report-2"
    assert [line["status"] for line in logged if line["request_id"] == "api-report-2"] == [401]


def test_a_command_is_logged_with_the_request_user_case_and_task(app, logged):
    engine = app.engine
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    started = [line for line in logged if line.get("command") == "start_case"]
    assert started[-1]["case_id"] == case.id and started[-1]["request_id"] is None
    with engine.db.transaction() as s:
        token = accounts.issue_token(s, "agent_a")
    logged.clear()
    response = app.test_client().post(f"/api/v1/tasks/{task.id}/claim",
                                      headers={"Authorization": f"Bearer {token}",
                                               "X-Request-ID": "claim-1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    command, request = logged
    assert command == {**command, "kind": "command", "request_id": "claim-1",
                       "user": "agent_a", "command": "claim_task", "case_id": case.id,
                       "task_id": task.id, "status": "ok"}
    assert command["duration_ms"] >= 0
    assert request == {**request, "kind": "request", "request_id": "claim-1",
                       "user": "agent_a", "route": "/api/v1/tasks/<task_id>/claim",
                       "task_id": task.id, "status": 200}
    assert token not in json.dumps(logged)
