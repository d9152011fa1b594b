"""The project unit acknowledges the one-time notice and signs the commitment letter on its
page; return visits follow the project's milestones; agents record consultations and
follow-ups on a case."""

from __future__ import annotations

import io
import json
import re
import shutil
from datetime import date

import pytest

from agency import documents
from agency.enterprise import EnterpriseLinks
from agency.records import Query, case_notes, record_note, search
from engine import accounts
from engine.actors import Actor
from engine.errors import Forbidden, InvalidData
from tests.conftest import PACK, ROOT
from tests.service import KEY_PROJECT, Service, small_project
from tests.test_enterprise_tasks import PDF, unit_task_form
from tests.test_scenarios import CALENDAR
from tests.test_scenarios_prerequisites import _engine
from tests.webhelpers import PASSWORD, csrf_of, logged_in, make_app, text_of

OFFICE = Actor("office", "office", "leading_group_office")
BUREAU = Actor("agent_approval_bureau", "agent", "approval_bureau")


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    made = make_app(service.engine, sqlite_url, tmp_path)
    with service.engine.db.transaction() as s:
        for department in ("drc", "ecology_env"):
            accounts.create_user(s, f"agent_{department}", PASSWORD, "agent",
                                 department=department, display_name=f"agent_{department}",
                                 now=service.engine.clock())
    return made


def to_dispatch(service: Service, project: dict) -> int:
    """Registration through dispatch, the notice not yet acknowledged."""
    service.start(project)
    service.complete("select_items", selected_items=service.case().data["selected_items"])
    for spec in ("review_material_list", "one_time_notice", "dispatch"):
        service.complete(spec)
    return service.case_id


def test_the_unit_acknowledges_the_one_time_notice_on_its_page(app, service):
    case_id = to_dispatch(service, small_project())
    # The acknowledgement runs beside the work: dispatch has started phase 1 already.
    assert service.ready("confirm_project_code")
    [ack] = service.ready("acknowledge_notice")
    assert ack.department == "project_unit" and ack.due_at is None
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    notice = documents.generate(service.engine, case_id, "one_time_notice", "", BUREAU)
    visitor = app.test_client()
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    assert "确认收到一次性告知" in page and "一次性告知：申报材料清单" in page
    # The notice itself is at hand in the task, as a PDF the unit can open.
    form = re.search(r'data-spec="acknowledge_notice".*?</form>', page, re.S).group(0)
    link = f"/p/{token}/documents/{notice.id}.pdf"
    assert link in form and notice.title in form
    assert visitor.get(link).data.startswith(b"%PDF")
    task_id, csrf, version = unit_task_form(page, "acknowledge_notice")
    # Not ticked: told on the page, nothing stored.
    refused = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "acknowledged_by": "张伟"})
    assert refused.status_code == 422
    assert "请勾选确认已收到一次性告知后再提交" in refused.get_data(as_text=True)
    assert service.ready("acknowledge_notice")
    done = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "notice_received": "true",
        "acknowledged_by": "张伟", "notice_questions": "环评报告表由谁编制？"},
        follow_redirects=True)
    assert done.status_code == 200 and not service.ready("acknowledge_notice")
    [event] = [e for e in service.engine.case_events(case_id) if e.type == "task_completed"
               and e.data.get("task_spec") == "acknowledge_notice"]
    assert event.actor == f"enterprise:{case_id}"
    assert event.data["data"]["notice_questions"] == "环评报告表由谁编制？"
    # The Bureau's agent sees the acknowledgement and its time on the case page.
    agent = logged_in(app, "agent_approval_bureau")
    section = re.search(r'<section class="card" id="project-unit">.*?</section>',
                        agent.get(f"/cases/{case_id}").get_data(as_text=True), re.S).group(0)
    text = text_of(section)
    assert "确认收到一次性告知" in text and "已由项目单位完成" in text
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", text)
    assert service.engine.verify_case(case_id).ok


def test_an_unacknowledged_notice_goes_to_the_bureau_after_three_working_days(service, clock):
    case_id = to_dispatch(service, small_project())
    clock.advance(days=2)
    service.engine.fire_due_timers()
    assert service.ready("acknowledge_notice") and not service.ready("confirm_notice_received")
    clock.advance(days=5)  # past three working days (a weekend between)
    service.engine.fire_due_timers()
    assert not service.ready("acknowledge_notice")
    follow = service.task("confirm_notice_received")
    assert follow.department == "approval_bureau" and follow.due_at is not None
    service.complete("confirm_notice_received")
    # The case went on meanwhile and is not held up by the acknowledgement.
    assert service.ready("confirm_project_code")
    assert service.engine.verify_case(case_id).ok


def commitment_case(service: Service) -> int:
    to_dispatch(service, small_project(eia="form"))
    service.complete("acknowledge_notice")
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form", by="ecology_env",
                     decision="commitment")
    return service.case_id


def test_the_unit_signs_and_uploads_the_commitment_letter_then_the_department_records_it(
        app, service):
    case_id = commitment_case(service)
    # The department waits for the enterprise's signature before it records the letter.
    assert not service.ready("record_commitment")
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    visitor = app.test_client()
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    task_id, csrf, version = unit_task_form(page, "sign_commitment")
    assert "签署并上传告知承诺书" in page
    refused = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "upload",
        "attachment": (io.BytesIO(b"MZ\x90\x00not a pdf"), "承诺书.pdf")},
        content_type="multipart/form-data")
    assert refused.status_code == 422
    visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "upload",
        "attachment": (io.BytesIO(PDF), "告知承诺书（已签章）.pdf")},
        content_type="multipart/form-data")
    missing = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "signatory": "张伟",
        "letter_signed_date": "2026-03-05"})
    assert missing.status_code == 422 and "请勾选确认承诺内容后再提交" in \
        missing.get_data(as_text=True)
    visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "commitment_accepted": "true",
        "signatory": "张伟", "letter_signed_date": "2026-03-05"})
    assert not service.ready("sign_commitment")
    record = service.task("record_commitment", "eia_report_form")
    assert record.department == "ecology_env"
    # The department's agent sees the signed letter the enterprise uploaded.
    [letter] = service.engine.list_attachments(case_id=case_id, task_id=task_id)
    assert letter.filename == "告知承诺书（已签章）.pdf"
    agent = logged_in(app, "agent_ecology_env")
    assert "告知承诺书（已签章）.pdf" in agent.get(f"/cases/{case_id}").get_data(as_text=True)
    events = [(e.type, e.actor) for e in service.engine.case_events(case_id)
              if e.type in ("attachment_added", "task_completed")][-2:]
    assert events == [("attachment_added", f"enterprise:{case_id}"),
                      ("task_completed", f"enterprise:{case_id}")]
    service.complete("record_commitment", "eia_report_form", letter_no="CN-2026-003",
                     letter_signed_date="2026-03-05", verify_by="2026-06-02",
                     promised_conditions="三个月内建成污水处理设施")
    assert service.ready("track_approval", "eia_report_form")
    assert service.engine.verify_case(case_id).ok


def test_an_unsigned_commitment_is_collected_on_paper_after_five_working_days(service, clock):
    case_id = commitment_case(service)
    clock.advance(days=8)
    service.engine.fire_due_timers()
    assert not service.ready("sign_commitment")
    assert service.task("record_commitment", "eia_report_form").department == "ecology_env"
    assert service.engine.verify_case(case_id).ok


@pytest.fixture
def visits_engine(tmp_path, sqlite_url, clock):
    """The real pack with return visits configured after the filing (an item), construction
    start and production start (stages recorded at visits)."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    (data / "return_visits.json").write_text(json.dumps({"visits": [
        {"code": "after_filing", "name": "备案后回访", "after_item": "project_filing",
         "delay_working_days": 2, "department": "approval_bureau"},
        {"code": "after_permit", "name": "施工许可后回访", "after_item": "construction_permit",
         "delay_working_days": 2, "department": "approval_bureau"},
        {"code": "after_start", "name": "开工后回访", "after_stage": "construction",
         "delay_working_days": 3, "department": "housing_construction"},
        {"code": "after_production", "name": "投产后回访", "after_stage": "production",
         "delay_working_days": 1, "department": "responsible_unit"}]}), encoding="utf-8")
    engine = _engine(sqlite_url, clock, tmp_path, PACK, data)
    yield engine
    engine.db.dispose()


def filed(engine, clock) -> Service:
    """A case of a small project through dispatch, its project filing approved."""
    service = Service(engine, clock)
    to_dispatch(service, small_project())
    service.complete("acknowledge_notice")
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    return service


def visits(service: Service) -> list[tuple[str, str | None]]:
    return [(t.spec_name, t.department) for t in service.ready("record_milestone_visit")]


def test_return_visits_follow_the_configured_milestones(visits_engine, clock):
    service = filed(visits_engine, clock)
    # Milestone: the item approved; the visit comes the configured working days later. The
    # project has no construction permit: no visit waits for it.
    assert visits(service) == []
    clock.advance(days=1)
    service.engine.fire_due_timers()
    assert visits(service) == []
    clock.advance(days=3)
    service.engine.fire_due_timers()
    assert visits(service) == [("record_milestone_visit", "approval_bureau")]
    service.complete("record_milestone_visit", visit_date="2026-03-10", visit_method="phone",
                     project_stage="not_started", satisfaction="satisfied")
    assert visits(service) == []
    # Milestone: construction started (recorded at a visit), for the housing bureau.
    clock.advance(days=31)
    service.engine.fire_due_timers()
    service.complete("record_visit", project_stage="construction", continue_visits=True)
    clock.advance(days=5)
    service.engine.fire_due_timers()
    assert visits(service) == [("record_milestone_visit", "housing_construction")]
    service.complete("record_milestone_visit", visit_date="2026-04-20", visit_method="onsite",
                     project_stage="production", satisfaction="very_satisfied")
    # Milestone: production started, for the project's responsible unit.
    clock.advance(days=3)
    service.engine.fire_due_timers()
    assert visits(service) == [("record_milestone_visit", "industry_it")]
    service.complete("record_milestone_visit", visit_date="2026-04-24", visit_method="onsite",
                     project_stage="production", satisfaction="very_satisfied")
    records = search(visits_engine, "visits", Query())
    assert sum(r.title == "节点回访企业" for r in records) == 3
    clock.advance(days=31)
    service.engine.fire_due_timers()
    service.complete("record_visit", continue_visits=False)
    service.complete("close_case")
    assert service.case().status == "completed"
    assert visits_engine.verify_case(service.case_id).ok


def test_closing_the_case_withdraws_the_visits_not_yet_due(visits_engine, clock):
    service = filed(visits_engine, clock)
    clock.advance(days=31)
    service.engine.fire_due_timers()
    [visit] = service.ready("record_milestone_visit")  # due and not yet held
    service.complete("record_visit", project_stage="construction")
    service.complete("close_case")
    case = service.case()
    assert case.status == "completed" and not service.ready()
    assert visit.id not in {t.id for t in service.ready()}
    assert visits_engine.verify_case(case.id).ok


def test_agents_record_consultations_and_follow_ups_on_a_case(app, service):
    case_id = to_dispatch(service, small_project())
    agent = logged_in(app, "agent_drc")
    page = agent.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="note-consultations"' in page and 'id="note-follow_ups"' in page
    csrf = csrf_of(page)
    before = len(service.engine.case_events(case_id))
    # Missing answer: a clear 422 naming the field, nothing stored.
    bad = agent.post(f"/records/cases/{case_id}/consultations", data={
        "csrf_token": csrf, "question": "能否申请技改补助？"})
    assert bad.status_code == 422
    assert "解答意见：必填" in text_of(bad.get_data(as_text=True))
    assert "能否申请技改补助？" in bad.get_data(as_text=True)  # kept for correction
    assert len(service.engine.case_events(case_id)) == before
    # Without the CSRF token: refused.
    assert agent.post(f"/records/cases/{case_id}/follow_ups", data={
        "action": "电话", "outcome": "好"}).status_code == 400
    ok = agent.post(f"/records/cases/{case_id}/consultations", data={
        "csrf_token": csrf, "question": "能否申请技改补助？",
        "answer": "符合条件，可在投产后申报", "policy": "中卫市工业技改补助办法"},
        follow_redirects=True)
    assert ok.status_code == 200
    agent.post(f"/records/cases/{case_id}/follow_ups", data={
        "csrf_token": csrf, "action": "协调供电公司提前勘察", "outcome": "已确定接电方案"})
    [consultation, follow_up] = case_notes(service.engine, case_id)
    assert (consultation.kind, consultation.department, consultation.recorded_by) == (
        "consultations", "drc", "agent_drc")
    assert follow_up.data == {"action": "协调供电公司提前勘察", "outcome": "已确定接电方案"}
    events = [e for e in service.engine.case_events(case_id)
              if e.type in ("consultation_recorded", "follow_up_recorded")]
    assert [e.actor for e in events] == ["agent_drc", "agent_drc"]
    assert service.engine.verify_case(case_id).ok
    text = text_of(agent.get(f"/cases/{case_id}").get_data(as_text=True))
    assert "中卫市工业技改补助办法" in text and "已确定接电方案" in text
    # On the records pages, by kind, with the case and the department.
    office = logged_in(app, "office")
    listed = text_of(office.get("/records/consultations").get_data(as_text=True))
    assert "能否申请技改补助？" in listed and "市发展和改革委员会" in listed
    assert "协调供电公司提前勘察" in text_of(
        office.get("/records/follow_ups?q=供电").get_data(as_text=True))
    assert "协调供电公司" not in text_of(
        office.get("/records/follow_ups?q=不存在").get_data(as_text=True))


def test_only_agents_who_may_read_the_case_record_notes(service):
    case_id = to_dispatch(service, small_project())
    values = {"action": "回访", "outcome": "无困难"}
    for actor in (OFFICE, Actor("leader_drc", "leader", "drc"),
                  Actor("auditor", "auditor", None)):
        with pytest.raises(Forbidden):
            record_note(service.engine, case_id, "follow_ups", values, actor)
    with pytest.raises(InvalidData) as refused:
        record_note(service.engine, case_id, "follow_ups", {"action": "x" * 2001,
                                                            "outcome": ""}, BUREAU)
    assert {e.field for e in refused.value.errors} == {"action", "outcome"}
    assert case_notes(service.engine, case_id) == []
    record_note(service.engine, case_id, "follow_ups", values, BUREAU)
    assert [n.recorded_by for n in case_notes(service.engine, case_id)] == [BUREAU.username]


def test_the_key_project_gets_a_visit_after_its_construction_permit_by_default():
    """The shipped configuration: after the construction permit, construction start and
    production start (data/return_visits.json)."""
    from agency.reference import ReferenceData

    plan = ReferenceData.load(ROOT / "data").return_visits
    assert [(v["after_item"] or v["after_stage"], v["department"]) for v in plan] == [
        ("construction_permit", "approval_bureau"), ("construction", "housing_construction"),
        ("production", "responsible_unit")]
    assert KEY_PROJECT["buildings"] and date(2026, 3, 2) < CALENDAR.add_working_days(
        date(2026, 3, 2), plan[0]["delay_working_days"])
