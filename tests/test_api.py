"""The JSON API under /api/v1: what an integrating system sees, checked against the OpenAPI
document it is given, with the real process pack."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from agency import service_engine
from agency.bootstrap import sync_departments
from engine import accounts
from engine.actors import Actor
from engine.cases import Engine
from engine.config import Config
from engine.runtime.clock import MovableClock
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Event
from tests.conftest import ROOT, START
from tests.service import DEFAULT_DATA, KEY_PROJECT, OFFICE, fresh_code
from webapp import create_app
from webapp.cli import main as cli_main
from webapp.openapi import document

PREFIX = "/api/v1"
DOC_URI = "urn:zerorun:openapi"

# Who calls, as (username, role, department). The case's first task, select_items,
# belongs to the approval bureau ("own"); natural resources is another department.
USERS: dict[str, tuple[str, str, str | None]] = {
    "agent_own": ("agent_approval_bureau", "agent", "approval_bureau"),
    "agent_other": ("agent_natural_resources", "agent", "natural_resources"),
    "leader_own": ("leader_approval_bureau", "leader", "approval_bureau"),
    "leader_other": ("leader_natural_resources", "leader", "natural_resources"),
    "office": ("office", "office", "leading_group_office"),
    "admin": ("admin", "admin", None),
    "auditor": ("auditor", "auditor", None),
    "housing": ("agent_housing_construction", "agent", "housing_construction"),
}
ROLES = ("anonymous", "agent_own", "agent_other", "leader_own", "leader_other", "office",
         "admin", "auditor")


# The contract: the OpenAPI document ------------------------------------------------


class Contract:
    """Checks requests and responses against the OpenAPI document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
        self.templates = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
                          for path in doc["paths"]]

    def operation(self, method: str, url: str) -> tuple[str, dict[str, Any]]:
        path = url.split("?", 1)[0].removeprefix(PREFIX)
        for pattern, template in self.templates:
            if pattern.match(path):
                operations = self.doc["paths"][template]
                assert method.lower() in operations, f"{method} {template} is not documented"
                return template, operations[method.lower()]
        raise AssertionError(f"{path} matches no documented path")

    def _validate(self, instance: Any, pointer: str) -> None:
        validator = OAS31Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=self.registry,
                                   format_checker=OAS31Validator.FORMAT_CHECKER)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(instance)]
        assert not errors, f"{pointer} is not satisfied: {errors}"

    def _pointer(self, *parts: str) -> str:
        return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)

    def check_request(self, method: str, url: str, body: Any) -> None:
        template, operation = self.operation(method, url)
        request_body = operation.get("requestBody")
        assert request_body is not None, f"{method} {template} documents no request body"
        self._validate(body, self._pointer("paths", template, method.lower(), "requestBody",
                                           "content", "application/json", "schema"))

    def check_response(self, method: str, url: str, response: TestResponse) -> None:
        template, operation = self.operation(method, url)
        status = str(response.status_code)
        assert status in operation["responses"], \
            f"{method} {template} answered {status}, which is not documented: " \
            f"{response.get_data(as_text=True)[:300]}"
        documented = operation["responses"][status]
        pointer = self._pointer("paths", template, method.lower(), "responses", status)
        if "$ref" in documented:
            name = documented["$ref"].rsplit("/", 1)[1]
            documented = self.doc["components"]["responses"][name]
            pointer = self._pointer("components", "responses", name)
        binary = [kind for kind in documented.get("content", {}) if kind != "application/json"]
        if binary:  # a download: its type is documented, its bytes are not JSON
            assert response.mimetype in binary or "application/octet-stream" in binary, \
                response.mimetype
            return
        assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
        for header in documented.get("headers", {}):
            assert header in response.headers, f"{method} {template} {status}: no {header}"
        self._validate(response.get_json(),
                       pointer + self._pointer("content", "application/json", "schema"))


CONTRACT = Contract(document())


# Fixtures: the real pack, accounts with tokens, a running case -------------------------


def _engine(url: str, instance: Path) -> Engine:
    config = Config.from_env(database_url=url, processes_dir=ROOT / "processes",
                             data_dir=ROOT / "data", instance_dir=instance)
    return service_engine(config, database=Database(url), clock_source=MovableClock(START))


@dataclass
class Template:
    """A migrated database with the pack, the accounts, their tokens and one case."""

    db_file: Path
    tokens: dict[str, str]
    case_id: int


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    folder = tmp_path_factory.mktemp("api-template")
    db_file = folder / "template.db"
    engine = _engine(f"sqlite:///{db_file}", folder)
    schema.upgrade(engine.db)
    sync_departments(engine)
    engine.load_processes()
    tokens = {}
    with engine.db.transaction() as s:
        for key, (username, role, department) in USERS.items():
            accounts.create_user(s, username, f"password-{username}", role,
                                 department=department, now=engine.clock())
            tokens[key] = accounts.issue_token(s, username)
    case = engine.start_case("case_flow", {"project": fresh_code(KEY_PROJECT)}, OFFICE)
    engine.db.dispose()
    return Template(db_file, tokens, case.id)


class Api:
    """A test client speaking to the API as one of the users, checking the contract."""

    def __init__(self, app: Flask, engine: Engine, template: Template) -> None:
        self.app, self.engine = app, engine
        self.client = app.test_client()
        self.tokens = template.tokens
        self.case_id = template.case_id
        # Ids the permission table fills into paths beyond {task} and {case} (set by prepare).
        self.ids: dict[str, Any] = {"job": "00000000-0000-5000-8000-000000000000",
                                    "process": "case_flow", "version": 1,
                                    "item": "project_approval"}

    def call(self, who: str, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, check: bool = True) -> TestResponse:
        sent = dict(headers or {})
        if who != "anonymous":
            sent.setdefault("Authorization", f"Bearer {self.tokens[who]}")
        kwargs: dict[str, Any] = {"headers": sent}
        if body is not None:
            kwargs["json"] = body
        response = self.client.open(PREFIX + path, method=method, **kwargs)
        if check:
            CONTRACT.check_response(method, PREFIX + path, response)
        return response

    def get(self, who: str, path: str) -> TestResponse:
        return self.call(who, "GET", path)

    def post(self, who: str, path: str, body: Any = None) -> TestResponse:
        if body is not None:
            CONTRACT.check_request("POST", PREFIX + path, body)
        return self.call(who, "POST", path, body)

    def first_task(self, spec_name: str | None = None) -> Any:
        tasks = self.engine.list_tasks(case_id=self.case_id)
        return next(t for t in tasks if spec_name is None or t.spec_name == spec_name)

    def event_count(self) -> int:
        with self.engine.db.reading() as s:
            return s.scalar(select(func.count()).select_from(Event).where(
                Event.case_id == self.case_id)) or 0


@pytest.fixture
def api(template: Template, tmp_path: Path) -> Api:
    db_file = tmp_path / "api.db"
    shutil.copy(template.db_file, db_file)
    url = f"sqlite:///{db_file}"
    engine = _engine(url, tmp_path)
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": tmp_path}})
    yield Api(app, engine, template)
    engine.db.dispose()


def select_items_data(api: Api, task_id: str) -> dict[str, Any]:
    """A correct submission for the first task: the preselected items, confirmed."""
    detail = api.engine.get_task(task_id, OFFICE)
    return {**DEFAULT_DATA["select_items"], "selected_items": detail.data["selected_items"]}


# The document matches the routes -------------------------------------------------------


def _documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), PREFIX + path) for path, operations in doc["paths"].items()
            for method in operations}


def _served_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIX + "/"):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
            routes |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return routes


def test_the_document_is_valid_openapi_and_describes_exactly_the_served_routes(api):
    doc = api.get("anonymous", "/openapi.json").get_json()
    assert doc == document()
    validate_spec(doc)
    assert _served_routes(api.app) == _documented_routes(doc)
    for path, operations in doc["paths"].items():
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        for operation in operations.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, path
            if operation.get("security") != []:
                assert "401" in operation["responses"], path


# A whole scenario, as an integrating system would run it ------------------------------


def test_a_case_is_started_read_claimed_and_completed_through_the_api(api):
    # The office registers a project and starts its case.
    started = api.post("office", "/cases", {"process_id": "case_flow",
                                            "data": {"project": KEY_PROJECT}})
    assert started.status_code == 201
    case = started.get_json()
    assert started.headers["Location"] == f"{PREFIX}/cases/{case['id']}"
    assert case["status"] == "running" and case["title"] == KEY_PROJECT["name"]
    assert case["project_code"] == KEY_PROJECT["code"]
    # The same project code again is refused, naming the case that holds it.
    again = api.post("office", "/cases", {"process_id": "case_flow",
                                          "data": {"project": {**KEY_PROJECT, "name": "重复"}}})
    assert again.status_code == 422
    assert f"#{case['id']}" in json.dumps(again.get_json(), ensure_ascii=False)
    [first] = case["open_tasks"]
    assert (first["spec_name"], first["department"], first["assignee"]) == \
        ("select_items", "approval_bureau", None)
    api.case_id = case["id"]

    # The approval bureau's agent finds it in the inbox; natural resources does not.
    inbox = api.get("agent_own", "/tasks?limit=200").get_json()
    assert first["id"] in [t["id"] for t in inbox["tasks"]]
    assert {t["department"] for t in inbox["tasks"]} == {"approval_bureau"}
    other_inbox = api.get("agent_other", "/tasks?limit=200").get_json()
    assert first["id"] not in [t["id"] for t in other_inbox["tasks"]]

    # Reading it gives the form and what to do.
    detail = api.get("agent_own", f"/tasks/{first['id']}").get_json()
    assert "selected_items" in detail["form_schema"]["required"]
    assert "四个阶段" in detail["instructions"]
    assert detail["data"]["selected_items"] and detail["draft"] is None

    claimed = api.post("agent_own", f"/tasks/{first['id']}/claim",
                       {"version": detail["version"]}).get_json()
    assert claimed["assignee"] == "agent_approval_bureau"
    assert claimed["version"] == detail["version"] + 1

    # A wrong submission names the field and changes nothing.
    events = api.event_count()
    wrong = api.post("agent_own", f"/tasks/{first['id']}/complete",
                     {"data": {**DEFAULT_DATA["select_items"], "selected_items": ["no_such"]},
                      "version": claimed["version"]})
    assert wrong.status_code == 422
    error = wrong.get_json()["error"]
    assert error["code"] == "invalid_data"
    assert [f["field"] for f in error["fields"]] == ["selected_items.0"]
    assert api.event_count() == events

    # A stale version is a conflict that says the current version.
    correct = select_items_data(api, first["id"])
    stale = api.post("agent_own", f"/tasks/{first['id']}/complete",
                     {"data": correct, "version": detail["version"]})
    assert stale.status_code == 409
    assert stale.get_json()["error"]["details"]["version"] == claimed["version"]

    done = api.post("agent_own", f"/tasks/{first['id']}/complete",
                    {"data": correct, "version": claimed["version"]})
    assert done.status_code == 200
    result = done.get_json()
    assert result["task"]["state"] == "completed"
    assert result["task"]["completed_by"] == "agent_approval_bureau"
    [review] = result["case"]["open_tasks"]
    assert (review["spec_name"], review["department"]) == \
        ("review_material_list", "housing_construction")

    # Completing it again is a clear conflict.
    again = api.post("agent_own", f"/tasks/{first['id']}/complete",
                     {"data": correct, "version": claimed["version"]})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "task_not_ready"
    assert "already completed by agent_approval_bureau" in again.get_json()["error"]["message"]

    # Another department involved in the case reads the next task (read-only, issue 28
    # row 5) but cannot touch it; nothing changes.
    events = api.event_count()
    assert api.get("agent_other", f"/tasks/{review['id']}").status_code == 200
    for action, body in (("claim", {}), ("complete", {"data": {"materials_confirmed": True},
                                                      "version": review["version"]})):
        refused = api.post("agent_other", f"/tasks/{review['id']}/{action}", body)
        assert refused.status_code == 404
        assert refused.get_json()["error"]["code"] == "task_not_found"
    # natural resources has items in the case: it reads the case (issue 28 row 5)
    assert api.get("agent_other", f"/cases/{api.case_id}").status_code == 200
    assert api.event_count() == events
    assert api.first_task().version == review["version"]

    # The housing agent now takes part in the case and reads it and its timeline.
    seen = api.get("housing", f"/cases/{api.case_id}").get_json()
    assert seen["departments"] == ["approval_bureau", "housing_construction"]
    assert seen["open_tasks"][0]["id"] == review["id"]
    timeline = api.get("housing", f"/cases/{api.case_id}/events").get_json()["events"]
    assert [(e["type"], e["actor"]) for e in timeline] == [
        ("case_started", "office"), ("task_claimed", "agent_approval_bureau"),
        ("task_completed", "agent_approval_bureau")]
    assert timeline[1]["prev_hash"] == timeline[0]["hash"]

    # Without a token there is nothing to see.
    anonymous = api.get("anonymous", "/tasks")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    # The auditor reads everything and changes nothing.
    assert api.get("auditor", f"/cases/{api.case_id}").status_code == 200
    assert api.get("auditor", f"/tasks/{review['id']}").status_code == 200
    events = api.event_count()
    for path, body in ((f"/tasks/{review['id']}/claim", {}),
                       (f"/tasks/{review['id']}/release", {}),
                       (f"/tasks/{review['id']}/complete",
                        {"data": {"materials_confirmed": True}, "version": review["version"]}),
                       ("/cases", {"process_id": "case_flow",
                                   "data": {"project": fresh_code(KEY_PROJECT)}})):
        assert api.post("auditor", path, body).status_code == 403, path
    assert api.event_count() == events


# Every route for every role ----------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One API route as the permission table drives it."""

    method: str
    path: str  # {task} and {case} are filled in
    body: Callable[[Api], Any] | None = None
    prepare: Callable[[Api], None] | None = None
    writes: bool = False


PDF_BASE64 = "JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCiUlRU9GCg=="
PERMITTED_404 = {"message": "nobody_waits", "complete_job": "not_found",
                 "complete_on_behalf": "task_not_found",
                 "fail_job": "not_found", "retry_job": "not_found",
                 # hidden from the caller: answered as missing (a document by its case)
                 "download_document": "case_not_found", "download_attachment": "not_found"}


def _with_document(api: Api) -> None:
    from agency import documents

    doc = documents.generate(api.engine, api.case_id, "progress", "", OFFICE)
    api.ids["document"] = doc.id


def _with_attachment(api: Api) -> None:
    import base64

    task = api.first_task("select_items")
    view = api.engine.add_attachment(task.id, "申请表.pdf", base64.b64decode(PDF_BASE64),
                                     _actor("agent_own"))
    api.ids["attachment"] = view.id


def _with_link(api: Api) -> None:
    from agency.enterprise import EnterpriseLinks

    _token, link = EnterpriseLinks(api.engine).create(api.case_id, OFFICE)
    api.ids["link"] = link.id


def _claim_as_own_agent(api: Api) -> None:
    task = api.first_task("select_items")
    api.engine.claim_task(task.id, _actor("agent_own"), task.version)


def _actor(key: str) -> Actor:
    return Actor(*USERS[key])


def _completion(api: Api) -> dict[str, Any]:
    task = api.first_task("select_items")
    return {"data": select_items_data(api, task.id), "version": task.version}


ROUTES: dict[str, Route] = {
    "openapi": Route("GET", "/openapi.json"),
    "list_tasks": Route("GET", "/tasks"),
    "get_task": Route("GET", "/tasks/{task}"),
    "claim": Route("POST", "/tasks/{task}/claim", lambda api: {}, writes=True),
    "release": Route("POST", "/tasks/{task}/release", lambda api: {},
                     prepare=_claim_as_own_agent, writes=True),
    "complete": Route("POST", "/tasks/{task}/complete", _completion, writes=True),
    "start_case": Route("POST", "/cases", lambda api: {
        "process_id": "case_flow", "data": {"project": fresh_code(KEY_PROJECT)}},
                        writes=True),
    "get_case": Route("GET", "/cases/{case}"),
    "case_events": Route("GET", "/cases/{case}/events"),
    # The lifecycle, message and external-task routes (webapp/api_lifecycle.py, api_interop.py)
    "list_processes": Route("GET", "/processes"),
    "process_versions": Route("GET", "/processes/{process}/versions"),
    "get_version": Route("GET", "/process-versions/{version}"),
    "deploy": Route("POST", "/processes/deploy", lambda api: {
        "file_name": "stage_closing.bpmn",
        "content": (ROOT / "processes" / "stage_closing.bpmn").read_text(encoding="utf-8")},
        writes=True),
    "publish": Route("POST", "/process-versions/{version}/publish", writes=True),
    "search_cases": Route("GET", "/cases"),
    "terminate": Route("POST", "/cases/{case}/terminate", lambda api: {"reason": "测试终止"},
                       writes=True),
    "case_timers": Route("GET", "/cases/{case}/timers"),
    "save_draft": Route("PUT", "/tasks/{task}/draft", lambda api: {"data": {}}, writes=True),
    "read_draft": Route("GET", "/tasks/{task}/draft"),
    "list_documents": Route("GET", "/cases/{case}/documents"),
    "generate_document": Route("POST", "/cases/{case}/documents",
                               lambda api: {"kind": "progress", "source": ""}, writes=True),
    "download_document": Route("GET", "/documents/{document}", prepare=_with_document),
    "list_attachments": Route("GET", "/cases/{case}/attachments"),
    "upload_attachment": Route("POST", "/tasks/{task}/attachments", lambda api: {
        "filename": "申请表.pdf", "content_base64": PDF_BASE64}, writes=True),
    "download_attachment": Route("GET", "/attachments/{attachment}",
                                 prepare=_with_attachment),
    "create_link": Route("POST", "/cases/{case}/enterprise-links", lambda api: {},
                         writes=True),
    "revoke_link": Route("POST", "/enterprise-links/{link}/revoke", prepare=_with_link,
                         writes=True),
    "notifications": Route("GET", "/notifications"),
    "message": Route("POST", "/messages", lambda api: {
        "message": "item_approval_result", "correlation": {"case_id": api.case_id}},
        writes=True),
    "fetch_and_lock": Route("POST", "/external-tasks/fetch-and-lock", lambda api: {
        "topic": "licence_archive", "worker_id": "w1", "lock_seconds": 60}, writes=True),
    "complete_job": Route("POST", "/external-tasks/{job}/complete",
                          lambda api: {"worker_id": "w1"}, writes=True),
    "fail_job": Route("POST", "/external-tasks/{job}/failure",
                      lambda api: {"worker_id": "w1", "error": "x", "retries": 1},
                      writes=True),
    "retry_job": Route("POST", "/external-tasks/{job}/retry", lambda api: {}, writes=True),
    "list_jobs": Route("GET", "/external-tasks"),
    "case_tasks": Route("GET", "/cases/{case}/tasks"),
    # The item clocks (webapp/api_clocks.py): the case has no accepted item yet.
    "case_clocks": Route("GET", "/cases/{case}/clocks"),
    "pause_item": Route("POST", "/cases/{case}/items/{item}/pause",
                        lambda api: {"reason": "correction", "days": 5}, writes=True),
    "resume_item": Route("POST", "/cases/{case}/items/{item}/resume", lambda api: {},
                         writes=True),
    # The project unit's tasks done on its behalf (webapp/api_unit_tasks.py, rule R05)
    "unit_tasks": Route("GET", "/cases/{case}/unit-tasks"),
    "complete_on_behalf": Route("POST", "/cases/{case}/unit-tasks/{task}/complete-on-behalf",
                                lambda api: {"data": {}, "confirmation": {}, "evidence": [],
                                             "version": 1}, writes=True),
    "record_authorisation": Route("POST", "/cases/{case}/authorisation", lambda api: {
        "data": {"principal": "中卫市沙坡头区冷链物流有限公司", "signatory": "张伟",
                 "signed_on": "2026-03-02", "signing_method": "paper"}}, writes=True),
}

_R = dict(zip(ROLES, range(len(ROLES)), strict=True))
# Expected status per route, in the order of ROLES:
#           anonymous agent_own agent_other leader_own leader_other office admin auditor
EXPECTED: dict[str, tuple[int, ...]] = {
    "openapi":     (200, 200, 200, 200, 200, 200, 200, 200),
    "list_tasks":  (401, 200, 200, 200, 200, 200, 200, 200),
    "get_task":    (401, 200, 404, 200, 404, 200, 200, 200),
    "claim":       (401, 200, 404, 200, 404, 403, 403, 403),
    "release":     (401, 200, 404, 200, 404, 403, 403, 403),
    "complete":    (401, 200, 404, 200, 404, 403, 403, 403),
    "start_case":  (401, 201, 201, 201, 201, 201, 201, 403),
    "get_case":    (401, 200, 404, 200, 404, 200, 200, 200),
    "case_events": (401, 200, 404, 200, 404, 200, 200, 200),
    "case_tasks":  (401, 200, 404, 200, 404, 200, 200, 200),
    "list_processes": (401, 200, 200, 200, 200, 200, 200, 200),
    "process_versions": (401, 200, 200, 200, 200, 200, 200, 200),
    "get_version": (401, 403, 403, 403, 403, 403, 200, 200),
    "deploy":      (401, 403, 403, 403, 403, 403, 200, 403),
    "publish":     (401, 403, 403, 403, 403, 403, 200, 403),
    "search_cases": (401, 200, 200, 200, 200, 200, 200, 200),
    "terminate":   (401, 403, 404, 403, 404, 200, 200, 403),
    "case_timers": (401, 200, 404, 200, 404, 200, 200, 200),
    "save_draft":  (401, 200, 404, 200, 404, 403, 403, 403),
    "read_draft":  (401, 200, 404, 200, 404, 200, 200, 200),
    "list_documents": (401, 200, 404, 200, 404, 200, 200, 200),
    "generate_document": (401, 201, 404, 201, 404, 201, 403, 403),
    "download_document": (401, 200, 404, 200, 404, 200, 200, 200),
    "list_attachments": (401, 200, 404, 200, 404, 200, 200, 200),
    "upload_attachment": (401, 201, 404, 201, 404, 403, 403, 403),
    "download_attachment": (401, 200, 404, 200, 404, 200, 200, 200),
    "create_link": (401, 201, 404, 403, 404, 201, 403, 403),
    "revoke_link": (401, 200, 403, 403, 403, 200, 403, 403),  # office, the bureau's agents
    "notifications": (401, 200, 200, 200, 200, 200, 200, 200),
    # a message is looked for only among the waits the caller may deliver to: "nobody
    # waits" whether or not the caller reads the case (auditors change nothing)
    "message":     (401, 404, 404, 404, 404, 404, 404, 403),
    "fetch_and_lock": (401, 403, 403, 403, 403, 200, 200, 403),
    "complete_job": (401, 403, 403, 403, 403, 404, 404, 403),
    "fail_job":    (401, 403, 403, 403, 403, 404, 404, 403),
    "retry_job":   (401, 403, 403, 403, 403, 403, 404, 403),
    "list_jobs":   (401, 403, 403, 403, 403, 200, 200, 200),
    "case_clocks": (401, 200, 404, 200, 404, 200, 200, 200),
    "pause_item":  (401, 403, 404, 403, 404, 409, 403, 403),
    "resume_item": (401, 403, 404, 403, 404, 409, 403, 403),
    # only the Bureau's agents act for the unit; others who read the case: 403 (select_items
    # is no task of the unit: 404 for the Bureau's agent)
    "unit_tasks":  (401, 200, 404, 403, 404, 403, 403, 403),
    "complete_on_behalf": (401, 404, 404, 403, 404, 403, 403, 403),
    "record_authorisation": (401, 201, 404, 403, 404, 403, 403, 403),
}
# 404, not 403, where the caller may not see the task or case: the same answer as for one
# that does not exist (issue 14.5); 403 where the caller sees it but may not change it.


def test_the_permission_table_covers_every_api_route(api):
    covered = {(r.method, PREFIX + re.sub(r"\{(\w+)\}", r"{\1_id}", r.path))
               for r in ROUTES.values()}
    assert covered == _served_routes(api.app)
    assert set(EXPECTED) == set(ROUTES)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route_name", list(ROUTES))
def test_every_route_for_every_role(api, route_name, role):
    route = ROUTES[route_name]
    if route.prepare:
        route.prepare(api)
    task = api.first_task("select_items")
    path = route.path.format(task=task.id, case=api.case_id, **api.ids)
    body = route.body(api) if route.body else None
    events = api.event_count()
    response = api.call(role, route.method, path, body)
    expected = EXPECTED[route_name][_R[role]]
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected >= 400:
        error = response.get_json()["error"]
        # 404: the caller passed the permission checks, and nothing waits / no such job
        assert error["code"] == {401: "unauthorized", 403: "forbidden",
                                 404: PERMITTED_404.get(
                                     route_name, f"{route.path.split('/')[1][:-1]}_not_found"),
                                 409: "conflict",  # the office: no item is on its clock yet
                                 }[expected]
        assert error["message"]
        if route.writes:  # a refused write changes nothing
            assert api.event_count() == events
            assert api.first_task("select_items") == task


# Errors a client makes ---------------------------------------------------------------


def test_a_body_that_is_not_json_or_of_the_wrong_shape_is_a_400(api):
    task = api.first_task()
    path = f"{PREFIX}/tasks/{task.id}/complete"
    auth = {"Authorization": f"Bearer {api.tokens['agent_own']}"}
    malformed = api.client.post(path, data="{not json", headers=auth,
                                content_type="application/json")
    CONTRACT.check_response("POST", path, malformed)
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.get_json()["error"]["message"]

    not_json = api.client.post(path, data="version=1", headers=auth,
                               content_type="application/x-www-form-urlencoded")
    CONTRACT.check_response("POST", path, not_json)
    assert not_json.status_code == 415

    for body, fields in (([1, 2], []),
                         ({"data": [], "version": "1"}, ["data", "version"]),
                         ({"data": {}, "version": True}, ["version"]),
                         ({"version": 1}, ["data"]),
                         ({"data": {}, "version": 1, "extra": 1}, ["extra"])):
        response = api.call("agent_own", "POST", f"/tasks/{task.id}/complete", body)
        assert response.status_code == 400, body
        error = response.get_json()["error"]
        assert error["code"] == "bad_request"
        assert [f["field"] for f in error["fields"]] == fields, body
    assert api.first_task() == task

    empty = api.call("office", "POST", "/cases", headers={"Content-Type": "application/json"})
    assert empty.status_code == 400
    assert "required" in empty.get_json()["error"]["message"]


def test_query_parameters_are_checked_and_pages_say_what_follows(api):
    for query, field in (("state=open", "state"), ("limit=0", "limit"),
                         ("limit=201", "limit"), ("offset=-1", "offset"),
                         ("limit=ten", "limit"), ("mine=yes", "mine")):
        response = api.get("admin", f"/tasks?{query}")
        assert response.status_code == 400, query
        assert [f["field"] for f in response.get_json()["error"]["fields"]] == [field]
    for _ in range(2):
        api.engine.start_case("case_flow", {"project": fresh_code(KEY_PROJECT)}, OFFICE)
    first = api.get("agent_own", "/tasks?limit=2").get_json()
    assert (first["total"], first["limit"], first["offset"], first["next_offset"]) == \
        (3, 2, 0, 2)
    last = api.get("agent_own", "/tasks?limit=2&offset=2").get_json()
    assert (len(last["tasks"]), last["next_offset"]) == (1, None)
    assert not {t["id"] for t in first["tasks"]} & {t["id"] for t in last["tasks"]}

    task = api.first_task()
    api.post("agent_own", f"/tasks/{task.id}/claim", {})
    mine = api.get("agent_own", "/tasks?mine=true").get_json()
    assert [t["id"] for t in mine["tasks"]] == [task.id] and mine["total"] == 1
    assert api.get("agent_own", "/tasks").get_json()["total"] == 3
    # A task a colleague claimed leaves the others' list, as in the inbox.
    colleague = api.get("leader_own", "/tasks").get_json()
    assert colleague["total"] == 2 and task.id not in [t["id"] for t in colleague["tasks"]]
    assert api.get("leader_own", "/tasks?mine=true").get_json()["total"] == 0
    assert api.get("auditor", "/tasks").get_json()["total"] == 3
    assert api.get("agent_own", "/tasks?state=completed").get_json()["total"] == 0


def test_claim_release_conflicts_and_unknown_ids(api):
    task = api.first_task()
    claimed = api.post("agent_own", f"/tasks/{task.id}/claim", {"version": task.version})
    assert claimed.status_code == 200
    taken = api.post("leader_own", f"/tasks/{task.id}/claim", {})
    assert taken.status_code == 409
    assert "already claimed by agent_approval_bureau" in taken.get_json()["error"]["message"]
    stale = api.post("agent_own", f"/tasks/{task.id}/release", {"version": task.version})
    assert stale.status_code == 409
    released = api.post("leader_own", f"/tasks/{task.id}/release",
                        {"version": claimed.get_json()["version"]})
    assert released.status_code == 200 and released.get_json()["assignee"] is None
    not_claimed = api.post("agent_own", f"/tasks/{task.id}/release", {})
    assert not_claimed.status_code == 409

    missing = api.get("agent_own", "/tasks/no-such-task")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "task_not_found"
    assert api.get("admin", "/cases/9999").get_json()["error"]["code"] == "case_not_found"
    unknown_process = api.post("office", "/cases", {"process_id": "no_such", "data": {}})
    assert unknown_process.status_code == 404
    assert unknown_process.get_json()["error"]["code"] == "process_not_found"
    refused = api.post("office", "/cases", {"process_id": "case_flow", "data": {}})
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    # Refused by the process's start form where the pack has one, else by its first script.
    assert error["code"] in ("invalid_data", "workflow_error")
    assert "project" in error["message"] + str(error["fields"])
    assert api.engine.list_tasks(limit=100) == [api.first_task()]  # no case was started


def test_unknown_paths_and_methods_under_the_api_answer_in_json(api):
    auth = {"Authorization": f"Bearer {api.tokens['agent_own']}"}
    missing = api.client.get(f"{PREFIX}/nothing-here", headers=auth)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    wrong_method = api.client.delete(f"{PREFIX}/tasks", headers=auth)
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["Allow"]
    page = api.client.get("/no-such-page")  # outside the API, errors stay as they were
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_a_general_error_handler_of_the_pages_keeps_api_errors_in_api_form(api):
    @api.app.errorhandler(HTTPException)
    def pages(exc: HTTPException) -> Any:
        return f"page error {exc.code}", exc.code or 500

    assert api.client.get("/no-such-page").get_data(as_text=True) == "page error 404"
    missing = api.client.get(f"{PREFIX}/nothing-here")
    assert missing.get_json()["error"]["code"] == "not_found"
    assert api.client.put(f"{PREFIX}/cases").get_json()["error"]["code"] == \
        "method_not_allowed"


def _log_in_the_browser(client) -> None:
    """Log the client in on the web pages, as a browser does (form and CSRF token)."""
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "agent_approval_bureau",
                                "password": "password-agent_approval_bureau",
                                "csrf_token": csrf})


def test_tokens_are_checked_and_a_session_cookie_is_not_enough(api):
    for header in ("Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "):
        response = api.call("anonymous", "GET", "/tasks", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    client = api.client
    _log_in_the_browser(client)
    assert client.get("/").status_code == 200  # logged in on the web pages
    assert client.get(f"{PREFIX}/tasks").status_code == 401


def test_api_calls_leave_the_browser_session_alone(api):
    """Under /api/v1 the cookie session is not opened: a logged-in browser's cookie sent
    along neither authenticates nor is changed, and no answer sets or varies on a cookie."""
    client = api.client
    _log_in_the_browser(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    for who, path in (("agent_own", "/tasks"), ("anonymous", "/tasks"),
                      ("agent_own", "/no-such-thing")):
        response = api.call(who, "GET", path, check=path == "/tasks")
        assert response.status_code in (200, 401, 404), path
        assert "Set-Cookie" not in response.headers, path
        assert "Cookie" not in response.headers.get("Vary", ""), path
    assert client.get_cookie("session").value == cookie.value
    assert client.get("/").status_code == 200  # the web session still works


def test_tokens_are_issued_and_revoked_from_the_command_line(api, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", str(api.engine.db.engine.url))
    monkeypatch.setenv("ZERORUN_DATA", str(ROOT / "data"))
    runner = CliRunner()
    issued = runner.invoke(cli_main, ["issue-token", "agent_natural_resources"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", token)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.call("anonymous", "GET", "/tasks", headers=headers).status_code == 200
    old = {"Authorization": f"Bearer {api.tokens['agent_other']}"}
    assert api.call("anonymous", "GET", "/tasks", headers=old).status_code == 401

    revoked = runner.invoke(cli_main, ["revoke-tokens", "agent_natural_resources"])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert api.call("anonymous", "GET", "/tasks", headers=headers).status_code == 401
    again = runner.invoke(cli_main, ["revoke-tokens", "agent_natural_resources"])
    assert "nothing to revoke" in again.stdout
    unknown = runner.invoke(cli_main, ["issue-token", "nobody"])
    assert unknown.exit_code == 1 and "does not exist" in unknown.output


def test_a_deactivated_user_token_stops_working(api):
    from engine.store.models import User

    with api.engine.db.transaction() as s:
        user = s.scalar(select(User).where(User.username == "agent_approval_bureau"))
        user.active = False
    assert api.get("agent_own", "/tasks").status_code == 401

