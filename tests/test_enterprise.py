"""The project unit's read-only progress page behind a revocable link."""

from __future__ import annotations

import re
from datetime import date

import pytest

from agency.enterprise import EnterpriseLinks, token_digest
from agency.models import EnterpriseLink
from agency.reference import ReferenceData
from engine.actors import Actor
from engine.errors import Forbidden
from tests.conftest import ROOT
from tests.service import KEY_PROJECT, Service, small_project
from tests.test_scenarios import intake
from tests.webhelpers import csrf_of, logged_in, make_app, text_of

REF = ReferenceData.load(ROOT / "data")
CALENDAR = REF.calendar


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return make_app(service.engine, sqlite_url, tmp_path)


def deficiency_case(service: Service) -> int:
    """A small project whose EIA report book was accepted with a material missing."""
    intake(service, small_project(eia="book"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_book")
    due = CALENDAR.add_working_days(date(2026, 3, 2), 5)
    service.complete("check_materials", "eia_report_book", decision="deficiency",
                     missing_materials=["project_code_proof"], supply_due=due.isoformat())
    return service.case_id


def create_link(app, client, case_id: int) -> str:
    page = client.get(f"/cases/{case_id}/enterprise-links").get_data(as_text=True)
    response = client.post(f"/cases/{case_id}/enterprise-links",
                           data={"csrf_token": csrf_of(page), "recipient": "张伟"})
    assert response.status_code == 201
    return re.search(r'value="([^"]+/p/[^"]+)" id="new-link"',
                     response.get_data(as_text=True)).group(1)


def test_the_link_shows_only_that_project_with_what_waits_on_the_enterprise(app, service):
    other = Service(service.engine, service.clock)
    other.start(KEY_PROJECT)
    case_id = deficiency_case(service)
    office = logged_in(app, "office")
    url = create_link(app, office, case_id)
    token = url.rsplit("/p/", 1)[1]
    assert len(token) >= 43  # 256 random bits, URL-safe

    response = app.test_client().get(f"/p/{token}")  # no login
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    text = text_of(response.get_data(as_text=True))
    assert "沙坡头区农产品冷链仓储项目" in text and "2026-640502-59-03-000311" in text
    assert KEY_PROJECT["name"] not in text and KEY_PROJECT["code"] not in text
    # The phases and items with their state and committed due date.
    assert "第1阶段 · 立项用地规划许可阶段" in text
    assert re.search(r"企业投资项目备案 市发展和改革委员会 1个工作日 已办结", text)
    days = REF.items["eia_report_book"]["committed_days"]
    due = CALENDAR.add_working_days(date(2026, 3, 2), days)
    assert re.search(rf"环境影响报告书审批 市生态环境局 {days}个工作日 审批办理中 {due}",
                     text), text
    # What waits on the enterprise: the deficiency material, by its due date.
    supply_due = CALENDAR.add_working_days(date(2026, 3, 2), 5)
    assert ("环境影响报告书审批 ：容缺受理，请补正 投资项目代码（在线平台赋码）"
            f"（期限 {supply_due}）") in text
    # The one-time notice's merged materials.
    assert "一次性告知：申报材料清单" in text and "营业执照（统一社会信用代码证）" in text
    assert "退出" not in text
    # The forms on the page are the unit's own tasks: supply the missing material, and rate
    # the item already handed over (the filing).
    html = response.get_data(as_text=True)
    assert html.count('class="card enterprise-task"') == 2 and 'data-spec="supply_material"' \
        in html and 'data-spec="rate_item"' in html


def same_page(one, other) -> bool:
    """The same page but for the visitor's own address (echoed in the language switch) and
    the request's own id (printed for support)."""
    def strip(response):
        page = response.get_data(as_text=True).replace(response.headers["X-Request-ID"], "")
        return re.sub(r'next=[^"]*', "next=", page)
    return strip(one) == strip(other)


def test_wrong_and_revoked_tokens_are_not_found_like_any_unknown_page(app, service):
    case_id = deficiency_case(service)
    office = logged_in(app, "office")
    token = create_link(app, office, case_id).rsplit("/p/", 1)[1]
    visitor = app.test_client()
    unknown = visitor.get("/no-such-page")
    assert unknown.status_code == 404
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "x", "a" * 300):
        response = visitor.get(f"/p/{wrong}")
        assert response.status_code == 404
        assert same_page(response, unknown)
    assert visitor.get(f"/p/{token}").status_code == 200

    links_page = office.get(f"/cases/{case_id}/enterprise-links").get_data(as_text=True)
    assert "有效" in links_page and token not in links_page
    [link] = EnterpriseLinks(service.engine).links(case_id)
    revoked = office.post(f"/enterprise-links/{link.id}/revoke",
                          data={"csrf_token": csrf_of(links_page)}, follow_redirects=True)
    assert "链接已撤销" in revoked.get_data(as_text=True)
    response = visitor.get(f"/p/{token}")
    assert response.status_code == 404 and same_page(response, unknown)
    events = [e for e in service.engine.case_events(case_id)
              if e.type.startswith("enterprise_link")]
    assert [(e.type, e.actor, e.data["link_id"]) for e in events] == [
        ("enterprise_link_created", "office", link.id),
        ("enterprise_link_revoked", "office", link.id)]
    assert service.engine.verify_case(case_id).ok


def test_only_a_digest_of_the_token_is_stored(service):
    case_id = deficiency_case(service)
    token, link = EnterpriseLinks(service.engine).create(case_id, Actor("office", "office"))
    with service.engine.db.reading() as s:
        row = s.get(EnterpriseLink, link.id)
    assert row.token_digest == token_digest(token) and token not in row.token_digest


def test_only_the_office_and_the_bureaus_agents_manage_links(app, service):
    case_id = deficiency_case(service)
    links = EnterpriseLinks(service.engine)
    bureau = Actor("agent_approval_bureau", "agent", "approval_bureau")
    token, link = links.create(case_id, bureau)
    for actor in (Actor("agent_water", "agent", "water"), Actor("leader_water", "leader", "water"),
                  Actor("auditor", "auditor")):
        with pytest.raises(Forbidden):
            links.create(case_id, actor)
        with pytest.raises(Forbidden):
            links.revoke(link.id, actor)
    assert logged_in(app, "agent_water").get(f"/cases/{case_id}/enterprise-links"
                                             ).status_code == 403
    assert logged_in(app, "auditor").get("/enterprise-links").status_code == 403
    agent = logged_in(app, "agent_approval_bureau")
    listing = agent.get("/enterprise-links?q=冷链").get_data(as_text=True)
    assert "沙坡头区农产品冷链仓储项目" in listing
    assert create_link(app, agent, case_id)


def test_the_unit_downloads_the_documents_addressed_to_it_and_nothing_else(app, service):
    from agency import documents

    other = Service(service.engine, service.clock)
    intake(other, KEY_PROJECT)
    case_id = deficiency_case(service)
    agent = Actor("agent_approval_bureau", "agent", "approval_bureau")
    notice = documents.generate(service.engine, case_id, "one_time_notice", "", agent)
    dispatch = documents.generate(service.engine, case_id, "dispatch", "drc", agent)
    elsewhere = documents.generate(service.engine, other.case_id, "one_time_notice", "", agent)
    office = logged_in(app, "office")
    token = create_link(app, office, case_id).rsplit("/p/", 1)[1]
    visitor = app.test_client()
    page = text_of(visitor.get(f"/p/{token}").get_data(as_text=True))
    assert "致贵单位的文书" in page and notice.title in page
    assert dispatch.title not in page  # internal: sent to the departments, not the unit
    pdf = visitor.get(f"/p/{token}/documents/{notice.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF") and pdf.headers["Cache-Control"] == "no-store"
    for hidden in (dispatch.id, elsewhere.id, 999999):
        assert visitor.get(f"/p/{token}/documents/{hidden}.pdf").status_code == 404
    assert visitor.get(f"/p/wrong-token/documents/{notice.id}.pdf").status_code == 404
