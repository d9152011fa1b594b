"""A walk through every page each role can reach from its first page (Flask test client,
Chinese): no link answers 4xx to the user it was shown to, and no page shows a code
(snake_case) where a name belongs. The audit's raw event data is exempt: it shows the
recorded data as recorded."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from engine.runtime.clock import MovableClock
from engine.store.models import User
from tests.conftest import START
from tests.webhelpers import text_of
from tests.workspace import logged_in, make_workspace

# Downloads, the language switch, logging out and the API are not pages to walk.
NOT_PAGES = re.compile(r"/logout|/lang/|\.(csv|xlsx|pdf|json|png|zip)$|^/static/|^/api/|"
                       r"^/attachments/")
RAW_DATA = re.compile(r"^/audit/cases/\d+(/report\.html)?$")
CODE = re.compile(r"(?<![\w./:-])[a-z]+_[a-z_]+(?![\w./-])")
MAX_PAGES = 80


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("crawl"), MovableClock(START))
    case_id = ws.start()
    ws.to_phase_one(case_id)
    with ws.engine.db.transaction() as s:  # people have names, as in the service
        for n, user in enumerate(s.scalars(select(User))):
            user.display_name = f"同事{n}"
    return ws


def _visible(html: str) -> str:
    html = re.sub(r"<(script|style|pre|code|template|textarea)\b[^>]*>.*?</\1>", " ", html,
                  flags=re.S)
    return text_of(html)


@pytest.mark.parametrize("username", ["agent_approval_bureau", "leader_drc", "office",
                                      "admin", "auditor"])
def test_every_page_a_role_reaches_opens_and_names_things(ws, username):
    client = logged_in(ws.app, username)
    todo, seen, shapes = ["/"], set(), set()
    broken, coded, referrers = [], {}, {}
    while todo and len(seen) < MAX_PAGES:
        url = todo.pop(0)
        # one page of each shape (a year of the calendar, a page of a list) is enough
        shape = re.sub(r"\d+", "N", urlsplit(url).path) + ("?" if urlsplit(url).query else "")
        if url in seen or shape in shapes:
            continue
        seen.add(url)
        shapes.add(shape)
        response = client.get(url)
        if response.status_code in (301, 302, 303):
            target = urlsplit(response.headers["Location"])
            todo.append(target.path + (f"?{target.query}" if target.query else ""))
            continue
        if response.status_code >= 400:
            broken.append((url, response.status_code, referrers.get(url)))
            continue
        if "text/html" not in response.content_type:
            continue
        html = response.get_data(as_text=True)
        if not RAW_DATA.match(urlsplit(url).path):
            found = set(CODE.findall(_visible(html)))
            if found:
                coded[url] = sorted(found)[:6]
        for href in re.findall(r'href="(/[^"#]*)', html):
            href = href.replace("&amp;", "&")
            if not NOT_PAGES.search(href) and href not in seen:
                referrers.setdefault(href, url)
                todo.append(href)
    assert len(seen) > 3
    assert broken == [], "links that answer 4xx"
    assert coded == {}, "codes where names belong"

