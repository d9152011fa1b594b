"""Names, never codes: every page reachable from the navigation, as each role, shows people's,
departments' and processes' names, never a username, a department code or a process id."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from urllib.parse import urldefrag, urlparse

import pytest
from werkzeug.serving import make_server

from engine.store.models import User
from tests.conftest import ROOT, START
from tests.test_web_browser import CHROMIUM
from tests.workspace import PASSWORD, USERS, Workspace, make_workspace

pytestmark = pytest.mark.browser
from playwright import sync_api  # noqa: E402

DEPARTMENTS = [d["code"] for d in json.loads((ROOT / "data" / "departments.json").read_text(
    encoding="utf-8"))]
PROCESSES = sorted({m for path in (ROOT / "processes").glob("*.bpmn")
                    for m in re.findall(r'<bpmn:process id="([^"]+)"',
                                        path.read_text(encoding="utf-8"))})
USERNAMES = [u[0] for u in USERS]
NAMES = {username: f"{'张王李赵刘陈杨黄周吴'[i]}{'一二三四五六七八九十'[i]}"
         for i, username in enumerate(USERNAMES)}
# a code anywhere as a word of its own; a snake_case token is shaped like a username or an id
CODE = re.compile(r"(?<![\w./#=-])(" + "|".join(map(re.escape, sorted(
    {*DEPARTMENTS, *PROCESSES, *USERNAMES}, key=len, reverse=True))) + r")(?![\w/.])")
SNAKE = re.compile(r"(?<![\w./#=-])[a-z]+(?:_[a-z0-9]+)+(?![\w/.(])")
SKIP = ("/logout", "/lang/", "/static/", ".csv", ".pdf", ".json", ".xml", ".bpmn", ".xlsx",
        ".png", "/download", "/export", "/template")
MAX_PAGES = 45
# Shown as recorded or as written, not as names: the data an auditor verifies, the BPMN
# identifier of a process and the expressions of a decision table in the administrators' editor,
# and the login names the administrators manage on the accounts page.
RAW = ("pre.data, [data-raw], script, style, code.identifier, table.dmn code, table.dmn input,"
       " table.dmn th")


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Workspace, str]]:
    from engine.runtime.clock import MovableClock

    ws = make_workspace(tmp_path, MovableClock(START))
    with ws.engine.db.transaction() as s:
        for user in s.query(User):
            user.display_name = NAMES.get(user.username, user.display_name)
    case_id = ws.start()
    ws.to_phase_one(case_id)
    ws.start(name="第二个项目")
    server = make_server("127.0.0.1", 0, ws.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ws, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _shape(path: str) -> str:
    """Pages that differ only by numbers or ids are one page for the crawl."""
    return re.sub(r"/[0-9a-f-]{6,}|\d+", "N", path)


def _crawl(page, base: str) -> dict[str, list[str]]:
    seen: set[str] = set()
    queue = ["/"]
    found: dict[str, list[str]] = {}
    while queue and len(seen) < MAX_PAGES:
        path = queue.pop(0)
        if _shape(path) in seen:
            continue
        seen.add(_shape(path))
        try:
            response = page.goto(base + path)
        except sync_api.Error:  # a download
            continue
        if response is None or "text/html" not in response.headers.get("content-type", ""):
            continue
        # the recorded data an auditor verifies is shown exactly as recorded
        text = page.evaluate("(() => { const b = document.body.cloneNode(true);"
                             " b.querySelectorAll(" + json.dumps(RAW) + ")"
                             ".forEach(e => e.remove()); return b.innerText; })()")
        titles = page.evaluate("[...document.querySelectorAll('select option, [title]')]"
                               ".filter(e => !e.closest(" + json.dumps(RAW) + "))"
                               ".map(e => e.tagName == 'OPTION' ? e.textContent : e.title)"
                               ".join('\\n')")
        bad = sorted({*CODE.findall(text + "\n" + titles),
                      *SNAKE.findall(text + "\n" + titles)})
        if bad:
            found[path] = bad
        for href in page.evaluate("[...document.querySelectorAll('a[href]')]"
                                  ".map(a => a.getAttribute('href'))"):
            url = urlparse(urldefrag(href)[0])
            if url.netloc and base.endswith(url.netloc) is False:
                continue
            target = url.path + (f"?{url.query}" if url.query else "")
            if not target.startswith("/") or any(s in target for s in SKIP):
                continue
            if _shape(target) not in seen:
                queue.append(target)
    return found


@pytest.mark.parametrize("username", ["agent_approval_bureau", "leader_drc", "office",
                                      "admin", "auditor"])
def test_no_page_shows_a_code(served, browser, username):
    ws, base = served
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url
    found = _crawl(page, base)
    assert found == {}, "codes shown to people:\n" + "\n".join(
        f"  {path}: {', '.join(codes)}" for path, codes in found.items())


@pytest.fixture
def browser() -> Iterator[object]:
    assert CHROMIUM.exists()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()
