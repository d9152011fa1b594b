"""R05 代办 means the agent can always act for the unit (DOMAIN.md): the project unit signs an
agency authorisation (代办委托书) at the start; every step of the unit (acknowledging the
notice and asking its questions, supplying a material, signing a commitment, rating) can be
recorded by the Approval Service Bureau's agent on its behalf, with how the unit confirmed
it and the evidence; the record says 代为办理 wherever it is shown; the enterprise's own page
stays an option, never the only way."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from datetime import date
from typing import Any

import pytest

from agency.enterprise import EnterpriseLinks, UnitTasks
from agency.reference import ReferenceData
from engine import accounts
from engine.actors import Actor
from engine.errors import Conflict, Forbidden, TaskNotFound
from tests.conftest import ROOT
from tests.service import Service, small_project
from tests.test_enterprise_participation import to_dispatch
from tests.webhelpers import create_accounts, csrf_of, logged_in, make_app, text_of

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BUREAU = Actor("agent_approval_bureau", "agent", "approval_bureau")
OFFICE = Actor("office", "office", "leading_group_office")
CALENDAR = ReferenceData.load(ROOT / "data").calendar
AUTHORISATION = {"principal": "中卫市沙坡头区冷链物流有限公司", "signatory": "张伟",
                 "signed_on": "2026-03-02", "signing_method": "paper"}


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return make_app(service.engine, sqlite_url, tmp_path)


def token_of(engine, username: str) -> str:
    with engine.db.transaction() as s:
        return accounts.issue_token(s, username)


def api(client, token: str, method: str, path: str, body: Any = None):  # type: ignore[no-untyped-def]
    return client.open(f"/api/v1{path}", method=method, json=body,
                       headers={"Authorization": f"Bearer {token}"})


def today(service: Service) -> str:
    return service.clock().date().isoformat()


def unit_row(page: str, spec: str) -> str:
    """The row of one of the unit's tasks in the case page's project-unit section."""
    section = re.search(r'<section class="card" id="project-unit">.*?</section>', page, re.S)
    assert section, "the case page has no section for the unit's tasks"
    rows = re.findall(rf'<tr data-spec="{spec}".*?</tr>', section.group(0), re.S)
    assert rows, section.group(0)
    return rows[-1]


def record_on_page(agent, service: Service, case_id: int, spec: str, fields: dict[str, Any],
                   method: str, evidence: str, confirmed_by: str = "张伟"):  # type: ignore[no-untyped-def]
    """The Bureau's agent opens 代为办理 from the case page and submits the form."""
    page = agent.get(f"/cases/{case_id}").get_data(as_text=True)
    link = re.search(rf'<tr data-spec="{spec}" data-task="([^"]+)".*?href="(/cases/{case_id}/'
                     r'unit-tasks/[^"]+)">代为办理</a>', page, re.S)
    assert link, unit_row(page, spec)
    form = agent.get(link.group(2)).get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    return link.group(1), agent.post(link.group(2), data={
        "csrf_token": csrf_of(form), "version": version, **fields,
        "confirmation_method": method, "confirmed_by": confirmed_by,
        "confirmed_on": today(service),
        "evidence": (io.BytesIO(PDF), evidence)}, content_type="multipart/form-data")


# The department's steps that close an item approved by commitment, whatever their order.
CLOSING = {"track_approval": {}, "handover_results": {},
           "verify_commitment": {"commitment_kept": True, "check_date": "2026-06-02",
                                 "check_findings": "污水处理设施已建成"}}


def finish_item(service: Service, item: str) -> None:
    """Complete the item's department steps until it is handed over."""
    while True:
        ready = [t.spec_name for t in service.ready(item=item) if t.spec_name in CLOSING]
        if not ready:
            return
        service.complete(ready[0], item, **CLOSING[ready[0]])


def test_R05_the_bureaus_agent_records_every_step_of_the_unit_through_a_whole_case(
        app, service):
    case_id = to_dispatch(service, small_project(eia="form"))
    agent = logged_in(app, "agent_approval_bureau")
    # The inbox lists the unit's open step with its 代为办理 action.
    inbox = agent.get("/").get_data(as_text=True)
    listed = re.search(r'<section class="card" id="project-unit-tasks">.*?</section>', inbox,
                       re.S)
    assert listed and "确认收到一次性告知" in listed.group(0) and "代为办理" in listed.group(0)
    # Without the unit's agency authorisation nobody may act for it: told, nothing stored.
    before = len(service.engine.case_events(case_id))
    _, refused = record_on_page(agent, service, case_id, "acknowledge_notice", {
        "notice_received": "true", "acknowledged_by": "张伟"}, "phone", "通话记录.pdf")
    assert refused.status_code == 409
    assert "项目单位尚未签署代办委托书" in text_of(refused.get_data(as_text=True))
    assert len(service.engine.case_events(case_id)) == before
    # The authorisation the unit signed is recorded, and its document issued.
    form = agent.get(f"/cases/{case_id}/authorisation").get_data(as_text=True)
    bad = agent.post(f"/cases/{case_id}/authorisation", data={
        "csrf_token": csrf_of(form), "principal": AUTHORISATION["principal"],
        "signed_on": "2026-03-02", "signing_method": "paper"})
    assert bad.status_code == 422 and service.engine.case_events(
        case_id, types=("agency_authorisation_recorded",)) == []
    done = agent.post(f"/cases/{case_id}/authorisation", data={
        "csrf_token": csrf_of(form), **AUTHORISATION}, follow_redirects=True)
    page = text_of(done.get_data(as_text=True))
    assert "代办委托书已登记" in page and "代办委托书：张伟 于 2026-03-02 签署" in page

    # 1. Acknowledging the notice, with the unit's question, confirmed by phone.
    ack_id, response = record_on_page(agent, service, case_id, "acknowledge_notice", {
        "notice_received": "true", "acknowledged_by": "张伟",
        "notice_questions": "环评报告表由谁编制？"}, "phone", "通话记录.pdf")
    assert response.status_code == 302
    case_page = agent.get(f"/cases/{case_id}").get_data(as_text=True)
    row = text_of(unit_row(case_page, "acknowledge_notice"))
    assert "代为办理" in row and "电话确认（张伟" in row and "通话记录.pdf" in row
    assert not service.ready("acknowledge_notice")
    assert service.engine.get_task(ack_id, BUREAU).data["notice_questions"] == \
        "环评报告表由谁编制？"

    # 2. Supplying a material accepted with deficiency, confirmed on a visit.
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    due = CALENDAR.add_working_days(date(2026, 3, 2), 5)
    service.complete("check_materials", "project_filing", decision="deficiency",
                     missing_materials=["project_code_proof"], supply_due=due.isoformat())
    _, missing = record_on_page(agent, service, case_id, "supply_material", {
        "supplied_date": today(service)}, "visit", "上门记录.pdf")
    assert missing.status_code == 422 and service.ready("supply_material")
    _, response = record_on_page(agent, service, case_id, "supply_material", {
        "supplied_materials": "project_code_proof", "supplied_date": today(service)},
        "visit", "上门记录.pdf")
    assert response.status_code == 302
    assert not service.ready("supply_material")
    row = text_of(unit_row(agent.get(f"/cases/{case_id}").get_data(as_text=True),
                           "supply_material"))
    assert "代为办理" in row and "上门确认（张伟" in row and "上门记录.pdf" in row
    service.complete("track_approval", "project_filing")
    service.complete("handover_results", "project_filing")

    # 3. Signing the commitment letter, collected on paper — through the API.
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form", by="ecology_env",
                     decision="commitment")
    token = token_of(service.engine, "agent_approval_bureau")
    client = app.test_client()
    listing = api(client, token, "GET", f"/cases/{case_id}/unit-tasks").get_json()
    assert listing["authorisation"]["signatory"] == "张伟"
    by_spec = {t["spec_name"]: t for t in listing["tasks"]}
    assert set(by_spec) == {"sign_commitment", "rate_item"}
    sign = by_spec["sign_commitment"]
    assert sign["form_schema"]["title"] == "签署告知承诺书"
    evidence = [{"filename": "告知承诺书（签字盖章）.pdf",
                 "content_base64": base64.b64encode(PDF).decode()}]
    incomplete = api(client, token, "POST",
                     f"/cases/{case_id}/unit-tasks/{sign['id']}/complete-on-behalf", {
                         "data": {"commitment_accepted": True, "signatory": "张伟",
                                  "letter_signed_date": today(service)},
                         "confirmation": {"confirmation_method": "paper"},
                         "evidence": evidence, "version": sign["version"]})
    assert incomplete.status_code == 422
    assert {f["field"] for f in incomplete.get_json()["error"]["fields"]} == {
        "confirmation.confirmed_by", "confirmation.confirmed_on"}
    signed = api(client, token, "POST",
                 f"/cases/{case_id}/unit-tasks/{sign['id']}/complete-on-behalf", {
                     "data": {"commitment_accepted": True, "signatory": "张伟",
                              "letter_signed_date": today(service)},
                     "confirmation": {"confirmation_method": "paper", "confirmed_by": "张伟",
                                      "confirmed_on": today(service)},
                     "evidence": evidence, "version": sign["version"]})
    assert signed.status_code == 200, signed.get_data(as_text=True)
    body = signed.get_json()
    assert body["task"]["state"] == "completed"
    assert body["on_behalf"]["confirmation_method_title"] == "纸质材料签字确认"
    assert body["on_behalf"]["evidence"][0]["filename"] == "告知承诺书（签字盖章）.pdf"
    assert "record_commitment" in {t["spec_name"] for t in body["case"]["open_tasks"]}
    service.complete("record_commitment", "eia_report_form", letter_no="CN-2026-003",
                     letter_signed_date="2026-03-05", verify_by="2026-06-02",
                     promised_conditions="三个月内建成污水处理设施")
    finish_item(service, "eia_report_form")

    # 4. Rating each item and the service, as the unit said on the phone.
    while [t for t in service.ready() if t.spec_name in ("rate_item", "rate_service")]:
        spec = next(t.spec_name for t in service.ready()
                    if t.spec_name in ("rate_item", "rate_service"))
        _, response = record_on_page(agent, service, case_id, spec, {
            "service_rating": "5", "rating_comment": "全程代办，没跑一趟"}, "phone",
            "回访电话记录.pdf")
        assert response.status_code == 302
    # Nothing of the unit is left open; its ratings count on the dashboard as its own.
    assert not [t for t in service.ready() if t.department == "project_unit"]
    from agency import team

    assert sorted((r.item_code or "", r.score) for r in team.ratings(service.engine)
                  if r.case_id == case_id) == [("", 5), ("eia_report_form", 5),
                                               ("project_filing", 5)]

    # Every step of the unit was done by the agent for it, each recorded as such.
    proxied = [e for e in service.engine.case_events(case_id) if e.type == "task_completed"
               and e.data.get("on_behalf_of")]
    assert {e.data["task_spec"] for e in proxied} == {
        "acknowledge_notice", "supply_material", "sign_commitment", "rate_item",
        "rate_service"}
    assert {e.actor for e in proxied} == {"agent_approval_bureau"}
    assert {e.data["on_behalf_of"] for e in proxied} == {f"enterprise:{case_id}"}
    assert all(e.data["confirmation"]["evidence"] for e in proxied)
    # The task's record says so.
    task_page = text_of(agent.get(f"/tasks/{ack_id}").get_data(as_text=True))
    assert "代为办理" in task_page and "电话确认（张伟" in task_page
    # So does the case's timeline.
    timeline = re.search(r'<ol class="timeline">.*?</ol>',
                         agent.get(f"/cases/{case_id}").get_data(as_text=True), re.S).group(0)
    entries = re.findall(r"<li>.*?</li>", timeline)
    assert sum(1 for e in entries if 'data-event="task_completed"' in e and "代为办理" in e
               ) == len(proxied)
    # (each evidence file's upload reads 代为办理 too)
    assert sum(1 for e in entries if 'data-event="attachment_added"' in e and "代为办理" in e
               ) == len(proxied)
    # And the enterprise's own page.
    token_link, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    unit_page = text_of(app.test_client().get(f"/p/{token_link}").get_data(as_text=True))
    assert "代办员代贵单位办理的事项" in unit_page
    assert "由代办员依据贵单位签署的代办委托书代为办理" in unit_page  # the page says both ways
    assert re.search(r"确认收到一次性告知 ： 代为办理 ，\S+ 代贵单位办理", unit_page)
    assert "确认方式：纸质材料签字确认（张伟" in unit_page
    assert "代办委托书" in unit_page  # the authorisation is among the documents addressed to it
    # The auditors' history and the export.
    auditor = logged_in(app, "auditor")
    history = text_of(auditor.get(f"/audit/cases/{case_id}").get_data(as_text=True))
    assert history.count("代为办理 ：agent_approval_bureau 代项目单位办理 · 项目单位确认方式") == \
        len(proxied)
    exported = auditor.get(f"/audit/cases/{case_id}/export.json")
    assert exported.status_code == 200
    events = [e for e in json.loads(exported.get_data())["events"]
              if e.get("type") == "task_completed"]
    assert sum(1 for e in events if e["data"].get("on_behalf_of")) == len(proxied)
    assert service.engine.verify_case(case_id).ok


@pytest.fixture
def supply_case(service) -> tuple[int, str]:
    """A case whose unit owes a material, its authorisation recorded: (case, task id)."""
    return owed_material(service)


def owed_material(service: Service) -> tuple[int, str]:
    """Drive a case until its unit owes a material, its authorisation recorded."""
    case_id = to_dispatch(service, small_project())
    UnitTasks(service.engine).record_authorisation(case_id, AUTHORISATION, BUREAU)
    service.complete("acknowledge_notice")
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    due = CALENDAR.add_working_days(date(2026, 3, 2), 5)
    service.complete("check_materials", "project_filing", decision="deficiency",
                     missing_materials=["project_code_proof"], supply_due=due.isoformat())
    return case_id, service.task("supply_material").id


SUPPLY = {"supplied_materials": ["project_code_proof"], "supplied_date": "2026-03-03"}
PHONE = {"confirmation_method": "phone", "confirmed_by": "张伟", "confirmed_on": "2026-03-02"}


def test_R05_other_departments_may_not_act_for_the_unit(app, service, supply_case):
    case_id, task_id = supply_case
    create_accounts(service.engine, [("agent_drc", "agent", "drc")])
    before = len(service.engine.case_events(case_id))
    # The engine: only the Bureau's agents (the project unit's proxy) may.
    for actor in (Actor("agent_drc", "agent", "drc"), Actor("leader_approval_bureau", "leader",
                                                             "approval_bureau"), OFFICE):
        with pytest.raises((Forbidden, TaskNotFound)):
            UnitTasks(service.engine).complete(case_id, task_id, SUPPLY, PHONE,
                                               [("记录.pdf", PDF)], actor)
    # An agent of a department involved in the case reads it, but is told it may not act.
    water = logged_in(app, "agent_drc")
    page = water.get(f"/cases/{case_id}")
    assert page.status_code == 200 and "/unit-tasks/" not in page.get_data(as_text=True)
    refused = water.get(f"/cases/{case_id}/unit-tasks/{task_id}")
    assert refused.status_code == 403
    assert "只有市审批服务管理局的代办员可以代项目单位办理" in text_of(
        refused.get_data(as_text=True))
    token = token_of(service.engine, "agent_drc")
    answer = api(app.test_client(), token, "POST",
                 f"/cases/{case_id}/unit-tasks/{task_id}/complete-on-behalf", {
                     "data": SUPPLY, "confirmation": PHONE, "version": 1,
                     "evidence": [{"filename": "记录.pdf",
                                   "content_base64": base64.b64encode(PDF).decode()}]})
    assert answer.status_code == 403 and "市审批服务管理局" in answer.get_json()["error"][
        "message"]
    assert api(app.test_client(), token, "GET",
               f"/cases/{case_id}/unit-tasks").status_code == 403
    # An agent of a unit outside the case does not even see it.
    outsider = logged_in(app, "agent_water")
    assert outsider.get(f"/cases/{case_id}/unit-tasks/{task_id}").status_code == 404
    # A form without its CSRF token is refused.
    agent = logged_in(app, "agent_approval_bureau")
    assert agent.post(f"/cases/{case_id}/unit-tasks/{task_id}", data={
        "confirmation_method": "phone"}).status_code == 400
    # Not one of the unit's tasks: not found.
    other = service.task("track_approval") if service.ready("track_approval") else \
        service.ready()[0]
    if other.department != "project_unit":
        assert agent.get(f"/cases/{case_id}/unit-tasks/{other.id}").status_code == 404
    assert len(service.engine.case_events(case_id)) == before
    assert service.ready("supply_material")


def test_R05_the_unit_first_then_the_agent_gets_a_clear_409_and_keeps_what_it_typed(
        app, service, supply_case):
    case_id, task_id = supply_case
    agent = logged_in(app, "agent_approval_bureau")
    form = agent.get(f"/cases/{case_id}/unit-tasks/{task_id}").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    # Meanwhile the unit supplies the material on its own page.
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    EnterpriseLinks(service.engine).complete(token, task_id, SUPPLY, None)
    late = agent.post(f"/cases/{case_id}/unit-tasks/{task_id}", data={
        "csrf_token": csrf_of(form), "version": version, "supplied_materials":
        "project_code_proof", "supplied_date": "2026-03-03", "confirmation_method": "phone",
        "confirmed_by": "张伟", "confirmed_on": "2026-03-02", "confirmation_note": "电话确认已补",
        "evidence": (io.BytesIO(PDF), "通话记录.pdf")}, content_type="multipart/form-data")
    assert late.status_code == 409
    text = text_of(late.get_data(as_text=True))
    assert "该任务已由 项目单位 于" in text and "本次提交未做任何更改" in text
    assert "电话确认已补" in late.get_data(as_text=True)  # nothing the agent typed is lost
    # The unit's completion stands, alone; the agent's evidence was not stored either.
    completions = [e for e in service.engine.case_events(case_id)
                   if e.type == "task_completed" and e.data["task_id"] == task_id]
    assert [(e.actor, e.data.get("on_behalf_of")) for e in completions] == [
        (f"enterprise:{case_id}", None)]
    assert service.engine.list_attachments(case_id=case_id, task_id=task_id) == []
    assert service.ready("track_approval", "project_filing")
    assert service.engine.verify_case(case_id).ok


def test_R05_the_agent_first_then_the_unit_is_told_who_did_it_for_it(app, service,
                                                                      supply_case):
    case_id, task_id = supply_case
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    visitor = app.test_client()
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    form = re.search(r'data-spec="supply_material".*?</form>', page, re.S).group(0)
    UnitTasks(service.engine).complete(case_id, task_id, SUPPLY, PHONE,
                                       [("通话记录.pdf", PDF)], BUREAU)
    late = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf_of(form), "version": "1", "action": "complete",
        "supplied_materials": "project_code_proof", "supplied_date": "2026-03-03"})
    assert late.status_code == 409
    text = text_of(late.get_data(as_text=True))
    assert "已由代办员" in text and "代贵单位办理（代为办理）" in text
    assert "代办员代贵单位办理的事项" in text  # and the page shows it done by the agent
    completions = [e for e in service.engine.case_events(case_id)
                   if e.type == "task_completed" and e.data["task_id"] == task_id]
    assert [e.actor for e in completions] == ["agent_approval_bureau"]
    assert service.engine.verify_case(case_id).ok


@pytest.mark.parametrize("attempt", range(3))
def test_R05_the_unit_and_the_agent_at_the_same_moment_one_wins(make_pack_engine, db_url,
                                                                  clock, attempt):
    service = Service(make_pack_engine(db_url), clock)
    case_id, task_id = owed_material(service)
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def run(who: str, action) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            action()
            outcomes[who] = "done"
        except Conflict as exc:
            outcomes[who] = exc.message

    unit = threading.Thread(target=run, args=("unit", lambda: EnterpriseLinks(
        service.engine).complete(token, task_id, SUPPLY, None)))
    agent = threading.Thread(target=run, args=("agent", lambda: UnitTasks(
        service.engine).complete(case_id, task_id, SUPPLY, PHONE, [("记录.pdf", PDF)],
                                 BUREAU)))
    for thread in (unit, agent):
        thread.start()
    for thread in (unit, agent):
        thread.join()
    assert sorted(outcomes) == ["agent", "unit"]
    winners = [who for who, outcome in outcomes.items() if outcome == "done"]
    assert len(winners) == 1, outcomes
    [loser] = [who for who in outcomes if who not in winners]
    assert "already completed by" in outcomes[loser]
    completions = [e for e in service.engine.case_events(case_id)
                   if e.type == "task_completed" and e.data["task_id"] == task_id]
    assert len(completions) == 1
    assert bool(completions[0].data.get("on_behalf_of")) == (winners == ["agent"])
    assert len(service.engine.list_attachments(case_id=case_id, task_id=task_id)) == (
        1 if winners == ["agent"] else 0)
    assert service.ready("track_approval", "project_filing")
    assert service.engine.verify_case(case_id).ok


def test_R05_old_cases_without_proxied_steps_replay_and_the_unit_keeps_its_page(
        service, supply_case):
    case_id, task_id = supply_case
    # The unit still does its own step on its page; the record says it did.
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    EnterpriseLinks(service.engine).complete(token, task_id, SUPPLY, None)
    [done] = [e for e in service.engine.case_events(case_id) if e.type == "task_completed"
              and e.data["task_id"] == task_id]
    assert "on_behalf_of" not in done.data and done.actor == f"enterprise:{case_id}"
    # The case's every event re-executes, proxied or not.
    assert service.engine.verify_case(case_id).ok

