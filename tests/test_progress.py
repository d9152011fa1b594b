"""Progress reports reach the leading-group office: per case, a weekly digest, exports."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from agency import notify, progress, team
from tests.conftest import ROOT
from tests.service import OFFICE, Service
from tests.test_oversight import eia_accepted
from tests.webhelpers import (
    PASSWORD,
    create_accounts,
    launch_chromium,
    logged_in,
    need_chromium,
    serving,
)
from webapp import create_app

USERS = [("office", "office", "leading_group_office"),
         ("agent_ecology_env", "agent", "ecology_env"),
         ("leader_ecology_env", "leader", "ecology_env"),
         ("leader_drc", "leader", "drc"), ("agent_drc", "agent", "drc"),
         ("agent_water", "agent", "water"), ("auditor", "auditor", None)]


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    service = Service(make_pack_engine(sqlite_url), clock)
    create_accounts(service.engine, USERS, named=True)
    return service


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return create_app({"TESTING": True, "ENGINE_INSTANCE": service.engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


def test_reports_reach_the_office_and_the_digest_names_who_did_not_report(service, app,
                                                                        clock):
    engine = service.engine
    eia_accepted(service)
    first_week = progress.week_of(clock().date())
    clock.advance(days=7, minutes=5)
    engine.fire_due_timers()
    report_week = progress.week_of(clock().date())
    service.complete("progress_report", report_summary="技术评估已完成，待专家评审",
                     report_issues="需协调专家评审时间")
    [note] = [n for n in notify.list_notifications(engine, "office")
              if n.kind == "progress_report_submitted"]
    assert "进展报告" in note.title and "技术评估已完成" in note.body
    digest = progress.weekly_digest(engine, report_week)
    assert [(r.department, r.item, r.summary) for r in digest.reports] == [
        ("市生态环境局", "环境影响报告表审批", "技术评估已完成，待专家评审")]
    assert digest.missing == [] and digest.stalled == []
    assert progress.weekly_digest(engine, first_week).reports == []

    clock.advance(days=7)
    engine.fire_due_timers()
    clock.advance(days=3)
    late_week = progress.week_of(clock().date())
    digest = progress.weekly_digest(engine, late_week)
    assert [(m.department, m.item) for m in digest.missing] == [
        ("市生态环境局", "环境影响报告表审批")]
    assert [(x.department, x.idle_days) for x in digest.stalled] == [("市生态环境局", 10)]

    office = logged_in(app, "office")
    page = office.get(f"/progress-reports?week={late_week}").get_data(as_text=True)
    assert re.search(r'id="missing-count"[^>]*>1<', page)
    assert re.search(r'id="stalled-count"[^>]*>1<', page)
    earlier = office.get(f"/progress-reports?week={report_week}").get_data(as_text=True)
    assert "技术评估已完成，待专家评审" in earlier and "需协调专家评审时间" in earlier
    book = load_workbook(io.BytesIO(office.get(
        f"/progress-reports.xlsx?week={report_week}").data))
    assert book.sheetnames == ["reports", "not_reported", "stalled"]
    assert book["reports"].cell(2, 7).value == "技术评估已完成，待专家评审"
    csv_text = office.get(f"/progress-reports.csv?week={late_week}&table=not_reported"
                          ).get_data(as_text=True)
    assert csv_text.startswith("\ufeff") and "市生态环境局" in csv_text
    assert office.get("/progress-reports.csv?table=nope").status_code == 400
    assert office.get("/progress-reports?week=not-a-date").status_code == 400
    # Leaders see their own department's; agents the case's reports only.
    drc = logged_in(app, "leader_drc").get(f"/progress-reports?week={report_week}")
    assert "技术评估已完成" not in drc.get_data(as_text=True)
    assert logged_in(app, "agent_ecology_env").get("/progress-reports").status_code == 403
    case_page = f"/cases/{service.case_id}/progress-reports"
    assert "技术评估已完成" in logged_in(app, "agent_ecology_env").get(case_page).get_data(
        as_text=True)
    assert logged_in(app, "agent_water").get(case_page).status_code == 404
    assert engine.verify_case(service.case_id).ok


@pytest.mark.browser
def test_screenshots_of_the_digest_and_the_assessment(service, app, clock):
    need_chromium()
    from playwright import sync_api

    eia_accepted(service)
    clock.advance(days=7, minutes=5)
    service.engine.fire_due_timers()
    service.complete("progress_report", report_summary="技术评估已完成，待专家评审",
                     report_issues="需协调专家评审时间")
    clock.advance(days=7)
    service.engine.fire_due_timers()
    clock.advance(days=3)
    team.record_training(service.engine, "代办业务集中培训", clock().date() - timedelta(days=1),
                         3, "容缺受理、告知承诺", ["agent_ecology_env", "agent_drc"],
                         ["agent_ecology_env"], OFFICE)
    shots = ROOT / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with serving(app) as base, sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.goto(f"{base}/login")
        page.fill("input[name=username]", "office")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/dashboard")  # the office lands on its dashboard
        page.goto(f"{base}/progress-reports")
        assert page.locator("table.missing tbody tr").count() == 1
        page.screenshot(path=str(shots / "progress_digest.png"), full_page=True)
        page.goto(f"{base}/dashboard")
        table = page.locator("table.assessment")
        assert "agent_ecology_env" in table.inner_text()
        table.locator("xpath=..").screenshot(path=str(shots / "assessment.png"))
        chromium.close()
