"""Both languages are complete: every message has a translation in the language it is not
written in, placeholders survive translation, and English pages show no Chinese chrome."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from engine import accounts
from tests.audit_cases import rejected_twice_then_accepted
from tests.test_web_smoke import login
from webapp import create_app

TRANSLATIONS = Path(__file__).resolve().parent.parent / "webapp" / "translations"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
PLACEHOLDER = re.compile(r"%(?:\([A-Za-z_]\w*\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")


def catalog(name: str) -> Catalog:
    path = TRANSLATIONS / name if name.endswith(".pot") else \
        TRANSLATIONS / name / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        return read_po(handle)


def forms(text: str | tuple[str, ...]) -> tuple[str, ...]:
    return text if isinstance(text, tuple) else (text,)


def messages(cat: Catalog) -> list[Message]:
    return [m for m in cat if m.id]


def is_chinese(message: Message) -> bool:
    return any(CJK.search(form) for form in forms(message.id))


def placeholders(text: str) -> list[str]:
    return sorted(p for p in PLACEHOLDER.findall(text) if p != "%%")


def test_the_catalogues_hold_every_message_of_the_template():
    template = {m.id for m in messages(catalog("messages.pot"))}
    assert template, "messages.pot is empty: run `make translations`"
    for language in ("zh", "en"):
        ids = {m.id for m in messages(catalog(language))}
        assert template - ids == set(), f"{language}: run `make translations`"
        obsolete = {m.id for m in catalog(language).obsolete.values()}
        assert (ids - template) - obsolete == set()


@pytest.mark.parametrize("language, written_in", [("en", True), ("zh", False)])
def test_every_message_is_translated_out_of_its_own_language(language, written_in):
    """English needs every Chinese msgid translated; Chinese every English one."""
    missing = [m.id for m in messages(catalog(language))
               if is_chinese(m) == written_in and not all(s.strip() for s in forms(m.string))]
    assert missing == [], f"{len(missing)} messages lack a {language} translation"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_translations_keep_the_placeholders(language):
    wrong = []
    for m in messages(catalog(language)):
        wanted = placeholders(forms(m.id)[0])
        for text in forms(m.string):
            if text and placeholders(text) != wanted:
                wrong.append((m.id, text))
    assert wrong == []


def test_english_translations_are_english():
    chinese = [(m.id, m.string) for m in messages(catalog("en"))
               if is_chinese(m) and any(CJK.search(s) for s in forms(m.string))
               and not _quotes_chinese_input(m.string)]
    assert chinese == []


def _quotes_chinese_input(text: str | tuple[str, ...]) -> bool:
    """An English text may mention a Chinese word the user has to type or has typed."""
    stripped = re.sub(r"“[^”]*”", "", " ".join(forms(text)))
    return not CJK.search(stripped)


# The pages, in English


class Chrome(HTMLParser):
    """The texts of a page outside data: `chrome` holds those of the elements that make up
    its static chrome (top headings, table headers, buttons, labels, navigation, the title),
    `texts` every text outside elements that show data (options, links, code, section
    headings, which name processes and cases; the test names the headings it expects)."""

    TAGS = {"title", "h1", "th", "button", "label", "nav", "summary", "legend"}
    DATA = {"option", "select", "script", "style", "a", "code", "small", "h2", "h3"}
    VOID = {"br", "img", "input", "meta", "link", "hr", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.chrome: list[tuple[str, str]] = []
        self.texts: set[str] = set()

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            if tag == "input" and dict(attrs).get("type") in {"submit", "button"}:
                self.chrome.append(("input", dict(attrs).get("value") or ""))
            return
        self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in self.open:
            while self.open and self.open.pop() != tag:
                pass

    def handle_data(self, data):
        if not data.strip() or any(t in self.DATA for t in self.open):
            return
        self.texts.add(data.strip())
        chrome = [t for t in self.open if t in self.TAGS]
        if chrome:
            self.chrome.append((chrome[-1], data.strip()))


def parse(page: str) -> Chrome:
    parser = Chrome()
    parser.feed(page)
    return parser


ROLES = {"office": "leading_group_office", "admin": None, "auditor": None}


@pytest.fixture
def english_app(make_pack_engine, sqlite_url, clock, tmp_path):
    engine = make_pack_engine(sqlite_url)
    with engine.db.transaction() as s:
        for role, department in ROLES.items():
            accounts.create_user(s, role, f"password-{role}", role, department=department,
                                 display_name=f"{role}用户", now=engine.clock(), actor="admin")
    rejected_twice_then_accepted(engine, clock)
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


def english_client(app, role):
    client = app.test_client()
    assert login(client, role, f"password-{role}").status_code == 302
    assert client.get("/lang/en").status_code == 302
    return client


CHINESE_IDS = {m.id for m in messages(catalog("messages.pot")) if is_chinese(m)}


@pytest.mark.parametrize("role, path, expected", [
    ("admin", "/admin/processes", ["Process library", "Upload BPMN / DMN file"]),
    ("admin", "/audit/", ["Case search", "Search"]),
    ("auditor", "/audit/ops", ["Operations log"]),
    ("office", "/dashboard", ["Leading group dashboard", "open cases"]),
    ("office", "/intake/", ["Project list import", "Upload and check"]),
    ("office", "/records/", ["Follow-up records"]),
])
def test_english_pages_show_no_chinese_chrome(english_app, role, path, expected):
    client = english_client(english_app, role)
    response = client.get(path)
    assert response.status_code == 200, path
    page = response.get_data(as_text=True)
    assert '<html lang="en"' in page
    for text in expected:
        assert text in page, (path, text)
    parsed = parse(page)
    chinese = [(tag, text) for tag, text in parsed.chrome if CJK.search(text)]
    assert chinese == [], path
    # No text of the page is a Chinese message left untranslated.
    assert sorted(parsed.texts & CHINESE_IDS) == [], path


def test_the_replay_step_counter_reads_in_english(english_app):
    client = english_client(english_app, "auditor")
    search = client.get("/audit/").get_data(as_text=True)
    case_id = re.search(r"/audit/cases/(\d+)", search).group(1)
    page = client.get(f"/audit/cases/{case_id}").get_data(as_text=True)
    assert re.search(r'Step <b id="step-value">\d+</b> of \d+', page), page


# The process pack's own catalogue (processes/i18n/en.json) ---------------------------------

PACK = TRANSLATIONS.parent.parent / "processes"
def _pack_catalogue() -> dict:
    import json

    return json.loads((PACK / "i18n" / "en.json").read_text(encoding="utf-8"))


def test_the_process_pack_catalogue_names_every_process_and_task_in_english():
    from lxml import etree

    names = _pack_catalogue()["processes"]
    missing = []
    for path in sorted(PACK.glob("*.bpmn")):
        for process in etree.parse(str(path)).iter("{*}process"):
            pid = process.get("id")
            entry = names.get(pid, {})
            if not entry.get("name"):
                missing.append(f"{path.name}: process {pid} ({process.get('name')})")
            for element in process.iter("{*}userTask", "{*}callActivity", "{*}manualTask"):
                if element.get("name") and not entry.get("tasks", {}).get(element.get("id")):
                    missing.append(f"{path.name}: {pid} task {element.get('id')} "
                                   f"({' '.join(element.get('name').split())})")
            for element in process.iter("{*}userTask"):
                key = f"{pid}.{element.get('id')}"
                has_text = any(True for _ in element.iter("{*}instructionsForEndUser"))
                translated = bool(entry.get("instructions", {}).get(element.get("id")))
                if has_text and not translated:
                    missing.append(f"{path.name}: {key} instructions")
    assert missing == [], ("processes/i18n/en.json lacks English for:\n  "
                           + "\n  ".join(missing))
    english = [text for entry in names.values() for text in
               [entry["name"], *entry.get("tasks", {}).values()] if CJK.search(text)]
    assert english == []


def test_the_process_pack_catalogue_covers_every_form():
    """Every text of every form (task forms, start forms, message and output schemas, those
    added later too) has its English; Chinese may sit only where people read it, so where
    the catalogue applies."""
    import json

    from webapp.pack_i18n import form_texts

    texts = _pack_catalogue()["forms"]
    missing: dict[str, list[str]] = {}
    elsewhere: dict[str, list[str]] = {}
    forms = sorted((PACK / "forms").glob("*.json"))
    assert len(forms) > 40
    for path in forms:
        schema = json.loads(path.read_text(encoding="utf-8"))
        readable = form_texts(schema)
        lacking = [t for t in readable if CJK.search(t) and not texts.get(t)]
        if lacking:
            missing[path.name] = lacking
        stray = [t for t in _chinese_strings(schema) if t not in readable]
        if stray:
            elsewhere[path.name] = stray
    assert missing == {}, "processes/i18n/en.json lacks English for these form texts:\n" + \
        "\n".join(f"  {form}: {lacking}" for form, lacking in missing.items())
    assert elsewhere == {}, ("Chinese where webapp/pack_i18n.py does not translate (extend "
                             "its TEXT_KEYS / LABEL_LISTS):\n" + "\n".join(
                                 f"  {form}: {stray}" for form, stray in elsewhere.items()))
    assert [english for english in texts.values() if CJK.search(english)] == []


# Keys whose strings are data or never shown (form_texts() names the values shown as labels).
VALUE_KEYS = {"$comment", "const", "enum", "default", "examples", "pattern"}


def _chinese_strings(node) -> list[str]:
    """Every Chinese string of a schema outside values and comments."""
    if isinstance(node, dict):
        return [t for key, value in node.items() if key not in VALUE_KEYS
                for t in _chinese_strings(value)]
    if isinstance(node, list):
        return [t for value in node for t in _chinese_strings(value)]
    return [node] if isinstance(node, str) and CJK.search(node) else []


def test_the_catalogue_translates_option_labels_and_enum_values_and_keeps_the_values(
        english_app):
    """Options the pack labels by `x-enumNames`, by a choice's title or by the enum's own
    (Chinese) values read in English; the values submitted stay the pack's."""
    from flask import session

    from webapp.forms import fields_for
    from webapp.pack_i18n import form_texts, localised

    schema = {"type": "object", "properties": {
        "way": {"type": "string", "enum": ["电话", "上门"]},
        "how": {"type": "string", "enum": ["phone", "visit"],
                "x-enumNames": ["电话", "上门"]},
        "kind": {"type": "string", "oneOf": [{"const": "电话"}, {"const": "visit",
                                                                 "title": "上门"}]}}}
    assert set(form_texts(schema)) == {"电话", "上门"}
    with english_app.test_request_context("/"):
        session["lang"] = "en"
        fields = {f.key: f.options for f in fields_for(localised(schema), {}, {})}
    assert fields == {"way": [("电话", "Telephone"), ("上门", "In person")],
                      "how": [("phone", "Telephone"), ("visit", "In person")],
                      "kind": [("电话", "Telephone"), ("visit", "In person")]}


def test_english_mode_shows_the_task_and_form_in_english(tmp_path):
    from engine.runtime.clock import MovableClock
    from tests.conftest import START
    from tests.workspace import logged_in, make_workspace

    ws = make_workspace(tmp_path, MovableClock(START))
    case_id = ws.start()
    ws.to_phase_one(case_id)
    while ws.ready(case_id, "prepare_materials"):
        ws.complete(case_id, "prepare_materials")
    agents = {"drc", "approval_bureau", "water", "housing_construction"}
    task = next(t for t in ws.ready(case_id, "check_materials") if t.department in agents)
    client = logged_in(ws.app, f"agent_{task.department}")
    client.get("/lang/en")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    # the heading names the task and, since issue 29, the item it is for
    assert re.search(r'<h1>Check, examine and accept the materials <span class="for-item">'
                     r"· [A-Za-z]", page)
    assert "Reasons for not accepting (one per line)" in page
    assert "Accepted with deferred materials (minor materials supplied later)" in page
    assert "核对、检查、接收材料并受理" not in page and "不予受理原因" not in page
    client.get("/lang/zh")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "核对、检查、接收材料并受理" in page
