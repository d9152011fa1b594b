"""Shared helpers for tests that drive the web app over the real process pack."""

from __future__ import annotations

import re

from engine import accounts
from engine.cases import Engine
from webapp import create_app

PASSWORD = "password-123"


def make_app(engine: Engine, url: str, tmp_path):  # type: ignore[no-untyped-def]
    """The web app over an engine, with one account per role used by the tests."""
    with engine.db.transaction() as s:
        for name, role, department in (
                ("office", "office", "leading_group_office"),
                ("agent_approval_bureau", "agent", "approval_bureau"),
                ("agent_water", "agent", "water"),
                ("leader_water", "leader", "water"),
                ("leader_drc", "leader", "drc"),
                ("leader_natural_resources", "leader", "natural_resources"),
                ("auditor", "auditor", None)):
            accounts.create_user(s, name, PASSWORD, role, department=department,
                                 display_name=name, now=engine.clock())
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": url, "instance_dir": tmp_path}})


def csrf_of(page: str) -> str:
    """The CSRF token of a page (a form's hidden field, or the token the page's script sends)."""
    found = re.search(r'(?:name="csrf_token"|id="csrf") value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def logged_in(app, username, password=PASSWORD):  # type: ignore[no-untyped-def]
    """A test client logged in as `username`."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": csrf_of(page)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def text_of(html: str) -> str:
    """The visible text of a page, tags dropped and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def wait_until(page, expression: str, arg=None, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Poll a page until a JavaScript expression (or `arg => ...` function) is truthy.

    Playwright's `wait_for_function` evaluates its predicate with `eval` inside the page,
    which the app's Content-Security-Policy (scripts from the site only) forbids, as it
    forbids any injected script; `evaluate` runs through the debugging protocol instead.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression, arg) if arg is not None else page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {expression}")
        time.sleep(0.05)
