"""Phones and accessibility: the agents' pages work 390 px wide, and axe-core finds no
serious or critical violation on the main page of each role."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from tests.conftest import ROOT
from tests.test_web_browser import SCREENSHOTS, browser, served  # noqa: F401 - fixtures
from tests.workspace import PASSWORD

pytestmark = pytest.mark.browser
AXE = ROOT / "webapp" / "static" / "vendor" / "axe.min.js"


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url


def _serious(page) -> list[str]:
    assert AXE.exists(), "run `python -m webapp.assets` after `npm ci`"
    # Loaded from the app's own static folder: the pages' CSP runs scripts from self only.
    page.add_script_tag(url=urljoin(page.url, "/static/vendor/axe.min.js"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"])
                        for n in v["nodes"][:3])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("username", ["agent_approval_bureau", "leader_drc", "office",
                                      "admin", "auditor"])
def test_the_main_page_of_each_role_has_no_serious_accessibility_violation(
        served, browser, username):  # noqa: F811
    ws, base = served
    ws.start()
    page = browser.new_context(viewport={"width": 1280, "height": 900},
                               locale="zh-CN").new_page()
    _log_in(page, base, username)
    page.wait_for_load_state("networkidle")
    assert _serious(page) == []


def test_inbox_task_and_case_work_390_px_wide(served, browser):  # noqa: F811
    ws, base = served
    case_id = ws.start()
    page = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                               device_scale_factor=2, is_mobile=True,
                               has_touch=True).new_page()
    _log_in(page, base, "agent_approval_bureau")
    [task] = ws.ready(case_id, "select_items")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in (("inbox", "/"), ("task", f"/tasks/{task.id}"),
                       ("case", f"/cases/{case_id}")):
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        # nothing wider than the phone: the page does not scroll sideways
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide at 390 px"
        assert _serious(page) == [], name
        page.screenshot(path=str(SCREENSHOTS / f"phone-{name}.png"), full_page=True)


PHONE_CELLS = """() => Array.from(document.querySelectorAll('table.stack tbody td')).filter(
  td => td.offsetParent !== null).map(td => ({
    label: getComputedStyle(td, '::before').content,
    right: td.getBoundingClientRect().right, text: td.textContent.trim()}))"""


@pytest.mark.parametrize(("locale", "phase_label"), [("zh-CN", '"阶段："'),
                                                      ("en-US", '"Phase: "')])
def test_phone_rows_name_each_value_and_no_column_is_cut(
        served, browser, locale, phase_label):  # noqa: F811
    ws, base = served
    case_id = ws.start()
    ws.to_phase_one(case_id)
    page = browser.new_context(viewport={"width": 390, "height": 844}, locale=locale,
                               is_mobile=True, has_touch=True).new_page()
    _log_in(page, base, "agent_approval_bureau")
    if locale == "en-US":
        page.goto(base + "/lang/en?next=/")
    for path in ("/", "/cases"):
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        cells = page.evaluate(PHONE_CELLS)
        assert cells, path
        # each value says what it is, and nothing reaches past the phone's right edge
        assert all(c["right"] <= 390 for c in cells), [c for c in cells if c["right"] > 390]
        if path == "/":
            assert phase_label in {c["label"] for c in cells}, {c["label"] for c in cells}
    # a task on a phone: the item and its materials come before the form
    [task] = ws.ready(case_id, "prepare_materials")[:1]
    page.goto(f"{base}/tasks/{task.id}")
    tops = page.evaluate("""() => ['.item-card', '.materials-card', '#task-form'].map(
        s => document.querySelector(s).getBoundingClientRect().top)""")
    assert tops[0] < tops[2] and tops[1] < tops[2], tops
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_buttons_keep_their_words_whole_and_phones_get_no_mouse_hints(served, browser):  # noqa: F811
    ws, base = served
    case_id = ws.start()
    ws.to_phase_one(case_id)
    desktop = browser.new_context(viewport={"width": 1440, "height": 900},
                                  locale="zh-CN").new_page()
    _log_in(desktop, base, "agent_approval_bureau")
    desktop.goto(base + "/")
    # a claim button is one line high (认/领 wrapped onto two at 1440 px)
    lines = desktop.evaluate("""() => Array.from(document.querySelectorAll(
        'table.inbox button, table.inbox .badge')).map(b => {
          const range = document.createRange(); range.selectNodeContents(b);
          return new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top))).size;
        })""")
    assert lines and max(lines) == 1, lines
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                                is_mobile=True, has_touch=True).new_page()
    _log_in(phone, base, "agent_approval_bureau")
    phone.goto(f"{base}/cases/{case_id}")
    phone.wait_for_load_state("networkidle")
    text = phone.inner_text("main")
    assert "Ctrl" not in text and "双指" in text
