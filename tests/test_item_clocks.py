"""Rule R12 (行政许可法 §45): time the law does not count stops an item's clock; issue 26."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from agency import clocks
from agency.reference import SERVICE_TZ, ReferenceData
from engine.actors import Actor
from engine.errors import Conflict, EngineError, Forbidden
from tests.conftest import ROOT
from tests.service import Service, small_project
from tests.test_scenarios import intake
from tests.webhelpers import csrf_of, logged_in, make_app

CALENDAR = ReferenceData.load(ROOT / "data").calendar
WATER = Actor("agent_water", "agent", "water")
ITEM = "soil_water_conservation"  # the water bureau's; 20 committed working days here


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return make_app(service.engine, sqlite_url, tmp_path)


@pytest.fixture(autouse=True)
def twenty_day_item(twenty_day_soil_water):
    """These tests take the plan at 20 committed working days (see tests/conftest.py)."""


@pytest.fixture
def on_both(make_pack_engine, db_url, clock) -> Service:
    """A service on SQLite and on PostgreSQL."""
    return Service(make_pack_engine(db_url), clock)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SERVICE_TZ)


def accepted(service: Service) -> date:
    """A project whose soil and water conservation plan is accepted today; the day."""
    intake(service, small_project(soil_water=True))
    if service.ready("confirm_project_code"):
        service.complete("confirm_project_code")
    service.complete("prepare_materials", ITEM)
    service.complete("check_materials", ITEM)
    return service.clock().astimezone(SERVICE_TZ).date()


def due_of(service: Service) -> date:
    return service.task("track_approval", ITEM).due_at.astimezone(SERVICE_TZ).date()


def test_R12_a_20_day_item_paused_5_and_10_days_is_due_after_35_and_took_20(on_both, clock):
    service = on_both
    engine = service.engine
    start = accepted(service)
    assert due_of(service) == CALENDAR.add_working_days(start, 20)
    clock.set(at(CALENDAR.add_working_days(start, 3)))
    clocks.pause(engine, service.case_id, ITEM, "correction", 5, "补正水土保持方案附图", WATER)
    assert due_of(service) == CALENDAR.add_working_days(start, 25)
    clock.set(at(CALENDAR.add_working_days(start, 10)))  # the correction is in, the clock runs
    clocks.pause(engine, service.case_id, ITEM, "expert_review", 10, "组织专家评审", WATER)
    assert due_of(service) == CALENDAR.add_working_days(start, 35)
    clock.set(at(CALENDAR.add_working_days(start, 35)))
    service.complete("track_approval", ITEM)
    [time] = [t for t in clocks.item_times(engine, {service.case_id}) if t.item_code == ITEM]
    assert (time.government_days, time.applicant_days, time.procedure_days) == (20, 5, 10)
    assert engine.verify_case(service.case_id).ok


def timers(engine, case_id: int) -> dict[str, datetime]:
    from sqlalchemy import select

    from engine.store.models import Timer
    with engine.db.reading() as s:
        return {t.spec_name: t.due_at.astimezone(SERVICE_TZ) for t in s.scalars(
            select(Timer).where(Timer.case_id == case_id))}


def all_timers(engine, case_id: int) -> list[tuple[str, date]]:
    from sqlalchemy import select

    from engine.store.models import Timer
    with engine.db.reading() as s:
        return sorted((t.spec_name, t.due_at.astimezone(SERVICE_TZ).date()) for t in s.scalars(
            select(Timer).where(Timer.case_id == case_id)))


def test_R12_a_paused_item_is_not_warned_and_its_timers_follow_the_moved_date(service, clock):
    engine = service.engine
    start = accepted(service)
    before = timers(engine, service.case_id)
    assert before["red_timer"].date() == CALENDAR.add_working_days(start, 21)
    clock.set(at(CALENDAR.add_working_days(start, 14)))
    clocks.pause(engine, service.case_id, ITEM, "hearing", 20, "申请人要求听证", WATER)
    moved = timers(engine, service.case_id)
    assert moved["red_timer"].date() == CALENDAR.add_working_days(start, 41)
    assert moved["yellow_timer"].date() == CALENDAR.add_working_days(start, 36)
    # Past the original due date and the original red moment: no warning, nothing overdue.
    clock.set(at(CALENDAR.add_working_days(start, 25)))
    engine.fire_due_timers()
    assert not service.ready("yellow_warning") and not service.ready("red_warning")
    [time] = [t for t in clocks.item_times(engine, {service.case_id}) if t.item_code == ITEM]
    assert time.paused is not None and time.paused.reason_name == "听证"
    # Resumed early: the days not used come off again; the red moment follows.
    clocks.resume(engine, service.case_id, ITEM, WATER)
    used = CALENDAR.working_days_between(CALENDAR.add_working_days(start, 14),
                                         CALENDAR.add_working_days(start, 25))
    assert used == 11
    assert due_of(service) == CALENDAR.add_working_days(start, 20 + used)
    assert timers(engine, service.case_id)["red_timer"].date() == \
        CALENDAR.add_working_days(start, 21 + used)
    clock.set(at(CALENDAR.add_working_days(start, 22 + used)))
    engine.fire_due_timers()
    assert service.ready("red_warning")
    assert engine.verify_case(service.case_id).ok


@pytest.mark.parametrize(("reason", "days", "error", "text"), [
    ("holiday_trip", 5, EngineError, "不在目录"),
    ("hearing", 21, EngineError, "最长时间（20 个工作日）"),
    ("correction", 0, EngineError, "至少 1 个工作日"),
    ("correction", "五", EngineError, "至少 1 个工作日"),
])
def test_R12_a_pause_the_law_does_not_allow_is_refused_and_stores_nothing(
        service, reason, days, error, text):
    engine = service.engine
    accepted(service)
    events = service.events()
    with pytest.raises(error) as refused:
        clocks.pause(engine, service.case_id, ITEM, reason, days, "", WATER)
    assert refused.value.status == 422 and text in refused.value.message
    assert service.events() == events


def test_R12_resume_when_not_paused_pause_twice_or_a_finished_item_are_refused(service, clock):
    engine = service.engine
    start = accepted(service)
    with pytest.raises(Conflict, match="没有暂停计时"):
        clocks.resume(engine, service.case_id, ITEM, WATER)
    with pytest.raises(Forbidden):
        clocks.pause(engine, service.case_id, ITEM, "correction", 3, "",
                     Actor("agent_drc", "agent", "drc"))
    clocks.pause(engine, service.case_id, ITEM, "correction", 3, "", WATER)
    events = service.events()
    with pytest.raises(Conflict, match="已暂停计时"):
        clocks.pause(engine, service.case_id, ITEM, "testing", 3, "", WATER)
    clock.set(at(CALENDAR.add_working_days(start, 5)))  # the pause ran out by itself
    with pytest.raises(Conflict, match="没有暂停计时"):
        clocks.resume(engine, service.case_id, ITEM, WATER)
    assert service.events() == events
    service.complete("track_approval", ITEM)
    with pytest.raises(Conflict, match="已办结"):
        clocks.pause(engine, service.case_id, ITEM, "correction", 3, "", WATER)
    assert service.events() == events + ["task_completed"]


def token_of(engine, username: str) -> str:
    from engine import accounts
    with engine.db.transaction() as s:
        return accounts.issue_token(s, username)


def test_R12_the_agent_pauses_on_the_case_page_and_every_page_shows_it_paused(
        service, app, clock):
    engine = service.engine
    start = accepted(service)
    clock.set(at(CALENDAR.add_working_days(start, 2)))
    agent = logged_in(app, "agent_water")
    page = agent.get(f"/cases/{service.case_id}").get_data(as_text=True)
    assert 'id="clocks"' in page and "计时中" in page and "专家评审" in page
    # A reason outside the catalogue: a clear 422, nothing stored.
    events = service.events()
    bad = agent.post(f"/cases/{service.case_id}/items/{ITEM}/pause", data={
        "csrf_token": csrf_of(page), "reason": "vacation", "days": "5"})
    assert bad.status_code == 422 and "不在目录中" in bad.get_data(as_text=True)
    too_long = agent.post(f"/cases/{service.case_id}/items/{ITEM}/pause", data={
        "csrf_token": csrf_of(page), "reason": "hearing", "days": "30"})
    assert too_long.status_code == 422 and "20 个工作日" in too_long.get_data(as_text=True)
    no_csrf = agent.post(f"/cases/{service.case_id}/items/{ITEM}/pause", data={
        "reason": "correction", "days": "5"})
    assert no_csrf.status_code == 400
    # Another department's leader may not pause the water bureau's item.
    other = logged_in(app, "leader_drc")
    assert other.post(f"/cases/{service.case_id}/items/{ITEM}/pause", data={
        "csrf_token": csrf_of(other.get("/").get_data(as_text=True)), "reason": "correction",
        "days": "5"}).status_code in (403, 404)
    assert service.events() == events
    done = agent.post(f"/cases/{service.case_id}/items/{ITEM}/pause", data={
        "csrf_token": csrf_of(page), "reason": "correction", "days": "5",
        "note": "已书面告知补正"}, follow_redirects=True).get_data(as_text=True)
    ends = CALENDAR.add_working_days(CALENDAR.add_working_days(start, 2), 5).isoformat()
    assert f"已暂停计时（申请人补正材料，至 {ends}）" in done and "已书面告知补正" in done
    # Past the original due date, the inbox shows it paused, not overdue.
    clock.set(at(CALENDAR.add_working_days(start, 6)))
    inbox = agent.get("/").get_data(as_text=True)
    assert "已暂停计时（申请人补正材料" in inbox
    # So does the enterprise's own page, with the moved due date.
    from agency.enterprise import EnterpriseLinks
    from tests.service import OFFICE
    token, _ = EnterpriseLinks(engine).create(service.case_id, OFFICE)
    unit = app.test_client().get(f"/p/{token}").get_data(as_text=True)
    assert f"已暂停计时（申请人补正材料，至 {ends}）" in unit
    assert CALENDAR.add_working_days(start, 25).isoformat() in unit
    # The API reports it, validated by the OpenAPI document's schema.
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token_of(engine, 'agent_water')}"}
    clocks_json = api.get(f"/api/v1/cases/{service.case_id}/clocks", headers=headers).get_json()
    [mine] = [c for c in clocks_json["clocks"] if c["item_code"] == ITEM]
    assert mine["state"] == "paused" and mine["paused"]["reason"] == "correction"
    assert mine["due_on"] == CALENDAR.add_working_days(start, 25).isoformat()
    _validate(app, "ItemClocks", clocks_json)
    # Resumed through the API: the unused days come off; resuming again is a 409.
    resumed = api.post(f"/api/v1/cases/{service.case_id}/items/{ITEM}/resume",
                       headers=headers, json={})
    assert resumed.status_code == 200, resumed.get_json()
    assert resumed.get_json()["state"] == "running"
    _validate(app, "ItemClock", resumed.get_json())
    assert resumed.get_json()["due_on"] == CALENDAR.add_working_days(start, 24).isoformat()
    again = api.post(f"/api/v1/cases/{service.case_id}/items/{ITEM}/resume", headers=headers,
                     json={})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    refused = api.post(f"/api/v1/cases/{service.case_id}/items/{ITEM}/pause", headers=headers,
                       json={"reason": "hearing", "days": 21})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "clock_error"
    moved = [e for e in engine.case_events(service.case_id) if e.type == "deadlines_moved"]
    assert [e.data["clock"]["action"] for e in moved] == ["paused", "resumed"]
    assert engine.verify_case(service.case_id).ok


def _validate(app, name: str, value) -> None:
    from openapi_schema_validator import OAS31Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    registry = Registry().with_resource("urn:doc", Resource.from_contents(
        doc, default_specification=DRAFT202012))
    OAS31Validator({"$ref": f"urn:doc#/components/schemas/{name}"},
                   registry=registry).validate(value)


def test_R12_dashboard_report_and_publicity_count_government_time(service, app, clock):
    from agency import documents, oversight, publicity
    from tests.service import OFFICE

    engine = service.engine
    start = accepted(service)
    clock.set(at(CALENDAR.add_working_days(start, 3)))
    clocks.pause(engine, service.case_id, ITEM, "correction", 5, "", WATER)
    clock.set(at(CALENDAR.add_working_days(start, 10)))
    clocks.pause(engine, service.case_id, ITEM, "expert_review", 10, "", WATER)
    office = logged_in(app, "office")
    clock.set(at(CALENDAR.add_working_days(start, 12)))
    page = office.get("/dashboard").get_data(as_text=True)
    assert 'id="government-time"' in page and 'data-clock="paused"' in page
    clock.set(at(CALENDAR.add_working_days(start, 35)))
    service.complete("track_approval", ITEM)
    service.complete("handover_results", ITEM)
    figures = oversight.figures(engine)
    [row] = [t for t in figures.clock_times if t.item_code == ITEM]
    assert (row.department, row.finished, row.government_days, row.applicant_days,
            row.procedure_days, row.average_government_days) == ("water", 1, 20, 5, 10, 20.0)
    page = office.get("/dashboard").get_data(as_text=True)
    assert f'data-item="{ITEM}" data-department="water"' in page
    csv = office.get("/dashboard.csv?table=government_time").get_data(as_text=True)
    assert "水务局" in csv and ",1,1,20,5,10,20.0" in csv
    # The department's own dashboard shows it too; another department's does not.
    assert ITEM in [t.item_code for t in oversight.figures(engine, "water").clock_times]
    assert ITEM not in [t.item_code for t in oversight.figures(engine, "drc").clock_times]
    report = documents.generate_periodic_report(engine, figures, {}, OFFICE)
    _, html, _ = documents.get_document(engine, report.id, OFFICE)
    assert "政府用时" in html
    assert "<td>市水务局</td><td>生产建设项目水土保持方案审批</td><td>1</td><td>1</td><td>20</td>" \
        in html
    summary = publicity.public_summary(engine)
    [line] = [i for i in summary.items if i.finished and "水土保持" in i.name]
    assert line.average_days == 20.0  # government time, not the 35 working days it took


def test_R12_a_warned_item_once_paused_is_paused_not_late_on_the_dashboard(
        on_both, clock):
    from agency import oversight

    service = on_both
    engine = service.engine
    start = accepted(service)
    clock.set(at(CALENDAR.add_working_days(start, 17)))
    engine.fire_due_timers()
    assert service.ready("yellow_warning", ITEM)
    late = oversight.figures(engine).overdue
    assert late["water"]["yellow"] == 1
    clocks.pause(engine, service.case_id, ITEM, "testing", 10, "送检", WATER)
    figures = oversight.figures(engine)
    assert "water" not in figures.overdue or figures.overdue["water"]["yellow"] == 0
    assert [t.item_code for t in figures.paused] == [ITEM]
    assert [t.item_code for t in oversight.figures(engine, "water").paused] == [ITEM]
    water = oversight.figures(engine, "water").overdue
    assert "water" not in water or water["water"]["yellow"] + water["water"]["red"] == 0
    tasks = service.ready(item=ITEM)
    assert set(oversight.warning_levels(engine, tasks).values()) == {"none"}
    clocks.resume(engine, service.case_id, ITEM, WATER)
    assert oversight.figures(engine).overdue["water"]["yellow"] == 1  # late again


def test_R12_pausing_one_item_leaves_the_other_items_of_the_case_alone(service, clock):
    engine = service.engine
    start = accepted(service)
    if service.ready("prepare_materials", "project_filing"):
        service.complete("prepare_materials", "project_filing")
    service.complete("check_materials", "project_filing")
    other = service.task("track_approval", "project_filing")
    before = all_timers(engine, service.case_id)
    clocks.pause(engine, service.case_id, ITEM, "expert_review", 10, "", WATER)
    assert due_of(service) == CALENDAR.add_working_days(start, 30)
    assert service.task("track_approval", "project_filing").due_at == other.due_at
    red = {t.item_code: t for t in clocks.item_times(engine, {service.case_id})}
    assert red["project_filing"].paused is None and red[ITEM].paused is not None
    after = all_timers(engine, service.case_id)
    # The filing's red moment stays; the plan's moves by the ten paused days.
    filing_red = ("red_timer", CALENDAR.add_working_days(start, 2))
    assert filing_red in before and filing_red in after
    assert ("red_timer", CALENDAR.add_working_days(start, 21)) in before
    assert ("red_timer", CALENDAR.add_working_days(start, 31)) in after
    assert engine.verify_case(service.case_id).ok
