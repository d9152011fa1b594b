"""Shared helpers for tests that drive the web app over the real process pack."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from engine import accounts
from engine.cases import Engine
from webapp import create_app

PASSWORD = "password-123"
CHROMIUM = Path("/usr/bin/chromium")


def create_accounts(engine: Engine, users: Iterable[tuple[str, str, str | None]], *,
                    named: bool = False, password: str = PASSWORD) -> None:
    """One account per (username, role, department), all with one password; `named` gives
    each its username as display name."""
    with engine.db.transaction() as s:
        for username, role, department in users:
            accounts.create_user(s, username, password, role, department=department,
                                 display_name=username if named else "", now=engine.clock())


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app served on a free loopback port in a thread, for a browser; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def need_chromium() -> None:
    """Skip a browser test without Chromium; under CI=true its absence is a failure."""
    import os

    import pytest

    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing", pytrace=False)
        pytest.skip(f"{CHROMIUM} is not installed")


def launch_chromium(playwright: Any) -> Any:
    """Debian's headless Chromium through Playwright."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM),
                                      args=["--headless", "--no-sandbox", "--disable-gpu"])


def make_app(engine: Engine, url: str, tmp_path):  # type: ignore[no-untyped-def]
    """The web app over an engine, with one account per role used by the tests."""
    create_accounts(engine, (
        ("office", "office", "leading_group_office"),
        ("agent_approval_bureau", "agent", "approval_bureau"),
        ("agent_water", "agent", "water"),
        ("leader_water", "leader", "water"),
        ("leader_drc", "leader", "drc"),
        ("leader_natural_resources", "leader", "natural_resources"),
        ("auditor", "auditor", None)), named=True)
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
