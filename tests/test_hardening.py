"""Security hardening (issue 14, points 1-5): login lockout and throttling that persist,
account deactivation, security headers, only startable processes start, 404 for what the
caller may not see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine import accounts
from engine.actors import Actor
from engine.store.models import Case, Event, LoginThrottle, User
from tests.service import KEY_PROJECT, OFFICE
from tests.webhelpers import create_accounts, csrf_of, logged_in, text_of
from webapp import create_app

PASSWORD = "hardening-pass-1"
USERS = [("agent_ab", "agent", "approval_bureau"), ("agent_drc", "agent", "drc"),
         ("office", "office", "leading_group_office"), ("admin", "admin", None),
         ("auditor", "auditor", None)]


class Site:
    """An app over the real pack on one database, with a few accounts."""

    def __init__(self, make_pack_engine, url: str, tmp_path: Path) -> None:
        self.url = url
        self.engine = make_pack_engine(url)
        create_accounts(self.engine, USERS, password=PASSWORD)
        self.app = create_app({"TESTING": True, "ENGINE_INSTANCE": self.engine,
                               "ENGINE": {"database_url": url, "instance_dir": tmp_path}})

    def login(self, username: str, password: str, address: str = "10.0.0.1"):
        client = self.app.test_client()
        page = client.get("/login").get_data(as_text=True)
        return client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": csrf_of(page)},
                           environ_base={"REMOTE_ADDR": address})

    def user(self, username: str) -> User:
        with self.engine.db.reading() as s:
            return s.scalar(select(User).where(User.username == username))

    def ops(self, event_type: str) -> list[Event]:
        with self.engine.db.reading() as s:
            return list(s.scalars(select(Event).where(Event.stream == "ops",
                                                      Event.type == event_type)))

    def count(self, model) -> int:
        with self.engine.db.reading() as s:
            return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def site(make_pack_engine, db_url, tmp_path) -> Site:
    return Site(make_pack_engine, db_url, tmp_path)


@pytest.fixture
def sqlite_site(make_pack_engine, sqlite_url, tmp_path) -> Site:
    return Site(make_pack_engine, sqlite_url, tmp_path)


@pytest.fixture(autouse=True)
def no_login_delay(monkeypatch):
    monkeypatch.setattr("webapp.auth.time.sleep", lambda seconds: None)


# 1. Login lockout and throttling -----------------------------------------------------


def test_five_failed_logins_lock_the_account_for_five_minutes_whatever_the_password(
        site, clock):
    for attempt in range(accounts.MAX_FAILED_LOGINS):
        response = site.login("agent_ab", f"wrong-{attempt}")
        assert response.status_code == 401
        assert "用户名或密码错误" in response.get_data(as_text=True)
    user = site.user("agent_ab")
    assert user.locked_until == clock() + accounts.LOCKOUT
    refused = site.login("agent_ab", PASSWORD)
    assert refused.status_code == 401
    # the same answer as for an unknown account (issue 28 row 8): no enumeration
    assert "用户名或密码错误" in refused.get_data(as_text=True)
    [locked] = site.ops("account_locked")
    assert locked.data["username"] == "agent_ab"
    # the administrator sees the lock on the accounts page
    page = logged_in(site.app, "admin", PASSWORD).get("/admin/accounts").get_data(as_text=True)
    row = re.search(r'<tr class="account[^"]*" data-username="agent_ab">.*?</tr>', page, re.S)
    assert "锁定至" in text_of(row.group(0))
    clock.advance(seconds=accounts.LOCKOUT.total_seconds() + 1)
    assert site.login("agent_ab", PASSWORD).status_code == 302
    assert site.user("agent_ab").failed_logins == 0


def test_failures_from_one_address_across_accounts_make_it_wait(site, clock, monkeypatch):
    monkeypatch.setattr(accounts, "MAX_ADDRESS_FAILURES", 3)
    for username in ("agent_ab", "agent_drc", "nobody"):
        assert site.login(username, "wrong-password", "10.9.9.9").status_code == 401
    refused = site.login("office", PASSWORD, "10.9.9.9")
    assert refused.status_code == 429
    assert "登录失败次数过多" in refused.get_data(as_text=True)
    with site.engine.db.reading() as s:
        assert s.get(LoginThrottle, "10.9.9.9").failures == 3
    assert site.login("office", PASSWORD, "10.1.1.1").status_code == 302  # another address
    clock.advance(seconds=accounts.ADDRESS_WINDOW.total_seconds())
    assert site.login("office", PASSWORD, "10.9.9.9").status_code == 302


# 2. Deactivating accounts --------------------------------------------------------------


def test_deactivation_from_the_command_line_ends_sessions_and_tokens_at_once(
        sqlite_site, monkeypatch):
    site = sqlite_site
    with site.engine.db.transaction() as s:
        token = accounts.issue_token(s, "agent_ab")
    browser = logged_in(site.app, "agent_ab", PASSWORD)
    api = {"Authorization": f"Bearer {token}"}
    assert browser.get("/").status_code == 200
    assert site.app.test_client().get("/api/v1/tasks", headers=api).status_code == 200
    monkeypatch.setenv("DATABASE_URL", site.url)
    runner = CliRunner()
    from webapp.cli import main

    result = runner.invoke(main, ["deactivate-user", "agent_ab"], catch_exceptions=False)
    assert result.exit_code == 0 and "agent_ab is deactivated" in result.output
    assert "/login" in browser.get("/").headers["Location"]
    assert site.app.test_client().get("/api/v1/tasks", headers=api).status_code == 401
    assert site.login("agent_ab", PASSWORD).status_code == 401
    [event] = site.ops("account_deactivated")
    assert event.data == {"username": "agent_ab"} and event.actor.startswith("cli:")
    result = runner.invoke(main, ["activate-user", "agent_ab"], catch_exceptions=False)
    assert result.exit_code == 0 and "agent_ab is active" in result.output
    assert site.ops("account_activated")
    # the old session and the old token stay dead; a new login works
    assert "/login" in browser.get("/").headers["Location"]
    assert site.app.test_client().get("/api/v1/tasks", headers=api).status_code == 401
    assert site.login("agent_ab", PASSWORD).status_code == 302
    result = runner.invoke(main, ["deactivate-user", "nobody"])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_the_accounts_page_lists_creates_deactivates_resets_and_changes_roles(sqlite_site):
    site = sqlite_site
    admin = logged_in(site.app, "admin", PASSWORD)
    page = admin.get("/admin/accounts")
    assert page.status_code == 200
    token = csrf_of(page.get_data(as_text=True))
    for username, *_ in USERS:
        assert f'data-username="{username}"' in page.get_data(as_text=True)
    created = admin.post("/admin/accounts", data={
        "csrf_token": token, "username": "agent_new", "display_name": "新代办员",
        "role": "agent", "department": "water", "password": "new-pass-123"})
    assert created.status_code == 302
    assert site.user("agent_new").department == "water"
    assert site.ops("account_created")[-1].actor == "admin"
    # refused input: a clear 4xx, nothing stored
    users = site.count(User)
    for form, status in [({"username": "agent_x", "role": "agent", "password": "short"}, 400),
                         ({"username": "agent_x", "role": "agent", "department": "water",
                           "password": "short"}, 400),
                         ({"username": "agent_x", "role": "wizard", "password": "long-enough"},
                          400),
                         ({"username": "agent_new", "role": "agent", "department": "water",
                           "password": "long-enough"}, 400)]:
        refused = admin.post("/admin/accounts", data={"csrf_token": token, **form})
        assert refused.status_code == status, form
        assert 'id="account-error"' in refused.get_data(as_text=True)
    assert site.count(User) == users
    # deactivating ends the user's session; resetting a password too
    worker = logged_in(site.app, "agent_new", "new-pass-123")
    assert admin.post("/admin/accounts/agent_new/deactivate",
                      data={"csrf_token": token}).status_code == 302
    assert not site.user("agent_new").active
    assert "/login" in worker.get("/").headers["Location"]
    assert admin.post("/admin/accounts/agent_new/activate",
                      data={"csrf_token": token}).status_code == 302
    worker = logged_in(site.app, "agent_new", "new-pass-123")
    assert admin.post("/admin/accounts/agent_new/password",
                      data={"csrf_token": token, "password": "other-pass-456"}).status_code == 302
    assert "/login" in worker.get("/").headers["Location"]
    logged_in(site.app, "agent_new", "other-pass-456")
    assert site.ops("password_reset")[-1].data == {"username": "agent_new"}
    assert admin.post("/admin/accounts/agent_new/role", data={
        "csrf_token": token, "role": "leader", "department": "drc"}).status_code == 302
    assert (site.user("agent_new").role, site.user("agent_new").department) == ("leader", "drc")
    assert site.ops("account_role_changed")[-1].data["before"] == {"role": "agent",
                                                                   "department": "water"}
    assert admin.post("/admin/accounts/admin/deactivate",
                      data={"csrf_token": token}).status_code == 400
    assert admin.post("/admin/accounts/nobody/deactivate",
                      data={"csrf_token": token}).status_code == 404
    for username in ("office", "auditor", "agent_ab"):
        other = logged_in(site.app, username, PASSWORD)
        assert other.get("/admin/accounts").status_code == 403
        home = other.get("/", follow_redirects=True).get_data(as_text=True)
        refused = other.post("/admin/accounts/agent_new/deactivate",
                             data={"csrf_token": csrf_of(home)})
        assert refused.status_code == 403
    assert site.user("agent_new").active


# 3. Security headers -------------------------------------------------------------------


def test_every_response_carries_the_security_headers(sqlite_site):
    site = sqlite_site
    client = logged_in(site.app, "admin", PASSWORD)
    for path in ("/login", "/", "/admin/processes", "/static/css/app.css", "/no-such-page",
                 "/api/v1/openapi.json", "/api/v1/tasks"):
        response = client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split(
            "script-src")[1].split(";")[0], (path, csp)
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        response.close()


def test_the_enterprise_page_keeps_no_store_and_noindex(sqlite_site):
    from agency.enterprise import EnterpriseLinks

    site = sqlite_site
    case = site.engine.start_case("case_flow", {"project": KEY_PROJECT}, OFFICE)
    token, _link = EnterpriseLinks(site.engine).create(case.id, OFFICE, "张伟")
    response = site.app.test_client().get(f"/p/{token}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


TEMPLATES = Path(__file__).resolve().parent.parent / "webapp" / "templates"


def test_no_template_runs_an_inline_script_without_the_nonce():
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag or "csp_nonce()" in tag, \
                (template.name, tag)
        assert not re.search(r"\son[a-z]+=\"", text), template.name


def test_the_case_report_runs_its_inline_viewer_under_the_nonce(sqlite_site):
    site = sqlite_site
    case = site.engine.start_case("case_flow", {"project": KEY_PROJECT}, OFFICE)
    response = logged_in(site.app, "auditor", PASSWORD).get(
        f"/audit/cases/{case.id}/report.html")
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    scripts = re.findall(r"<script\b([^>]*)>", response.get_data(as_text=True))
    inline = [attrs for attrs in scripts if "application/json" not in attrs]
    assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)


# 4. Only startable processes start ----------------------------------------------------


def test_nobody_starts_a_called_only_process(sqlite_site):
    site = sqlite_site
    data = {"item": {"code": "fake", "name": "编造的事项"}, "project": KEY_PROJECT}
    cases = site.count(Case)
    for username in ("office", "admin", "agent_ab"):
        actor = Actor(*next(u for u in USERS if u[0] == username))
        with pytest.raises(Exception) as refused:
            site.engine.start_case("item_approval", data, actor)
        assert getattr(refused.value, "status", None) == 403
        assert "item_approval" not in dict(site.engine.startable_processes(actor))
        assert "case_flow" in dict(site.engine.startable_processes(actor))
        client = logged_in(site.app, username, PASSWORD)
        page = client.get("/cases/new").get_data(as_text=True)
        assert 'value="item_approval"' not in page
        response = client.post("/cases/new", data={"csrf_token": csrf_of(page),
                                                    "process": "item_approval"})
        assert response.status_code in (403, 404), username
    with site.engine.db.transaction() as s:
        token = accounts.issue_token(s, "office")
    response = site.app.test_client().post(
        "/api/v1/cases", json={"process_id": "item_approval", "data": data},
        headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert site.count(Case) == cases


# 5. 404, not 403, for what the caller may not see --------------------------------------


def test_an_outsider_cannot_tell_a_hidden_case_or_task_from_a_missing_one(sqlite_site):
    site = sqlite_site
    case = site.engine.start_case("case_flow", {"project": KEY_PROJECT}, OFFICE)
    [task] = [t for t in site.engine.list_tasks(case_id=case.id)
              if t.spec_name == "select_items"]
    outsider = logged_in(site.app, "agent_drc", PASSWORD)
    token = csrf_of(outsider.get("/").get_data(as_text=True))
    hidden_case = outsider.get(f"/cases/{case.id}")
    missing_case = outsider.get("/cases/999999")
    assert hidden_case.status_code == missing_case.status_code == 404
    hidden_task = outsider.get(f"/tasks/{task.id}")
    assert hidden_task.status_code == 404
    assert "不存在" in hidden_task.get_data(as_text=True)
    for path in (f"/tasks/{task.id}/claim", f"/tasks/{task.id}"):
        assert outsider.post(path, data={"csrf_token": token,
                                         "version": task.version}).status_code == 404
    assert outsider.get(f"/cases/{case.id}/documents").status_code == 404
    with site.engine.db.transaction() as s:
        api_token = accounts.issue_token(s, "agent_drc")
    api = site.app.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}
    for hidden, missing in [(f"/api/v1/cases/{case.id}", "/api/v1/cases/999999"),
                            (f"/api/v1/cases/{case.id}/events", "/api/v1/cases/999999/events"),
                            (f"/api/v1/tasks/{task.id}", "/api/v1/tasks/no-such-task")]:
        a, b = api.get(hidden, headers=headers), api.get(missing, headers=headers)
        assert a.status_code == b.status_code == 404, hidden
        assert a.get_json()["error"]["code"] == b.get_json()["error"]["code"]
    claim = api.post(f"/api/v1/tasks/{task.id}/claim", json={}, headers=headers)
    assert claim.status_code == 404
    # the office sees the task but may not work on it: that stays a 403
    office = logged_in(site.app, "office", PASSWORD)
    assert office.get(f"/tasks/{task.id}").status_code == 200
    assert office.post(f"/tasks/{task.id}/claim", data={
        "csrf_token": csrf_of(office.get("/").get_data(as_text=True)),
        "version": task.version}).status_code == 403
