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
from tests.service import KEY_PROJECT, fresh_code
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
    form = {f"project.{k}": ("on" if v is True else str(v))
            for k, v in fresh_code(KEY_PROJECT).items() if v is not False}
    return {"process": "case_flow", **form}


def sealed(ws: Workspace) -> int:
    """The number of a seal, made if there is none yet."""
    from engine.audit.seals import latest_seal, seal

    made = latest_seal(ws.engine) or seal(ws.engine)
    return made.number


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
    # an unknown account: failures count (and lock an account after five), see test_hardening
    ("/login", "POST"): (lambda ws, t: ("/login", {"username": "nobody",
                                                   "password": "wrong"}), False,
                         dict.fromkeys(ROLES, 401)),
    ("/logout", "POST"): (lambda ws, t: ("/logout", {}), False, dict.fromkeys(ROLES, 302)),
    # Operations: public health (no worker in this workspace, so not ready), metrics from
    # an allowed address (the test client's 127.0.0.1), single sign-on not configured.
    ("/healthz", "GET"): (lambda ws, t: ("/healthz", None), False, ALL),
    ("/readyz", "GET"): (lambda ws, t: ("/readyz", None), False, dict.fromkeys(ROLES, 503)),
    ("/metrics", "GET"): (lambda ws, t: ("/metrics", None), False, ALL),
    ("/login/sso", "GET"): (lambda ws, t: ("/login/sso", None), False,
                            dict.fromkeys(ROLES, 404)),
    ("/login/sso/callback", "GET"): (lambda ws, t: ("/login/sso/callback", None), False,
                                     dict.fromkeys(ROLES, 404)),
    ("/lang/<any(zh, en):code>", "GET"): (lambda ws, t: ("/lang/en", None), False,
                                         dict.fromkeys(ROLES, 302)),
    # Auditors and administrators have no inbox: "/" takes them to their own area.
    ("/", "GET"): (lambda ws, t: ("/", None), False,
                   {**ALL, **LOGIN, "admin": 302, "auditor": 302}),
    # what the caller may not see is "not found", like what does not exist (issue 14.5)
    ("/tasks/<task_id>", "GET"): (lambda ws, t: (f"/tasks/{t.task_id}", None), False,
                                  {**ALL, **LOGIN, "other_agent": 404}),
    ("/tasks/<task_id>", "POST"): (
        lambda ws, t: (f"/tasks/{t.task_id}", complete_form(ws, t)), False,
        {**LOGIN, "owner_agent": 302, "leader": 302, "other_agent": 404, "office": 403,
         "admin": 403, "auditor": 403}),
    ("/tasks/<task_id>/<any(claim, release):action>", "POST"): (
        lambda ws, t: (f"/tasks/{t.task_id}/claim", {"version": t.version}), False,
        {**LOGIN, "owner_agent": 302, "leader": 302, "other_agent": 404, "office": 403,
         "admin": 403, "auditor": 403}),
    ("/tasks/<task_id>/release", "POST"): (
        lambda ws, t: (f"/tasks/{t.task_id}/release", {"version": t.version}), True,
        {**LOGIN, "owner_agent": 302, "leader": 302, "other_agent": 404, "office": 403,
         "admin": 403, "auditor": 403}),
    ("/attachments/<int:attachment_id>", "GET"): (
        lambda ws, t: (f"/attachments/{t.attachment_id}", None), False,
        {**ALL, **LOGIN, "other_agent": 404}),
    ("/cases/<int:case_id>", "GET"): (lambda ws, t: (f"/cases/{t.case_id}", None), False,
                                      {**ALL, **LOGIN, "other_agent": 404}),
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
           ("/audit/processes/<process_id>/<int:version>", "/audit/processes/case_flow/1"),
           ("/audit/seals", "/audit/seals")]},
    ("/audit/seals/<int:number>.json", "GET"): (
        lambda ws, t: (f"/audit/seals/{sealed(ws)}.json", None), False, AUDIT_READERS),
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
           ("/admin/decisions/<file_name>", "/admin/decisions/item_selection.dmn", ADMINS),
           ("/admin/accounts", "/admin/accounts", ADMINS),
           ("/admin/versions/<int:version_id>/whatif", "/admin/versions/1/whatif", ADMINS),
           ("/admin/whatif/<int:run_id>", "/admin/whatif/999999", {**ADMINS, "admin": 404}),
           ("/admin/whatif/<int:run_id>/progress", "/admin/whatif/999999/progress",
            {**ADMINS, "admin": 404})]},
    # Administrators' writes: everyone else is refused before anything is read.
    **{(rule, "POST"): (lambda ws, t, path=path: (path.format(case=t.case_id), {}), False,
                        {**ADMIN_WRITE, "admin": status})
       for rule, path, status in [
           ("/admin/processes/save", "/admin/processes/save", 400),
           # no case chosen: nothing is queued
           ("/admin/versions/<int:version_id>/whatif", "/admin/versions/1/whatif", 422),
           ("/admin/processes/upload", "/admin/processes/upload", 302),
           ("/admin/versions/<int:version_id>/publish", "/admin/versions/999/publish", 404),
           ("/admin/processes/<process_id>/migrate", "/admin/processes/case_flow/migrate",
            302),
           ("/admin/cases/<int:case_id>/revert-migration",
            "/admin/cases/{case}/revert-migration", 302),
           ("/admin/decisions/<file_name>", "/admin/decisions/item_selection.dmn", 400),
           # the accounts page: an empty form or an unknown account changes nothing
           ("/admin/accounts", "/admin/accounts", 400),
           ("/admin/accounts/<username>/<any(deactivate, activate):action>",
            "/admin/accounts/nobody/deactivate", 404),
           ("/admin/accounts/<username>/password", "/admin/accounts/nobody/password", 404),
           ("/admin/accounts/<username>/role", "/admin/accounts/nobody/role", 404)]},
    # Documents, notifications and the dashboard.
    ("/cases/<int:case_id>/documents", "GET"): (
        lambda ws, t: (f"/cases/{t.case_id}/documents", None), False,
        {**ALL, **LOGIN, "other_agent": 404}),
    ("/cases/<int:case_id>/documents", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/documents", {"kind": "one_time_notice"}), False,
        {**LOGIN, "owner_agent": 302, "other_agent": 404, "leader": 302, "office": 302,
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
    ("/calendar", "GET"): (lambda ws, t: ("/calendar", None), False, OFFICE_ADMIN),
    ("/calendar", "POST"): (lambda ws, t: ("/calendar", {}), False, OFFICE_ADMIN_WRITE),
    # A year declared at once (webapp/clocks.py); an empty form is refused, nothing stored.
    ("/calendar/year", "POST"): (lambda ws, t: ("/calendar/year", {}), False,
                                 OFFICE_ADMIN_WRITE),
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
    # The agency team, the yearly assessment and the public summary.
    ("/team", "GET"): (lambda ws, t: ("/team", None), False,
                       {**dict.fromkeys(ROLES, 200), **LOGIN, "owner_agent": 403,
                        "other_agent": 403}),
    # a unit's leader records his own agents' absences (the empty form is refused: 422)
    ("/team/absences", "POST"): (lambda ws, t: ("/team/absences", {}), False,
                                 {**OFFICE_ADMIN_WRITE, "leader": 422}),
    ("/team/training", "POST"): (lambda ws, t: ("/team/training", {}), False,
                                 OFFICE_ADMIN_WRITE),
    ("/publicity", "GET"): (lambda ws, t: ("/publicity", None), False, DASHBOARD),
    ("/publicity", "POST"): (lambda ws, t: ("/publicity", {}), False,
                             {**dict.fromkeys(ROLES, 403), **LOGIN, "office": 302}),
    ("/publicity/<int:document_id>.pdf", "GET"): (
        lambda ws, t: ("/publicity/999999.pdf", None), False,
        {**DASHBOARD, "leader": 404, "office": 404, "auditor": 404}),
    # The project unit's own tasks (only through a live token), progress reports.
    ("/p/<token>/tasks/<task_id>", "POST"): (
        lambda ws, t: (f"/p/no-such-token/tasks/{t.task_id}", {}), False,
        {**dict.fromkeys(ROLES, 404)}),
    ("/progress-reports", "GET"): (lambda ws, t: ("/progress-reports", None), False,
                                   {**DASHBOARD, "admin": 403}),
    ("/progress-reports.<any(csv, xlsx):kind>", "GET"): (
        lambda ws, t: ("/progress-reports.xlsx", None), False, {**DASHBOARD, "admin": 403}),
    ("/cases/<int:case_id>/progress-reports", "GET"): (
        lambda ws, t: (f"/cases/{t.case_id}/progress-reports", None), False,
        {**ALL, **LOGIN, "other_agent": 404}),
    ("/cases/<int:case_id>/comments", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/comments", {"text": "请尽快补充材料"}), False,
        {**LOGIN, "owner_agent": 302, "other_agent": 404, "leader": 302, "office": 302,
         "admin": 403, "auditor": 403}),
    # Policy consultations and follow-ups: the case's department agents only (webapp/records.py).
    ("/records/cases/<int:case_id>/<kind>", "POST"): (
        lambda ws, t: (f"/records/cases/{t.case_id}/consultations",
                       {"question": "能否申请技改补助？", "answer": "投产后可申报"}), False,
        {**LOGIN, "owner_agent": 302, "other_agent": 404, "leader": 403, "office": 403,
         "admin": 403, "auditor": 403}),
    # Acting for the project unit (代为办理, rule R05): the Approval Service Bureau's agents
    # only; select_items is no task of the unit, so even they find it "not found".
    ("/cases/<int:case_id>/unit-tasks/<task_id>", "GET"): (
        lambda ws, t: (f"/cases/{t.case_id}/unit-tasks/{t.task_id}", None), False,
        {**dict.fromkeys(ROLES, 403), **LOGIN, "owner_agent": 404, "other_agent": 404}),
    ("/cases/<int:case_id>/unit-tasks/<task_id>", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/unit-tasks/{t.task_id}",
                       {"confirmation_method": "phone"}), False,
        {**dict.fromkeys(ROLES, 403), **LOGIN, "owner_agent": 404, "other_agent": 404}),
    ("/cases/<int:case_id>/authorisation", "GET"): (
        lambda ws, t: (f"/cases/{t.case_id}/authorisation", None), False,
        {**dict.fromkeys(ROLES, 403), **LOGIN, "owner_agent": 200, "other_agent": 404}),
    ("/cases/<int:case_id>/authorisation", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/authorisation", {"signatory": "张伟"}), False,
        {**dict.fromkeys(ROLES, 403), **LOGIN, "owner_agent": 422, "other_agent": 404}),
    ("/cases/<int:case_id>/terminate", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/terminate", {"reason": "项目单位主动要求终止"}), False,
        {**LOGIN, "owner_agent": 403, "other_agent": 403, "leader": 403, "office": 302,
         "admin": 302, "auditor": 403}),
    # An item's clock (webapp/clocks.py): its department or the office; no item is on its
    # clock yet, so the office is refused with 409 and nothing is stored.
    ("/cases/<int:case_id>/items/<item_code>/pause", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/items/construction_permit/pause",
                       {"reason": "correction", "days": "5"}), False,
        {**LOGIN, "owner_agent": 403, "other_agent": 404, "leader": 403, "office": 409,
         "admin": 403, "auditor": 403}),
    ("/cases/<int:case_id>/items/<item_code>/resume", "POST"): (
        lambda ws, t: (f"/cases/{t.case_id}/items/construction_permit/resume", {}), False,
        {**LOGIN, "owner_agent": 403, "other_agent": 404, "leader": 403, "office": 409,
         "admin": 403, "auditor": 403}),
    # Systems outside: webhook subscriptions and external jobs (webapp/integrations.py).
    ("/admin/integrations/", "GET"): (lambda ws, t: ("/admin/integrations/", None), False,
                                      LIBRARY_READERS),
    ("/admin/integrations/webhooks", "POST"): (
        lambda ws, t: ("/admin/integrations/webhooks", {"url": "https://example.org/hook",
                                                        "event_types": "case_started"}),
        False, {**ADMINS, "admin": 302}),
    ("/admin/integrations/webhooks/<int:subscription_id>", "GET"): (
        lambda ws, t: ("/admin/integrations/webhooks/999999", None), False,
        {**LIBRARY_READERS, "admin": 404, "auditor": 404}),
    ("/admin/integrations/webhooks/<int:subscription_id>/deactivate", "POST"): (
        lambda ws, t: ("/admin/integrations/webhooks/999999/deactivate", {}), False,
        {**ADMINS, "admin": 404}),
    ("/admin/integrations/jobs/<job_id>/retry", "POST"): (
        lambda ws, t: ("/admin/integrations/jobs/no-such-job/retry", {"retries": "2"}), False,
        {**ADMINS, "admin": 302}),
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
        if expected[role] in (401, 403, 404) or (role == "anonymous" and expected[role] == 302
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
    assert opened.status_code == 404  # the same answer as for a task that does not exist
    assert "不存在" in opened.get_data(as_text=True)
    for path, form in [
        (f"/tasks/{target.task_id}/claim", {"version": target.version}),
        (f"/tasks/{target.task_id}", complete_form(ws, target)),
        (f"/tasks/{target.task_id}", {"version": target.version, "action": "draft",
                                      "item_list_note": "越权草稿"}),
    ]:
        response = other.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 404, path
    assert state_of(ws, target) == before
    assert other.get(f"/cases/{target.case_id}").status_code == 404
    assert "没有待办任务" in other.get("/").get_data(as_text=True)


# Completed tasks are read by every department involved in the case (never changed by them);
# a case is read by whoever started it. (role -> status), row by row.
UNINVOLVED = "agent_water"
COMPLETED_READS = {"anonymous": 302, "owner_agent": 200, "other_agent": 200, "leader": 200,
                   "office": 200, "admin": 200, "auditor": 200, "uninvolved": 404}
# Another department's task, even one it may read, is not its to change: as for any task
# outside its department, the answer is "not found" (issue 14.5) and nothing changes.
COMPLETED_WRITES = {"anonymous": 302, "owner_agent": 409, "other_agent": 404, "leader": 409,
                    "office": 403, "admin": 403, "auditor": 403, "uninvolved": 404}


def involving_drc(ws: Workspace) -> tuple[int, str]:
    """A case past its intake whose DRC item is in handling: (case, the item list task)."""
    case_id = ws.start()
    [done] = ws.ready(case_id, "select_items")
    ws.to_phase_one(case_id)
    [prepare] = [t for t in ws.ready(case_id, "prepare_materials")
                 if t.item_code == "project_filing"]
    ws.engine.complete_task(prepare.id, {"prepared_materials": ["application_form"],
                                         "forms_filled": True}, OWNER, prepare.version)
    assert [t.department for t in ws.ready(case_id, "check_materials")
            if t.item_code == "project_filing"] == ["drc"]
    return case_id, done.id


@pytest.mark.parametrize("role", list(COMPLETED_READS))
def test_involved_departments_read_completed_tasks_and_change_nothing(ws, clients, role):
    case_id, task_id = involving_drc(ws)
    client = logged_in(ws.app, UNINVOLVED) if role == "uninvolved" else clients[role]
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == COMPLETED_READS[role], role
    if response.status_code == 200:
        page = response.get_data(as_text=True)
        # The submitted data is shown, in fields nobody can submit.
        assert "会商确认" in page and 'value="complete"' not in page
    page = client.get("/login" if role == "anonymous" else "/cases").get_data(as_text=True)
    with ws.engine.db.reading() as s:
        before = (s.get(HumanTask, task_id).version,
                  s.scalar(select(func.count()).select_from(Event)))
    posted = client.post(f"/tasks/{task_id}", data={
        "csrf_token": csrf_of(page), "version": 2, "action": "complete",
        "item_list_note": "改写"})
    assert posted.status_code == COMPLETED_WRITES[role], (role, posted.status_code)
    with ws.engine.db.reading() as s:
        assert (s.get(HumanTask, task_id).version,
                s.scalar(select(func.count()).select_from(Event))) == before


def test_the_non_acceptance_notice_shows_the_reasons_and_the_department_reads_its_check(ws):
    case_id, _ = involving_drc(ws)
    [check] = [t for t in ws.ready(case_id, "check_materials")
               if t.item_code == "project_filing"]
    reasons = ["申请表未加盖公章", "营业执照已过期"]
    ws.engine.complete_task(check.id, {"decision": "reject", "rejection_reasons": reasons},
                            Actor("agent_drc", "agent", "drc"), check.version)
    [notice] = ws.ready(case_id, "notify_rejection")
    assert notice.department == "approval_bureau"
    page = logged_in(ws.app, "agent_approval_bureau").get(f"/tasks/{notice.id}").get_data(
        as_text=True)
    section = page.split('id="reasons-to-pass-on"')[1].split("</section>")[0]
    assert all(r in section for r in reasons)
    # The Bureau's agent opens the DRC's decision from the earlier decisions.
    assert f'href="/tasks/{check.id}"' in page
    seen = logged_in(ws.app, "agent_approval_bureau").get(f"/tasks/{check.id}")
    assert seen.status_code == 200 and reasons[0] in seen.get_data(as_text=True)
    # The DRC reads the Bureau's tasks, its open notice too, read-only (issue 28 row 5).
    drc = logged_in(ws.app, "agent_drc")
    open_notice = drc.get(f"/tasks/{notice.id}")
    assert open_notice.status_code == 200
    assert 'value="complete"' not in open_notice.get_data(as_text=True)
    assert drc.post(f"/tasks/{notice.id}", data={
        "action": "complete", "csrf_token": csrf_of(open_notice.get_data(as_text=True))}
        ).status_code in (403, 404)
    assert ws.ready(case_id, "notify_rejection") == [notice]
    assert drc.get(f"/cases/{case_id}").status_code == 200


def test_an_agent_who_started_a_case_reads_it(ws):
    case_id = ws.engine.start_case("case_flow", {"project": {
        **KEY_PROJECT, "name": "自建", "code": "2026-640502-34-03-000999"}},
                                   Actor(UNINVOLVED, "agent", "water")).id
    assert logged_in(ws.app, UNINVOLVED).get(f"/cases/{case_id}").status_code == 200
    assert logged_in(ws.app, "agent_housing_construction").get(
        f"/cases/{case_id}").status_code == 404
    assert ws.engine.may_see_case(case_id, Actor(UNINVOLVED, "agent", "water"))
