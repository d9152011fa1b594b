"""Diagrams one can read: the case diagram opens on the current step at full size, zooms,
fits on demand, and opens a called process of the case with a trail back."""

from __future__ import annotations

import pytest

from tests.test_web_browser import browser, log_in, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_the_case_diagram_zooms_fits_and_opens_called_processes(served, browser):  # noqa: F811
    ws, base = served
    case_id = ws.start()
    ws.to_phase_one(case_id)
    page = browser.new_context(viewport={"width": 1280, "height": 900},
                               locale="zh-CN").new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, base, "agent_approval_bureau")
    page.goto(f"{base}/cases/{case_id}")
    page.wait_for_selector("#diagram[data-ready=case_flow]")

    def zoom() -> float:
        return float(page.evaluate(
            "document.querySelector('#diagram .viewport').transform.baseVal.consolidate()"
            ".matrix.a"))
    assert zoom() == pytest.approx(1.0)  # the current step at full size, not shrunk to fit
    page.click("[data-diagram=zoom-in]")
    assert zoom() == pytest.approx(1.25)
    page.click("[data-diagram=fit]")
    fitted = zoom()
    assert fitted < 1.0
    page.click("[data-diagram=current]")
    assert zoom() == pytest.approx(1.0)

    page.click("[data-diagram=fit]")
    page.click("#diagram [data-element-id=phase_1]")
    page.wait_for_selector("#diagram[data-ready=phase_1]")
    trail = page.inner_text("#diagram-trail")
    assert "代办服务主流程" in trail and "立项用地规划许可阶段" in trail
    assert page.locator("#diagram .djs-element.state-active, #diagram .djs-element"
                        ".state-completed").count() >= 1  # this case's own states
    page.click("#diagram-trail a")
    page.wait_for_selector("#diagram[data-ready=case_flow]")
    assert page.inner_text("#diagram-trail") == ""
    assert problems == []
