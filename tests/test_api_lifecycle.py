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
             status: int = 200) -> Any:
        if body is not None:
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
