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


def test_a_call_activity_opens_the_called_instance_of_this_case_with_its_own_states(
        served, browser):  # noqa: F811
    ws, base = served
    case_id = ws.start()
    ws.to_phase_one(case_id)  # the filing prepares its materials; the land permit waits for it
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

    def marked(state: str) -> set[str]:
        return set(page.eval_on_selector_all(
            f"#diagram .djs-element.state-{state}",
            "els => els.map(e => e.getAttribute('data-element-id'))"))

    # the wheel zooms (with Ctrl, as in maps embedded in a page), drag pans
    page.hover("#diagram")
    before = zoom()
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_timeout(300)
    assert zoom() > before

    page.click("[data-diagram=fit]")
    page.click("#diagram [data-element-id=phase_1]")
    page.wait_for_selector("#diagram[data-ready=phase_1]")
    page.click("#diagram [data-element-id=items]")  # one item_approval per item: a choice
    choices = page.locator(".diagram-choices button[data-instance]")
    names = choices.all_inner_texts()
    assert any("建设用地规划许可证" in n for n in names)
    assert any("企业投资项目备案" in n for n in names)
    page.click(".diagram-choices button:has-text('建设用地规划许可证')")
    page.wait_for_selector("#diagram[data-ready=item_approval]")
    first = page.get_attribute("#diagram", "data-instance")
    waiting_item = (marked("active"), marked("waiting"))
    assert "建设用地规划许可证" in page.inner_text("#diagram-trail")

    page.click("#diagram-trail a:has-text('立项用地规划许可阶段')")
    page.wait_for_selector("#diagram[data-ready=phase_1]")
    page.click("#diagram [data-element-id=items]")
    page.click(".diagram-choices button:has-text('企业投资项目备案')")
    page.wait_for_selector("#diagram[data-ready=item_approval]")
    assert page.get_attribute("#diagram", "data-instance") != first
    moving_item = (marked("active"), marked("waiting"))
    assert moving_item != waiting_item  # two items, two instances, each with its own states
    assert "preparation" in moving_item[0] and "preparation" not in waiting_item[0]
    trail = page.inner_text("#diagram-trail")
    assert "代办服务主流程" in trail and "立项用地规划许可阶段" in trail \
        and "企业投资项目备案" in trail

    page.click("#diagram [data-element-id=preparation]")  # down to this item's stage
    page.wait_for_selector("#diagram[data-ready=stage_preparation]")
    assert "prepare_materials" in marked("active")
    assert page.locator("#diagram-trail a").count() == 3
    page.click("#diagram-trail a >> nth=0")
    page.wait_for_selector("#diagram[data-ready=case_flow]")
    assert page.inner_text("#diagram-trail") == ""
    assert problems == []
