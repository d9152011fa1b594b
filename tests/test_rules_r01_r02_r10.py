"""Rules R01 (告知承诺 is the fast path), R02 (nothing is built before its pre-construction
approvals) and R10 (progress reports never pile up), each driven as a whole case by the
office and the departments, in the orders the parallel branches, timers and messages can take."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from agency.reference import SERVICE_TZ, ReferenceData
from engine.actors import Actor
from tests.conftest import ROOT
from tests.service import KEY_PROJECT, Service, small_project
from tests.test_scenarios import PHASE_2, intake

REF = ReferenceData.load(ROOT / "data")
CALENDAR = REF.calendar

# A plant that needs every pre-construction approval the law names (R02).
PLANT = {**KEY_PROJECT, "energy_review": True, "soil_water": True, "water_draw": True}
PRE_CONSTRUCTION = ["eia_report_form", "soil_water_conservation", "energy_review",
                    "water_draw_permit"]


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def waiting(service: Service) -> dict[str, list[str]]:
    """What each item waiting for its prerequisites waits for, as the case page shows it."""
    return {entry["item"]["code"]: entry["waiting_for"] for entry in service.engine.waiting_data(
        service.case_id, "wait_prerequisites", ["item", "waiting_for"])}


def due_day(task) -> date:  # type: ignore[no-untyped-def]
    return task.due_at.astimezone(SERVICE_TZ).date()


# --- R02 -----------------------------------------------------------------------------------

def _plant_through_phase_two(service: Service, approved_early: list[str]) -> None:
    """Intake of the plant, phase 1 and 2 approved; of the items beside the phases only
    `approved_early` are approved by then."""
    selected = intake(service, PLANT)
    assert set(PRE_CONSTRUCTION) <= set(selected)
    service.complete("notify_policies")
    service.complete("redeem_policy")
    service.complete("confirm_project_code", by="drc")
    for code in approved_early:
        service.run_item(code)
    service.run_phase(None, ["project_filing", "land_prereview_site", "land_planning_permit"])
    service.run_phase("confirm_planning_conditions", PHASE_2)


def test_R02_the_construction_permit_needs_every_pre_construction_approval_as_data(service):
    selected = intake(service, PLANT)
    requires = {e["code"]: e["requires"] for e in service.case().data["items"]}
    # The catalogue names them; the project's list keeps those the project needs.
    assert set(requires["construction_permit"]) == {
        "drawing_review", "construction_planning_permit", "land_planning_permit",
        *PRE_CONSTRUCTION} == set(REF.items["construction_permit"]["requires"]) & set(selected)
    # Nothing else is added by the script: completion filing needs the joint acceptance only.
    assert requires["completion_filing"] == ["joint_acceptance"]


@pytest.mark.parametrize("early", [PRE_CONSTRUCTION, ["eia_report_form", "water_draw_permit"], []],
                         ids=["all-approved-before-phase-3", "two-open", "all-open"])
def test_R02_construction_permit_waits_for_its_pre_construction_approvals(service, early):
    _plant_through_phase_two(service, early)
    open_items = [code for code in PRE_CONSTRUCTION if code not in early]
    # Phase 3 is open: the permit waits for the drawing review and what is still open.
    assert waiting(service)["construction_permit"] == ["drawing_review", *[
        code for code in REF.items["construction_permit"]["requires"] if code in open_items]]
    assert not service.ready("prepare_materials", "construction_permit")
    service.run_item("drawing_review")
    for code in open_items:
        # Still waiting, whatever else is approved: no permit while one is open.
        assert not service.ready("prepare_materials", "construction_permit")
        assert code in waiting(service)["construction_permit"]
        service.run_item(code)
    assert "construction_permit" not in waiting(service)
    service.complete("prepare_materials", "construction_permit")
    service.complete("check_materials", "construction_permit", by="housing_construction")
    service.complete("track_approval", "construction_permit")
    service.complete("handover_results", "construction_permit")
    # Construction may start: the power connection, which waits for the permit, begins.
    assert service.ready("prepare_materials", "power_connection")
    assert service.engine.verify_case(service.case_id).ok


def test_R02_the_permit_ready_before_its_prerequisites_is_impossible_in_any_order(service):
    """The drawing review passes last: the permit starts at that moment, not earlier."""
    _plant_through_phase_two(service, [])
    for code in reversed(PRE_CONSTRUCTION):
        service.run_item(code)
        assert not service.ready("prepare_materials", "construction_permit")
    assert waiting(service)["construction_permit"] == ["drawing_review"]
    service.run_item("drawing_review")
    assert service.ready("prepare_materials", "construction_permit")
    assert service.engine.verify_case(service.case_id).ok


def test_R02_a_prerequisite_under_commitment_counts_once_handed_over(service):
    """告知承诺 satisfies the permit's prerequisite at the hand-over, not at the verification."""
    _plant_through_phase_two(service, ["eia_report_form", "soil_water_conservation",
                                       "water_draw_permit"])
    service.run_item("drawing_review")
    assert waiting(service)["construction_permit"] == ["energy_review"]
    service.complete("prepare_materials", "energy_review")
    service.complete("check_materials", "energy_review", by="drc", decision="commitment")
    service.complete("sign_commitment", "energy_review", by="project_unit")
    service.complete("record_commitment", "energy_review", by="drc", letter_no="CN-2026-011",
                     letter_signed_date="2026-03-02", promised_conditions="按节能报告落实节能措施",
                     verify_by="2026-09-30")
    assert not service.ready("prepare_materials", "construction_permit")
    service.complete("track_approval", "energy_review", by="drc",
                     approval_no="卫发改节能〔2026〕5号")
    assert not service.ready("prepare_materials", "construction_permit")  # not yet handed over
    service.complete("handover_results", "energy_review")
    assert service.ready("prepare_materials", "construction_permit")
    assert due_day(service.task("verify_commitment", "energy_review")) == date(2026, 9, 30)
    assert service.engine.verify_case(service.case_id).ok


# --- R01 -----------------------------------------------------------------------------------

# A plant whose pollutant discharge permit (phase 4) needs the EIA, run beside the phases.
DISCHARGING = small_project(eia="form", pollutant_discharge=True)
BUREAU = Actor("agent_approval_bureau", "agent", "approval_bureau")


def _eia_by_commitment(service: Service) -> date:
    """The EIA accepted by commitment; returns the day the department recorded the letter."""
    intake(service, DISCHARGING)
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form", by="ecology_env",
                     decision="commitment")
    service.complete("sign_commitment", "eia_report_form", by="project_unit")
    service.complete("record_commitment", "eia_report_form", by="ecology_env",
                     letter_no="CN-2026-003", letter_signed_date="2026-03-02",
                     promised_conditions="三个月内完成污水处理设施建设并投入运行",
                     verify_by="2026-06-02")
    return service.clock().astimezone(SERVICE_TZ).date()


def _decided_and_handed_over(service: Service) -> None:
    recorded = _eia_by_commitment(service)
    # The department decides at once: one working day from the recorded commitment.
    track = service.task("track_approval", "eia_report_form")
    assert due_day(track) == CALENDAR.add_working_days(recorded, 1)
    # The pollutant discharge permit waits for the EIA; nothing is verified before a result.
    assert waiting(service)["pollutant_discharge_permit"] == ["eia_report_form"]
    assert not service.ready("verify_commitment")
    service.complete("track_approval", "eia_report_form", by="ecology_env",
                     approval_no="卫环审〔2026〕12号")
    # The result is handed over straight away, before any verification.
    assert not service.ready("verify_commitment")
    service.complete("handover_results", "eia_report_form", by="approval_bureau")


@pytest.mark.parametrize("verified", ["before-dependent", "after-dependent"])
def test_R01_commitment_is_decided_at_once_handed_over_and_verified_afterwards(service,
                                                                              verified):
    _decided_and_handed_over(service)
    # The handed-over result counts for the item that needs it: it starts now, in March,
    # while the verification is due only in June.
    assert service.ready("prepare_materials", "pollutant_discharge_permit")
    check = service.task("verify_commitment", "eia_report_form")
    assert (check.department, due_day(check)) == ("ecology_env", date(2026, 6, 2))
    assert service.ready("rate_item", "eia_report_form")  # the unit rates the handed-over item
    # On its page the unit sees the item done, due on the day of its decision, not in June.
    from agency.enterprise import EnterpriseLinks

    token, _ = EnterpriseLinks(service.engine).create(service.case_id, BUREAU)
    [eia] = [item for _, _, items in EnterpriseLinks(service.engine).progress(token).phases
             for item in items if item.code == "eia_report_form"]
    assert eia.state == "done" and eia.due_at is not None
    assert eia.due_at.astimezone(SERVICE_TZ).date() < date(2026, 6, 2)
    kept = {"commitment_kept": True, "check_date": "2026-06-02",
            "check_findings": "污水处理设施已建成运行"}
    if verified == "before-dependent":
        service.complete("verify_commitment", "eia_report_form", by="ecology_env", **kept)
    service.run_item("pollutant_discharge_permit")
    if verified == "after-dependent":
        assert service.ready("verify_commitment", "eia_report_form")
        service.complete("verify_commitment", "eia_report_form", by="ecology_env", **kept)
    assert not service.ready("verify_commitment") and not service.ready("commitment_decision")
    results = {r["code"]: r for r in service.case().data["item_results"]}
    assert (results["eia_report_form"]["outcome"], results["eia_report_form"]["channel"],
            results["eia_report_form"]["approval_no"]) == ("approved", "commitment",
                                                          "卫环审〔2026〕12号")
    assert results["pollutant_discharge_permit"]["outcome"] == "approved"
    assert service.ready("record_visit") or service.ready("rate_service")
    assert service.engine.verify_case(service.case_id).ok


def _broken(service: Service) -> None:
    service.complete("verify_commitment", "eia_report_form", by="ecology_env",
                     commitment_kept=False, check_date="2026-06-02",
                     check_findings="污水处理设施未建设")
    decision = service.task("commitment_decision", "eia_report_form")
    assert decision.department == "ecology_env"


@pytest.mark.parametrize("path", ["rectified", "revoked-at-once", "unrectified-then-revoked"])
def test_R01_a_broken_commitment_is_rectified_or_revoked_and_the_bureau_decides_what_relied_on_it(
        service, path):
    from agency import documents

    _decided_and_handed_over(service)
    service.complete("prepare_materials", "pollutant_discharge_permit")
    _broken(service)
    if path == "revoked-at-once":
        service.complete("commitment_decision", "eia_report_form", commitment_action="revoke",
                         decision_no="卫环撤〔2026〕1号",
                         decision_reasons="承诺内容与实际不符，依法撤销审批决定",
                         decision_date="2026-06-03")
    else:
        service.complete("commitment_decision", "eia_report_form", commitment_action="rectify",
                         rectify_by="2026-07-01", decision_no="卫环责改〔2026〕3号",
                         decision_reasons="未按承诺建设污水处理设施，责令限期整改",
                         decision_date="2026-06-03")
        check = service.task("check_rectification", "eia_report_form")
        assert due_day(check) == date(2026, 7, 1)
        # Waiting for the rectification holds nothing back: the discharge permit goes on.
        service.complete("check_materials", "pollutant_discharge_permit")
        service.complete("check_rectification", "eia_report_form",
                         rectified=path == "rectified", rectification_check_date="2026-07-01",
                         rectification_findings="已建成" if path == "rectified" else "仍未建设")
        if path == "rectified":
            assert not service.ready("revocation_decision")
            assert not service.ready("notify_revocation")
            assert service.engine.verify_case(service.case_id).ok
            return
        assert service.task("revocation_decision", "eia_report_form").department == \
            "ecology_env"
        service.complete("revocation_decision", "eia_report_form",
                         decision_no="卫环撤〔2026〕2号",
                         decision_reasons="逾期未整改，依法撤销审批决定",
                         decision_date="2026-07-02")
    # The revocation is recorded, the unit told with reasons by the Bureau, and the later item
    # that relied on the EIA is flagged for the Bureau to decide.
    notice = service.task("notify_revocation", "eia_report_form")
    assert notice.department == "approval_bureau"
    service.complete("notify_revocation", "eia_report_form", by="approval_bureau",
                     revocation_notice_method="written", revocation_notice_date="2026-07-03",
                     revocation_notice_to="张伟")
    flagged = service.task("decide_dependents", "eia_report_form")
    assert flagged.department == "approval_bureau"
    detail = service.engine.get_task(flagged.id, BUREAU)
    assert detail.data["revocation"]["relied_on_by"] == ["pollutant_discharge_permit"]
    assert detail.data["revocation"]["approval_no"] == "卫环审〔2026〕12号"
    assert detail.data["revocation"]["decision_no"].startswith("卫环撤〔2026〕")
    # Nothing is decided by default: the Bureau's agent records the decision.
    assert service.ready("decide_dependents")
    service.complete("decide_dependents", "eia_report_form", by="approval_bureau",
                     dependents_decision="reexamine",
                     dependents_note="请生态环境局重新审查排污许可")
    assert not service.ready("decide_dependents")
    # The office sees the broken commitment and the department's decision on its dashboard.
    from agency.oversight import figures
    [broken] = figures(service.engine).broken_commitments
    assert (broken["item"], broken["decision"]) == (
        "环境影响报告表审批", "revoke" if path == "revoked-at-once" else "rectify")
    if path == "revoked-at-once":
        [choice] = [c for c in documents.choices(service.engine, service.case_id)
                    if c.kind == "commitment_decision"]
        agent = Actor("agent_ecology_env", "agent", "ecology_env")
        doc = documents.generate(service.engine, service.case_id, "commitment_decision",
                                 choice.source, agent)
        _, html, _ = documents.get_document(service.engine, doc.id, agent)
        for text in ("卫环撤〔2026〕1号", "撤销审批决定", "承诺内容与实际不符"):
            assert text in html
    assert service.case().status == "running"
    assert service.engine.verify_case(service.case_id).ok


# --- R10 -----------------------------------------------------------------------------------

ADMIN = Actor("admin", "admin", None)


def reports(service: Service) -> dict[str, int]:
    """Open progress reports per item, as the departments' inboxes show them."""
    found: dict[str, int] = {}
    for task in service.ready("progress_report"):
        found[task.item_code or ""] = found.get(task.item_code or "", 0) + 1
    return found


def answer_warnings(service: Service, item: str) -> None:
    """The yellow and red warnings of an item past its committed limit, answered."""
    service.complete("yellow_warning", item)
    service.complete("red_warning", item)


def a_week_on(service: Service, weeks: int = 1) -> None:
    for _ in range(weeks):
        service.clock.advance(days=7, minutes=5)
        service.engine.fire_due_timers()


@pytest.mark.parametrize("approved_by", ["department", "approval-system"])
def test_R10_one_open_report_per_item_rolls_forward_and_none_after_the_item(service, clock,
                                                                            approved_by):
    from agency import progress

    intake(service, small_project(eia="form", soil_water=True))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    for code in ("eia_report_form", "soil_water_conservation"):
        service.complete("prepare_materials", code)
        service.complete("check_materials", code)
    assert reports(service) == {}
    a_week_on(service)
    assert reports(service) == {"eia_report_form": 1, "soil_water_conservation": 1}
    # Nobody answers the EIA's report for three weeks: it stays the one open report, while
    # the soil and water plan's department answers each week's.
    eia_report = service.task("progress_report", "eia_report_form").id
    for _ in range(3):
        service.complete("progress_report", "soil_water_conservation", report_summary="技术审查中")
        a_week_on(service)
        assert reports(service) == {"eia_report_form": 1, "soil_water_conservation": 1}
    assert service.task("progress_report", "eia_report_form").id == eia_report
    digest = progress.weekly_digest(service.engine, progress.week_of(clock().date()))
    assert [m.item for m in digest.missing] == ["环境影响报告表审批"]
    # (Four weeks exceed both committed limits: the warnings are answered first.)
    answer_warnings(service, "soil_water_conservation")
    answer_warnings(service, "eia_report_form")
    # The soil and water plan is approved: its report is withdrawn, the EIA's stays open.
    service.complete("track_approval", "soil_water_conservation")
    assert reports(service) == {"eia_report_form": 1}
    service.complete("handover_results", "soil_water_conservation")
    # The EIA's result arrives while its report is open: the report goes with the tracking.
    if approved_by == "department":
        service.complete("track_approval", "eia_report_form", approval_no="卫环审〔2026〕21号")
    else:
        service.engine.correlate_message(
            "item_approval_result", {"case_id": service.case_id, "key": "eia_report_form"},
            {"approved": True, "certificate_no": "卫环审〔2026〕21号",
             "approved_date": clock().astimezone(SERVICE_TZ).date().isoformat()},
            # the item's department's system delivers it (issue 28: only the department the
            # waiting element names, or an account granted the message)
            Actor("agent_ecology_env", "agent", "ecology_env"))
        assert reports(service) == {"eia_report_form": 1}  # the licence is still archived
        [job] = service.engine.fetch_and_lock("licence_archive", "w1", 60, ADMIN)
        service.engine.complete_job(job.id, "w1", {"licence_id": "DZZZ-2026-000021"}, ADMIN)
    assert reports(service) == {}
    service.complete("handover_results", "eia_report_form")
    results = {r["code"]: r for r in service.case().data["item_results"]}
    assert results["eia_report_form"]["approval_no"] == "卫环审〔2026〕21号"
    assert {r["outcome"] for r in results.values()} == {"approved"}
    # Nothing falls due after the items ended, however long the case runs on.
    a_week_on(service, 4)
    assert reports(service) == {}
    assert service.engine.verify_case(service.case_id).ok


# --- Cases already running keep their version ------------------------------------------------

def _pack_before_the_rules(tmp_path: Path) -> Path:
    """The current pack with the three diagrams as they were before R01, R02 and R10."""
    pack = tmp_path / "old_pack"
    shutil.copytree(ROOT / "processes", pack)
    for diagram in (ROOT / "tests" / "fixtures" / "pack_before_fast_commitment" /
                    "processes").glob("*.bpmn"):
        shutil.copy(diagram, pack / diagram.name)
    return pack


def test_a_case_running_before_the_rules_keeps_its_version_and_verifies(sqlite_url, clock,
                                                                        tmp_path):
    from tests.test_scenarios_prerequisites import _engine

    engine = _engine(sqlite_url, clock, tmp_path, _pack_before_the_rules(tmp_path),
                     ROOT / "data")
    old = Service(engine, clock)
    _eia_by_commitment(old)
    old_version = old.case().process_version_id
    old.complete("track_approval", "eia_report_form", by="ecology_env",
                 approval_no="卫环审〔2026〕12号")
    engine.load_processes(ROOT / "processes")
    # The old version verifies before the hand-over, as it did when the case started.
    assert old.ready("verify_commitment", "eia_report_form")
    assert not old.ready("handover_results")
    old.complete("verify_commitment", "eia_report_form", by="ecology_env",
                 commitment_kept=True, check_date="2026-06-02", check_findings="已履行")
    old.complete("handover_results", "eia_report_form")
    assert old.case().process_version_id == old_version
    assert old.engine.verify_case(old.case_id).ok
    # A new case runs the new version: handed over first, verified afterwards.
    new = Service(engine, clock)
    _decided_and_handed_over(new)
    assert new.case().process_version_id != old_version
    assert new.ready("verify_commitment", "eia_report_form")
    assert new.engine.verify_case(new.case_id).ok
    engine.db.dispose()
