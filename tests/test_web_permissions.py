"""Every web route for every role: the status each gets, and nothing changes when refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.actors import Actor
from engine.runtime.clock import MovableClock
from engine.store.models import Attachment, Case, Event, HumanTask
from tests.conftest import START
from tests.service import KEY_PROJECT
from tests.workspace import Workspace, csrf_of, logged_in, make_workspace

PDF = b"%PDF-1.4\n%%EOF\n"
ROLES = {  # role in the table -> account (None: not logged in)
    "anonymous": None,
    "owner_agent": "agent_approval_bureau",
    "other_agent": "agent_drc",
    "leader": "leader_approval_bureau",
    "office": "office",
    "admin": "admin",
    "auditor": "auditor",
}
OWNER = Actor("agent_approval_bureau", "agent", "approval_bureau")


@dataclass
class Target:
    """A fresh case whose first task (编制项目事项清单, approval bureau) has a file attached."""

    case_id: int
    task_id: str
    version: int
    attachment_id: int


def fresh(ws: Workspace, claimed: bool = False) -> Target:
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    attachment = ws.engine.add_attachment(task.id, "证照.pdf", PDF, OWNER)
    if claimed:
        ws.engine.claim_task(task.id, OWNER)
    version = ws.engine.list_tasks(case_id=case_id)[0].version
    return Target(case_id, task.id, version, attachment.id)


def complete_form(ws: Workspace, t: Target) -> dict[str, Any]:
    return {"version": t.version, "action": "complete",
            "selected_items": ws.engine.get_case(t.case_id).data["selected_items"]}


def start_form() -> dict[str, Any]:
    form = {f"project.{k}": ("on" if v is True else str(v)) for k, v in KEY_PROJECT.items()
            if v is not False}
    return {"process": "case_flow", **form}


Request = Callable[[Workspace, Target], tuple[str, dict[str, Any] | None]]
ALL = dict.fromkeys(ROLES, 200)
LOGIN = {"anonymous": 302}
AUDIT_READERS = {**LOGIN, "owner_agent": 403, "other_agent": 403, "leader": 403, "office": 200,
                 "admin": 200, "auditor": 200}
LIBRARY_READERS = {**LOGIN, "owner_agent": 403, "other_agent": 403, "leader": 403,
                   "office": 403, "admin": 200, "auditor": 200}
ADMINS = {**LIBRARY_READERS, "auditor": 403}
ADMIN_WRITE = {**ADMINS, "admin": 200}
DASHBOARD = {**LOGIN, "owner_agent": 403, "other_agent": 403, "leader": 200, "office": 200,
             "admin": 403, "auditor": 200}
OFFICE_ADMIN = {**dict.fromkeys(ROLES, 403), **LOGIN, "office": 200, "admin": 200}
OFFICE_ADMIN_WRITE = {**OFFICE_ADMIN, "office": 422, "admin": 422}
RECORD_READERS = {**dict.fromkeys(ROLES, 200), **LOGIN, "owner_agent": 403, "other_agent": 403}
LINK_MAKERS = {**dict.fromkeys(ROLES, 403), **LOGIN, "owner_agent": 200, "office": 200}
# (rule, method) -> (request builder, needs a claimed task, expected status per role)
TABLE: dict[tuple[str, str], tuple[Request, bool, dict[str, int]]] = {
    ("/login", "GET"): (lambda ws, t: ("/login", None), False, ALL),
    ("/login", "POST"): (lambda ws, t: ("/login", {"username": "agent_drc",
                                                   "password": "wrong"}), False,
                         dict.fromkeys(ROLES, 401)),
    ("/logout", "POST"): (lambda ws, t: ("/logout", {}), False, dict.fromkeys(ROLES, 302)),
    ("/lang/<any(zh, en):code>", "GET"): (lambda ws, t: ("/lang/en", None), False,
                                         dict.fromkeys(ROLES, 302)),
    # Auditors and administrators have no inbox: "/" takes them to their own area.
    ("/", "GET"): (lambda ws, t: ("/", None), False,
                   {**ALL, **LOGIN, "admin": 302, "auditor": 302}),
    ("/tasks/<task_id>", "GET"): (lambda ws, t: (f"/tasks/{t.task_id}", None), False,
                                  {**ALL, **LOGIN, "other_agent": 403}),
    ("/tasks/<task_id>", "POST"): (
        lambda ws, t: (f"/tasks/{t.task_id}", complete_form(ws, t)), False,
        {**LOGIN, "owner_agent": 302, "leader": 302, "other_agent": 403, "office": 403,
         "admin": 403, "auditor": 403}),
    ("/tasks/<task_id>/<any(claim, release):action>", "POST"): (
        lambda ws, t: (f"/tasks/{t.task_id}/claim", {"version": t.version}), False,
        {**LOGIN, "owner_agent": 302, "leader": 302, "other_agent": 403, "office": 403,
         "admin": 403, "auditor": 403}),
    ("/tasks/<task_id>/release", "POST"): (
        lambda ws, t: (f"/tasks/{t.task_id}/release", {"version": t.version}), True,
        {**LOGIN, "owner_agent": 302, "leader": 302, "other_agent": 403, "office": 403,
         "admin": 403, "auditor": 403}),
    ("/attachments/<int:attachment_id>", "GET"): (
        lambda ws, t: (f"/attachments/{t.attachment_id}", None), False,
        {**ALL, **LOGIN, "other_agent": 403}),
    ("/cases/<int:case_id>", "GET"): (lambda ws, t: (f"/cases/{t.case_id}", None), False,
                                      {**ALL, **LOGIN, "other_agent": 403}),
    ("/cases", "GET"): (lambda ws, t: ("/cases", None), False, {**ALL, **LOGIN}),
    ("/cases/new", "GET"): (lambda ws, t: ("/cases/new", None), False,
                            {**ALL, **LOGIN, "auditor": 403}),
    ("/cases/new", "POST"): (lambda ws, t: ("/cases/new", start_form()), False,
                             {**dict.fromkeys(ROLES, 302), "auditor": 403}),
    **{(rule, "GET"): (lambda ws, t, path=path: (path.format(case=t.case_id), None), False,
                       AUDIT_READERS)
       for rule, path in [
           ("/audit/", "/audit/"), ("/audit/cases/<int:case_id>", "/audit/cases/{case}"),
           ("/audit/cases/<int:case_id>/export.json", "/audit/cases/{case}/export.json"),
           ("/audit/cases/<int:case_id>/report.html", "/audit/cases/{case}/report.html"),
           ("/audit/cases/<int:case_id>/report.pdf", "/audit/cases/{case}/report.pdf"),
           ("/audit/ops", "/audit/ops"), ("/audit/processes", "/audit/processes"),
           ("/audit/processes/<process_id>/<int:version>", "/audit/processes/case_flow/1")]},
    **{(rule, "GET"): (lambda ws, t, path=path: (path.format(case=t.case_id), None), False,
                       expected)
       for rule, path, expected in [
           ("/admin/processes", "/admin/processes", LIBRARY_READERS),
           ("/admin/processes/<process_id>/diff", "/admin/processes/case_flow/diff",
            LIBRARY_READERS),
           ("/admin/versions/<int:version_id>/download", "/admin/versions/1/download",
            LIBRARY_READERS),
           ("/admin/processes/<process_id>/edit", "/admin/processes/phase_3/edit", ADMINS),
           ("/admin/processes/<process_id>/migrate", "/admin/processes/case_flow/migrate",
            ADMINS),
           ("/admin/decisions/<file_name>", "/admin/decisions/item_selection.dmn", ADMINS)]},
    # Administrators' writes: everyone else is refused before anything is read.
    **{(rule, "POST"): (lambda ws, t, path=path: (path.format(case=t.case_id), {}), False,
                        {**ADMIN_WRITE, "admin": status})
       for rule, path, status in [
           ("/admin/processes/save", "/admin/processes/save", 400),
           ("/admin/processes/upload", "/admin/processes/upload", 302),
           ("/admin/versions/<int:version_id>/publish", "/admin/versions/999/publish", 404),
           ("/admin/processes/<process_id>/migrate", "/admin/processes/case_flow/migrate",
            302),
           ("/admin/cases/<int:case_id>/revert-migration",
            "/admin/cases/{case}/revert-migration", 302),
           ("/admin/decisions/<file_name>", "/admin/decisions/item_selection.dmn", 400)]},
    # Documents, notifications and the dashboard.
    ("/cases/<int:case_id>/documents", "GET"): (
        lambda ws, t: (f"/cases/{t.case_id}/documents", None), False,
        {**ALL, **LOGIN, "other_agent": 403}),
    ("/cases/<int:case_id>/documents", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/documents", {"kind": "one_time_notice"}), False,
        {**LOGIN, "owner_agent": 302, "other_agent": 403, "leader": 302, "office": 302,
         "admin": 403, "auditor": 403}),
    ("/documents/<int:document_id>", "GET"): (
        lambda ws, t: ("/documents/999999", None), False, {**dict.fromkeys(ROLES, 404), **LOGIN}),
    ("/documents/<int:document_id>.pdf", "GET"): (
        lambda ws, t: ("/documents/999999.pdf", None), False,
        {**dict.fromkeys(ROLES, 404), **LOGIN}),
    ("/notifications", "GET"): (lambda ws, t: ("/notifications", None), False, {**ALL, **LOGIN}),
    ("/notifications/<int:notification_id>/read", "POST"): (
        lambda ws, t: ("/notifications/999999/read", {}), False,
        {**dict.fromkeys(ROLES, 404), **LOGIN, "auditor": 403}),
    ("/notifications/read-all", "POST"): (
        lambda ws, t: ("/notifications/read-all", {}), False,
        {**dict.fromkeys(ROLES, 302), "auditor": 403}),
    **{(rule, "GET"): (lambda ws, t, rule=rule: (rule, None), False, DASHBOARD)
       for rule in ("/dashboard", "/dashboard.csv", "/dashboard.xlsx")},
    ("/dashboard/report", "POST"): (
        lambda ws, t: ("/dashboard/report", {}), False,
        {**dict.fromkeys(ROLES, 403), **LOGIN, "leader": 302, "office": 302}),
    # Bulk intake, follow-up records, enterprise links.
    ("/intake/", "GET"): (lambda ws, t: ("/intake/", None), False, OFFICE_ADMIN),
    ("/intake/", "POST"): (lambda ws, t: ("/intake/", {}), False, {**OFFICE_ADMIN_WRITE}),
    ("/intake/template.<any(xlsx, csv):kind>", "GET"): (
        lambda ws, t: ("/intake/template.xlsx", None), False, OFFICE_ADMIN),
    ("/intake/<int:import_id>", "GET"): (
        lambda ws, t: ("/intake/999999", None), False, {**OFFICE_ADMIN, "office": 404,
                                                        "admin": 404}),
    ("/intake/<int:import_id>", "POST"): (
        lambda ws, t: ("/intake/999999", {"action": "import"}), False,
        {**OFFICE_ADMIN, "office": 404, "admin": 404}),
    ("/records/", "GET"): (lambda ws, t: ("/records/", None), False, RECORD_READERS),
    ("/records/<kind>", "GET"): (lambda ws, t: ("/records/visits", None), False,
                                 RECORD_READERS),
    ("/p/<token>", "GET"): (lambda ws, t: ("/p/no-such-token", None), False,
                            dict.fromkeys(ROLES, 404)),
    ("/p/<token>/documents/<int:document_id>.pdf", "GET"): (
        lambda ws, t: ("/p/no-such-token/documents/1.pdf", None), False,
        dict.fromkeys(ROLES, 404)),
    ("/enterprise-links", "GET"): (lambda ws, t: ("/enterprise-links", None), False,
                                   LINK_MAKERS),
    ("/cases/<int:case_id>/enterprise-links", "GET"): (
        lambda ws, t: (f"/cases/{t.case_id}/enterprise-links", None), False, LINK_MAKERS),
    ("/cases/<int:case_id>/enterprise-links", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/enterprise-links", {"recipient": "张伟"}), False,
        {**LINK_MAKERS, "owner_agent": 201, "office": 201}),
    ("/enterprise-links/<int:link_id>/revoke", "POST"): (
        lambda ws, t: ("/enterprise-links/999999/revoke", {}), False,
        {**LINK_MAKERS, "owner_agent": 404, "office": 404}),
    ("/cases/<int:case_id>/comments", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/comments", {"text": "请尽快补充材料"}), False,
        {**LOGIN, "owner_agent": 302, "other_agent": 403, "leader": 302, "office": 302,
         "admin": 403, "auditor": 403}),
    ("/cases/<int:case_id>/terminate", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/terminate", {"reason": "项目单位主动要求终止"}), False,
        {**LOGIN, "owner_agent": 403, "other_agent": 403, "leader": 403, "office": 302,
         "admin": 302, "auditor": 403}),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("permissions"), MovableClock(START))


@pytest.fixture(scope="module")
def clients(ws):
    made = {role: logged_in(ws.app, user) if user else ws.app.test_client()
            for role, user in ROLES.items()}
    yield made


def test_the_table_covers_every_web_route(ws):
    routes = {(rule.rule, method) for rule in ws.app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.rule.startswith("/api/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes <= set(TABLE), f"routes without expectations: {sorted(routes - set(TABLE))}"


def state_of(ws: Workspace, t: Target) -> tuple[Any, ...]:
    with ws.engine.db.reading() as s:
        row = s.get(HumanTask, t.task_id)
        case = s.get(Case, t.case_id)
        return (row.state, row.version, row.assignee, row.draft, case.event_seq,
                case.state_version, s.scalar(select(func.count()).select_from(Attachment)),
                s.scalar(select(func.count()).select_from(Event)))


@pytest.mark.parametrize("route", sorted(TABLE), ids=lambda r: f"{r[1]} {r[0]}")
@pytest.mark.parametrize("role", list(ROLES))
def test_every_role_gets_the_expected_status(ws, clients, route, role):
    build, claimed, expected = TABLE[route]
    target = fresh(ws, claimed)
    path, form = build(ws, target)
    client = clients[role]
    if form is None:
        response = client.get(path)
    else:
        page = client.get("/login").get_data(as_text=True) if role == "anonymous" else \
            client.get("/cases").get_data(as_text=True)
        before = state_of(ws, target)
        response = client.post(path, data={**form, "csrf_token": csrf_of(page)})
        if expected[role] in (401, 403) or (role == "anonymous" and expected[role] == 302
                                            and path not in ("/logout",)):
            assert state_of(ws, target) == before, "a refused request changed the database"
    response.close()
    assert response.status_code == expected[role], (role, route, response.status_code)
    if role == "anonymous" and expected[role] == 302 and path not in ("/logout",) \
            and not path.startswith("/lang/"):
        assert "/login" in response.headers["Location"]
    if route == ("/logout", "POST") and role != "anonymous":
        clients[role] = logged_in(ws.app, ROLES[role])  # log back in for the next tests


def test_an_agent_never_opens_claims_or_completes_another_departments_task(ws):
    target = fresh(ws)
    other = logged_in(ws.app, "agent_drc")
    token = csrf_of(other.get("/").get_data(as_text=True))
    before = state_of(ws, target)
    opened = other.get(f"/tasks/{target.task_id}")
    assert opened.status_code == 403
    assert "该任务属于其他部门" in opened.get_data(as_text=True)
    for path, form in [
        (f"/tasks/{target.task_id}/claim", {"version": target.version}),
        (f"/tasks/{target.task_id}", complete_form(ws, target)),
        (f"/tasks/{target.task_id}", {"version": target.version, "action": "draft",
                                      "item_list_note": "越权草稿"}),
    ]:
        response = other.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 403, path
    assert state_of(ws, target) == before
    assert other.get(f"/cases/{target.case_id}").status_code == 403
    assert "没有待办任务" in other.get("/").get_data(as_text=True)
