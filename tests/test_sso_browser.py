"""Single sign-on in headless Chromium: the login page sends staff to the identity platform
and brings them back logged in."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.oidc_provider import running_provider
from tests.test_sso import make_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing", pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

from playwright import sync_api  # noqa: E402 - only once Chromium is known to be there


def test_an_agent_logs_in_through_the_identity_platform(make_engine, sqlite_url, tmp_path):
    with running_provider() as provider:
        app = make_app(make_engine, sqlite_url, tmp_path, provider, form_login="0")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            with sync_api.sync_playwright() as playwright:
                chromium = playwright.chromium.launch(
                    executable_path=str(CHROMIUM),
                    args=["--headless", "--no-sandbox", "--disable-gpu"])
                try:
                    page = chromium.new_context(locale="zh-CN").new_page()
                    page.goto(f"{base}/login")
                    assert page.locator("input[name=password]").count() == 0
                    page.click("#sso-login")
                    page.wait_for_url(f"{provider.issuer}/authorize?*")
                    assert "Unified identity platform" in page.inner_text("h1")
                    page.fill("#idp-username", "agent_a")
                    page.click("#idp-submit")
                    page.wait_for_url(f"{base}/")
                    assert "代办员甲" in page.inner_text("body")
                    [sent] = provider.requests
                    assert sent["code_challenge_method"] == "S256"
                finally:
                    chromium.close()
        finally:
            server.shutdown()
            thread.join(timeout=5)
