"""One clock: times are stored in UTC and every page shows them in the service's time (UTC+8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.runtime.clock import MovableClock
from tests.workspace import logged_in, make_workspace
from webapp.labels import local_date, local_time

# 17:54 UTC is 01:54 the next morning in Zhongwei: a page showing UTC would read "17:54".
EVENING_UTC = datetime(2026, 3, 2, 17, 54, tzinfo=UTC)


def test_the_filters_turn_utc_into_beijing_time() -> None:
    assert local_time(EVENING_UTC) == "2026-03-03 01:54"
    assert local_time(EVENING_UTC, seconds=True) == "2026-03-03 01:54:00"
    assert local_date(EVENING_UTC) == "2026-03-03"
    assert local_date(EVENING_UTC.date()) == "2026-03-02"  # a date has no zone: shown as is
    assert local_time(None) == local_date(None) == ""


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path, MovableClock(EVENING_UTC - timedelta(minutes=1)))


def test_every_page_shows_the_same_event_at_the_same_local_time(ws):
    case_id = ws.start()
    ws.clock.current = EVENING_UTC
    task = ws.complete(case_id, "select_items")
    ws.clock.current = EVENING_UTC + timedelta(minutes=5)
    office, auditor = logged_in(ws.app, "office"), logged_in(ws.app, "auditor")
    pages = {
        "case timeline": office.get(f"/cases/{case_id}"),
        "completed task": office.get(f"/tasks/{task.id}"),
        "case list": office.get("/cases?status=running"),
        "audit search": auditor.get("/audit/"),
        "audit history": auditor.get(f"/audit/cases/{case_id}"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        page = response.get_data(as_text=True)
        assert "17:5" not in page, f"{name} shows a UTC time"
        assert "2026-03-03" in page, f"{name} does not show the local day"
    assert "2026-03-03 01:54" in pages["case timeline"].get_data(as_text=True)
    assert "2026-03-03 01:54" in pages["completed task"].get_data(as_text=True)
    assert "UTC" not in pages["case timeline"].get_data(as_text=True)


def test_a_task_already_completed_says_when_in_the_services_time_on_every_surface(ws):
    """The refusal of a second completion names the time of the first in Beijing time:
    on the task page (in both languages), in the API's message and in the engine's."""
    from engine import accounts
    from engine.actors import Actor
    from engine.errors import TaskNotReady
    from tests.service import DEFAULT_DATA
    from tests.webhelpers import csrf_of

    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    client = logged_in(ws.app, f"agent_{task.department}")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    ws.clock.current = EVENING_UTC
    ws.complete(case_id, "select_items")
    ws.clock.current = EVENING_UTC + timedelta(minutes=5)
    form = {"csrf_token": csrf_of(page), "version": task.version, "action": "complete",
            "selected_items": "project_filing", "items_confirmed": "on"}
    for language, wanted in (("zh", "于 2026-03-03 01:54 办理完成"),
                             ("en", "at 2026-03-03 01:54; nothing was changed")):
        client.get(f"/lang/{language}")
        again = client.post(f"/tasks/{task.id}", data=form)
        assert again.status_code == 409
        shown = again.get_data(as_text=True)
        assert wanted in shown, language
        assert "17:54" not in shown and "UTC" not in shown
    with ws.engine.db.transaction() as s:
        token = accounts.issue_token(s, f"agent_{task.department}")
    answer = ws.app.test_client().post(
        f"/api/v1/tasks/{task.id}/complete", headers={"Authorization": f"Bearer {token}"},
        json={"data": DEFAULT_DATA["select_items"], "version": task.version})
    assert answer.status_code == 409
    message = answer.get_json()["error"]["message"]
    assert "at 2026-03-03 01:54 (UTC+08:00)" in message and "17:54" not in message
    with pytest.raises(TaskNotReady, match=r"2026-03-03 01:54 \(UTC\+08:00\)"):
        ws.engine.complete_task(task.id, {}, Actor("agent", "agent", task.department))
