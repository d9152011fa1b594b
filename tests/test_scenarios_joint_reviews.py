"""Issue 12, point 6 and the parallel track: the joint drawing review and the joint acceptance
are recorded on their items' prepared materials, not before the phase's items; power and water
connection start as soon as the construction permit is approved (during construction), not
when phase 4 opens. Cases of the earlier version keep running."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agency.reference import ReferenceData, ReferenceDataError
from engine.actors import Actor
from tests.conftest import ROOT
from tests.service import JOINT_REVIEWS, KEY_PROJECT, Service
from tests.test_scenarios import PHASE_1, PHASE_2, intake
from tests.test_scenarios_prerequisites import _catalogue_copy, _engine, waiting

HOUSING = Actor("agent_housing_construction", "agent", "housing_construction")


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def _through_phase_two(service: Service, project: dict) -> None:
    intake(service, project)
    service.complete("notify_policies")
    service.complete("redeem_policy")
    service.complete("confirm_project_code", by="drc")
    service.run_phase(None, PHASE_1)
    service.run_phase("confirm_planning_conditions", PHASE_2)


def _parts(service: Service, task_id: str) -> list[str]:
    detail = service.engine.get_task(task_id, HOUSING)
    return [part["name"] for part in detail.data["item"]["parts"]]


def test_joint_review_and_acceptance_are_recorded_after_their_items_materials(service):
    project = {**KEY_PROJECT, "special_fire": True, "civil_air_defence": True}
    _through_phase_two(service, project)
    # Phase 3 is open: no joint drawing review before the drawing review's materials.
    assert service.ready("prepare_materials", "drawing_review")
    assert not service.ready("joint_drawing_review")
    service.complete("prepare_materials", "drawing_review")
    review = service.task("joint_drawing_review", "drawing_review")
    assert (review.department, review.phase, review.title) == (
        "housing_construction", "3", "组织施工图联合审查")
    # Fire and civil air-defence design review are parts of it, not items of their own.
    assert _parts(service, review.id) == ["消防设计审查（特殊建设工程）",
                                          "人防工程设计审查（防空地下室）"]
    instructions = service.engine.get_task(review.id, HOUSING).instructions
    assert "消防设计审查" in instructions and "人防设计审查" in instructions
    # The department checks the materials once the joint review is recorded; the
    # construction permit still waits for the drawing review.
    assert not service.ready("check_materials", "drawing_review")
    assert waiting(service)["construction_permit"] == ["drawing_review"]
    service.complete("joint_drawing_review", "drawing_review", by="housing_construction")
    for spec in ("check_materials", "track_approval", "handover_results"):
        service.complete(spec, "drawing_review")
    service.run_item("construction_permit")
    service.run_item("power_connection")
    # Phase 4: the joint acceptance is recorded on the joint acceptance's materials, and
    # completion filing waits for the joint acceptance.
    assert not service.ready("organise_joint_acceptance")
    assert waiting(service) == {"completion_filing": ["joint_acceptance"]}
    service.complete("prepare_materials", "joint_acceptance")
    acceptance = service.task("organise_joint_acceptance", "joint_acceptance")
    assert (acceptance.department, acceptance.phase) == ("housing_construction", "4")
    assert {"消防验收（特殊建设工程）", "人防工程竣工验收"} <= set(_parts(service, acceptance.id))
    assert not service.ready("check_materials", "joint_acceptance")
    service.complete("organise_joint_acceptance", "joint_acceptance", by="housing_construction")
    for spec in ("check_materials", "track_approval", "handover_results"):
        service.complete(spec, "joint_acceptance")
    service.run_item("completion_filing")
    case = service.case()
    # Only these two items have a joint step, each recorded once, after its materials.
    joint_steps = [(s.spec_name, s.item_code) for s in service.steps
                   if s.spec_name in JOINT_REVIEWS]
    assert joint_steps == [("joint_drawing_review", "drawing_review"),
                           ("organise_joint_acceptance", "joint_acceptance")]
    order = [(s.spec_name, s.item_code) for s in service.steps]
    assert order.index(("prepare_materials", "drawing_review")) < order.index(joint_steps[0])
    assert order.index(("prepare_materials", "joint_acceptance")) < order.index(joint_steps[1])
    assert case.data["completed_phases"] == [1, 2, 3, 4]
    assert {r["outcome"] for r in case.data["item_results"]} == {"approved"}
    assert set(r["code"] for r in case.data["item_results"]) == set(case.data["selected_items"])
    assert service.ready("rate_service")
    assert service.engine.verify_case(case.id).ok


def test_a_rejected_drawing_review_is_reviewed_again_on_the_corrected_materials(service):
    _through_phase_two(service, KEY_PROJECT)
    service.complete("prepare_materials", "drawing_review")
    service.complete("joint_drawing_review", "drawing_review")
    service.complete("check_materials", "drawing_review", decision="reject",
                     rejection_reasons=["施工图设计文件缺少消防专篇"])
    service.complete("notify_rejection", "drawing_review")
    assert not service.ready("joint_drawing_review")
    service.complete("prepare_materials", "drawing_review")
    assert service.ready("joint_drawing_review", "drawing_review")
    assert service.engine.verify_case(service.case_id).ok


def test_power_and_water_connection_start_with_the_construction_permit_during_construction(
        service):
    project = {**KEY_PROJECT, "water_supply": True, "road_works": True}
    intake(service, project)
    connections = ("power_connection", "water_connection")
    # From dispatch they run beside the phases, waiting for the construction permit.
    for code in connections:
        assert waiting(service)[code] == ["construction_permit"]
        assert not service.ready(item=code)
    service.complete("notify_policies")
    service.complete("redeem_policy")
    service.complete("confirm_project_code", by="drc")
    service.run_phase(None, PHASE_1)
    service.run_phase("confirm_planning_conditions", PHASE_2)
    service.run_item("drawing_review")
    for spec in ("prepare_materials", "check_materials", "track_approval"):
        service.complete(spec, "construction_permit")
        assert not any(service.ready(item=code) for code in connections)
    service.complete("handover_results", "construction_permit")
    # The construction permit is approved: both start, while phase 3 still runs (the
    # road-works permit) and phase 4 has not opened.
    for code in connections:
        assert service.ready("prepare_materials", code)
    assert waiting(service) == {}
    assert service.ready("prepare_materials", "road_works_permit")
    assert not service.ready(item="joint_acceptance")
    assert not service.ready(item="completion_filing")
    for code in connections:
        service.run_item(code)
    assert not service.ready(item="joint_acceptance")
    service.run_item("road_works_permit")
    service.run_phase(None, ["joint_acceptance", "completion_filing"])
    case = service.case()
    results = {r["code"]: r for r in case.data["item_results"]}
    assert set(results) == set(case.data["selected_items"])
    assert {r["outcome"] for r in results.values()} == {"approved"}
    assert case.data["completed_phases"] == [1, 2, 3, 4]
    assert service.engine.verify_case(case.id).ok


def test_a_prerequisite_is_checked_against_the_phase_an_item_is_due_by(tmp_path):
    catalogue = ReferenceData.load(ROOT / "data").items
    assert (catalogue["power_connection"]["phase"], catalogue["power_connection"]["due_phase"],
            catalogue["power_connection"]["requires"]) == (3, 4, ["construction_permit"])
    # An item beside the phases may need an item that starts before it is due...
    ReferenceData.load(_catalogue_copy(tmp_path / "a", {"eia_report_form": ["drawing_review"]}))
    # ...not one that starts only later (the items after its due phase wait for it).
    with pytest.raises(ReferenceDataError, match=r"eia_report_form \(phase 1, due by phase 3\) "
                                                 r"requires joint_acceptance, which starts only"
                                                 r" in phase 4"):
        ReferenceData.load(_catalogue_copy(tmp_path / "b",
                                           {"eia_report_form": ["joint_acceptance"]}))
    # An item that needs such an item can only start when it can.
    with pytest.raises(ReferenceDataError, match=r"design_scheme_review \(phase 2\) requires "
                                                 r"eia_report_form, which starts only in phase 3"):
        ReferenceData.load(_catalogue_copy(tmp_path / "c", {
            "eia_report_form": ["drawing_review"], "design_scheme_review": ["eia_report_form"]}))


def _pack_before_joint_reviews(tmp_path: Path) -> Path:
    """The current pack with the three diagrams as they were before this change."""
    pack = tmp_path / "old_pack"
    shutil.copytree(ROOT / "processes", pack)
    for diagram in (ROOT / "tests" / "fixtures" / "pack_before_joint_reviews" /
                    "processes").glob("*.bpmn"):
        shutil.copy(diagram, pack / diagram.name)
    return pack


def test_running_case_of_the_version_with_phase_level_joint_steps_still_runs(sqlite_url, clock,
                                                                              tmp_path):
    engine = _engine(sqlite_url, clock, tmp_path, _pack_before_joint_reviews(tmp_path),
                     ROOT / "data")
    service = Service(engine, clock)
    intake(service, KEY_PROJECT)
    old_version = service.case().process_version_id
    service.complete("notify_policies")
    service.complete("redeem_policy")
    service.complete("confirm_project_code", by="drc")
    service.run_phase(None, PHASE_1)
    service.run_phase("confirm_planning_conditions", PHASE_2)
    # The old version opens phase 3 with its joint review, before the items.
    assert [(t.spec_name, t.item_code) for t in service.ready("joint_drawing_review")] == [
        ("joint_drawing_review", None)]
    engine.load_processes(ROOT / "processes")
    assert service.case().process_version_id == old_version
    service.complete("joint_drawing_review", by="housing_construction")
    service.complete("prepare_materials", "drawing_review")
    assert service.ready("check_materials", "drawing_review")  # no joint step on the item
    for spec in ("check_materials", "track_approval", "handover_results"):
        service.complete(spec, "drawing_review")
    service.run_phase(None, ["construction_permit", "power_connection"])
    assert service.ready("organise_joint_acceptance")
    service.run_phase("organise_joint_acceptance", ["joint_acceptance", "completion_filing"])
    case = service.case()
    assert case.process_version_id == old_version
    assert case.data["completed_phases"] == [1, 2, 3, 4]
    assert {r["outcome"] for r in case.data["item_results"]} == {"approved"}
    assert engine.verify_case(case.id).ok
    # A new case runs the new version: its joint review waits for the item's materials.
    newer = Service(engine, clock)
    intake(newer, KEY_PROJECT)
    assert newer.case().process_version_id != old_version
    engine.db.dispose()


def test_the_one_time_notice_tells_the_unit_what_runs_beside_the_phases_and_what_waits(
        service):
    """The notice lists power connection under phase 3, the phase it starts in, and says that
    it waits for the construction permit and may be finished as late as phase 4; the
    environmental report runs beside the phases until phase 3."""
    from agency import documents

    project = {**KEY_PROJECT, "water_supply": True, "road_works": True}
    intake(service, project)
    agent = Actor("agent_approval_bureau", "agent", "approval_bureau")
    notice = documents.generate(service.engine, service.case_id, "one_time_notice", "", agent)
    html = documents.get_document(service.engine, notice.id, agent)[1]
    rows = {cell.split("</td>", 1)[0]: cell for cell in html.split("<tr><td>")[1:]}
    power = next(row for name, row in rows.items() if name == "电力接入")
    assert "取得建筑工程施工许可证后办理" in power
    assert "最迟于竣工验收阶段内办结" in power
    permit = next(row for name, row in rows.items() if name == "建筑工程施工许可证")
    assert "最迟于" not in permit
