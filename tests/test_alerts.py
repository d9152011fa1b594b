"""Overdue warnings in every stage: who hears of them, once per level, and the dashboard."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from agency import alerts, notify, oversight
from agency.reference import ReferenceData
from engine.actors import Actor
from engine.cases.views import parse_due
from engine.errors import InvalidData
from tests.conftest import ROOT
from tests.service import Service, small_project
from tests.test_oversight import beijing, dashboard_counts, intake
from tests.webhelpers import create_accounts, logged_in
from webapp import create_app

REF = ReferenceData.load(ROOT / "data")
USERS = [("office", "office", "leading_group_office"),
         ("leader_drc", "leader", "drc"), ("agent_drc", "agent", "drc"),
         ("leader_ecology_env", "leader", "ecology_env"),
         ("agent_ecology_env", "agent", "ecology_env"),
         ("leader_water", "leader", "water"), ("agent_water", "agent", "water"),
         ("agent_approval_bureau", "agent", "approval_bureau"),
         ("leader_approval_bureau", "leader", "approval_bureau"),
         ("leader_housing_construction", "leader", "housing_construction")]


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    service = Service(make_pack_engine(sqlite_url), clock)
    create_accounts(service.engine, USERS)
    return service


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return create_app({"TESTING": True, "ENGINE_INSTANCE": service.engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


def at(day: date, hour: int = 10) -> datetime:
    return beijing(day, hour)


def end(day: date) -> datetime:
    """A due date as a diagram gives it (the end of that office day)."""
    due = parse_due(day.isoformat())
    assert due is not None
    return due


def test_one_rule_for_the_level_and_never_yellow_on_the_first_day():
    monday = date(2026, 3, 2)
    created = at(monday, 9)
    # A task due the day it appears, or the next working day: not 临期 on its first day.
    assert oversight.due_level(REF, created, at(monday, 18), at(monday, 17)) == "none"
    tuesday = REF.calendar.add_working_days(monday, 1)
    assert oversight.due_level(REF, created, at(tuesday), at(monday, 23)) == "none"
    assert oversight.due_level(REF, created, at(tuesday), at(tuesday, 8)) == "yellow"
    # Ten working days: yellow in the last fifth (two days), red the day after the due date.
    due = REF.calendar.add_working_days(monday, 10)
    assert oversight.due_level(REF, created, end(due), at(
        REF.calendar.add_working_days(monday, 7))) == "none"
    assert oversight.due_level(REF, created, end(due), at(
        REF.calendar.add_working_days(monday, 8))) == "yellow"
    assert oversight.due_level(REF, created, end(due), at(due, 17)) == "yellow"
    assert oversight.due_level(REF, created, end(due), at(
        REF.calendar.add_working_days(due, 1))) == "red"
    assert oversight.due_level(REF, created, None, at(due)) == "none"
    # A due moment within the day (a datetime): red as soon as it has passed, as the inbox.
    assert oversight.due_level(REF, created, at(due, 10), at(due, 11)) == "red"
    # Timezones do not move the day: 01:00 in Beijing is the previous day in UTC.
    late = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # Monday 01:00 in Beijing
    assert oversight.due_level(REF, late, at(monday, 18), at(monday, 17)) == "none"


def kinds(engine, username: str) -> list[tuple[str, str]]:
    return sorted((n.kind, n.title) for n in notify.list_notifications(engine, username))


def overdue_in_each_stage(service: Service) -> date:
    """Three items of one case, stopped in preparation, handling and acceleration."""
    intake(service, small_project(eia="form", soil_water=True))
    service.complete("confirm_project_code")
    # project_filing (DRC) stays in preparation (the Bureau's agent, 3 working days);
    # the EIA (ecology) in handling (2 working days); soil and water (water) in acceleration.
    service.complete("prepare_materials", "eia_report_form")
    service.complete("prepare_materials", "soil_water_conservation")
    service.complete("check_materials", "soil_water_conservation")
    return service.clock().astimezone(oversight.SERVICE_TZ).date()


def test_every_stage_warns_its_department_and_leader_then_the_office_once(service, app,
                                                                         clock):
    engine = service.engine
    start = overdue_in_each_stage(service)
    stages = {t.item_code: t.stage for t in service.ready() if t.item_code and t.due_at}
    assert {"preparation", "handling", "acceleration"} <= set(stages.values())
    # Nothing is near its limit on the day the tasks appear.
    assert alerts.sweep(engine) == 0
    assert notify.list_notifications(engine, "agent_approval_bureau") == []

    # Two working days on: the preparation task (3 days) is yellow, handling (2) too.
    clock.set(at(REF.calendar.add_working_days(start, 2)))
    engine.fire_due_timers()
    assert alerts.sweep(engine) > 0
    bureau = kinds(engine, "agent_approval_bureau")
    assert [k for k, _ in bureau] == ["warning_yellow"] and "企业投资项目备案" in bureau[0][1]
    assert [k for k, _ in kinds(engine, "leader_drc")] == ["warning_yellow"]
    assert [k for k, _ in kinds(engine, "agent_ecology_env")] == ["warning_yellow"]
    assert [k for k, _ in kinds(engine, "leader_ecology_env")] == ["warning_yellow"]
    assert notify.list_notifications(engine, "office") == []  # yellow is the departments'
    assert notify.list_notifications(engine, "leader_housing_construction") == []
    assert alerts.sweep(engine) == 0  # once per level

    # Long past every limit: all three red, the office told of each once, as the dashboard
    # counts them (the acceleration stage's own red warning counts as that item's).
    clock.set(at(REF.calendar.add_working_days(start, 60)))
    engine.fire_due_timers()
    alerts.sweep(engine)
    assert alerts.sweep(engine) == 0
    office = logged_in(app, "office")
    red = dashboard_counts(office)["red"]
    assert red == oversight.figures(engine).overdue_red == 3
    office_red = [n for n in notify.list_notifications(engine, "office")
                  if n.kind in ("warning_red", "red_warning", "escalate_supply")]
    assert len(office_red) == red, [(n.kind, n.title, n.task_id) for n in office_red]
    assert {n.case_id for n in office_red} == {service.case_id}
    for username in ("agent_approval_bureau", "leader_drc", "agent_ecology_env",
                     "leader_ecology_env"):
        assert [k for k, _ in kinds(engine, username)].count("warning_red") == 1, username
    # The web inbox shows the same level as the dashboard.
    page = logged_in(app, "agent_approval_bureau").get("/").get_data(as_text=True)
    assert "due-row-red" in page
    assert engine.verify_case(service.case_id).ok


def test_a_command_raises_the_warning_in_its_own_transaction(service, clock):
    engine = service.engine
    start = overdue_in_each_stage(service)
    clock.set(at(REF.calendar.add_working_days(start, 10)))
    # No sweep: completing the EIA check (a command on the case) tells the others at once.
    service.complete("check_materials", "eia_report_form")
    assert [k for k, _ in kinds(engine, "office")].count("warning_red") == 1
    assert "warning_red" in [k for k, _ in kinds(engine, "leader_drc")]
    # A command that fails tells nobody: the database is untouched.
    before = len(notify.list_notifications(engine, "office"))
    task = service.task("prepare_materials", "project_filing")
    with pytest.raises(InvalidData):
        engine.complete_task(task.id, {"forms_filled": "not a boolean"},
                             Actor("agent_approval_bureau", "agent", "approval_bureau"))
    assert len(notify.list_notifications(engine, "office")) == before
