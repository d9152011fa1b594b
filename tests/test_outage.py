"""While the database is unavailable, pages and the API answer 503 and change nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event

from engine import accounts
from engine.actors import Actor
from tests.conftest import FIXTURES
from tests.pgserver import own_postgres
from tests.test_api import Contract
from tests.webhelpers import PASSWORD, logged_in
from webapp import create_app
from webapp.openapi import document

OFFICE = Actor("office", "office", "leading_group_office")


def _app_with_a_task(engine, url, tmp_path):  # type: ignore[no-untyped-def]
    """The web app over a mini case waiting at its first task; an agent's API token."""
    with engine.db.transaction() as s:
        accounts.create_user(s, "agent_a", PASSWORD, "agent", department="dept_a",
                             display_name="agent_a", now=engine.clock())
        token = accounts.issue_token(s, "agent_a")
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": tmp_path}})
    return app, {"Authorization": f"Bearer {token}"}, task


def _unavailable(client, headers, task, reads: bool = True) -> None:  # type: ignore[no-untyped-def]
    contract = Contract(document())
    calls = [("POST", f"/api/v1/tasks/{task.id}/complete",
              {"data": {"total": 9, "divisor": 3}, "version": task.version})]
    if reads:
        calls.append(("GET", "/api/v1/tasks", None))
    for method, path, body in calls:
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "10"
        error = response.get_json()["error"]
        assert error["code"] == "service_unavailable"
        assert "briefly unavailable" in error["message"]
        assert "nothing was changed" in error["message"]
        contract.check_response(method, path, response)


@pytest.fixture
def pg_server():
    yield from own_postgres()


def test_a_postgresql_outage_answers_503_and_changes_nothing(pg_server, make_engine,
                                                              tmp_path):
    engine = make_engine(pg_server.url, FIXTURES / "mini")
    app, headers, task = _app_with_a_task(engine, pg_server.url, tmp_path)
    browser, english = logged_in(app, "agent_a"), logged_in(app, "agent_a")
    english.get("/lang/en")
    api = app.test_client()
    assert browser.get("/").status_code == 200
    pg_server.kill()
    try:
        _unavailable(api, headers, task)
        page = browser.get("/")  # Chinese by default
        assert page.status_code == 503 and page.headers["Retry-After"] == "10"
        assert "服务暂时不可用" in page.get_data(as_text=True)
        assert "未做任何更改" in page.get_data(as_text=True)
        page = english.get("/")
        text = page.get_data(as_text=True)
        assert page.status_code == 503
        assert "briefly unavailable" in text and "Nothing was changed" in text
    finally:
        pg_server.start()
    assert browser.get("/").status_code == 200
    assert [t.id for t in engine.list_tasks(case_id=task.case_id)] == [task.id]
    done = api.post(f"/api/v1/tasks/{task.id}/complete", headers=headers,
                    json={"data": {"total": 9, "divisor": 3}, "version": task.version})
    assert done.status_code == 200, done.get_data(as_text=True)
    engine.db.dispose()


def test_a_locked_sqlite_database_answers_503_and_changes_nothing(make_engine, sqlite_url,
                                                                  tmp_path):
    engine = make_engine(sqlite_url, FIXTURES / "mini")

    @event.listens_for(engine.db.engine, "connect")
    def _impatient(dbapi_conn, _record):  # give up on a lock after 0.1 s, not 30 s
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    engine.db.dispose()
    app, headers, task = _app_with_a_task(engine, sqlite_url, tmp_path)
    api = app.test_client()
    holder = create_engine(sqlite_url, isolation_level="AUTOCOMMIT")
    with holder.connect() as conn:
        conn.exec_driver_sql("BEGIN EXCLUSIVE")  # a long job holds the database (readers
        _unavailable(api, headers, task, reads=False)  # go on in WAL mode; writers cannot)
        conn.exec_driver_sql("ROLLBACK")
    holder.dispose()
    assert [t.id for t in engine.list_tasks(case_id=task.case_id)] == [task.id]
    assert [e.type for e in engine.case_events(task.case_id)] == ["case_started"]
    done = api.post(f"/api/v1/tasks/{task.id}/complete", headers=headers,
                    json={"data": {"total": 9, "divisor": 3}, "version": task.version})
    assert done.status_code == 200, done.get_data(as_text=True)
