"""Issue 12 scenarios: special channels with real consequences, parallel approval, the catalogue."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from agency.reference import SERVICE_TZ, ReferenceData
from engine.actors import Actor
from engine.errors import InvalidData
from tests.conftest import ROOT
from tests.service import KEY_PROJECT, OFFICE, Service, small_project
from tests.test_scenarios import intake

CALENDAR = ReferenceData.load(ROOT / "data").calendar


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def _accept_with_deficiency(service: Service) -> str:
    intake(service, small_project(eia="book"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    supply_due = CALENDAR.add_working_days(date(2026, 3, 2), 5).isoformat()
    service.complete("prepare_materials", "eia_report_book")
    service.complete("check_materials", "eia_report_book", by="ecology_env",
                     decision="deficiency", missing_materials=["project_code_proof"],
                     supply_due=supply_due)
    return supply_due


@pytest.mark.parametrize("approval_first", [True, False], ids=["approved-first", "supplied-first"])
def test_deficiency_approved_and_supplied_in_either_order_is_approved(service, approval_first):
    """容缺受理: approval and the supplied material are two parallel facts; their order
    does not matter, the item is approved and the case goes on."""
    _accept_with_deficiency(service)
    supply = {"supplied_materials": ["project_code_proof"], "supplied_date": "2026-03-05"}
    track = {"progress": "approved", "approval_no": "卫环审〔2026〕9号",
             "approved_date": "2026-03-06"}
    if approval_first:
        service.complete("track_approval", "eia_report_book", by="ecology_env", **track)
        # Nothing is handed over while the material is still missing.
        assert not service.ready("handover_results")
        assert service.task("supply_material", "eia_report_book")
        service.complete("supply_material", by="project_unit", **supply)
    else:
        service.complete("supply_material", by="project_unit", **supply)
        assert not service.ready("handover_results")
        service.complete("track_approval", "eia_report_book", by="ecology_env", **track)
    assert not service.ready("hand_back_materials")
    service.complete("handover_results", "eia_report_book", by="approval_bureau")
    results = {r["code"]: r for r in service.case().data["item_results"]}
    assert results["eia_report_book"]["outcome"] == "approved"
    assert results["eia_report_book"]["approval_no"] == "卫环审〔2026〕9号"
    assert results["eia_report_book"]["channel"] == "deficiency"
    case = service.case()
    assert case.status == "running" and not case.data.get("terminated")
    assert service.engine.verify_case(service.case_id).ok


def test_deficiency_supply_due_in_the_past_is_refused(service):
    intake(service, small_project(eia="book"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_book")
    check = service.task("check_materials", "eia_report_book")
    with pytest.raises(InvalidData) as refused:
        service.engine.complete_task(check.id, {
            "decision": "deficiency", "missing_materials": ["project_code_proof"],
            "supply_due": "2026-02-20"}, Actor("agent_ee", "agent", "ecology_env"))
    assert [e.field for e in refused.value.errors] == ["supply_due"]
    assert service.task("check_materials", "eia_report_book")  # nothing stored


def test_deficiency_escalated_office_lets_the_item_go_on_without_the_material(service, clock):
    supply_due = _accept_with_deficiency(service)
    service.complete("track_approval", "eia_report_book", by="ecology_env")
    escalate_on = CALENDAR.add_working_days(date.fromisoformat(supply_due), 2)
    clock.set(datetime.fromisoformat(supply_due).replace(hour=9, tzinfo=SERVICE_TZ))
    service.engine.fire_due_timers()
    clock.set(datetime.fromisoformat(escalate_on.isoformat()).replace(hour=9, tzinfo=SERVICE_TZ))
    service.engine.fire_due_timers()
    service.complete_all("remind_supply", reminder_method="phone",
                         reminder_date=supply_due)
    assert not service.ready("handover_results")  # nothing handed over before the decision
    office = service.task("escalate_supply")
    assert office.department == "leading_group_office"
    with pytest.raises(InvalidData) as refused:  # more time needs a date, not in the past
        service.engine.complete_task(office.id, {
            "supervision_measures": "约谈企业", "supervision_owner": "罗文虎",
            "supervision_deadline": escalate_on.isoformat(), "supply_decision": "extend",
            "new_supply_due": supply_due}, OFFICE)
    assert [e.field for e in refused.value.errors] == ["new_supply_due"]
    service.complete("escalate_supply", supervision_measures="材料不影响审批结论，同意继续",
                     supervision_owner="罗文虎", supervision_deadline=escalate_on.isoformat(),
                     supply_decision="waive")
    assert not service.ready("supply_material")
    service.complete("handover_results", "eia_report_book")
    result = {r["code"]: r for r in service.case().data["item_results"]}["eia_report_book"]
    assert (result["outcome"], result["supply"]) == ("approved", "waived")
    assert service.engine.verify_case(service.case_id).ok


# Approval by commitment (告知承诺) — decided at once, handed over, verified afterwards,
# rectified or revoked — is rule R01: tests/test_rules_r01_r02_r10.py.


def test_project_registered_without_a_code_obtains_it_in_phase_one(service):
    project = small_project()
    del project["code"]
    intake(service, project)
    # Early involvement: nothing that needs the code starts before it exists.
    obtain = service.task("obtain_project_code")
    assert (obtain.department, obtain.phase) == ("drc", "1")
    assert not service.ready("prepare_materials") and not service.ready("confirm_project_code")
    with pytest.raises(InvalidData) as refused:
        service.engine.complete_task(obtain.id, {"project_code": "2026-64050-59-03-311",
                                                 "code_obtained_date": "2026-03-04"},
                                     Actor("agent_drc", "agent", "drc"))
    assert [e.field for e in refused.value.errors] == ["project_code"]
    service.complete("obtain_project_code", by="drc", project_code="2026-640502-59-03-000999",
                     code_obtained_date="2026-03-04")
    case = service.case()
    assert case.project_code == "2026-640502-59-03-000999"
    assert service.task("prepare_materials", "project_filing")
    service.run_item("project_filing")
    assert service.case().data["project"]["code"] == "2026-640502-59-03-000999"
    assert service.engine.verify_case(service.case_id).ok


def test_a_project_code_in_use_by_another_case_is_refused_naming_it(service):
    first = service.start(small_project())
    with pytest.raises(InvalidData) as refused:
        service.engine.start_case("case_flow", {"project": small_project(
            name="另一个项目", code=first.project_code)}, OFFICE)
    assert [e.field for e in refused.value.errors] == ["project.code"]
    assert f"#{first.id}" in refused.value.errors[0].message
    assert first.title in refused.value.errors[0].message
    assert len(service.engine.list_cases()) == 1  # nothing stored
    # An agent starting a case is told only that the code is taken (issue 28 row 6).
    with pytest.raises(InvalidData) as hidden:
        service.engine.start_case("case_flow", {"project": small_project(
            name="另一个项目", code=first.project_code)},
            Actor("agent_approval_bureau", "agent", "approval_bureau"))
    told = hidden.value.errors[0].message
    assert "另一个案件" in told and f"#{first.id}" not in told and first.title not in told
    assert "办理中" not in told
    assert len(service.engine.list_cases()) == 1
    # A code obtained later is checked the same way.
    project = small_project(name="尚未赋码的项目")
    del project["code"]
    second = Service(service.engine, service.clock)
    intake(second, project)
    obtain = second.task("obtain_project_code")
    with pytest.raises(InvalidData) as refused:
        service.engine.complete_task(obtain.id, {"project_code": first.project_code,
                                                 "code_obtained_date": "2026-03-04"},
                                     Actor("agent_drc", "agent", "drc"))
    assert "另一个案件" in refused.value.errors[0].message  # the DRC's agent: not named
    assert f"#{first.id}" not in refused.value.errors[0].message
    assert second.task("obtain_project_code")  # still waiting, nothing recorded
    # Once the first case is terminated its code is free again.
    service.engine.terminate_case(first.id, "企业撤回投资", OFFICE)
    second.complete("obtain_project_code", project_code=first.project_code,
                    code_obtained_date="2026-03-04")
    assert second.case().project_code == first.project_code


# The catalogue an agency office can trust --------------------------------------------

REF = ReferenceData.load(ROOT / "data")


def test_joint_review_and_acceptance_are_one_item_each_with_parts():
    from tests.test_pack import suggested

    everything = {**KEY_PROJECT, "special_fire": True, "civil_air_defence": True}
    picked = suggested(everything)
    assert {"drawing_review", "joint_acceptance"} <= picked
    # Fire and air-defence review/acceptance are parts, never items on top.
    dropped = {"fire_design_review", "civil_air_defence_review", "fire_acceptance"}
    assert not dropped & set(REF.items)
    parts = {p["name"] for code in ("drawing_review", "joint_acceptance")
             for p in REF.items[code]["parts"]}
    assert {"消防设计审查（特殊建设工程）", "人防工程设计审查（防空地下室）",
            "消防验收（特殊建设工程）", "规划条件核实", "土地核验"} <= parts
    names = [i["name"] for i in REF.items.values()]
    assert len(names) == len(set(names)) and not parts & set(names)


def test_the_construction_permit_asks_for_what_the_law_names():
    materials = {REF.materials[m]["name"] for m in REF.items["construction_permit"]["materials"]}
    assert {"建设工程规划许可证", "土地权属证明或土地出让合同",
            "施工图设计文件审查合格书"} <= materials
    assert "规划条件及建设用地规划许可证" not in materials


@pytest.mark.parametrize("characteristic, item, department", [
    ("hazardous_chemicals", "hazardous_chem_safety_conditions", "emergency"),
    ("hazardous_chemicals", "hazardous_chem_safety_design", "emergency"),
    ("special_equipment", "special_equipment_registration", "market_regulation"),
    ("road_works", "road_works_permit", "transport"),
    ("cultural_relics", "cultural_relics_review", "tourism_culture"),
    ("forest_land", "forest_land_use", "natural_resources"),
    ("pollutant_discharge", "pollutant_discharge_permit", "ecology_env"),
])
def test_units_own_the_items_they_handle_picked_by_project_characteristics(
        characteristic, item, department):
    from tests.test_pack import suggested

    assert REF.items[item]["department"] == department
    assert item in suggested({**KEY_PROJECT, characteristic: True})
    assert item not in suggested(KEY_PROJECT)


def test_every_item_has_a_statutory_and_a_committed_limit():
    for code, item in REF.items.items():
        assert 1 <= item["committed_days"] <= item["statutory_days"], code
    assert REF.items["land_planning_permit"]["statutory_days"] == 20
    assert REF.items["land_planning_permit"]["committed_days"] == 10


def test_a_committed_limit_longer_than_the_statutory_one_is_refused(tmp_path):
    import json
    import shutil

    from agency.reference import ReferenceDataError

    shutil.copytree(ROOT / "data", tmp_path / "data")
    path = tmp_path / "data" / "items.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    items[0]["committed_days"] = items[0]["statutory_days"] + 1
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=items[0]["code"]):
        ReferenceData.load(tmp_path / "data")


def test_warnings_run_on_the_committed_limit_not_the_statutory_one(service):
    """The land-use planning permit: statutory 20 working days, committed 10."""
    intake(service, small_project(new_land=True))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.run_item("land_prereview_site")
    service.complete("prepare_materials", "land_planning_permit")
    service.complete("check_materials", "land_planning_permit", by="natural_resources")
    track = service.task("track_approval", "land_planning_permit")
    due = CALENDAR.add_working_days(date(2026, 3, 2), 10)
    assert track.due_at.astimezone(SERVICE_TZ).date() == due


def test_items_are_suggested_by_the_decision_table_and_confirmed_by_the_bureau(service):
    """A chemical project: item_selection suggests emergency management's safety reviews,
    the Bureau confirms the list after consulting the departments (select_items)."""
    service.start({**KEY_PROJECT, "hazardous_chemicals": True})
    suggested = service.case().data["suggested_items"]
    assert {"hazardous_chem_safety_conditions", "hazardous_chem_safety_design"} <= set(suggested)
    service.complete("select_items", by="approval_bureau", selected_items=suggested,
                     consulted_departments=["emergency", "housing_construction"])
    items = {i["code"]: i for i in service.case().data["items"]}
    conditions = items["hazardous_chem_safety_conditions"]
    assert (conditions["department"], conditions["phase"]) == ("emergency", 1)
    assert conditions["statutory_days"] == 45 and conditions["committed_days"] == 20
    assert not {"fire_design_review", "fire_acceptance"} & set(items)


def test_green_channel_halves_the_committed_limit(service):
    """init_item halves the committed limit on the green channel (15 → 8 working days) and
    the item's result names the channel."""
    intake(service, small_project(eia="form", green_channel=True))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    track = service.task("track_approval", "eia_report_form")
    assert track.due_at.astimezone(SERVICE_TZ).date() == \
        CALENDAR.add_working_days(date(2026, 3, 2), 8)
    service.complete("track_approval", "eia_report_form")
    service.complete("handover_results", "eia_report_form")
    result = {r["code"]: r for r in service.case().data["item_results"]}["eia_report_form"]
    assert result["channel"] == "green"


def test_agents_are_trained_and_the_training_recorded(service):
    """record_training: the Bureau records a training of the units' agents."""
    case = service.engine.start_case("agent_training", {}, OFFICE)
    service.case_id = case.id
    assert service.task("record_training").department == "approval_bureau"
    service.complete("record_training", training_date="2026-03-10",
                     training_topics=["容缺受理", "告知承诺"],
                     trainees=["drc", "emergency"], training_hours=4)
    assert service.engine.get_case(case.id).status == "completed"
