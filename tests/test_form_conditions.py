"""Forms that follow the answers: conditional fields appear and disappear with the answer
they depend on (the schema's if/then), the server enforces the same rules, errors are shown
next to the field and what was entered is kept."""

from __future__ import annotations

import pytest

from tests.test_web_browser import browser, served  # noqa: F401 - fixtures
from webapp.forms import conditions

pytestmark = pytest.mark.browser


def test_conditions_come_from_if_then_and_dependent_schemas():
    schema = {"properties": {"decision": {"type": "string"}, "why": {"type": "string"},
                             "due": {"type": "string"}, "phone": {"type": "string"},
                             "ext": {"type": "string"}},
              "allOf": [{"if": {"properties": {"decision": {"const": "reject"}}},
                         "then": {"required": ["why"]}},
                        {"if": {"properties": {"decision": {"enum": ["defer", "wait"]}}},
                         "then": {"required": ["due"]}},
                        {"if": {"properties": {"decision": {"const": "defer"}}},
                         "then": {"properties": {"why": {"minLength": 1}}}}],
              "dependentSchemas": {"phone": {"required": ["ext"]}}}
    assert conditions(schema) == {"why": {"decision": ["defer", "reject"]},
                                  "due": {"decision": ["defer", "wait"]},
                                  "ext": {"phone": None}}


def test_the_check_form_shows_what_the_decision_needs(served, browser):  # noqa: F811
    ws, base = served
    case_id = ws.start()
    ws.to_phase_one(case_id)
    while ws.ready(case_id, "prepare_materials"):
        ws.complete(case_id, "prepare_materials")
    agents = {"drc", "approval_bureau", "water", "housing_construction"}
    task = next(t for t in ws.ready(case_id, "check_materials") if t.department in agents)
    page = browser.new_context(viewport={"width": 1280, "height": 900},
                               locale="zh-CN").new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))  # script errors
    from tests.test_web_browser import log_in

    log_in(page, base, f"agent_{task.department}")
    page.goto(f"{base}/tasks/{task.id}")
    reasons = page.locator('[data-field="rejection_reasons"]')
    supply = page.locator('[data-field="supply_due"]')
    assert reasons.is_hidden() and supply.is_hidden()

    page.select_option("#f-decision", "reject")
    assert reasons.is_visible() and supply.is_hidden()
    page.fill("#f-rejection_reasons", "申请表未盖章")
    page.select_option("#f-decision", "deficiency")
    assert reasons.is_hidden() and supply.is_visible()
    page.select_option("#f-decision", "reject")
    assert page.input_value("#f-rejection_reasons") == "申请表未盖章"  # kept while hidden

    # the server enforces the same rule: reject with no reason, the error is by the field
    page.fill("#f-rejection_reasons", "")
    page.click("button[name=action][value=complete]")
    page.wait_for_load_state()
    assert page.input_value("#f-decision") == "reject"
    assert reasons.is_visible()
    assert reasons.locator(".field-error").count() == 1
    assert ws.ready(case_id, "check_materials")  # nothing completed
    assert errors == []
