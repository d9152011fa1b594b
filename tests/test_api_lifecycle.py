"""A whole case of the pack through /api/v1 only, as another government system drives it:
start form, every task, a message from a department's approval system, an external worker,
timers fired by the worker as the clock moves, a termination, and the closing. Every
request and response is checked against the OpenAPI document."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from agency import service_engine
from agency.bootstrap import sync_departments
from engine import accounts
from engine.cases import Engine
from engine.config import Config
from engine.runtime.clock import MovableClock
from engine.store import schema
from engine.store.db import Database
from tests.conftest import ROOT, START
from tests.service import DEFAULT_DATA, small_project
from tests.test_api import CONTRACT, PREFIX
from webapp import create_app

PROJECT = small_project(code="2026-640502-59-03-000777", name="沙坡头区冷链物流中心")


class Caller:
    """Speaks to the API with one token per account, checking the contract both ways."""

    def __init__(self, app: Flask, engine: Engine, clock: MovableClock) -> None:
        self.app, self.engine, self.clock = app, engine, clock
        self.client = app.test_client()
        self.tokens: dict[str, str] = {}

    def account(self, username: str, role: str, department: str | None) -> str:
        if username not in self.tokens:
            with self.engine.db.transaction() as s:
                accounts.create_user(s, username, f"password-{username}", role,
                                     department=department, now=self.clock())
                self.tokens[username] = accounts.issue_token(s, username)
        return username

    def agent_of(self, department: str) -> str:
        return self.account(f"agent_{department}", "agent", department)

    def call(self, who: str, method: str, path: str, body: Any = None,
             status: int = 200, check_body: bool = True) -> Any:
        if body is not None and check_body:
            CONTRACT.check_request(method, PREFIX + path, body)
        response = self.client.open(PREFIX + path, method=method, json=body, headers={
            "Authorization": f"Bearer {self.tokens[who]}"})
        CONTRACT.check_response(method, PREFIX + path, response)
        assert response.status_code == status, response.get_data(as_text=True)[:500]
        return response.get_json() if response.mimetype == "application/json" else response


@pytest.fixture
def caller(tmp_path: Path) -> Caller:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    clock = MovableClock(START)
    config = Config.from_env(database_url=url, processes_dir=ROOT / "processes",
                             data_dir=ROOT / "data", instance_dir=tmp_path)
    engine = service_engine(config, database=Database(url), clock_source=clock)
    schema.upgrade(engine.db)
    sync_departments(engine)
    engine.load_processes()
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": tmp_path}})
    found = Caller(app, engine, clock)
    found.account("office", "office", "leading_group_office")
    found.account("admin", "admin", None)
    found.account("licence_worker", "office", "leading_group_office")
    yield found
    engine.db.dispose()


def _submission(api: Caller, who: str, task: dict[str, Any]) -> dict[str, Any]:
    detail = api.call(who, "GET", f"/tasks/{task['id']}")
    data = copy.deepcopy(DEFAULT_DATA.get(task["spec_name"], {}))
    if task["spec_name"] == "select_items":
        data["selected_items"] = detail["data"]["selected_items"]
    return data


def test_a_whole_case_from_start_form_to_closing_through_the_api_only(caller):
    api = caller
    # The integrating system finds the startable process and its start form.
    processes = api.call("office", "GET", "/processes")["processes"]
    case_flow = next(p for p in processes if p["process_id"] == "case_flow")
    assert "project" in case_flow["start_form_schema"]["properties"]
    versions = api.call("office", "GET", "/processes/case_flow/versions")["versions"]
    assert versions[0]["status"] == "published"

    # A second case is registered and terminated with a reason.
    other = api.call("office", "POST", "/cases", {
        "process_id": "case_flow", "data": {"project": small_project()}}, status=201)
    ended = api.call("office", "POST", f"/cases/{other['id']}/terminate",
                     {"reason": "项目单位申请终止"})
    assert (ended["status"], ended["end_reason"], ended["open_tasks"]) == \
        ("terminated", "项目单位申请终止", [])

    case = api.call("office", "POST", "/cases", {"process_id": "case_flow",
                                                 "data": {"project": PROJECT}}, status=201)
    case_id = case["id"]
    found = api.call("office", "GET", f"/cases?project_code={PROJECT['code']}")
    assert [c["id"] for c in found["cases"]] == [case_id] and found["total"] == 1
    terminated = api.call("admin", "GET", "/cases?status=terminated")
    assert [c["id"] for c in terminated["cases"]] == [other["id"]]

    seen: list[str] = []
    delivered = worked = drafted = attached = 0
    for _step in range(60):
        state = api.call("office", "GET", f"/cases/{case_id}")
        if state["status"] != "running":
            break
        tasks = api.call("admin", "GET", f"/tasks?case_id={case_id}&limit=200")["tasks"]
        if not tasks:
            # Nothing to do by hand: a worker outside, or the clock, moves the case on.
            jobs = api.call("licence_worker", "POST", "/external-tasks/fetch-and-lock", {
                "topic": "licence_archive", "worker_id": "licence-1", "lock_seconds": 60,
                "max_jobs": 5})["jobs"]
            if jobs:
                [job] = jobs
                assert job["variables"]["approval_no"] == "640502202603200001"
                assert job["output_schema"]["required"] == ["licence_id"]
                api.call("licence_worker", "POST", f"/external-tasks/{job['id']}/complete",
                         {"worker_id": "licence-1",
                          "variables": {"licence_id": "DZZZ-2026-000777"}})
                worked += 1
                continue
            timers = api.call("office", "GET", f"/cases/{case_id}/timers")["timers"]
            assert timers, "the case waits for nothing it can get"
            due = min(t["due_at"] for t in timers)
            while api.clock().isoformat().replace("+00:00", "Z") <= due:
                api.clock.advance(days=1)
            assert api.engine.fire_due_timers() >= 1  # what `zerorun worker` does
            continue
        task = tasks[0]
        who = api.agent_of(task["department"])
        if task["spec_name"] == "track_approval":
            # The department's approval system reports the item's result: the tracking
            # task ends by itself, correlated by project code and item code.
            waits = api.call("office", "GET", f"/cases/{case_id}/timers")["messages"]
            assert {"message": "item_approval_result", "element": "approval_reported",
                    "correlation_key": task["item_code"]}.items() <= next(
                w for w in waits if w["message"] == "item_approval_result").items()
            sender = api.agent_of(task["department"])
            refused = api.call(sender, "POST", "/messages", {
                "message": "item_approval_result",
                "correlation": {"project_code": PROJECT["code"], "key": task["item_code"]},
                "payload": {"approved": True}}, status=422)
            assert {f["field"] for f in refused["error"]["fields"]}
            answer = api.call(sender, "POST", "/messages", {
                "message": "item_approval_result",
                "correlation": {"project_code": PROJECT["code"], "key": task["item_code"]},
                "payload": {"approved": True, "certificate_no": "640502202603200001",
                            "approved_date": "2026-03-20"}})
            assert (answer["case_id"], answer["element"]) == (case_id, "approval_reported")
            assert task["id"] not in {t["id"] for t in answer["case"]["open_tasks"]}
            api.call(sender, "POST", "/messages", {
                "message": "item_approval_result",
                "correlation": {"project_code": PROJECT["code"], "key": task["item_code"]},
                "payload": {"approved": False, "reasons": ["重复报送"]}}, status=404)
            delivered += 1
            seen.append("message")
            continue
        data = _submission(api, who, task)
        if not drafted:
            api.call(who, "PUT", f"/tasks/{task['id']}/draft", {"data": data})
            assert api.call(who, "GET", f"/tasks/{task['id']}/draft")["draft"] == data
            drafted += 1
        if task["spec_name"] == "prepare_materials" and not attached:
            upload = api.call(who, "POST", f"/tasks/{task['id']}/attachments", {
                "filename": "申请表.pdf", "material": "application_form",
                "content_base64": base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()},
                status=201)
            download = api.call("office", "GET", f"/attachments/{upload['id']}")
            assert download.data == b"%PDF-1.4\n%%EOF\n"
            attached += 1
        version = api.call(who, "GET", f"/tasks/{task['id']}")["version"]
        api.call(who, "POST", f"/tasks/{task['id']}/complete",
                 {"data": data, "version": version})
        seen.append(task["spec_name"])
    else:
        recent = [e.type for e in api.engine.case_events(case_id)][-8:]
        raise AssertionError(f"the case did not end; steps: {seen}; last events: {recent}")

    final = api.call("office", "GET", f"/cases/{case_id}")
    assert final["status"] == "completed", seen
    assert (delivered, worked, drafted, attached) == (1, 1, 1, 1)
    assert "track_approval" not in seen and "close_case" in seen
    events = [e["type"] for e in api.call("office", "GET", f"/cases/{case_id}/events")["events"]]
    assert events.count("message_received") == 1 and events.count("job_completed") == 1
    assert "timer_fired" in events
    assert api.engine.verify_case(case_id).ok
    assert api.engine.verify_case(other["id"]).ok
    attachments = api.call("office", "GET", f"/cases/{case_id}/attachments")["attachments"]
    assert [a["material"] for a in attachments] == ["application_form"]


def _through_dispatch(api: Caller, project: dict[str, Any]) -> int:
    """A case of the pack registered and taken, task by task, to its first item tasks."""
    case = api.call("office", "POST", "/cases", {"process_id": "case_flow",
                                                 "data": {"project": project}}, status=201)
    for spec in ("select_items", "review_material_list", "one_time_notice", "dispatch",
                 "confirm_project_code"):
        [task] = [t for t in api.call("admin", "GET", f"/tasks?case_id={case['id']}")["tasks"]
                  if t["spec_name"] == spec]
        who = api.agent_of(task["department"])
        api.call(who, "POST", f"/tasks/{task['id']}/complete",
                 {"data": _submission(api, who, task), "version": task["version"]})
    return int(case["id"])


def test_task_filters_and_case_search(caller):
    api = caller
    case_id = _through_dispatch(api, PROJECT)
    other_id = _through_dispatch(api, small_project())
    mine = api.call("admin", "GET", f"/tasks?case_id={case_id}")["tasks"]
    assert mine and {t["case_id"] for t in mine} == {case_id}
    by_process = api.call("admin", "GET", "/tasks?process_id=phase_1")["tasks"]
    assert {t["spec_name"] for t in by_process} == set()  # both passed the code check
    preparing = api.call("admin", "GET", "/tasks?process_id=stage_preparation")["tasks"]
    assert {t["spec_name"] for t in preparing} == {"prepare_materials"}
    item = preparing[0]["item_code"]
    assert {t["item_code"] for t in api.call("admin", "GET", f"/tasks?item={item}")["tasks"]} \
        == {item}
    assert api.call("admin", "GET", "/tasks?phase=1")["total"] >= 2
    assert api.call("admin", "GET", "/tasks?stage=closing")["total"] == 0
    bad = api.call("admin", "GET", "/tasks?due_before=yesterday", status=400)
    assert bad["error"]["fields"][0]["field"] == "due_before"
    due = api.call("admin", "GET", "/tasks?due_before=2030-01-01T00:00:00Z")["tasks"]
    assert all(t["due_at"] for t in due)

    assert api.call("admin", "GET", "/cases?overdue=true")["total"] == 0
    api.clock.advance(days=400)
    overdue = api.call("admin", "GET", "/cases?overdue=true&limit=1")
    assert overdue["total"] == 2 and overdue["next_offset"] == 1
    assert [c["id"] for c in overdue["cases"]] == [other_id]
    assert api.call("admin", "GET", "/cases?started_from=2030-01-01")["total"] == 0
    assert api.call("admin", "GET", "/cases?started_before=2030-01-01")["total"] == 2
    assert api.call("admin", "GET", "/cases?process_id=agent_training")["total"] == 0
    agent = api.agent_of("approval_bureau")
    assert api.call(agent, "GET", "/cases")["total"] == 2
    api.call(agent, "GET", "/cases?department=water", status=403)


def test_message_correlation_answers_404_409_and_422(caller):
    api = caller
    first = _through_dispatch(api, PROJECT)
    _through_dispatch(api, small_project())
    # nobody waits yet: the items are being prepared
    missing = api.call("office", "POST", "/messages", {
        "message": "item_approval_result", "correlation": {"project_code": PROJECT["code"]},
        "payload": {"approved": True, "certificate_no": "1", "approved_date": "2026-03-20"}},
        status=404)
    assert missing["error"]["code"] == "nobody_waits"
    # take every item of both cases to tracking
    for _ in range(20):
        tasks = [t for t in api.call("admin", "GET", "/tasks?limit=200")["tasks"]
                 if t["spec_name"] in ("prepare_materials", "check_materials")]
        if not tasks:
            break
        task = tasks[0]
        who = api.agent_of(task["department"])
        api.call(who, "POST", f"/tasks/{task['id']}/complete",
                 {"data": _submission(api, who, task), "version": task["version"]})
    tracking = api.call("admin", "GET", "/tasks?stage=acceleration&limit=200")["tasks"]
    tracking = [t for t in tracking if t["spec_name"] == "track_approval"]
    assert len({t["case_id"] for t in tracking}) == 2
    payload = {"approved": True, "certificate_no": "C-1", "approved_date": "2026-03-20"}
    sender = api.agent_of(tracking[0]["department"])  # the items' department delivers
    both = api.call(sender, "POST", "/messages", {
        "message": "item_approval_result", "correlation": {"key": tracking[0]["item_code"]},
        "payload": payload}, status=409)
    assert both["error"]["code"] == "ambiguous_message"
    assert sorted(both["error"]["details"]["cases"]) == sorted({t["case_id"] for t in tracking})
    wrong = api.call(sender, "POST", "/messages", {
        "message": "item_approval_result", "correlation": {"case_id": first},
        "payload": {"approved": False}}, status=422)
    assert wrong["error"]["code"] == "invalid_data"
    shape = api.call("office", "POST", "/messages", {
        "message": "item_approval_result", "correlation": {"case": first}}, status=400,
        check_body=False)
    assert shape["error"]["fields"][0]["field"] == "correlation.case"


def test_external_jobs_fail_into_an_incident_an_admin_retries(caller):
    api = caller
    case_id = _through_dispatch(api, PROJECT)
    for _ in range(10):
        tasks = api.call("admin", "GET", f"/tasks?case_id={case_id}")["tasks"]
        task = tasks[0]
        who = api.agent_of(task["department"])
        if task["spec_name"] == "track_approval":
            api.call(who, "POST", "/messages", {
                "message": "item_approval_result",
                "correlation": {"project_code": PROJECT["code"], "key": task["item_code"]},
                "payload": {"approved": True, "certificate_no": "C-9",
                            "approved_date": "2026-03-20"}})
            break
        api.call(who, "POST", f"/tasks/{task['id']}/complete",
                 {"data": _submission(api, who, task), "version": task["version"]})
    agent = api.agent_of("approval_bureau")
    api.call(agent, "POST", "/external-tasks/fetch-and-lock", {
        "topic": "licence_archive", "worker_id": "w", "lock_seconds": 60}, status=403)
    [job] = api.call("licence_worker", "POST", "/external-tasks/fetch-and-lock", {
        "topic": "licence_archive", "worker_id": "w1", "lock_seconds": 60})["jobs"]
    refused = api.call("licence_worker", "POST", f"/external-tasks/{job['id']}/complete",
                       {"worker_id": "w1", "variables": {"licence": "x"}}, status=422)
    assert refused["error"]["code"] == "invalid_data"
    failed = api.call("licence_worker", "POST", f"/external-tasks/{job['id']}/failure",
                      {"worker_id": "w1", "error": "licence library down", "retries": 0})
    assert failed["state"] == "incident"
    incidents = api.call("admin", "GET", "/external-tasks?state=incident")["jobs"]
    assert [j["id"] for j in incidents] == [job["id"]]
    api.call("office", "POST", f"/external-tasks/{job['id']}/retry", {}, status=403)
    assert api.call("admin", "POST", f"/external-tasks/{job['id']}/retry",
                    {"retries": 1})["state"] == "open"
    [again] = api.call("licence_worker", "POST", "/external-tasks/fetch-and-lock", {
        "topic": "licence_archive", "worker_id": "w2", "lock_seconds": 60})["jobs"]
    after = api.call("licence_worker", "POST", f"/external-tasks/{again['id']}/complete",
                     {"worker_id": "w2", "variables": {"licence_id": "DZZZ-1"}})
    assert after["status"] == "running"
    events = [e["type"] for e in api.call("office", "GET", f"/cases/{case_id}/events")["events"]]
    assert ["job_failed", "job_retried", "job_completed"] == [
        e for e in events if e.startswith("job_")]


def test_admins_deploy_and_publish_versions_and_read_their_files(caller):
    api = caller
    source = (ROOT / "processes" / "stage_closing.bpmn").read_text(encoding="utf-8")
    broken = source.replace('calledElement="', 'calledElement="no_such_') \
        if 'calledElement="' in source else source.replace(
            'name="formJsonSchemaFilename" value="', 'name="formJsonSchemaFilename" value="x_')
    refused = api.call("admin", "POST", "/processes/deploy",
                       {"file_name": "stage_closing.bpmn", "content": broken}, status=422)
    problems = refused["error"]["details"]["problems"]
    assert problems and all(p["element"] for p in problems)
    changed = source.replace("</bpmn:definitions>", "<!-- v2 --></bpmn:definitions>")
    stored = api.call("admin", "POST", "/processes/deploy",
                      {"file_name": "stage_closing.bpmn", "content": changed,
                       "comment": "comment only"}, status=201)
    [created] = [c for c in stored["created"] if c["process_id"] == "stage_closing"]
    versions = api.call("admin", "GET", "/processes/stage_closing/versions")["versions"]
    draft = next(v for v in versions if v["number"] == created["number"])
    assert draft["status"] == "draft"
    files = api.call("admin", "GET", f"/process-versions/{draft['id']}")
    assert files["main_file"] == "stage_closing.bpmn"
    assert "<!-- v2 -->" in files["files"]["stage_closing.bpmn"]
    published = api.call("admin", "POST", f"/process-versions/{draft['id']}/publish")
    assert {"process_id": "stage_closing", "number": created["number"]} in \
        published["published"]


def test_documents_links_and_notifications_through_the_api(caller):
    api = caller
    case_id = _through_dispatch(api, PROJECT)
    agent = api.agent_of("approval_bureau")
    listed = api.call(agent, "GET", f"/cases/{case_id}/documents")
    assert {"one_time_notice", "progress"} <= {a["kind"] for a in listed["available"]}
    doc = api.call(agent, "POST", f"/cases/{case_id}/documents",
                   {"kind": "one_time_notice", "source": ""}, status=201)
    pdf = api.call(agent, "GET", f"/documents/{doc['id']}")
    assert pdf.data.startswith(b"%PDF")
    link = api.call(agent, "POST", f"/cases/{case_id}/enterprise-links",
                    {"recipient": "张伟"}, status=201)
    assert "/p/" in link["url"] and link["active"]
    page = api.client.get(link["url"].split("localhost", 1)[1])
    assert page.status_code == 200
    revoked = api.call(agent, "POST", f"/enterprise-links/{link['id']}/revoke")
    assert not revoked["active"]
    assert api.client.get(link["url"].split("localhost", 1)[1]).status_code == 404
    notes = api.call(agent, "GET", "/notifications")["notifications"]
    assert isinstance(notes, list)
    api.call(agent, "GET", "/notifications?unread=maybe", status=400)
