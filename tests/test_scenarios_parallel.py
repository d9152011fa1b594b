"""Issue 12 scenarios: special channels with real consequences, parallel approval, the catalogue."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from agency.reference import SERVICE_TZ, ReferenceData
from engine.actors import Actor
from engine.errors import InvalidData
from tests.conftest import ROOT
from tests.service import OFFICE, Service, small_project
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


def _approve_by_commitment(service: Service) -> None:
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form", by="ecology_env",
                     decision="commitment")
    service.complete("record_commitment", "eia_report_form", by="ecology_env",
                     letter_no="CN-2026-003", letter_signed_date="2026-03-02",
                     promised_conditions="三个月内完成污水处理设施建设并投入运行",
                     verify_by="2026-06-02")
    service.complete("track_approval", "eia_report_form", by="ecology_env",
                     approval_no="卫环审〔2026〕12号")


def _broken(service: Service) -> None:
    service.complete("verify_commitment", "eia_report_form", by="ecology_env",
                     commitment_kept=False, check_date="2026-06-02",
                     check_findings="污水处理设施未建设")
    assert not service.ready("handover_results")


@pytest.mark.parametrize("rectified", [True, False], ids=["rectified", "not-rectified"])
def test_broken_commitment_rectify_within_deadline(service, rectified):
    _approve_by_commitment(service)
    _broken(service)
    decision = service.task("commitment_decision", "eia_report_form")
    assert decision.department == "ecology_env"
    service.complete("commitment_decision", "eia_report_form", commitment_action="rectify",
                     rectify_by="2026-07-01", decision_no="卫环责改〔2026〕3号",
                     decision_reasons="未按承诺建设污水处理设施，责令限期整改",
                     decision_date="2026-06-03")
    check = service.task("check_rectification", "eia_report_form")
    assert check.due_at.astimezone(SERVICE_TZ).date() == date(2026, 7, 1)
    service.complete("check_rectification", "eia_report_form", rectified=rectified,
                     rectification_check_date="2026-07-01",
                     rectification_findings="已建成" if rectified else "仍未建设")
    if rectified:
        service.complete("handover_results", "eia_report_form")
    else:
        service.complete("hand_back_materials", "eia_report_form")
    result = {r["code"]: r for r in service.case().data["item_results"]}["eia_report_form"]
    assert result["commitment"] == ("rectified" if rectified else "revoked")
    assert result["outcome"] == ("approved" if rectified else "revoked")
    assert service.engine.verify_case(service.case_id).ok


def test_broken_commitment_revoked_with_notice_to_the_enterprise(service):
    from agency import documents

    _approve_by_commitment(service)
    _broken(service)
    service.complete("commitment_decision", "eia_report_form", commitment_action="revoke",
                     decision_no="卫环撤〔2026〕1号",
                     decision_reasons="承诺内容与实际不符，依法撤销审批决定",
                     decision_date="2026-06-03")
    assert not service.ready("handover_results")
    service.complete("hand_back_materials", "eia_report_form", by="approval_bureau")
    result = {r["code"]: r for r in service.case().data["item_results"]}["eia_report_form"]
    assert (result["outcome"], result["commitment"]) == ("revoked", "revoked")
    assert result["termination_reason"] == "commitment_broken"
    # The case itself goes on; the office sees the broken commitment on its dashboard.
    assert service.case().status == "running"
    from agency.oversight import figures
    [broken] = figures(service.engine).broken_commitments
    assert (broken["item"], broken["decision"], broken["result"]) == (
        "环境影响报告表审批", "revoke", "revoked")
    assert figures(service.engine, "drc").broken_commitments == []
    # The written notice to the enterprise, issued from the department's decision.
    [choice] = [c for c in documents.choices(service.engine, service.case_id)
                if c.kind == "commitment_decision"]
    agent = Actor("agent_ecology_env", "agent", "ecology_env")
    doc = documents.generate(service.engine, service.case_id, "commitment_decision",
                             choice.source, agent)
    _, html, _ = documents.get_document(service.engine, doc.id, agent)
    for text in ("卫环撤〔2026〕1号", "撤销审批决定", "承诺内容与实际不符", "环境影响报告表审批",
                 service.case().data["project"]["enterprise"]):
        assert text in html
    assert service.engine.verify_case(service.case_id).ok
