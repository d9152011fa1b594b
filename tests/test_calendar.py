"""Issue 12, point 7: the office keeps the working-day calendar; the dashboard warns when it
runs out; cases already computed keep their dates."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from agency import calendar
from agency.reference import SERVICE_TZ, ReferenceData, WorkingCalendar
from engine.actors import Actor
from engine.errors import Forbidden
from tests.conftest import ROOT
from tests.service import OFFICE, Service, small_project
from tests.test_scenarios import intake
from tests.webhelpers import csrf_of, logged_in, make_app


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return make_app(service.engine, sqlite_url, tmp_path)


def warn_moments(engine) -> dict[str, datetime | None]:
    from sqlalchemy import select

    from engine.store.models import HumanTask
    with engine.db.reading() as s:
        return dict(s.execute(select(HumanTask.id, HumanTask.warn_at).where(
            HumanTask.state == "ready", HumanTask.due_at.is_not(None))).all())


def expected_moments(engine, in_force: WorkingCalendar) -> dict[str, datetime | None]:
    from sqlalchemy import select

    from agency.oversight import warn_moment
    from agency.reference import reference_of
    from engine.store.models import HumanTask
    with engine.db.reading() as s:
        return {t.id: warn_moment(in_force, reference_of(engine).settings, t.created_at,
                                  t.due_at)
                for t in s.scalars(select(HumanTask).where(HumanTask.state == "ready",
                                                           HumanTask.due_at.is_not(None)))}


def test_the_office_declares_a_holiday_and_new_limits_count_it(service, app, clock):
    engine = service.engine
    before = engine.functions["working_days_after"]("2026-03-02", 5)
    # An old case computed its due date before the change.
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    old_due = service.task("track_approval").due_at
    # Each open task keeps the moment it turns yellow, by the calendar in force.
    assert warn_moments(engine) == expected_moments(engine, ReferenceData.load(ROOT / "data")
                                                    .calendar) != {}

    office = logged_in(app, "office")
    page = office.get("/calendar?year=2026").get_data(as_text=True)
    assert "2026-10-01" in page  # the published National Day holiday
    done = office.post("/calendar?year=2026", data={
        "csrf_token": csrf_of(page), "day": "2026-03-04", "kind": "holiday",
        "note": "临时调整（示例）"}, follow_redirects=True).get_data(as_text=True)
    assert "2026-03-04" in done and "临时调整（示例）" in done and "office" in done
    # New computations count the declared holiday ...
    published = ReferenceData.load(ROOT / "data").calendar
    expected = WorkingCalendar(published.holidays | {date(2026, 3, 4)}, published.workdays)
    assert engine.functions["working_days_after"]("2026-03-02", 5) == \
        expected.add_working_days(date(2026, 3, 2), 5).isoformat() != before
    # ... the old case keeps what it computed, and still verifies.
    assert service.task("track_approval").due_at == old_due
    # ... its warn moments follow the declared holiday (recomputed with the change).
    assert warn_moments(engine) == expected_moments(engine, expected)
    assert engine.verify_case(service.case_id).ok
    # The change is an audited operation in the hash-chained operations log.
    from agency.reports import ops_log
    log = ops_log(engine)
    assert log.chain_ok
    [change] = [e for e in log.events if e.type == "calendar_changed"]
    assert (change.actor, change.data["day"], change.data["before"], change.data["after"]) == (
        "office", "2026-03-04", "normal", "holiday")
    # Undone: the day is a normal working day again.
    calendar.declare(engine, date(2026, 3, 4), "normal", "", OFFICE)
    assert engine.functions["working_days_after"]("2026-03-02", 5) == before


def test_only_the_office_changes_the_calendar(service, app):
    agent = logged_in(app, "agent_water")
    assert agent.get("/calendar").status_code == 403
    with pytest.raises(Forbidden):
        calendar.declare(service.engine, date(2026, 3, 4), "holiday", "",
                         Actor("agent_water", "agent", "water"))
    office = logged_in(app, "office")
    page = office.get("/calendar").get_data(as_text=True)
    bad = office.post("/calendar", data={"csrf_token": csrf_of(page), "day": "2026-13-40",
                                          "kind": "holiday"})
    assert bad.status_code == 422
    assert not [e for e in calendar.entries(service.engine, 2026) if e.source != "published"]


def test_R13_the_dashboard_warns_60_days_before_the_calendar_ends(service, app, clock):
    office = logged_in(app, "office")
    clock.set(datetime(2026, 10, 31, 9, tzinfo=SERVICE_TZ))  # the calendar ends 2026-12-31
    assert "calendar-warning" not in office.get("/dashboard").get_data(as_text=True)
    clock.set(datetime(2026, 11, 2, 9, tzinfo=SERVICE_TZ))
    page = office.get("/dashboard").get_data(as_text=True)
    assert 'id="calendar-warning"' in page and "2026-12-31" in page
    # The office registers the next year's first holiday: the warning goes.
    calendar.declare(service.engine, date(2027, 1, 1), "holiday", "元旦", OFFICE)
    assert "calendar-warning" not in office.get("/dashboard").get_data(as_text=True)


# The 2027 holidays as an office would declare them from the State Council's notice (an
# example arrangement for the test: New Year's Day, the Spring Festival week, a make-up day).
NEW_YEAR_2027 = [date(2027, 1, 1)]
SPRING_2027 = [date(2027, 2, d) for d in range(6, 14)]
MAKE_UP_2027 = [date(2027, 2, 20)]
WATER = Actor("agent_water", "agent", "water")
ITEM = "soil_water_conservation"  # 20 committed working days


def accept_on(service: Service, clock, day: date) -> None:
    clock.set(datetime(day.year, day.month, day.day, 10, tzinfo=SERVICE_TZ))
    intake(service, small_project(soil_water=True))
    if service.ready("confirm_project_code"):
        service.complete("confirm_project_code")
    service.complete("prepare_materials", ITEM)
    service.complete("check_materials", ITEM)


def due_of(service: Service) -> date:
    return service.task("track_approval", ITEM).due_at.astimezone(SERVICE_TZ).date()


@pytest.mark.usefixtures("twenty_day_soil_water")
def test_R13_a_due_date_past_the_horizon_is_provisional_and_moves_when_the_year_is_declared(
        service, app, clock):
    from agency import clocks
    engine = service.engine
    accept_on(service, clock, date(2026, 12, 21))
    weekdays_only = ReferenceData.load(ROOT / "data").calendar
    guessed = weekdays_only.add_working_days(date(2026, 12, 21), 20)
    assert due_of(service) == guessed == date(2027, 1, 18)  # 2027-01-01 counted as a working day
    agent = logged_in(app, "agent_water")
    inbox = agent.get("/").get_data(as_text=True)
    assert "暂定" in inbox and "2027-01-18" in inbox
    case_page = agent.get(f"/cases/{service.case_id}").get_data(as_text=True)
    assert "暂定" in case_page
    from agency.enterprise import EnterpriseLinks
    token, _ = EnterpriseLinks(engine).create(service.case_id, OFFICE)
    unit_page = app.test_client().get(f"/p/{token}").get_data(as_text=True)
    assert 'data-clock="provisional"' in unit_page and "2027-01-18" in unit_page
    [time] = [t for t in clocks.item_times(engine, {service.case_id}) if t.item_code == ITEM]
    assert time.provisional
    english = logged_in(app, "agent_water")
    english.get("/lang/en")
    english_inbox = english.get("/").get_data(as_text=True)
    assert 'data-clock="provisional"' in english_inbox and ">provisional</span>" in english_inbox
    # The office declares 2027 on its calendar page: the due date skips New Year's Day,
    # with a case event.
    office = logged_in(app, "office")
    page = office.get("/calendar?year=2027").get_data(as_text=True)
    assert 'id="declare-year"' in page
    bad = office.post("/calendar/year", data={"csrf_token": csrf_of(page), "year": "2027",
                                              "holidays": "2027-13-01"})
    assert bad.status_code == 422
    done = office.post("/calendar/year", data={
        "csrf_token": csrf_of(page), "year": "2027",
        "holidays": "\n".join(d.isoformat() for d in NEW_YEAR_2027 + SPRING_2027),
        "workdays": ", ".join(d.isoformat() for d in MAKE_UP_2027),
        "note": "国务院办公厅2027年部分节假日安排（示例）"}, follow_redirects=True)
    assert done.status_code == 200 and "2027-02-08" in done.get_data(as_text=True)
    assert due_of(service) == date(2027, 1, 19)
    moved = [e for e in engine.case_events(service.case_id) if e.type == "deadlines_moved"]
    assert moved and moved[-1].data["clock"]["action"] == "recomputed"
    assert "暂定" not in agent.get("/").get_data(as_text=True)
    unit_page = app.test_client().get(f"/p/{token}").get_data(as_text=True)
    assert 'data-clock="provisional"' not in unit_page and "2027-01-19" in unit_page
    assert engine.verify_case(service.case_id).ok


def test_R13_30_working_days_from_2027_01_25_skip_the_spring_festival(service, clock):
    engine = service.engine
    calendar.declare_year(engine, 2027, NEW_YEAR_2027 + SPRING_2027, MAKE_UP_2027,
                          "国务院办公厅2027年部分节假日安排（示例）", OFFICE)
    start = date(2027, 1, 25)
    guessed = WorkingCalendar().add_working_days(start, 30)
    counted = engine.functions["working_days_after"](start.isoformat(), 30)
    # Five Spring Festival weekdays off, one make-up Saturday on: four working days later.
    assert guessed == date(2027, 3, 8) and counted == "2027-03-12"
