"""The workspace in headless Chromium: the agents' daily path, and two agents racing."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import ROOT, START
from tests.service import KEY_PROJECT
from tests.workspace import PASSWORD, Workspace, make_workspace

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing", pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

from playwright import sync_api  # noqa: E402 - only once Chromium is known to be there


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Workspace, str]]:
    from engine.runtime.clock import MovableClock

    ws = make_workspace(tmp_path, MovableClock(START))
    server = make_server("127.0.0.1", 0, ws.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ws, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def with_demo_names(ws: Workspace) -> None:
    """The workspace's accounts named as `make run` names its demo accounts."""
    from sqlalchemy import select

    from agency.bootstrap import demo_accounts
    from engine.store.models import User

    names = {username: display for username, _, _, display in demo_accounts(ws.engine)}
    with ws.engine.db.transaction() as s:
        for user in s.scalars(select(User)):
            user.display_name = names.get(user.username, user.display_name)


def test_an_agent_fixes_a_wrong_value_completes_and_the_next_department_takes_over(
        served, browser):
    ws, base = served
    with_demo_names(ws)  # the screenshots in the README show people as the demo shows them
    case_id = ws.start()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    log_in(page, base, "agent_approval_bureau")
    row = page.locator("table.inbox tbody tr", has_text=KEY_PROJECT["name"])
    assert row.count() == 1
    assert "编制项目事项清单" in row.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "inbox.png"), full_page=True)

    row.locator("a", has_text="编制项目事项清单").click()
    page.wait_for_selector("#task-form")
    assert KEY_PROJECT["enterprise"] in page.inner_text("aside")
    # the wrong value: an empty item list
    checked = page.locator("input[name=selected_items]:checked")
    assert checked.count() > 0  # preselected from the project's characteristics
    while checked.count():
        checked.first.uncheck()
    page.fill("#f-item_list_note", "与自然资源局、住建局会商")
    page.click("button[value=complete]")
    field = page.locator(".field.invalid[data-field=selected_items]")
    field.wait_for()
    assert "此项必填" in field.inner_text()
    assert page.input_value("#f-item_list_note") == "与自然资源局、住建局会商"
    page.screenshot(path=str(SCREENSHOTS / "task.png"), full_page=True)

    for code in ("project_filing", "land_prereview_site", "construction_permit"):
        page.check(f"input[name=selected_items][value={code}]")
    page.click("button[value=complete]")
    page.wait_for_url(f"{base}/")
    assert "已完成：编制项目事项清单" in page.inner_text("main")
    assert page.locator("table.inbox tbody tr", has_text=KEY_PROJECT["name"]).count() == 0
    context.close()

    housing = browser.new_context(locale="zh-CN")
    other = housing.new_page()
    log_in(other, base, "agent_housing_construction")
    next_row = other.locator("table.inbox tbody tr", has_text=KEY_PROJECT["name"])
    assert "编制事项材料清单" in next_row.inner_text()
    other.goto(f"{base}/cases/{case_id}")
    other.wait_for_selector("#diagram[data-ready=case_flow]")
    marked = other.locator('.djs-element.state-completed[data-element-id="select_items"]')
    assert marked.count() == 1
    active = other.locator('.djs-element.state-active[data-element-id="review_material_list"]')
    assert active.count() == 1
    other.set_viewport_size({"width": 1280, "height": 900})
    other.screenshot(path=str(SCREENSHOTS / "case.png"), full_page=True)
    housing.close()


def test_two_agents_submit_the_same_task_and_the_second_is_told_it_is_done(served, browser):
    ws, base = served
    ws.start()
    pages = []
    for username in ("agent_approval_bureau", "agent2_approval_bureau"):
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        log_in(page, base, username)
        page.locator("table.inbox a", has_text="编制项目事项清单").click()
        page.wait_for_selector("#task-form")
        pages.append(page)
    first, second = pages
    first.click("button[value=complete]")
    first.wait_for_url(f"{base}/")
    assert "已完成：编制项目事项清单" in first.inner_text("main")
    second.click("button[value=complete]")
    message = second.locator("#task-message")
    message.wait_for()
    assert "该任务已由 agent_approval_bureau 于" in message.inner_text()
    assert "未做任何更改" in message.inner_text()
    assert second.locator("h1").inner_text() == "编制项目事项清单"  # the task page, not an error
    assert second.locator("button[value=complete]").count() == 0
