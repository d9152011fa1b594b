"""The project unit takes part from its own page: its lane's tasks, done through its link."""

from __future__ import annotations

import io
import re

import pytest

from agency.enterprise import EnterpriseLinks
from engine.actors import Actor
from engine.errors import NotFound
from tests.conftest import ROOT
from tests.service import Service
from tests.test_enterprise import deficiency_case
from tests.webhelpers import (
    csrf_of,
    launch_chromium,
    logged_in,
    make_app,
    need_chromium,
    serving,
)

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
OFFICE = Actor("office", "office", "leading_group_office")


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return make_app(service.engine, sqlite_url, tmp_path)


def unit_task_form(page: str, spec: str) -> tuple[str, str, int]:
    """(task id, csrf token, version) of the form of one of the unit's tasks on its page."""
    form = re.search(r'<form method="post" action="/p/[^/]+/tasks/([^"]+)"[^>]*'
                     rf'data-spec="{spec}".*?</form>', page, re.S)
    assert form, page
    version = int(re.search(r'name="version" value="(\d+)"', form.group(0)).group(1))
    return form.group(1), csrf_of(form.group(0)), version


def test_the_unit_supplies_the_missing_material_by_upload_and_it_is_audited(app, service):
    case_id = deficiency_case(service)
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    visitor = app.test_client()
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    task_id, csrf, version = unit_task_form(page, "supply_material")
    # A refused file: told on the page, nothing stored.
    refused = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "upload",
        "attachment": (io.BytesIO(b"MZ\x90\x00not a pdf"), "代码.pdf")},
        content_type="multipart/form-data")
    assert refused.status_code == 422
    assert service.engine.list_attachments(case_id=case_id, task_id=task_id) == []
    # The right file, then the form.
    uploaded = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "upload",
        "material": "project_code_proof",
        "attachment": (io.BytesIO(PDF), "项目代码赋码页.pdf")},
        content_type="multipart/form-data", follow_redirects=True)
    assert uploaded.status_code == 200 and "项目代码赋码页.pdf" in uploaded.get_data(as_text=True)
    page = uploaded.get_data(as_text=True)
    task_id, csrf, version = unit_task_form(page, "supply_material")
    missing = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "complete"})
    assert missing.status_code == 422 and "supplied_materials" in missing.get_data(as_text=True)
    done = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "complete",
        "supplied_materials": "project_code_proof",
        "supplied_date": service.clock().date().isoformat()}, follow_redirects=True)
    assert done.status_code == 200 and "补正容缺材料" in done.get_data(as_text=True)
    assert not service.ready("supply_material")
    events = [(e.type, e.actor) for e in service.engine.case_events(case_id)
              if e.type in ("attachment_added", "task_completed")][-2:]
    assert events == [("attachment_added", f"enterprise:{case_id}"),
                      ("task_completed", f"enterprise:{case_id}")]
    assert service.engine.verify_case(case_id).ok
    # Done once: posting again changes nothing, and says so (409, not "page not found").
    count = len(service.engine.case_events(case_id))
    again = visitor.post(f"/p/{token}/tasks/{task_id}", data={
        "csrf_token": csrf, "version": version, "action": "complete",
        "supplied_materials": "project_code_proof", "supplied_date": "2026-03-03"})
    assert again.status_code == 409 and "无需再提交" in again.get_data(as_text=True)
    assert len(service.engine.case_events(case_id)) == count


def test_only_that_cases_own_tasks_only_through_a_live_token(app, service):
    case_id = deficiency_case(service)
    links = EnterpriseLinks(service.engine)
    token, link = links.create(case_id, OFFICE)
    visitor = app.test_client()
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    supply_id, csrf, version = unit_task_form(page, "supply_material")
    # Another department's open task of the same case cannot be done from the page.
    [track] = [t for t in service.ready("track_approval") if t.item_code == "eia_report_book"]
    assert visitor.post(f"/p/{token}/tasks/{track.id}", data={
        "csrf_token": csrf, "version": track.version}).status_code == 404
    with pytest.raises(NotFound):
        links.complete(token, track.id, {}, None)
    # A wrong or revoked token: the ordinary 404, nothing changed.
    before = len(service.engine.case_events(case_id))
    assert visitor.post(f"/p/{token[:-2]}xx/tasks/{supply_id}", data={
        "csrf_token": csrf, "version": version}).status_code == 404
    links.revoke(link.id, OFFICE)
    assert visitor.post(f"/p/{token}/tasks/{supply_id}", data={
        "csrf_token": csrf, "version": version, "supplied_materials": "project_code_proof",
        "supplied_date": "2026-03-03"}).status_code == 404
    assert len(service.engine.case_events(case_id)) == before + 1  # the revocation only
    assert service.ready("supply_material")


def test_the_unit_rates_each_item_when_handed_over_and_the_service_at_the_end(app, service,
                                                                             clock):
    case_id = deficiency_case(service)
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    links = EnterpriseLinks(service.engine)
    # The filing was handed over already: the unit may rate it, beside the supply it owes.
    tasks = {(d.task.spec_name, d.task.item_code): d for d in links.tasks(token)}
    assert set(tasks) == {("rate_item", "project_filing"), ("supply_material", "eia_report_book")}
    rate = tasks[("rate_item", "project_filing")]
    assert rate.task.department == "project_unit"
    visitor = app.test_client()
    page = visitor.get(f"/p/{token}").get_data(as_text=True)
    form = re.search(r'data-spec="rate_item".*?</form>', page, re.S).group(0)
    assert "评价本事项代办服务" in page and "企业投资项目备案" in form and "5分 非常满意" in form
    refused = visitor.post(f"/p/{token}/tasks/{rate.task.id}", data={
        "csrf_token": csrf_of(form), "version": rate.task.version, "service_rating": "9"})
    assert refused.status_code == 422 and ("rate_item", "project_filing") in {
        (d.task.spec_name, d.task.item_code) for d in links.tasks(token)}
    visitor.post(f"/p/{token}/tasks/{rate.task.id}", data={
        "csrf_token": csrf_of(form), "version": rate.task.version, "service_rating": "4",
        "rating_comment": "备案当天就办好了"})
    supply = tasks[("supply_material", "eia_report_book")]
    links.complete(token, supply.task.id, {"supplied_materials": ["project_code_proof"],
                                            "supplied_date": "2026-03-03"}, None)
    service.complete("track_approval", "eia_report_book")
    service.complete("handover_results", "eia_report_book")
    assert {(d.task.spec_name, d.task.item_code) for d in links.tasks(token)} == {
        ("rate_item", "eia_report_book"), ("rate_service", None)}
    for detail in links.tasks(token):
        score = 5 if detail.task.item_code else 4
        links.complete(token, detail.task.id, {"service_rating": score,
                                               "rating_comment": "网上补正，省了一趟"}, None)
    assert links.tasks(token) == []
    actors = {e.actor for e in service.engine.case_events(case_id) if e.type == "task_completed"
              and e.data.get("task_spec") in ("rate_item", "rate_service")}
    assert actors == {f"enterprise:{case_id}"}
    from agency import team

    mine = sorted((r.item_code or "", r.score) for r in team.ratings(service.engine)
                  if r.case_id == case_id and r.comment)
    assert mine == [("", 4), ("eia_report_book", 5), ("project_filing", 4)]
    # The item ratings feed the satisfaction per item and per department on the dashboard.
    figures = team.satisfaction(service.engine)
    assert ("project_filing", "企业投资项目备案", 1, 4.0) in figures.by_item
    assert ("eia_report_book", "环境影响报告书审批", 1, 5.0) in figures.by_item
    assert {row[0]: row[3] for row in figures.by_department}["drc"] == 4.0
    office = logged_in(app, "office")
    assert "企业投资项目备案" in office.get("/dashboard").get_data(as_text=True)
    assert service.engine.verify_case(case_id).ok
    # Unrated, an item's rating lapses after 5 working days and the service's after 30 days:
    # nothing waits on them.
    other = Service(service.engine, clock)
    deficiency_case(other)
    other.complete("supply_material", "eia_report_book", by="project_unit",
                   supplied_materials=["project_code_proof"], supplied_date="2026-03-03")
    for spec in ("track_approval", "handover_results"):
        other.complete(spec, "eia_report_book")
    assert sorted(t.spec_name for t in other.ready()) == ["rate_item", "rate_item",
                                                         "rate_service"]
    clock.advance(days=8)
    service.engine.fire_due_timers()
    assert [t.spec_name for t in other.ready()] == ["rate_service"]
    clock.advance(days=23)
    service.engine.fire_due_timers()
    assert [t.spec_name for t in other.ready()] == ["record_visit"]
    assert service.engine.verify_case(other.case_id).ok


@pytest.mark.browser
def test_in_a_browser_the_enterprise_supplies_a_material_and_rates_the_service(
        service, app, tmp_path):
    need_chromium()
    from playwright import sync_api

    case_id = deficiency_case(service)
    token, _ = EnterpriseLinks(service.engine).create(case_id, OFFICE)
    proof = tmp_path / "项目代码赋码页.pdf"
    proof.write_bytes(PDF)
    shots = ROOT / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with serving(app) as root, sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        page = chromium.new_page(viewport={"width": 1100, "height": 900}, locale="zh-CN")
        base = f"{root}/p/{token}"
        page.goto(base)
        form = page.locator('form[data-spec="supply_material"]')
        assert "补正容缺材料" in form.inner_text()
        form.locator("select[name=material]").select_option("project_code_proof")
        form.locator("input[type=file]").set_input_files(str(proof))
        page.screenshot(path=str(shots / "enterprise_task.png"), full_page=True)
        form.locator("button[value=upload]").click()
        page.wait_for_selector("text=项目代码赋码页.pdf")
        form = page.locator('form[data-spec="supply_material"]')
        form.locator('input[value="project_code_proof"]').check()
        form.locator("input[name=supplied_date]").fill(
            service.clock().date().isoformat())
        form.locator("button[value=complete]").click()
        page.wait_for_selector("text=目前没有需要贵单位提供的材料")
        assert page.locator('form[data-spec="supply_material"]').count() == 0
        # The department finishes; the unit rates the service on the same page.
        service.complete("track_approval", "eia_report_book")
        service.complete("handover_results", "eia_report_book")
        page.goto(base)
        # One rating per item handed over (the filing, the EIA), and the service's.
        assert page.locator('form[data-spec="rate_item"]').count() == 2
        for spec, score in (("rate_item", "4"), ("rate_item", "5"), ("rate_service", "5")):
            rate = page.locator(f'form[data-spec="{spec}"]').first
            rate.locator("select[name=service_rating]").select_option(score)
            rate.locator("textarea[name=rating_comment]").fill("全程网上办理，零跑路")
            rate.locator("button[value=complete]").click()
            page.wait_for_selector("#your-tasks")
        assert page.locator("form.enterprise-task").count() == 0
        chromium.close()
    actors = {e.actor for e in service.engine.case_events(case_id)
              if e.type in ("attachment_added", "task_completed")
              and e.data.get("task_spec") in (None, "supply_material", "rate_service")}
    assert f"enterprise:{case_id}" in actors
    assert service.engine.verify_case(case_id).ok
