"""English mode covers the process: the forms people fill in (task pages, the registration
page, the enterprise's own page) read in English, labels, options, help, messages and
instructions alike; only what people typed (field values) and names stay as written."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import render_template_string, session

from agency.enterprise import EnterpriseLinks
from engine.actors import Actor
from engine.runtime.clock import MovableClock
from tests.conftest import START
from tests.service import Service
from tests.test_enterprise import deficiency_case
from tests.webhelpers import csrf_of, make_app
from tests.workspace import logged_in, make_workspace
from webapp.forms import fields_for
from webapp.pack_i18n import localised

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
FORMS = Path(__file__).resolve().parent.parent / "processes" / "forms"
OFFICE = Actor("office", "office", "leading_group_office")


class FormTexts(HTMLParser):
    """The texts people read inside the chosen elements of a page (labels, legends, options,
    headings, help, errors, instructions), leaving out what fields hold (a textarea's text,
    inputs' values are attributes, so never read)."""

    VOID = {"br", "img", "input", "meta", "link", "hr", "col", "source", "wbr"}

    def __init__(self, wanted) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.wanted = wanted
        self.open: list[tuple[str, bool]] = []
        self.texts: list[str] = []
        self.found = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        chosen = bool(self.wanted(tag, dict(attrs)))
        self.found += chosen
        self.open.append((tag, chosen))

    def handle_endtag(self, tag):
        if any(t == tag for t, _ in self.open):
            while self.open and self.open.pop()[0] != tag:
                pass

    def handle_data(self, data):
        inside = any(chosen for _, chosen in self.open)
        typed = any(t in ("textarea", "script", "style") for t, _ in self.open)
        if inside and not typed and data.strip():
            self.texts.append(" ".join(data.split()))


def chinese_in(page: str, wanted) -> list[str]:  # type: ignore[no-untyped-def]
    """The texts of the chosen elements that are (partly) Chinese."""
    parser = FormTexts(wanted)
    parser.feed(page)
    assert parser.found, "the page has no such element"
    assert parser.texts, "the chosen elements hold no text"
    return [text for text in parser.texts if CJK.search(text)]


def task_form(tag: str, attrs: dict) -> bool:
    """The task page's title, instructions and form."""
    return (tag == "h1" or attrs.get("id") == "task-form"
            or "instructions" in (attrs.get("class") or "").split())


def start_form(tag: str, attrs: dict) -> bool:
    return tag == "h1" or attrs.get("id") == "start-form" or (
        tag == "form" and "filters" in (attrs.get("class") or ""))


def enterprise_forms(tag: str, attrs: dict) -> bool:
    return tag == "form" and "enterprise-task" in (attrs.get("class") or "").split()


def every_form() -> list[Path]:
    return sorted(FORMS.glob("*.schema.json"))


def test_every_form_of_the_pack_renders_in_english(tmp_path):
    """Each form's fields as a page renders them, in English mode: nothing Chinese."""
    ws = make_workspace(tmp_path, MovableClock(START))
    macro = ('{% from "agent/_fields.html" import field %}'
             '{% for f in fields %}{{ field(f) }}{% endfor %}')
    left: dict[str, list[str]] = {}
    for path in every_form():
        schema = json.loads(path.read_text(encoding="utf-8"))
        with ws.app.test_request_context("/"):
            session["lang"] = "en"
            shown = localised(schema)
            html = render_template_string(macro, fields=fields_for(shown, {}, {}))
            html += f"<p>{shown.get('title', '')}</p><p>{shown.get('description', '')}</p>"
        chinese = chinese_in(f"<div id='f'>{html}</div>", lambda tag, attrs: tag == "div")
        if chinese:
            left[path.name] = chinese
    assert left == {}, "still Chinese in English mode:\n" + "\n".join(
        f"  {name}: {texts}" for name, texts in left.items())


def test_task_pages_read_in_english_from_the_item_list_to_acceptance(tmp_path):
    ws = make_workspace(tmp_path, MovableClock(START))
    case_id = ws.start()
    owners = {"approval_bureau", "housing_construction", "drc", "water"}
    seen = []
    for spec in ("select_items", "review_material_list", "one_time_notice", "dispatch",
                 "confirm_project_code", "prepare_materials", "check_materials"):
        task = next(t for t in ws.ready(case_id, spec) if t.department in owners)
        client = logged_in(ws.app, f"agent_{task.department}")
        client.get("/lang/en")
        response = client.get(f"/tasks/{task.id}")
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert '<html lang="en"' in page and 'name="action" value="complete"' in page
        assert chinese_in(page, task_form) == [], spec
        seen.append(spec)
        while ws.ready(case_id, spec) and spec != "check_materials":
            ws.complete(case_id, spec)
    assert len(seen) == 7


def test_a_refused_task_form_tells_its_own_message_in_english(tmp_path):
    """The server validates the pack's (Chinese) schema; the message shown is the English."""
    ws = make_workspace(tmp_path, MovableClock(START))
    client = logged_in(ws.app, "office")
    client.get("/lang/en")
    page = client.get("/cases/new").get_data(as_text=True)
    response = client.post("/cases/new", data={
        "csrf_token": csrf_of(page), "process": "case_flow",
        "project.source": "enterprise_request", "project.name": "中卫市枸杞深加工项目",
        "project.content": "新建生产线", "project.responsible_unit": "approval_bureau",
        "project.enterprise": "宁夏某枸杞有限公司", "project.lead": "张伟",
        "project.phone": "12345", "project.code": "2026-1",
        "project.industry": "agriculture", "project.approval_type": "filing"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Enter an 11-digit mobile number or a landline number" in page
    assert "The project code has 24 characters" in page
    assert chinese_in(page, start_form) == []
    assert "中卫市枸杞深加工项目" in page  # what was typed stays as typed


def test_the_registration_page_reads_in_english(tmp_path):
    ws = make_workspace(tmp_path, MovableClock(START))
    client = logged_in(ws.app, "office")
    client.get("/lang/en")
    page = client.get("/cases/new").get_data(as_text=True)
    assert "Registration form of the agency service main process" in page
    assert "Development and Reform Commission&#39;s annual key-project list" in page
    assert chinese_in(page, start_form) == []


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def test_the_enterprise_page_task_forms_read_in_english(service, sqlite_url, tmp_path):
    app = make_app(service.engine, sqlite_url, tmp_path)
    case_id = deficiency_case(service)
    links = EnterpriseLinks(service.engine)
    token, _ = links.create(case_id, OFFICE)
    visitor = app.test_client()
    visitor.get(f"/lang/en?next=/p/{token}")
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    assert 'data-spec="supply_material"' in page
    assert chinese_in(page, enterprise_forms) == []
    [supply] = [t for t in links.tasks(token) if t.task.spec_name == "supply_material"]
    links.complete(token, supply.task.id, {"supplied_materials": ["project_code_proof"],
                                            "supplied_date": "2026-03-03"}, None)
    service.complete("track_approval", "eia_report_book")
    service.complete("handover_results", "eia_report_book")
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    assert 'data-spec="rate_service"' in page and "5 – very satisfied" in page
    assert chinese_in(page, enterprise_forms) == []
