"""Whole cases of the process pack, driven through the engine API by the owning agents."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from agency import service_engine
from agency.reference import SERVICE_TZ, ReferenceData, warning_limits
from engine.actors import Actor
from engine.errors import Forbidden, InvalidData, TaskNotFound
from tests.conftest import ROOT
from tests.service import KEY_PROJECT, Service, small_project

REF = ReferenceData.load(ROOT / "data")
CALENDAR = REF.calendar
EIA_DAYS = REF.items["eia_report_form"]["committed_days"]
PHASE_1 = ["eia_report_form", "land_planning_permit", "land_prereview_site", "project_filing"]
PHASE_2 = ["construction_planning_permit", "design_scheme_review"]
PHASE_3 = ["construction_permit", "drawing_review"]
PHASE_4 = ["completion_filing", "joint_acceptance", "power_connection"]


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def intake(service: Service, project: dict) -> list[str]:
    """Registration through dispatch; returns the item codes the Bureau confirmed."""
    service.start(project)
    selected = service.case().data["selected_items"]
    service.complete("select_items", by="approval_bureau", selected_items=selected)
    service.complete("review_material_list", by="housing_construction")
    service.complete("one_time_notice", by="approval_bureau")
    service.complete("dispatch", by="approval_bureau")
    if service.ready("acknowledge_notice"):  # pack versions that ask the unit to confirm
        service.complete("acknowledge_notice", by="project_unit")
    return selected


def beijing(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=SERVICE_TZ)


def test_key_project_through_four_phases_to_closing_and_return_visit(make_pack_engine, db_url,
                                                                      clock):
    service = Service(make_pack_engine(db_url), clock)
    selected = intake(service, KEY_PROJECT)
    assert sorted(selected) == sorted(PHASE_1 + PHASE_2 + PHASE_3 + PHASE_4)
    case = service.case()
    # Materials are merged: one that several items need is asked for once, naming them all.
    materials = {m["code"]: m for m in case.data["materials"]}
    assert len(materials) == len(case.data["materials"])
    assert set(materials["application_form"]["items"]) >= {"project_filing", "eia_report_form"}
    assert [p["code"] for p in case.data["policies"]] == ["manufacturing_investment_award"]

    # Dispatch starts phase 1 and, beside it, the policy notice and the environmental
    # assessment (it runs beside the phases, 并联审批).
    assert {(t.spec_name, t.department, t.item_code) for t in service.ready()} == {
        ("notify_policies", "approval_bureau", None), ("confirm_project_code", "drc", None),
        ("prepare_materials", "approval_bureau", "eia_report_form")}
    service.complete("notify_policies", by="approval_bureau")
    service.complete("redeem_policy", by="industry_it")
    service.complete("confirm_project_code", by="drc")
    # Phase 1 items run in parallel, each prepared by the Bureau's agent; the land-use
    # planning permit waits for the filing and the land pre-review (its prerequisites).
    assert {(t.item_code, t.department, t.stage, t.phase) for t in service.ready()} == {
        (code, "approval_bureau", "preparation", "1") for code in PHASE_1
        if code != "land_planning_permit"}
    # Handling goes to the department of each item, from the item catalogue.
    service.complete("prepare_materials", "eia_report_form")
    check = service.task("check_materials", "eia_report_form")
    assert (check.department, check.title, check.item_name) == (
        "ecology_env", "核对、检查、接收材料并受理", "环境影响报告表审批")
    with pytest.raises(TaskNotFound):  # another department's task reads as missing
        service.engine.complete_task(check.id, {"decision": "accept"},
                                     Actor("agent_drc", "agent", "drc"))
    service.complete("check_materials", "eia_report_form", by="ecology_env")
    track = service.task("track_approval", "eia_report_form")
    # The committed limit (catalogue data) runs from acceptance; the task is due then.
    due = CALENDAR.add_working_days(date(2026, 3, 2), EIA_DAYS)
    assert track.due_at.astimezone(SERVICE_TZ).date() == due
    service.complete("track_approval", "eia_report_form", by="ecology_env")
    service.complete("handover_results", "eia_report_form", by="approval_bureau")
    for code in ("project_filing", "land_prereview_site", "land_planning_permit"):
        service.run_item(code)
    # Each item handed over: the project unit may rate it on its page, beside the work.
    assert {(t.spec_name, t.department, t.item_code) for t in service.ready()} == {
        ("confirm_planning_conditions", "natural_resources", None)} | {
        ("rate_item", "project_unit", code) for code in PHASE_1}
    service.complete("rate_item", "eia_report_form", by="project_unit", service_rating=4,
                     rating_comment="环评很快")
    service.run_phase("confirm_planning_conditions", PHASE_2)
    # The construction permit waits for the drawing review's pass; the joint drawing review
    # is recorded on the drawing review's materials, once they are prepared.
    assert not service.ready("prepare_materials", "construction_permit")
    service.complete("prepare_materials", "drawing_review")
    service.complete("joint_drawing_review", "drawing_review", by="housing_construction")
    for spec in ("check_materials", "track_approval", "handover_results"):
        service.complete(spec, "drawing_review")
    service.complete("prepare_materials", "construction_permit")
    assert service.task("check_materials", "construction_permit").department == \
        "housing_construction"
    service.complete("check_materials", "construction_permit")
    service.complete("track_approval", "construction_permit")
    assert not service.ready("prepare_materials", "power_connection")
    service.complete("handover_results", "construction_permit")
    # Power connection starts with the construction permit (during construction).
    service.complete("prepare_materials", "power_connection")
    assert service.task("check_materials", "power_connection").department == "power_company"
    service.complete("check_materials", "power_connection")
    service.complete("track_approval", "power_connection", by="power_company")
    service.complete("handover_results", "power_connection")
    service.run_phase(None, PHASE_4[:2])

    # All items handed over; the return visit waits for its timer, the project unit may rate
    # the service and the items it has not rated yet (those lapse after 5 working days).
    assert {t.spec_name for t in service.ready()} == {"rate_service", "rate_item"}
    clock.advance(days=9)
    service.engine.fire_due_timers()
    # Meanwhile the visit planned 5 working days after the construction permit came up.
    assert {(t.spec_name, t.department) for t in service.ready()} == {
        ("rate_service", "project_unit"), ("record_milestone_visit", "approval_bureau")}
    service.complete("record_milestone_visit", by="approval_bureau", visit_date="2026-11-02",
                     visit_method="phone", project_stage="not_started", satisfaction="satisfied")
    assert [t.spec_name for t in service.ready()] == ["rate_service"]
    results = {r["code"]: r for r in service.case().data["item_results"]}
    assert set(results) == set(selected)
    assert {r["outcome"] for r in results.values()} == {"approved"}
    clock.advance(days=20)
    assert service.engine.fire_due_timers() == 0
    clock.advance(days=2)
    assert service.engine.fire_due_timers() == 1
    service.complete("record_visit", by="approval_bureau")
    service.complete("close_case", by="approval_bureau")

    case = service.case()
    assert case.status == "completed"
    events = service.events()
    assert events[0] == "case_started" and "timer_fired" in events
    assert events.count("task_completed") == len(service.steps)
    assert service.engine.verify_case(case.id).ok


def test_item_rejected_twice_with_reasons_then_accepted(service):
    intake(service, small_project())
    service.complete("confirm_project_code", by="drc")
    reasons = [["申请表未加盖公章", "营业执照已过期"], ["申请表法定代表人签字缺失"]]
    for attempt, why in enumerate(reasons, 1):
        service.complete("prepare_materials", "project_filing", by="approval_bureau")
        check = service.task("check_materials", "project_filing")
        with pytest.raises(InvalidData) as refused:  # a rejection without reasons is refused
            service.engine.complete_task(check.id, {"decision": "reject"},
                                         Actor("agent_drc", "agent", "drc"))
        assert [e.field for e in refused.value.errors] == ["rejection_reasons"]
        service.complete("check_materials", "project_filing", by="drc", decision="reject",
                         rejection_reasons=why)
        notice = service.task("notify_rejection")
        assert notice.department == "approval_bureau"
        detail = service.engine.get_task(notice.id, Actor("agent_ab", "agent", "approval_bureau"))
        assert detail.data["rejection_reasons"] == why
        assert len(detail.data["rejections"]) == attempt
        service.complete("notify_rejection", by="approval_bureau")
        # The item goes back to material preparation.
        assert [t.spec_name for t in service.ready()] == ["prepare_materials"]
    service.run_item("project_filing")
    [result] = service.case().data["item_results"]
    assert (result["outcome"], result["rejections"]) == ("approved", 2)
    checks = [s for s in service.steps if s.spec_name == "check_materials"]
    assert [s.data["decision"] for s in checks] == ["reject", "reject", "accept"]


def test_acceptance_with_deficiency_material_arrives_late(service, clock):
    intake(service, small_project(eia="book"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    supply_due = CALENDAR.add_working_days(date(2026, 3, 2), 5)
    service.complete("prepare_materials", "eia_report_book")
    service.complete("check_materials", "eia_report_book", by="ecology_env",
                     decision="deficiency", missing_materials=["project_code_proof"],
                     supply_due=supply_due.isoformat())
    supply = service.task("supply_material", "eia_report_book")
    assert supply.department == "project_unit"  # the enterprise supplies it from its page
    assert supply.due_at.astimezone(SERVICE_TZ).date() == supply_due
    assert service.task("track_approval", "eia_report_book")  # the review goes on meanwhile

    clock.set(beijing(supply_due.isoformat()) - timedelta(days=1))
    service.engine.fire_due_timers()
    assert not service.ready("remind_supply")
    clock.set(beijing(supply_due.isoformat()))
    service.engine.fire_due_timers()
    assert service.task("remind_supply").department == "approval_bureau"
    assert not service.ready("escalate_supply")
    service.complete("remind_supply", reminder_method="phone",
                     reminder_date=supply_due.isoformat())
    escalate_on = CALENDAR.add_working_days(supply_due, 2)
    clock.set(beijing(escalate_on.isoformat()))
    service.engine.fire_due_timers()
    assert service.task("escalate_supply").department == "leading_group_office"
    # Escalation takes the supply from the Bureau to the office, which decides: here it
    # gives the enterprise more time, and the Bureau records the material again.
    assert not service.ready("supply_material")
    extended = CALENDAR.add_working_days(escalate_on, 3)
    service.complete("escalate_supply", **{
        "supervision_measures": "约谈企业", "supervision_owner": "罗文虎",
        "supervision_deadline": escalate_on.isoformat(), "supply_decision": "extend",
        "new_supply_due": extended.isoformat()})
    assert service.task("supply_material").due_at.astimezone(SERVICE_TZ).date() == extended
    service.complete("supply_material", by="project_unit",
                     supplied_materials=["project_code_proof"],
                     supplied_date=escalate_on.isoformat())
    service.complete("track_approval", "eia_report_book", by="ecology_env")
    service.complete("handover_results", "eia_report_book")
    results = {r["code"]: r for r in service.case().data["item_results"]}
    assert results["eia_report_book"]["channel"] == "deficiency"
    assert results["eia_report_book"]["outcome"] == "approved"
    assert service.engine.verify_case(service.case_id).ok


def test_simulated_approval_converted_to_formal(service):
    intake(service, small_project(new_land=True))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.run_item("land_prereview_site")
    service.complete("prepare_materials", "land_planning_permit")
    service.complete("check_materials", "land_planning_permit", by="natural_resources",
                     decision="simulated", prerequisite="土地出让合同（待签订）")
    service.complete("track_approval", "land_planning_permit", approval_no="模拟〔2026〕7号")
    conversion = service.task("convert_simulated", "land_planning_permit")
    assert conversion.department == "natural_resources"
    detail = service.engine.get_task(conversion.id,
                                     Actor("agent_nr", "agent", "natural_resources"))
    assert detail.data["simulated"] is True and detail.data["approval_no"] == "模拟〔2026〕7号"
    service.complete("convert_simulated", "land_planning_permit",
                     prerequisite_result_no="中自然资出〔2026〕15号",
                     formal_approval_no="地字第640502202600031号", converted_date="2026-04-01")
    service.complete("handover_results", "land_planning_permit")
    results = {r["code"]: r for r in service.case().data["item_results"]}
    assert results["land_planning_permit"]["simulated"] is False
    assert results["land_planning_permit"]["approval_no"] == "地字第640502202600031号"
    assert results["land_planning_permit"]["channel"] == "simulated"


def test_enterprise_asks_to_stop_in_phase_two(service):
    intake(service, KEY_PROJECT)
    service.complete("notify_policies")
    service.complete("redeem_policy")
    service.run_phase("confirm_project_code", PHASE_1)
    service.complete("confirm_planning_conditions")
    service.complete("prepare_materials", "design_scheme_review")
    service.complete("check_materials", "design_scheme_review", by="natural_resources",
                     decision="terminate", termination_reason="unit_request",
                     check_note="企业调整投资计划，书面申请终止")
    # The whole service stops at once: the item whose materials the agents hold is handed
    # back, then the Bureau records the termination (R03; tests/test_rules_r03_r04.py).
    assert sorted((t.spec_name, t.item_code) for t in service.ready()) == [
        ("hand_back_materials", "design_scheme_review")]
    hand_back = service.task("hand_back_materials", "design_scheme_review")
    assert hand_back.department == "approval_bureau"
    service.complete("hand_back_materials", "design_scheme_review",
                     returned_materials=["设计方案文本", "申请表"])
    assert [t.spec_name for t in service.ready()] == ["termination_record"]
    service.complete("termination_record", by="approval_bureau")
    case = service.case()
    assert (case.status, case.end_reason) == (
        "terminated", "项目单位主动要求终止（建设工程设计方案审查）")
    assert case.data["completed_phases"] == [1]
    results = {r["code"]: r for r in case.data["item_results"]}
    assert {code for code, r in results.items() if r["outcome"] == "approved"} == set(PHASE_1)
    for code in ("design_scheme_review", "construction_planning_permit", "power_connection"):
        assert results[code]["outcome"] == "terminated"
        assert results[code]["termination_reason"] == case.end_reason
    assert not any(s.spec_name == "joint_drawing_review" for s in service.steps)
    assert service.ready() == []
    assert service.engine.verify_case(case.id).ok


def test_item_past_its_limit_raises_yellow_then_red(service, clock):
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    accepted = date(2026, 3, 2)
    # Yellow in the last fifth of the committed limit, red the working day after it.
    due, yellow_on, red_on = warning_limits(CALENDAR, REF.settings, accepted, EIA_DAYS)
    assert service.task("track_approval").due_at.astimezone(SERVICE_TZ).date() == due

    clock.set(beijing(yellow_on.isoformat()) - timedelta(hours=10))
    service.engine.fire_due_timers()
    assert not service.ready("yellow_warning")
    clock.set(beijing(yellow_on.isoformat(), 0) + timedelta(minutes=1))
    service.engine.fire_due_timers()
    yellow = service.task("yellow_warning", "eia_report_form")
    assert yellow.department == "ecology_env" and not service.ready("red_warning")
    clock.set(beijing(red_on.isoformat(), 0) + timedelta(minutes=1))
    service.engine.fire_due_timers()
    red = service.task("red_warning", "eia_report_form")
    assert red.department == "leading_group_office"
    # Weekly progress reports fell due on the way, owned by the item's department.
    reports = service.ready("progress_report")
    assert reports and {r.department for r in reports} == {"ecology_env"}
    fired = [e for e in service.engine.case_events(service.case_id) if e.type == "timer_fired"]
    assert fired and all(e.actor == "system" for e in fired)
    service.complete("yellow_warning")
    service.complete("red_warning")
    service.complete_all("progress_report")
    service.complete("track_approval", "eia_report_form")
    service.complete("handover_results", "eia_report_form")
    assert {r["outcome"] for r in service.case().data["item_results"]} == {"approved"}
    # Re-executing the events at their recorded times gives the same warnings.
    assert service.engine.verify_case(service.case_id).ok


def test_joint_meeting_raised_from_acceleration(service):
    intake(service, small_project())
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    service.complete("check_materials", "project_filing")
    service.complete("track_approval", "project_filing", by="drc", progress="problem",
                     problem="项目选址与园区规划不一致，需自然资源、住建部门共同协调")
    convene = service.task("convene_meeting")
    assert (convene.department, convene.item_code) == ("leading_group_office", "project_filing")
    service.complete("convene_meeting", meeting_topic="智能装备项目选址协调",
                     meeting_date="2026-03-05", invited=["natural_resources", "drc"],
                     meeting_issues="选址与园区规划衔接")
    opinions = service.ready("department_opinion")
    assert sorted(t.department for t in opinions) == ["drc", "natural_resources"]
    service.complete("department_opinion", by="natural_resources", department_view="可调整用地布局")
    service.complete("department_opinion", by="drc", department_view="同意调整后备案")
    service.complete("record_minutes", by="leading_group_office", minutes="会议议定调整选址",
                     decisions=["调整项目用地布局"],
                     follow_ups=[{"task": "出具调整后的规划意见", "department": "natural_resources",
                                  "due_date": "2026-03-10"}])
    follow = service.task("follow_up")
    assert follow.department == "natural_resources"
    assert follow.due_at.astimezone(SERVICE_TZ).date() == date(2026, 3, 10)
    service.complete("follow_up", follow_up_result="已出具规划意见",
                     follow_up_done_date="2026-03-09")
    # Back to tracking the approval, which now goes through.
    service.complete("track_approval", "project_filing", by="drc")
    service.complete("handover_results", "project_filing")
    meetings = [s.spec_name for s in service.steps]
    assert meetings.index("convene_meeting") < meetings.index("record_minutes")
    assert service.case().data["item_results"][0]["outcome"] == "approved"


def test_the_office_can_terminate_a_case_at_any_point_with_a_reason(service, clock):
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")  # timers are now armed
    office = Actor("office", "office", "leading_group_office")
    agent = Actor("agent_ab", "agent", "approval_bureau")
    with pytest.raises(Forbidden):
        service.engine.terminate_case(service.case_id, "企业撤回投资", agent)
    with pytest.raises(Exception, match="reason"):
        service.engine.terminate_case(service.case_id, "  ", office)
    service.engine.terminate_case(service.case_id, "企业撤回投资，书面申请终止代办", office)
    # Everything stops at once; the materials the agents hold go back first (R03).
    assert [(t.spec_name, t.item_code) for t in service.ready()] == [
        ("hand_back_materials", "eia_report_form")]
    clock.advance(days=90)
    assert service.engine.fire_due_timers() == 0  # no warning fires for a stopped case
    service.complete("hand_back_materials", "eia_report_form")
    service.complete("termination_record")
    case = service.case()
    assert (case.status, case.end_reason) == ("terminated", "企业撤回投资，书面申请终止代办")
    assert service.ready() == []
    assert "message_received" in service.events()
    assert service.engine.verify_case(service.case_id).ok


def test_history_keeps_the_reference_data_of_its_time(make_pack_engine, sqlite_url, clock,
                                                      tmp_path):
    """Holidays added to the calendar later do not change what an old case computed."""
    import json
    import shutil

    from SpiffWorkflow.util.task import TaskState

    from engine.config import Config

    service = Service(make_pack_engine(sqlite_url), clock)
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    due = service.task("track_approval").due_at
    answered = [e for e in service.engine.case_events(service.case_id) if e.data.get("calls")]
    assert answered and any(c["function"] == "warning_dates"
                            for e in answered for c in e.data["calls"])

    data = tmp_path / "later-data"
    shutil.copytree(ROOT / "data", data)
    calendar = json.loads((data / "calendar.json").read_text(encoding="utf-8"))
    calendar["holidays"] += [f"2026-03-{day:02d}" for day in range(3, 28)]
    (data / "calendar.json").write_text(json.dumps(calendar), encoding="utf-8")
    later = service_engine(Config.from_env(database_url=sqlite_url, data_dir=data,
                                   processes_dir=ROOT / "processes", instance_dir=tmp_path),
                   clock_source=clock)
    assert later.functions["warning_dates"]("2026-03-02", 30) != \
        service.engine.functions["warning_dates"]("2026-03-02", 30)
    assert later.verify_case(service.case_id).ok
    replayed = later.replay(service.case_id)
    [track] = [t for sub in replayed.subprocesses.values() for t in sub.tasks.values()
               if t.task_spec.name == "track_approval" and t.state == TaskState.READY]
    assert track.data["due_date"] == due.astimezone(SERVICE_TZ).date().isoformat()
    later.db.dispose()
