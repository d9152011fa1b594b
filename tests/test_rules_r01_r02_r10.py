"""Rules R01 (告知承诺 is the fast path), R02 (nothing is built before its pre-construction
approvals) and R10 (progress reports never pile up), each driven as a whole case by the
office and the departments, in the orders the parallel branches, timers and messages can take."""

from __future__ import annotations

from datetime import date

import pytest

from agency.reference import SERVICE_TZ, ReferenceData
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
