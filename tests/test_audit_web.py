"""The audit area: search, history and step-through replay, verification, exports, heatmap,
operations log; auditors read everything and change nothing."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select, text

from engine import accounts
from engine.store.models import Case, Event, HumanTask, Timer, User
from tests.audit_cases import REJECTION_REASONS, rejected_twice_then_accepted
from tests.service import OFFICE, fresh_code, small_project
from tests.test_audit import _tamper
from tests.test_web_smoke import csrf_of, login
from webapp import create_app

ROLES = {"auditor": None, "office": "leading_group_office", "admin": None,
         "agent": "approval_bureau", "leader": "drc"}


@pytest.fixture
def audit_app(make_pack_engine, sqlite_url, clock, tmp_path):
    engine = make_pack_engine(sqlite_url)
    with engine.db.transaction() as s:
        for role, department in ROLES.items():
            accounts.create_user(s, role, f"password-{role}", role, department=department,
                                 display_name=f"{role}用户", now=engine.clock(), actor="admin")
    service = rejected_twice_then_accepted(engine, clock)
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    app.config["CASE_ID"] = service.case_id
    return app


def client_as(app, role):
    client = app.test_client()
    assert login(client, role, f"password-{role}").status_code == 302
    return client


def rejection_seqs(engine, case_id):
    return [e.seq for e in engine.case_events(case_id)
            if e.data.get("data", {}).get("decision") == "reject"]


def diagram_data(page):
    return json.loads(re.search(r'class="diagram-data">(.*?)</script>', page, re.S).group(1))


@pytest.mark.parametrize("query, found", [
    ("project=冷链", True), ("project=2026-640502-59-03-000311", True), ("project=不存在", False),
    ("enterprise=智造科技", True), ("enterprise=别的公司", False),
    ("department=drc", True), ("department=water", False),
    ("agent=agent_drc", True), ("agent=nobody", False),
    ("item=project_filing", True), ("item=construction_permit", False),
    ("status=completed", True), ("status=running", False),
    ("from=2026-03-02&to=2026-03-02", True), ("from=2026-03-03", False),
    ("overdue=1", False),
])
def test_auditors_search_cases_by_every_criterion(audit_app, query, found):
    page = client_as(audit_app, "auditor").get(f"/audit/?{query}").get_data(as_text=True)
    results = page.split('id="results"')[1]
    assert ("沙坡头区农产品冷链仓储项目" in results) is found
    assert ("共 1 个案件" if found else "没有符合条件的案件") in page


def test_a_bad_date_is_a_clear_error(audit_app):
    response = client_as(audit_app, "auditor").get("/audit/?from=03/02/2026")
    assert response.status_code == 400


def test_the_timeline_shows_who_when_what_and_the_data_diff(audit_app):
    case_id = audit_app.config["CASE_ID"]
    page = client_as(audit_app, "auditor").get(f"/audit/cases/{case_id}").get_data(as_text=True)
    timeline = page.split('id="timeline"')[1]
    assert timeline.count("<li id=\"event-") == 20
    assert "agent_drc" in timeline and "核对、检查、接收材料并受理" in timeline
    assert "申请表未加盖公章" in timeline and "申请表法定代表人签字缺失" in timeline
    # The dispatch step shows the case data it added, as a diff.
    dispatch = timeline.split('id="event-5"')[1].split("</li>")[0]
    assert "dispatch_no" in dispatch and "PQ-2026-001" in dispatch and "新增" in dispatch
    assert "2026-03-02 09:00" in timeline  # Beijing time


def test_stepping_back_to_a_rejection_shows_the_case_as_it_was(audit_app):
    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    first = rejection_seqs(engine, case_id)[0]
    client = client_as(audit_app, "auditor")
    page = client.get(f"/audit/cases/{case_id}?step={first}").get_data(as_text=True)
    step = page.split('id="step"')[1].split('id="timeline"')[0]
    assert f'value="{first}"' in step and "营业执照已过期" in step
    assert f"step={first - 1}" in step and f"step={first + 1}" in step
    assert "一次性告知不予受理原因" in step.split('id="open-tasks"')[1]
    data = diagram_data(page)
    assert "check_materials" in data["states"]["stage_handling"]["completed"]
    assert data["states"]["stage_handling"]["active"] == ["notify_rejection"]
    assert "close_case" not in data["states"]["case_flow"]["completed"]
    assert '<option value="stage_handling" selected' in page
    assert client.get(f"/audit/cases/{case_id}?step=500").status_code == 404


def test_verify_passes_then_names_the_tampered_event(audit_app):
    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    client = client_as(audit_app, "auditor")
    page = client.get(f"/audit/cases/{case_id}?verify=1").get_data(as_text=True)
    assert "核验通过：20 个事件" in page
    seq = rejection_seqs(engine, case_id)[1]
    _tamper(engine, "UPDATE event SET data = :d WHERE case_id = :c AND seq = :s",
            c=case_id, s=seq, d='{"task_id": "x", "data": {"decision": "accept"}}')
    page = client.get(f"/audit/cases/{case_id}?verify=1").get_data(as_text=True)
    assert f"核验未通过：第 {seq} 个事件处不一致" in page
    assert "altered after it was recorded" in page


def test_exports_json_and_a_printable_report_that_verify_offline(audit_app, tmp_path):
    from engine.audit.export import read_export, verify_export

    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    client = client_as(audit_app, "auditor")
    exported = client.get(f"/audit/cases/{case_id}/export.json")
    assert exported.headers["Content-Disposition"].endswith(f'case-{case_id}.json"')
    document = exported.get_json()
    assert verify_export(document, engine.script_engine).ok
    report = client.get(f"/audit/cases/{case_id}/report.html").get_data(as_text=True)
    assert "案件审计报告" in report and "申请表法定代表人签字缺失" in report
    assert "BpmnJS" in report and "<bpmn:definitions" in json.dumps(diagram_data(report))
    embedded = read_export(report)
    assert embedded["case"]["last_hash"] == document["case"]["last_hash"]
    assert verify_export(embedded, engine.script_engine).ok


def test_the_heatmap_counts_cases_and_median_task_times(audit_app):
    client = client_as(audit_app, "auditor")
    listing = client.get("/audit/processes").get_data(as_text=True)
    assert "/audit/processes/case_flow/1" in listing
    page = client.get("/audit/processes/case_flow/1").get_data(as_text=True)
    data = diagram_data(page)
    assert data["total"] == 1
    assert data["heat"]["case_flow"]["dispatch"]["cases"] == 1
    # check_materials ran three times; each waited 20 hours after preparation.
    check = data["heat"]["stage_handling"]["check_materials"]
    assert (check["done"], check["median"]) == (3, 20.0)
    slowest = page.index('id="slowest"')
    # the slowest elements are named, not shown by id
    assert (page.index("核对、检查、接收材料并受理", slowest)
            < page.index("填写并分发审批任务派遣单", slowest))
    assert client.get("/audit/processes/case_flow/9").status_code == 404


def test_the_operations_log_lists_administrators_actions(audit_app):
    page = client_as(audit_app, "auditor").get("/audit/ops").get_data(as_text=True)
    assert "哈希链完整" in page
    for words in ("创建账号", "保存流程版本", "数据库结构迁移", "auditor"):
        assert words in page


@pytest.mark.parametrize("role, status", [("auditor", 200), ("office", 200), ("admin", 200),
                                          ("agent", 403), ("leader", 403)])
def test_only_auditors_office_and_admins_open_the_audit_area(audit_app, role, status):
    client = client_as(audit_app, role)
    case_id = audit_app.config["CASE_ID"]
    for path in ("/audit/", f"/audit/cases/{case_id}", f"/audit/cases/{case_id}/export.json",
                 f"/audit/cases/{case_id}/report.html", "/audit/processes",
                 "/audit/processes/case_flow/1", "/audit/ops"):
        assert client.get(path).status_code == status, path
    home = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert ("/audit/" in home) is (status == 200)


def _snapshot(engine):
    with engine.db.reading() as s:
        return {
            "events": s.scalar(select(func.count()).select_from(Event)),
            "tasks": sorted((t.id, t.state, t.assignee, t.version, t.completed_by)
                            for t in s.scalars(select(HumanTask))),
            "cases": sorted((c.id, c.status, c.state_version, c.event_seq)
                            for c in s.scalars(select(Case))),
            "timers": s.scalar(select(func.count()).select_from(Timer)),
            "users": sorted((u.username, u.password_hash, u.api_token_hash, u.active)
                            for u in s.scalars(select(User))),
        }


def test_every_post_route_refuses_an_auditor_and_nothing_changes(audit_app, clock):
    engine = audit_app.extensions["zerorun"]
    case = engine.start_case("case_flow", {"project": fresh_code(small_project())}, OFFICE)
    [task, *_] = engine.list_tasks(case_id=case.id)
    with engine.db.transaction() as s:
        token = accounts.issue_token(s, "auditor")
    values = {"task_id": task.id, "case_id": case.id, "process_id": "case_flow",
              "action": "claim", "version": 1, "attachment_id": 1, "version_id": 1,
              "file_name": "item_selection.dmn", "notification_id": 1,
              "document_id": 1, "import_id": 1, "link_id": 1,
              "kind": "return_visit", "token": "x", "subscription_id": 1, "job_id": "x",
              "item_code": "eia_report_form", "item_id": "eia_report_form", "run_id": 1}
    client = client_as(audit_app, "auditor")
    csrf = csrf_of(client.get("/", follow_redirects=True).get_data(as_text=True))
    before = _snapshot(engine)
    checked = []
    for rule in audit_app.url_map.iter_rules():
        if "POST" not in rule.methods or rule.endpoint in ("auth.login", "auth.logout"):
            continue
        if rule.rule.startswith("/p/"):  # the project unit's page: no account, its own token
            continue
        # the accounts page's routes take a user name and deactivate/activate
        args = {**values, "username": "auditor", "action": "deactivate"} \
            if "username" in rule.arguments else values
        path = rule.build({k: v for k, v in args.items() if k in rule.arguments},
                          append_unknown=False)[1]
        if path.startswith("/api/"):
            response = audit_app.test_client().post(
                path, json={"data": {"selected_items": ["project_filing"]}, "version": 1,
                            "process_id": "case_flow", "reason": "审计测试"},
                headers={"Authorization": f"Bearer {token}"})
        else:
            response = client.post(path, data={"csrf_token": csrf, "version": task.version,
                                               "action": "complete", "reason": "审计测试"})
        assert response.status_code == 403, (rule.rule, response.status_code)
        checked.append(rule.rule)
    assert len(checked) >= 3, checked
    after = _snapshot(engine)
    # Issuing the auditor's token above is the only change (an operation, before the check).
    assert after == before
    assert engine.verify_case(audit_app.config["CASE_ID"]).ok


def test_the_migration_adds_the_search_indexes(audit_app):
    engine = audit_app.extensions["zerorun"]
    with engine.db.reading() as s:
        names = {row[0] for row in s.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'index'"))}
    assert {"ix_human_task_completed_by", "ix_human_task_item_code",
            "ix_case_started_at"} <= names
    assert REJECTION_REASONS
