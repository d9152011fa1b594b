"""Documents, overdue warnings, notifications and the dashboard, as users see them."""

from __future__ import annotations

import io
import re
import socket
from datetime import date, datetime, timedelta

import pdfplumber
import pypdfium2
import pytest
from aiosmtpd.controller import Controller
from openpyxl import load_workbook

from agency import documents, notify, oversight
from agency.models import OutboxMail
from agency.reference import SERVICE_TZ, ReferenceData, warning_limits
from engine import accounts
from engine.actors import Actor
from engine.errors import Forbidden
from tests.conftest import ROOT
from tests.service import KEY_PROJECT, OFFICE, Service, small_project
from tests.webhelpers import PASSWORD, create_accounts, csrf_of, logged_in
from webapp import create_app

REF = ReferenceData.load(ROOT / "data")
CALENDAR = REF.calendar
USERS = [("office", "office", "leading_group_office"),
         ("leader_ecology_env", "leader", "ecology_env"),
         ("agent_ecology_env", "agent", "ecology_env"),
         ("leader_drc", "leader", "drc"),
         ("agent_approval_bureau", "agent", "approval_bureau"),
         ("agent_water", "agent", "water"),
         ("auditor", "auditor", None)]


def _app(engine, sqlite_url, tmp_path):
    create_accounts(engine, USERS)
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return _app(service.engine, sqlite_url, tmp_path)




def intake(service: Service, project: dict) -> list[str]:
    service.start(project)
    selected = service.case().data["selected_items"]
    service.complete("select_items", selected_items=selected)
    service.complete("review_material_list")
    service.complete("one_time_notice")
    service.complete("dispatch")
    service.complete("acknowledge_notice")
    return selected


def beijing(day: date, hour: int = 0, minute: int = 1) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SERVICE_TZ)


def eia_accepted(service: Service) -> tuple[date, date]:
    """An EIA item accepted on 2026-03-02; returns its first yellow and first red day."""
    intake(service, small_project(eia="form"))
    service.complete("confirm_project_code")
    service.run_item("project_filing")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    _, yellow, red = warning_limits(CALENDAR, REF.settings, date(2026, 3, 2),
                                    REF.items["eia_report_form"]["committed_days"])
    return yellow, red


def dashboard_counts(client) -> dict[str, int]:
    page = client.get("/dashboard").get_data(as_text=True)
    counts = {key: int(re.search(rf'id="overdue-{key}"[^>]*>(\d+)<', page).group(1))
              for key in ("red", "yellow")}
    row = re.search(r'data-department="ecology_env">.*?class="yellow-count">(\d+)<.*?'
                    r'class="red-count">(\d+)<', page, re.S)
    counts["ecology_env"] = (int(row.group(1)), int(row.group(2))) if row else (0, 0)
    return counts


def test_a_moved_clock_turns_an_item_yellow_then_red_for_the_leader_and_the_dashboard(
        service, app, clock):
    yellow_on, red_on = eia_accepted(service)
    leader = logged_in(app, "leader_ecology_env")
    office = logged_in(app, "office")
    assert "没有通知" in leader.get("/notifications").get_data(as_text=True)
    assert dashboard_counts(office) == {"red": 0, "yellow": 0, "ecology_env": (0, 0)}
    track = service.task("track_approval", "eia_report_form")
    levels = oversight.warning_levels(service.engine, [track])
    assert levels == {track.id: "none"}

    clock.set(beijing(yellow_on))
    service.engine.fire_due_timers()
    page = leader.get("/notifications").get_data(as_text=True)
    assert "黄色预警" in page and "环境影响报告表审批" in page
    assert re.search(r'class="unread-count"[^>]*>1<', page)
    assert dashboard_counts(office) == {"red": 0, "yellow": 1, "ecology_env": (1, 0)}
    assert oversight.warning_levels(service.engine, [track]) == {track.id: "yellow"}
    # The leader of an uninvolved department hears nothing; the office hears both warnings.
    assert "没有通知" in logged_in(app, "leader_drc").get("/notifications").get_data(
        as_text=True)

    clock.set(beijing(red_on))
    service.engine.fire_due_timers()
    page = leader.get("/notifications").get_data(as_text=True)
    assert "红色预警" in page and re.search(r'class="unread-count"[^>]*>2<', page)
    assert dashboard_counts(office) == {"red": 1, "yellow": 0, "ecology_env": (0, 1)}
    office_page = office.get("/notifications").get_data(as_text=True)
    assert office_page.count('<tr class="unread">') == 2
    # The leader of the department sees the same figure for their department only.
    assert dashboard_counts(leader) == {"red": 1, "yellow": 0, "ecology_env": (0, 1)}
    assert dashboard_counts(logged_in(app, "leader_drc"))["red"] == 0

    # Marking read clears the unread count and keeps the notifications.
    leader.post("/notifications/read-all", data={"csrf_token": csrf_of(page)})
    page = leader.get("/notifications").get_data(as_text=True)
    assert "unread-count" not in page and page.count('<tr class="read">') == 2

    # Handling the warnings and finishing the item clears the dashboard.
    service.complete("yellow_warning")
    service.complete("red_warning")
    service.complete_all("progress_report")
    service.complete("track_approval", "eia_report_form")
    service.complete("handover_results", "eia_report_form")
    counts = dashboard_counts(office)
    assert (counts["red"], counts["yellow"]) == (0, 0)
    page = office.get("/dashboard").get_data(as_text=True)
    assert "环境影响报告表审批" in page  # in the handling times now


def test_the_one_time_notice_lists_exactly_the_items_and_merged_materials(service, app):
    intake(service, KEY_PROJECT)
    case = service.case()
    agent = logged_in(app, "agent_approval_bureau")
    page = agent.get(f"/cases/{case.id}/documents").get_data(as_text=True)
    assert "一次性告知书" in page and "生成" in page
    done = agent.post(f"/cases/{case.id}/documents", data={
        "csrf_token": csrf_of(page), "kind": "one_time_notice", "source": ""},
        follow_redirects=True).get_data(as_text=True)
    assert "已生成：一次性告知书" in done
    [doc] = documents.list_documents(service.engine, case.id, OFFICE)
    pdf = agent.get(f"/documents/{doc.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["X-Content-SHA256"] == doc.sha256

    items, materials = [], []
    with pdfplumber.open(io.BytesIO(pdf.data)) as opened:
        text = "".join(p.extract_text() or "" for p in opened.pages)
        for page_ in opened.pages:
            for table in page_.extract_tables():
                header = [re.sub(r"\s", "", c or "") for c in table[0]]
                cells = [[re.sub(r"\s", "", c or "") for c in row] for row in table[1:]]
                if header[0] == "审批事项":
                    items += [row[0] for row in cells]
                elif header[:2] == ["序号", "材料名称"]:
                    materials += [row[1] for row in cells]
    assert sorted(items) == sorted(i["name"] for i in case.data["items"])
    assert sorted(materials) == sorted(m["name"] for m in case.data["materials"])
    assert len(materials) == len(set(materials))  # merged: each material asked for once
    catalogue = ReferenceData.load(ROOT / "data").items
    others = {i["name"] for code, i in catalogue.items() if code not in
              {x["code"] for x in case.data["items"]}}
    assert not [name for name in others if name in re.sub(r"\s", "", text)]
    assert KEY_PROJECT["code"] in text and "罗文虎" in text  # the Bureau's agent to call

    # Looked at as an image: the first page is not blank, and kept for the README.
    image = pypdfium2.PdfDocument(pdf.data)[0].render(scale=1.5).to_pil().convert("L")
    dark = sum(image.histogram()[:128])
    assert dark > image.width * image.height * 0.01
    shots = ROOT / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    image.save(shots / "one_time_notice.png")

    # Issued documents are case events, and the case still re-executes.
    events = [e for e in service.engine.case_events(case.id) if e.type == "document_generated"]
    assert [e.data["kind"] for e in events] == ["one_time_notice"]
    assert events[0].data["sha256"] == doc.sha256 and events[0].actor == "agent_approval_bureau"
    assert service.engine.verify_case(case.id).ok


def test_each_rejection_gets_its_notice_with_its_reasons(service):
    intake(service, small_project())
    service.complete("confirm_project_code")
    reasons = [["申请表未加盖公章", "营业执照已过期"], ["法定代表人签字缺失"]]
    for why in reasons:
        service.complete("prepare_materials", "project_filing")
        service.complete("check_materials", "project_filing", decision="reject",
                         rejection_reasons=why)
        service.complete("notify_rejection")
    service.run_item("project_filing")
    engine = service.engine
    wanted = [c for c in documents.choices(engine, service.case_id) if c.kind == "rejection"]
    assert len(wanted) == 2
    texts = []
    for choice in wanted:
        doc = documents.generate(engine, service.case_id, "rejection", choice.source,
                                 Actor("agent_drc", "agent", "drc"))
        _, _, pdf = documents.get_document(engine, doc.id, OFFICE)
        with pdfplumber.open(io.BytesIO(pdf)) as opened:
            texts.append(re.sub(r"\s", "", "".join(p.extract_text() for p in opened.pages)))
    assert all(r in texts[0] for r in reasons[0]) and reasons[1][0] not in texts[0]
    assert reasons[1][0] in texts[1] and "第2次" in texts[1]
    handover = next(c for c in documents.choices(engine, service.case_id)
                    if c.kind == "handover")
    doc = documents.generate(engine, service.case_id, "handover", handover.source, OFFICE)
    assert doc.title.endswith("企业投资项目备案")
    progress = documents.generate(engine, service.case_id, "progress", "", OFFICE)
    _, html, _ = documents.get_document(engine, progress.id, OFFICE)
    assert "企业投资项目备案" in html and "已办结" in html
    assert engine.verify_case(service.case_id).ok


def test_document_permissions_and_bad_requests(service, app):
    intake(service, small_project())
    case_id = service.case_id
    doc = documents.generate(service.engine, case_id, "one_time_notice", "", OFFICE)
    outsider = logged_in(app, "agent_water")
    # an outsider cannot tell a hidden case's documents from missing ones
    assert outsider.get(f"/documents/{doc.id}.pdf").status_code == 404
    assert outsider.get(f"/cases/{case_id}/documents").status_code == 404
    auditor = logged_in(app, "auditor")
    assert auditor.get(f"/documents/{doc.id}.pdf").status_code == 200
    page = auditor.get(f"/cases/{case_id}/documents").get_data(as_text=True)
    assert "一次性告知书" in page and 'name="kind"' not in page  # read-only
    assert auditor.post(f"/cases/{case_id}/documents", data={
        "csrf_token": csrf_of(page), "kind": "one_time_notice"}).status_code == 403
    agent = logged_in(app, "agent_approval_bureau")
    page = agent.get(f"/cases/{case_id}/documents").get_data(as_text=True)
    refused = agent.post(f"/cases/{case_id}/documents", data={
        "csrf_token": csrf_of(page), "kind": "commitment", "source": "nope"},
        follow_redirects=True).get_data(as_text=True)
    assert "未能生成文书" in refused and "not completed" in refused
    assert len(documents.list_documents(service.engine, case_id, OFFICE)) == 1
    assert agent.get("/documents/999.pdf").status_code == 404
    with pytest.raises(Forbidden):
        documents.generate(service.engine, case_id, "one_time_notice", "",
                           Actor("auditor", "auditor"))


@pytest.mark.parametrize("username,status", [
    ("agent_ecology_env", 403), ("agent_approval_bureau", 403), ("office", 200),
    ("leader_drc", 200), ("auditor", 200)])
def test_who_sees_the_dashboard(app, username, status):
    client = logged_in(app, username)
    assert client.get("/dashboard").status_code == status
    assert client.get("/dashboard.xlsx").status_code == status
    assert client.get("/dashboard.csv?table=handling_times").status_code == status


def test_dashboard_exports_and_the_periodic_report(service, app, clock):
    yellow_on, _ = eia_accepted(service)
    clock.set(beijing(yellow_on))
    service.engine.fire_due_timers()
    office = logged_in(app, "office")
    csv_text = office.get("/dashboard.csv?table=overdue_by_department").get_data(as_text=True)
    assert csv_text.startswith("\ufeff") and "市生态环境局,1,0" in csv_text
    bad = office.get("/dashboard.csv?table=nope")
    assert bad.status_code == 400 and "overdue_by_department" in bad.get_data(as_text=True)
    book = load_workbook(io.BytesIO(office.get("/dashboard.xlsx").data))
    assert book.sheetnames == ["open_cases_by_phase_stage", "overdue_by_department",
                               "handling_times", "closed_this_month", "government_time"]
    assert [c.value for c in book["overdue_by_department"][2]] == ["市生态环境局", 1, 0]
    page = office.get("/dashboard").get_data(as_text=True)
    assert "<svg" in page and "超期预警事项（按部门）" in page
    auditor = logged_in(app, "auditor")
    seen = auditor.get("/dashboard").get_data(as_text=True)
    assert "按当前数据生成" not in seen
    assert auditor.post("/dashboard/report", data={
        "csrf_token": csrf_of(seen)}).status_code == 403
    done = office.post("/dashboard/report", data={"csrf_token": csrf_of(page)},
                       follow_redirects=True).get_data(as_text=True)
    assert "已生成：零跑路代办服务进展情况报告" in done
    [report] = documents.list_documents(service.engine, None, OFFICE)
    pdf = office.get(f"/documents/{report.id}.pdf").data
    with pdfplumber.open(io.BytesIO(pdf)) as opened:
        text = re.sub(r"\s", "", "".join(p.extract_text() for p in opened.pages))
    assert "黄色预警（临近时限）1项" in text and "市生态环境局" in text
    assert logged_in(app, "agent_ecology_env").get(
        f"/documents/{report.id}.pdf").status_code == 403


def test_the_dashboard_lists_the_first_late_items_of_a_department_and_counts_the_others(
        service, app, clock, monkeypatch):
    """However many items are late, a department lists its first ones (by case) and says how
    many more its counts include; the periodic report says the same."""
    monkeypatch.setattr(oversight, "LISTED", 1)
    yellow_on, _ = eia_accepted(service)
    other = Service(service.engine, clock)
    eia_accepted(other)
    clock.set(beijing(yellow_on))
    service.engine.fire_due_timers()
    office = logged_in(app, "office")
    assert dashboard_counts(office)["ecology_env"] == (2, 0)
    page = office.get("/dashboard").get_data(as_text=True)
    row = re.search(r'data-department="ecology_env">(.*?)</tr>', page, re.S).group(1)
    assert row.count("环境影响报告表审批") == 1 and "另有 1 项未列出" in row
    assert f"/cases/{service.case_id}" in row and f"/cases/{other.case_id}" not in row
    english = logged_in(app, "office")
    english.get("/lang/en")
    assert "1 more not listed" in english.get("/dashboard").get_data(as_text=True)
    office.post("/dashboard/report", data={"csrf_token": csrf_of(page)})
    [report] = documents.list_documents(service.engine, None, OFFICE)
    pdf = office.get(f"/documents/{report.id}.pdf").data
    with pdfplumber.open(io.BytesIO(pdf)) as opened:
        text = re.sub(r"\s", "", "".join(p.extract_text() for p in opened.pages))
    assert "黄色预警（临近时限）2项" in text and "另有1项未列出" in text


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_warnings_are_mailed_by_the_worker_and_retried(make_pack_engine, sqlite_url, clock,
                                                      monkeypatch):
    port = _free_port()
    monkeypatch.setenv("ZERORUN_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ZERORUN_SMTP_PORT", str(port))
    service = Service(make_pack_engine(sqlite_url), clock)
    engine = service.engine
    with engine.db.transaction() as s:
        accounts.create_user(s, "leader_ecology_env", PASSWORD, "leader",
                             department="ecology_env", now=clock())
        accounts.set_email(s, "leader_ecology_env", "yu.xin@example.org")
        accounts.create_user(s, "office", PASSWORD, "office", department="leading_group_office",
                             now=clock())
    yellow_on, _ = eia_accepted(service)
    clock.set(beijing(yellow_on))
    engine.fire_due_timers()
    # Queued in the transaction that raised the warning; nobody listens yet: kept, retried.
    assert notify.deliver_outbox(engine) == (0, 1)
    with engine.db.reading() as s:
        [mail] = s.query(OutboxMail).all()
        assert mail.attempts == 1 and mail.sent_at is None and mail.last_error
    assert notify.deliver_outbox(engine) == (0, 0)  # not due again yet
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock.advance(minutes=3)
        assert notify.deliver_outbox(engine) == (1, 0)
    finally:
        controller.stop()
    [(to, content)] = sink.messages
    assert to == ["yu.xin@example.org"] and "Subject:" in content
    assert notify.deliver_outbox(engine) == (0, 0)  # sent once
    with pytest.raises(Exception, match="not an e-mail address"):
        with engine.db.transaction() as s:
            accounts.set_email(s, "office", "office at example")


def test_mark_read_only_for_the_addressee(service, app, clock):
    yellow_on, _ = eia_accepted(service)
    clock.set(beijing(yellow_on) + timedelta(hours=1))
    service.engine.fire_due_timers()
    [mine] = notify.list_notifications(service.engine, "leader_ecology_env")
    other = logged_in(app, "office")
    page = other.get("/notifications").get_data(as_text=True)
    assert other.post(f"/notifications/{mine.id}/read",
                      data={"csrf_token": csrf_of(page)}).status_code == 403
    assert other.post("/notifications/99999/read",
                      data={"csrf_token": csrf_of(page)}).status_code == 404
    assert notify.unread_count(service.engine, "leader_ecology_env") == 1


def test_without_pango_a_document_request_says_what_is_missing_and_stores_nothing(
        monkeypatch):
    import builtins

    from agency import documents
    from engine.errors import Unavailable

    real_import = builtins.__import__

    def no_weasyprint(name, *args, **kwargs):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weasyprint)
    with pytest.raises(Unavailable, match="libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk"):
        documents.to_pdf("<p>一次性告知书</p>")
    assert Unavailable("x").status == 503
