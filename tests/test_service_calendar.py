"""The service calendar: a symposium every quarter, the DRC's key-project list every March."""

from __future__ import annotations

from datetime import date

from agency import alerts, notify, oversight
from agency.bootstrap import start_service_calendar
from engine.actors import Actor
from tests.test_oversight import beijing
from tests.webhelpers import create_accounts

USERS = [("office", "office", "leading_group_office"), ("agent_drc", "agent", "drc"),
         ("leader_drc", "leader", "drc")]


def test_the_calendar_raises_the_quarterly_symposium_and_the_drc_list_red_after_march(
        make_pack_engine, sqlite_url, clock):
    engine = make_pack_engine(sqlite_url)
    create_accounts(engine, USERS)
    clock.set(beijing(date(2026, 2, 20), 10))
    case_id = start_service_calendar(engine)
    assert case_id is not None and start_service_calendar(engine) is None  # once
    assert engine.list_tasks(case_id=case_id) == []

    clock.set(beijing(date(2026, 3, 1), 9))
    engine.fire_due_timers()
    [task] = engine.list_tasks(case_id=case_id)
    assert (task.spec_name, task.department) == ("submit_key_list", "drc")
    assert task.due_at.astimezone(oversight.SERVICE_TZ).date() == date(2026, 3, 31)

    # 1 April: the list is late (red to the DRC and the office), the quarter's symposium is due.
    clock.set(beijing(date(2026, 4, 1), 9))
    engine.fire_due_timers()
    alerts.sweep(engine)
    specs = sorted(t.spec_name for t in engine.list_tasks(case_id=case_id))
    assert specs == ["hold_symposium", "submit_key_list"]
    for username in ("office", "agent_drc", "leader_drc"):
        assert "warning_red" in [n.kind for n in notify.list_notifications(engine, username)]
    assert oversight.figures(engine).overdue_red == 1

    [task] = [t for t in engine.list_tasks(case_id=case_id) if t.spec_name == "submit_key_list"]
    engine.complete_task(task.id, {"list_year": 2026, "project_count": 42,
                                   "submitted_date": "2026-04-02"},
                         Actor("agent_drc", "agent", "drc"), task.version)
    # Next March again.
    clock.set(beijing(date(2027, 3, 1), 9))
    engine.fire_due_timers()
    assert "submit_key_list" in [t.spec_name for t in engine.list_tasks(case_id=case_id)]
    assert engine.verify_case(case_id).ok
