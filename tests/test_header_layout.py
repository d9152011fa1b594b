"""The page header on a desktop screen: the longest menu (the office's) and a long display
name wrap the menu under itself; the service's name and the buttons stay on one line."""

from __future__ import annotations

import pytest

from engine import accounts
from tests.webhelpers import PASSWORD, launch_chromium, make_app, need_chromium, serving


@pytest.mark.browser
@pytest.mark.parametrize("width", [1100, 1300, 1920])
def test_the_header_keeps_the_name_and_buttons_on_one_line(make_pack_engine, sqlite_url,
                                                           tmp_path, width):
    need_chromium()
    from playwright import sync_api

    engine = make_pack_engine(sqlite_url)
    app = make_app(engine, sqlite_url, tmp_path)
    with engine.db.transaction() as s:
        accounts.create_user(s, "office_head", PASSWORD, "office",
                             department="leading_group_office",
                             display_name="代办服务工作领导小组办公室（罗文虎）",
                             now=engine.clock())
    with serving(app) as root, sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        page = chromium.new_page(viewport={"width": width, "height": 700}, locale="zh-CN")
        page.goto(f"{root}/login")
        page.fill("input[name=username]", "office_head")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{root}/dashboard")
        line = page.evaluate("parseFloat(getComputedStyle(document.querySelector("
                             "'header.top .brand')).lineHeight) || 24")
        for selector in ("header.top .brand", "header.top a.lang", "header.top button",
                         "header.top nav a >> nth=0"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["height"] < 1.6 * line, (selector, box)
        header = page.locator("header.top").bounding_box()
        assert header is not None and header["height"] < 140, header
        chromium.close()
