"""Rules R03 (termination stops the whole service), R04 (a refusal does not end it by itself)
and R09's termination part (a terminated case is never counted as 办结), each driven as the
office and the departments would drive a whole case (DOMAIN.md, rules at its end)."""

from __future__ import annotations

import re

import pytest

from agency import documents, oversight, publicity
from engine.actors import Actor
from engine.errors import Conflict, InvalidData
from tests.service import KEY_PROJECT, OFFICE, Service, small_project
from tests.test_scenarios import PHASE_1, intake
from tests.webhelpers import create_accounts, logged_in
from webapp import create_app

BUREAU = "approval_bureau"
STOP_BY_UNIT = "项目单位主动要求终止（建设工程设计方案审查）"
REFUSAL = {"progress": "not_approved", "refusal_reasons": ["选址位于生态保护红线内"],
           "review_body": "中卫市人民政府", "litigation_court": "沙坡头区人民法院"}


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def ready(service: Service) -> list[tuple[str, str | None]]:
    return sorted((t.spec_name, t.item_code) for t in service.ready())


def results(service: Service) -> dict[str, dict]:
    return {r["code"]: r for r in service.case().data["item_results"]}


def hand_over(service: Service, item: str) -> dict:
    """Run the item to its handover; what the Bureau's agent sees on the handover form."""
    for spec in ("prepare_materials", "check_materials", "track_approval"):
        service.complete(spec, item)
    task = service.task("handover_results", item)
    data = service.engine.get_task(task.id, Actor("agent_ab", "agent", BUREAU)).data
    service.complete("handover_results", item)
    return data


def phase_one_with_eia_accepted(service: Service) -> None:
    """The key project's phase 1 done and handed over, except the EIA, which runs beside the
    phases (due before construction) and is accepted: its weekly report, yellow and red
    warning timers run."""
    intake(service, KEY_PROJECT)
    service.complete("notify_policies")
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    service.run_phase(None, [code for code in PHASE_1 if code != "eia_report_form"])
    assert service.ready("track_approval", "eia_report_form")


def issued_html(service: Service, choice: documents.Choice) -> str:
    """The document as the office issues it (stored, with its number)."""
    doc = documents.generate(service.engine, service.case_id, choice.kind, choice.source,
                             OFFICE)
    return documents.get_document(service.engine, doc.id, OFFICE)[1]


def no_more_work(service: Service, clock) -> None:
    """Months go by: no timer fires, no report or warning appears for the stopped service."""
    before = ready(service)
    clock.advance(days=120)
    assert service.engine.fire_due_timers() == 0
    assert ready(service) == before
    assert not {spec for spec, _ in before} & {"progress_report", "yellow_warning",
                                                "red_warning", "track_approval"}


# R03 ----------------------------------------------------------------------------------


def test_R03_unit_stops_in_phase_two_while_the_eia_runs_beside_the_phases(service, clock):
    phase_one_with_eia_accepted(service)
    service.complete("confirm_planning_conditions")
    service.complete("prepare_materials", "design_scheme_review")
    service.complete("check_materials", "design_scheme_review", by="natural_resources",
                     decision="terminate", termination_reason="unit_request",
                     check_note="企业调整投资计划，书面申请终止")
    # Everything of the case stops at once (the EIA's tracking, the planning permit waiting
    # for the design review, the ratings and the policy redemption); the two items whose
    # materials the agents hold and did not hand over get a hand-back task each.
    assert ready(service) == [("hand_back_materials", "design_scheme_review"),
                              ("hand_back_materials", "eia_report_form")]
    assert {t.department for t in service.ready()} == {BUREAU}
    no_more_work(service, clock)
    assert service.case().data["termination_reason"] == STOP_BY_UNIT
    service.complete("hand_back_materials", "eia_report_form",
                     returned_materials=["环境影响报告表", "申请表"])
    service.complete("hand_back_materials", "design_scheme_review",
                     returned_materials=["设计方案文本"])
    assert ready(service) == [("termination_record", None)]
    service.complete("termination_record")
    case = service.case()
    assert (case.status, case.end_reason) == ("terminated", STOP_BY_UNIT)
    assert case.data["completed_phases"] == [1]
    outcomes = {code: r["outcome"] for code, r in results(service).items()}
    assert {c for c, o in outcomes.items() if o == "approved"} == set(PHASE_1) - {
        "eia_report_form"}
    assert outcomes["eia_report_form"] == outcomes["construction_permit"] == "terminated"
    assert {r["termination_reason"] for r in results(service).values()
            if r["outcome"] == "terminated"} == {STOP_BY_UNIT}
    # The termination record and both hand-backs can be issued, with the unit's reason.
    issued = [c for c in documents.choices(service.engine, service.case_id)
              if c.kind == "termination"]
    assert len(issued) == 3
    assert STOP_BY_UNIT in issued_html(service, issued[-1])
    assert service.engine.verify_case(service.case_id).ok


@pytest.mark.parametrize("moment", ["before_the_timers", "after_the_warnings"])
def test_R03_office_ends_the_service_before_or_after_a_timer(service, clock, moment):
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    if moment == "after_the_warnings":
        clock.advance(days=60)
        service.engine.fire_due_timers()
        assert {"yellow_warning", "red_warning", "progress_report"} <= {
            spec for spec, _ in ready(service)}
    with pytest.raises(Exception, match="reason"):
        service.engine.terminate_case(service.case_id, " ", OFFICE)
    service.engine.terminate_case(service.case_id, "企业撤回投资，书面申请终止代办", OFFICE)
    # The warnings and reports on the stopped project are gone with the tracking; the EIA's
    # materials go back. The project filing was handed over already: nothing to return.
    assert ready(service) == [("hand_back_materials", "eia_report_form")]
    no_more_work(service, clock)
    # A second termination finds the service already ending: the office's reason stays.
    with pytest.raises(Conflict):
        service.engine.terminate_case(service.case_id, "另一个原因", OFFICE)
    service.complete("hand_back_materials", "eia_report_form")
    service.complete("termination_record")
    case = service.case()
    assert (case.status, case.end_reason) == ("terminated", "企业撤回投资，书面申请终止代办")
    assert {code: r["outcome"] for code, r in results(service).items()} == {
        "project_filing": "approved", "eia_report_form": "terminated"}
    assert service.engine.verify_case(service.case_id).ok


def test_R03_no_branch_arriving_later_changes_the_reason(service, clock):
    phase_one_with_eia_accepted(service)
    # The EIA's department finds the project in conflict with the law while tracking it.
    service.complete("track_approval", "eia_report_form", progress="terminated",
                     termination_reason="law_conflict", progress_note="选址与生态红线冲突")
    reason = "与现行法律、法规、政策相冲突（环境影响报告表审批）"
    assert service.case().data["termination_reason"] == reason
    # Phase 2 had not started its items yet; only the EIA's materials are held.
    assert ready(service) == [("hand_back_materials", "eia_report_form")]
    # Later arrivals change nothing: the office's termination, the approval system's result.
    with pytest.raises(Conflict):
        service.engine.terminate_case(service.case_id, "办公室终止", OFFICE)
    with pytest.raises(Exception, match="waits for message"):
        service.engine.correlate_message(
            "item_approval_result", {"case_id": service.case_id, "key": "eia_report_form"},
            {"approved": True, "certificate_no": "卫环审〔2026〕9号",
             "approved_date": "2026-05-01"}, Actor("system", "admin", None))
    service.complete("hand_back_materials", "eia_report_form")
    service.complete("termination_record")
    assert (service.case().status, service.case().end_reason) == ("terminated", reason)
    assert service.engine.verify_case(service.case_id).ok


def test_R03_office_ends_the_service_before_dispatch(service):
    service.start(small_project())
    service.complete("select_items", selected_items=service.case().data["selected_items"])
    # Nothing was handed to the agents yet: the case ends at once with the office's reason.
    case = service.engine.terminate_case(service.case_id, "项目不再落地中卫", OFFICE)
    assert (case.status, case.end_reason) == ("terminated", "项目不再落地中卫")
    assert service.ready() == []
    assert service.engine.verify_case(service.case_id).ok


# R04 ----------------------------------------------------------------------------------


def design_review_refused(service: Service) -> None:
    """Phase 1 done; phase 2's design scheme review refused (不予许可) while the planning
    permit waits for it."""
    phase_one_with_eia_accepted(service)
    service.complete("confirm_planning_conditions")
    service.complete("prepare_materials", "design_scheme_review")
    service.complete("check_materials", "design_scheme_review")
    assert not service.ready("prepare_materials", "construction_planning_permit")
    service.complete("track_approval", "design_scheme_review", **REFUSAL)


def test_R04_a_refusal_needs_written_reasons_and_names_the_remedies(service):
    phase_one_with_eia_accepted(service)
    track = service.task("track_approval", "eia_report_form")
    agent = Actor("agent_ecology_env", "agent", "ecology_env")
    for missing in ("refusal_reasons", "review_body", "litigation_court"):
        submitted = {k: v for k, v in REFUSAL.items() if k != missing}
        with pytest.raises(InvalidData) as refused:
            service.engine.complete_task(track.id, submitted, agent)
        assert [e.field for e in refused.value.errors] == [missing]
    with pytest.raises(InvalidData):
        service.engine.complete_task(track.id, {**REFUSAL, "refusal_reasons": []}, agent)
    assert service.ready("track_approval", "eia_report_form")  # nothing was stored
    service.complete("track_approval", "eia_report_form", **REFUSAL)
    # The refusal notice carries the reasons and the remedies (行政许可法 §38).
    [notice] = [c for c in documents.choices(service.engine, service.case_id)
                if c.kind == "refusal"]
    html = issued_html(service, notice)
    for text in ("选址位于生态保护红线内", "行政复议", "行政诉讼", "中卫市人民政府",
                 "沙坡头区人民法院", "第三十八条"):
        assert text in html
    # The service goes on: the Bureau decides with the unit; nothing ended.
    assert service.case().status == "running"
    decision = service.task("refusal_decision", "eia_report_form")
    assert decision.department == BUREAU
    assert service.ready("confirm_planning_conditions")


def test_R04_a_non_acceptance_needs_reasons_and_returns_to_preparation(service):
    intake(service, small_project())
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    check = service.task("check_materials", "project_filing")
    with pytest.raises(InvalidData) as refused:
        service.engine.complete_task(check.id, {"decision": "reject"},
                                     Actor("agent_drc", "agent", "drc"))
    assert [e.field for e in refused.value.errors] == ["rejection_reasons"]
    service.complete("check_materials", "project_filing", decision="reject",
                     rejection_reasons=["缺少项目单位营业执照"])
    service.complete("notify_rejection", "project_filing")
    assert ready(service) == [("prepare_materials", "project_filing")]
    assert service.case().status == "running"


@pytest.mark.parametrize("action", ["reapply", "change_project"])
def test_R04_refused_design_review_is_applied_for_again_and_approved(service, action):
    design_review_refused(service)
    # The planning permit that needs the design review waits for the Bureau's decision.
    assert service.case().status == "running"
    assert not service.ready("prepare_materials", "construction_planning_permit")
    assert "design_scheme_review" not in results(service)
    extra = {"rectification": "调整建筑退线"} if action == "reapply" else {
        "project_change": "研发楼移至地块东侧"}
    service.complete("refusal_decision", "design_scheme_review", refusal_action=action,
                     decision_note="2026-04-02 电话商定，企业同意", **extra)
    # A new round of the item: preparation again, then handling and tracking.
    assert service.ready("prepare_materials", "design_scheme_review")
    result = hand_over(service, "design_scheme_review")
    assert (result["outcome"], result["round_no"]) == ("approved", 2)
    [refusal] = result["refusals"]  # the first round's refusal and decision are kept
    assert (refusal["kind"], refusal["decision"], refusal["reasons"]) == (
        "not_approved", action, ["选址位于生态保护红线内"])
    tasks = service.engine.list_tasks(case_id=service.case_id, states=("completed",),
                                      limit=1000)
    assert len([t for t in tasks if t.spec_name == "track_approval"
                and t.item_code == "design_scheme_review"]) == 2
    # Now the planning permit that waited starts.
    assert hand_over(service, "construction_planning_permit")["outcome"] == "approved"
    assert service.case().status == "running"


def test_R04_refused_eia_beside_the_phases_does_not_hold_up_the_phases(service):
    phase_one_with_eia_accepted(service)
    service.complete("track_approval", "eia_report_form", **REFUSAL)
    # Phase 2 goes on while the Bureau decides about the EIA.
    service.complete("refusal_decision", "eia_report_form", refusal_action="reapply",
                     rectification="补充地下水环境影响预测", decision_note="企业同意补充")
    assert service.ready("confirm_planning_conditions")
    result = hand_over(service, "eia_report_form")
    assert (result["outcome"], result["round_no"]) == ("approved", 2)
    assert [r["decision"] for r in result["refusals"]] == ["reapply"]


def test_R04_after_a_refusal_the_unit_ends_the_service(service, clock):
    design_review_refused(service)
    service.complete("refusal_decision", "design_scheme_review", refusal_action="end_service",
                     termination_reason="not_qualified", decision_note="企业放弃本项目")
    reason = "不具备办理条件（建设工程设计方案审查）"
    assert ready(service) == [("hand_back_materials", "design_scheme_review"),
                              ("hand_back_materials", "eia_report_form")]
    no_more_work(service, clock)
    service.complete("hand_back_materials", "design_scheme_review")
    service.complete("hand_back_materials", "eia_report_form")
    service.complete("termination_record")
    case = service.case()
    assert (case.status, case.end_reason) == ("terminated", reason)
    assert not any(s.item_code == "construction_planning_permit" for s in service.steps)
    assert service.engine.verify_case(service.case_id).ok


# R09 ----------------------------------------------------------------------------------


def completed_small_case(service: Service, clock) -> None:
    intake(service, small_project())
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    clock.advance(days=40)
    service.engine.fire_due_timers()
    service.complete("record_visit")
    service.complete("close_case")
    assert service.case().status == "completed"


def test_R09_a_terminated_case_is_counted_as_terminated_everywhere(service, clock, sqlite_url,
                                                                  tmp_path):
    completed_small_case(service, clock)
    stopped = Service(service.engine, clock)
    intake(stopped, small_project(code="2026-640502-59-03-000977"))
    stopped.complete("confirm_project_code")
    stopped.complete("prepare_materials", "project_filing")
    service.engine.terminate_case(stopped.case_id, "企业撤回投资", OFFICE)
    stopped.complete("hand_back_materials", "project_filing")
    stopped.complete("termination_record")
    assert stopped.case().status == "terminated"

    figures = oversight.figures(service.engine)
    assert [c["id"] for c in figures.completed_this_month] == [service.case_id]
    assert [c["id"] for c in figures.terminated_this_month] == [stopped.case_id]
    summary = publicity.public_summary(service.engine)
    assert (summary.cases_served, summary.cases_closed, summary.cases_terminated) == (2, 1, 1)
    rows = figures.table_rows()["closed_this_month"]
    assert [row[2] for row in rows[1:]] == ["已办结", "已终止"]
    report = documents.generate_periodic_report(
        service.engine, figures, {"phase_stage": "", "overdue": ""}, OFFICE)
    html = documents.get_document(service.engine, report.id, OFFICE)[1]
    assert "本月办结 1 件，终止代办 1 件" in html

    create_accounts(service.engine, [("office", "office", "leading_group_office")])
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": service.engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    client = logged_in(app, "office")
    page = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'id="closed-month">1<', page)
    assert re.search(r'id="terminated-month">1<', page)
    statuses = re.findall(r'class="case-status">([^<]+)<', page)
    assert statuses == ["已办结", "已终止"] and "terminated" not in statuses
    public = client.get("/publicity").get_data(as_text=True)
    assert re.search(r'id="cases-closed">1<', public)
    assert re.search(r'id="cases-terminated">1<', public)


# Cases of the earlier version -----------------------------------------------------------


def test_R03_cases_of_the_earlier_version_keep_their_termination(sqlite_url, clock, tmp_path):
    import shutil
    from pathlib import Path

    from tests.test_scenarios_prerequisites import _engine

    root = Path(__file__).resolve().parent.parent
    pack = tmp_path / "old_pack"
    shutil.copytree(root / "processes", pack)
    for diagram in (root / "tests" / "fixtures" / "pack_before_termination" /
                    "processes").glob("*.bpmn"):
        shutil.copy(diagram, pack / diagram.name)
    engine = _engine(sqlite_url, clock, tmp_path, pack, root / "data")
    unit, office = Service(engine, clock), Service(engine, clock)
    intake(unit, small_project())
    intake(office, small_project(code="2026-640502-59-03-000978"))
    old_version = unit.case().process_version_id
    engine.load_processes(root / "processes")
    # The unit's stop: its item is handed back on its own, then the record (as before).
    unit.complete("confirm_project_code")
    unit.complete("prepare_materials", "project_filing")
    unit.complete("check_materials", "project_filing", decision="terminate",
                  termination_reason="unit_request")
    unit.complete("hand_back_materials", "project_filing")
    assert [t.spec_name for t in unit.ready() if t.spec_name == "termination_record"]
    unit.complete("termination_record")
    case = unit.case()
    assert (case.process_version_id, case.status, case.end_reason) == (
        old_version, "terminated", "unit_request")
    # The office's termination cancels an old case at once, as it did.
    ended = engine.terminate_case(office.case_id, "企业撤回投资", OFFICE)
    assert (ended.status, ended.end_reason) == ("terminated", "企业撤回投资")
    assert office.ready() == []
    assert engine.verify_case(unit.case_id).ok and engine.verify_case(office.case_id).ok
    # A new case runs the new version.
    newer = Service(engine, clock)
    intake(newer, small_project(code="2026-640502-59-03-000979"))
    assert newer.case().process_version_id != old_version
    engine.db.dispose()
