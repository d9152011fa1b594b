"""In a real browser: an auditor replays a finished case, verifies it, then sees tampering named."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.audit_cases import REJECTION_REASONS
from tests.test_audit import _tamper
from tests.test_audit_web import audit_app, rejection_seqs  # noqa: F401 - fixture
from tests.webhelpers import wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live_url(audit_app):  # noqa: F811 - the fixture imported above
    server = make_server("127.0.0.1", 0, audit_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_an_auditor_steps_back_to_a_rejection_verifies_and_sees_tampering(
        browser, live_url, audit_app, tmp_path):  # noqa: F811
    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    first, second = rejection_seqs(engine, case_id)
    page = browser.new_page()
    page.goto(f"{live_url}/login")
    page.fill("input[name=username]", "auditor")
    page.fill("input[name=password]", "password-auditor")
    page.click("button[type=submit]")
    page.click("a.nav-audit")
    page.fill("input[name=project]", "冷链")
    page.click("text=检索")
    page.click("#results a")
    assert page.locator("#step-value").inner_text() == "20"  # a finished case opens at its end
    wait_until(page, "window.auditDiagramsReady === true")
    assert page.locator("#diagram .djs-element.state-completed").count() > 5

    # Back, one step at a time, to the moment the item was refused the second time.
    for expected in range(19, second - 1, -1):
        page.click("#step-prev")
        assert page.locator("#step-value").inner_text() == str(expected)
    assert page.url.endswith(f"step={second}#step")
    event = page.locator("#step-event")
    assert "核对、检查、接收材料并受理" in event.inner_text()
    for reason in REJECTION_REASONS[1]:
        assert reason in event.locator("pre.submitted").inner_text()
    wait_until(page, "window.auditDiagramsReady === true")
    assert page.locator("#diagram").get_attribute("data-process") == "stage_handling"
    checked = page.locator('#diagram .djs-element[data-element-id="check_materials"]')
    waiting = page.locator('#diagram .djs-element[data-element-id="notify_rejection"]')
    assert "state-completed" in checked.get_attribute("class")
    assert "state-active" in waiting.get_attribute("class")
    assert "一次性告知不予受理原因" in page.locator("#open-tasks").inner_text()

    # The slider jumps to any step; each step has its own link.
    page.locator("#step-slider").fill(str(first))
    page.locator("#step-slider").dispatch_event("change")
    page.wait_for_url(f"**step={first}#step")
    assert REJECTION_REASONS[0][1] in page.locator("#step-event").inner_text()

    page.click("#verify-button")
    assert "核验通过：20 个事件" in page.locator("#verify-result").inner_text()

    with page.expect_download() as download:
        page.click("text=PDF")
    pdf = tmp_path / "case.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20000

    _tamper(engine, "UPDATE event SET actor = 'mallory' WHERE case_id = :c AND seq = :s",
            c=case_id, s=first)
    page.click("#verify-button")
    result = page.locator("#verify-result").inner_text()
    assert f"核验未通过：第 {first} 个事件处不一致" in result
    page.click(f"#verify-result a[href*='step={first}']")
    assert "mallory" in page.locator("#step-event").inner_text()


def test_the_replay_diagram_zooms_and_opens_each_called_instance_as_it_was(
        browser, live_url, audit_app):  # noqa: F811
    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    first, second = rejection_seqs(engine, case_id)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{live_url}/login")
    page.fill("input[name=username]", "auditor")
    page.fill("input[name=password]", "password-auditor")
    page.click("button[type=submit]")
    page.goto(f"{live_url}/audit/cases/{case_id}?step={second}")
    wait_until(page, "window.auditDiagramsReady === true")

    def zoom() -> float:
        return float(page.evaluate(
            "document.querySelector('#diagram .viewport').transform.baseVal.consolidate()"
            ".matrix.a"))

    def state_of(element: str) -> str:
        return page.get_attribute(f'#diagram .djs-element[data-element-id="{element}"]',
                                  "class") or ""

    # opened on the instance the step happened in, its element centred at full size
    assert page.get_attribute("#diagram", "data-process") == "stage_handling"
    assert zoom() == pytest.approx(1.0)
    checked = page.locator('#diagram .djs-element[data-element-id="check_materials"]')
    box, view = checked.bounding_box(), page.locator("#diagram").bounding_box()
    assert view["x"] < box["x"] + box["width"] / 2 < view["x"] + view["width"]
    trail = page.inner_text(".diagram-trail")
    assert "代办服务主流程" in trail and "企业投资项目备案" in trail and "业务办理" in trail
    assert "state-active" in state_of("notify_rejection")

    page.click("[data-diagram=zoom-in]")
    assert zoom() == pytest.approx(1.25)
    page.click("[data-diagram=fit]")  # the whole diagram in view (never above full size)
    assert zoom() <= 1.0
    page.hover("#diagram")
    before = zoom()
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_timeout(300)
    assert zoom() > before

    # up to the item: at this step it had started two handling rounds; the first is over
    page.click(".diagram-trail a:has-text('审批事项代办')")
    page.wait_for_selector("#diagram[data-ready=item_approval]")
    page.click("#diagram [data-element-id=handling]")
    assert page.locator(".diagram-choices button[data-instance]").count() == 2
    page.click(".diagram-choices button[data-instance] >> nth=0")
    page.wait_for_selector("#diagram[data-ready=stage_handling]")
    assert "state-completed" in state_of("notify_rejection")
    assert "state-active" not in state_of("notify_rejection")
    assert problems == []
