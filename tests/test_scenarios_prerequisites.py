"""Issue 12 point 3: prerequisites are catalogue data (并联审批). An item starts as soon as
the items it requires are approved, items that run beside the phases do not hold the next
phase back, and a cycle in the prerequisites is refused when the catalogue is loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agency import bootstrap, service_engine
from agency.reference import ReferenceData, ReferenceDataError
from engine.config import Config
from engine.store import schema
from engine.store.db import Database
from tests.conftest import ROOT
from tests.service import KEY_PROJECT, Service
from tests.test_oversight import _app
from tests.test_scenarios import PHASE_2, intake
from tests.webhelpers import logged_in

# The pack as it was before prerequisites became data (items gated by whole phases).


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


# Power connection runs beside the phases from dispatch and waits for the construction permit.
POWER_WAITS = {"power_connection": ["construction_permit"]}


def waiting(service: Service) -> dict[str, list[str]]:
    """What each item waiting for its prerequisites waits for, as the case page shows it."""
    return {entry["item"]["code"]: entry["waiting_for"] for entry in service.engine.waiting_data(
        service.case_id, "wait_prerequisites", ["item", "waiting_for"])}


def _through_phase_one_without_eia(service: Service) -> None:
    intake(service, KEY_PROJECT)
    service.complete("notify_policies")
    service.complete("redeem_policy")
    service.complete("confirm_project_code", by="drc")
    assert waiting(service) == {"land_planning_permit": ["project_filing", "land_prereview_site"],
                                **POWER_WAITS}
    service.run_phase(None, ["project_filing", "land_prereview_site", "land_planning_permit"])


def test_environmental_assessment_runs_while_phase_two_runs_and_the_permit_waits_for_it(service):
    _through_phase_one_without_eia(service)
    # Phase 1 ended without the environmental assessment: it runs beside the phases.
    assert service.ready("confirm_planning_conditions")
    assert service.ready("prepare_materials", "eia_report_form")
    requires = {e["code"]: e["requires"] for e in service.case().data["items"]}
    assert requires["construction_permit"] == ["drawing_review", "construction_planning_permit",
                                               "land_planning_permit", "eia_report_form"]
    assert requires["completion_filing"] == ["joint_acceptance"]
    service.run_phase("confirm_planning_conditions", PHASE_2)
    # Phase 3 is open; the construction permit waits for the drawing review and the EIA.
    assert waiting(service)["construction_permit"] == ["drawing_review", "eia_report_form"]
    assert not service.ready("prepare_materials", "construction_permit")
    service.run_item("drawing_review")
    assert waiting(service)["construction_permit"] == ["eia_report_form"]
    assert not service.ready("prepare_materials", "construction_permit")
    service.run_item("eia_report_form")
    assert "construction_permit" not in waiting(service)
    service.run_item("construction_permit")
    service.run_phase(None, ["power_connection", "joint_acceptance", "completion_filing"])
    case = service.case()
    results = {r["code"]: r["outcome"] for r in case.data["item_results"]}
    assert set(results) == set(case.data["selected_items"])
    assert set(results.values()) == {"approved"}
    assert case.data["completed_phases"] == [1, 2, 3, 4]
    assert service.engine.verify_case(case.id).ok


def test_case_page_shows_prerequisites_and_what_an_item_waits_for(service, sqlite_url, tmp_path):
    intake(service, KEY_PROJECT)
    service.complete("confirm_project_code", by="drc")
    service.run_item("project_filing")
    app = _app(service.engine, sqlite_url, tmp_path)
    page = logged_in(app, "agent_approval_bureau").get(
        f"/cases/{service.case_id}").get_data(as_text=True)
    row = next(r for r in page.split("<tr>") if "<td>建设用地规划许可证</td>" in r)
    assert "企业投资项目备案、建设项目用地预审与选址意见书" in row  # its prerequisites
    assert "等待：建设项目用地预审与选址意见书" in row  # what it still waits for
    service.run_item("land_prereview_site")
    page = logged_in(app, "agent_approval_bureau").get(
        f"/cases/{service.case_id}").get_data(as_text=True)
    row = next(r for r in page.split("<tr>") if "<td>建设用地规划许可证</td>" in r)
    assert "等待" not in row and "准备" in row


def test_construction_permit_waits_for_its_drawing_review_inside_phase_three(service):
    _through_phase_one_without_eia(service)
    service.run_item("eia_report_form")
    service.run_phase("confirm_planning_conditions", PHASE_2)
    assert waiting(service) == {"construction_permit": ["drawing_review"], **POWER_WAITS}
    assert {t.item_code for t in service.ready("prepare_materials")} == {"drawing_review"}
    service.complete("prepare_materials", "drawing_review")
    service.complete("joint_drawing_review", "drawing_review")
    service.complete("check_materials", "drawing_review")
    service.complete("track_approval", "drawing_review")
    assert not service.ready("prepare_materials", "construction_permit")
    service.complete("handover_results", "drawing_review")
    assert waiting(service) == POWER_WAITS
    assert service.ready("prepare_materials", "construction_permit")
    assert service.engine.verify_case(service.case_id).ok


@pytest.mark.parametrize("order", [["project_filing", "land_prereview_site"],
                                   ["land_prereview_site", "project_filing"]],
                         ids=["filing-first", "prereview-first"])
def test_prerequisites_completed_in_either_order(service, order):
    intake(service, KEY_PROJECT)
    service.complete("confirm_project_code", by="drc")
    first, second = order
    service.run_item(first)
    assert waiting(service) == {"land_planning_permit": [second], **POWER_WAITS}
    assert not service.ready("prepare_materials", "land_planning_permit")
    service.run_item(second)
    assert waiting(service) == POWER_WAITS
    service.run_item("land_planning_permit")
    service.run_item("eia_report_form")
    assert service.ready("confirm_planning_conditions")
    assert service.engine.verify_case(service.case_id).ok


def _catalogue_copy(tmp_path: Path, change: dict[str, list[str]]) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(ROOT / "data", folder)
    items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
    for item in items:
        if item["code"] in change:
            item["requires"] = change[item["code"]]
    (folder / "items.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return folder


def test_a_cycle_in_prerequisites_is_refused_at_load_naming_the_items(tmp_path):
    folder = _catalogue_copy(tmp_path, {"drawing_review": ["construction_permit"]})
    with pytest.raises(ReferenceDataError) as refused:
        ReferenceData.load(folder)
    assert "cycle" in str(refused.value)
    assert ("drawing_review -> construction_permit -> drawing_review" in str(refused.value)
            or "construction_permit -> drawing_review -> construction_permit"
            in str(refused.value))


def test_prerequisites_naming_an_unknown_or_later_item_are_refused(tmp_path):
    with pytest.raises(ReferenceDataError, match="requires unknown item 'no_such_item'"):
        ReferenceData.load(_catalogue_copy(tmp_path / "a", {"project_filing": ["no_such_item"]}))
    with pytest.raises(ReferenceDataError, match="project_filing .* requires drawing_review"):
        ReferenceData.load(_catalogue_copy(tmp_path / "b",
                                           {"project_filing": ["drawing_review"]}))


def _engine(url: str, clock, tmp_path: Path, processes: Path, data: Path):
    config = Config.from_env(database_url=url, processes_dir=processes, data_dir=data,
                             instance_dir=tmp_path)
    engine = service_engine(config, database=Database(url), clock_source=clock)
    schema.upgrade(engine.db)
    bootstrap.sync_departments(engine)
    engine.load_processes()
    return engine


def test_administrator_changes_prerequisites_without_touching_bpmn(sqlite_url, clock, tmp_path):
    """The catalogue decides: without the requirement the permit starts with phase 1."""
    folder = _catalogue_copy(tmp_path, {"land_planning_permit": []})
    engine = _engine(sqlite_url, clock, tmp_path, ROOT / "processes", folder)
    service = Service(engine, clock)
    intake(service, KEY_PROJECT)
    service.complete("confirm_project_code", by="drc")
    assert waiting(service) == POWER_WAITS
    assert service.ready("prepare_materials", "land_planning_permit")
    engine.db.dispose()


def _old_pack(tmp_path: Path) -> Path:
    """The process pack as it was before prerequisites (commit 6768a86), kept as a fixture
    so the test needs no repository history."""
    return ROOT / "tests" / "fixtures" / "pack_before_prerequisites" / "processes"


def test_running_case_of_the_old_version_still_runs_and_verifies(sqlite_url, clock, tmp_path):
    engine = _engine(sqlite_url, clock, tmp_path, _old_pack(tmp_path), ROOT / "data")
    service = Service(engine, clock)
    intake(service, KEY_PROJECT)
    old_version = service.case().process_version_id
    service.complete("confirm_project_code", by="drc")
    # The old version gates by phase: the land-use planning permit starts at once.
    assert service.ready("prepare_materials", "land_planning_permit")
    engine.load_processes(ROOT / "processes")
    case = service.case()
    assert case.process_version_id == old_version
    for code in ["land_planning_permit", "project_filing", "land_prereview_site",
                 "eia_report_form"]:
        service.run_item(code)
    assert service.ready("confirm_planning_conditions")
    assert service.engine.verify_case(case.id).ok
    # A new case runs the new version, with its prerequisites.
    newer = Service(engine, clock)
    intake(newer, KEY_PROJECT)
    assert newer.case().process_version_id != old_version
    newer.complete("confirm_project_code", by="drc")
    assert not newer.ready("prepare_materials", "land_planning_permit")
    engine.db.dispose()
