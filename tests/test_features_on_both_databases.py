"""The features built on the engine's tables, on SQLite and on PostgreSQL alike: bulk
import in one transaction, documents, notifications, records, enterprise links, audit
search and history, inbox counts, green channel."""

from __future__ import annotations

import pytest

from agency import documents, notify, records, reports
from agency.enterprise import EnterpriseLinks
from agency.intake import ProjectImports
from engine import accounts
from engine.actors import Actor
from engine.audit import history
from tests.service import OFFICE, Service, small_project
from tests.test_intake import BAD_LINES, as_csv, key_project_list
from tests.test_scenarios import intake

AGENT = Actor("agent_approval_bureau", "agent", "approval_bureau")


@pytest.fixture
def service(make_pack_engine, db_url, clock) -> Service:
    return Service(make_pack_engine(db_url), clock)


def test_bulk_import_starts_every_good_row_in_one_go(service):
    service.start()  # the key project of the list's line 42 is registered already
    imports = ProjectImports(service.engine)
    view = imports.upload("重点项目清单.csv", as_csv(key_project_list()), "drc_key_list", OFFICE)
    assert set(view.bad_lines) == set(BAD_LINES)
    view = imports.revise(view.id, {}, set(BAD_LINES), OFFICE)
    assert view.bad_lines == []
    cases = imports.commit(view.id, OFFICE)
    assert len(cases) == 45 and all(c.status == "running" for c in cases)
    assert service.engine.count_cases(search="", statuses=("running",)) == 46


def test_warnings_notify_the_leader_and_documents_records_links_and_audit_work(service, clock):
    engine = service.engine
    with engine.db.transaction() as s:
        accounts.create_user(s, "leader_ecology_env", "password-123", "leader",
                             department="ecology_env", now=clock())
    intake(service, small_project(eia="form", green_channel=True))
    case_id = service.case_id
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "eia_report_form")
    service.complete("check_materials", "eia_report_form")
    assert engine.count_tasks(department="ecology_env", green_only=True) == 1
    clock.advance(days=40)
    while engine.fire_due_timers():
        pass
    assert service.ready("red_warning")
    unread = notify.list_notifications(engine, "leader_ecology_env", unread_only=True)
    assert unread and notify.unread_count(engine, "leader_ecology_env") == len(unread)
    counts = engine.task_counts("agent_ecology_env", department="ecology_env",
                                open_to="agent_ecology_env")
    assert counts.overdue >= 1 and counts.ready >= counts.overdue

    notice = documents.generate(engine, case_id, "one_time_notice", "", AGENT)
    assert notice.sha256 and documents.list_documents(engine, case_id, AGENT)[0].id == notice.id

    token, _link = EnterpriseLinks(engine).create(case_id, OFFICE, "张伟")
    page = EnterpriseLinks(engine).progress(token)
    assert page.case_id == case_id and [d[0] for d in page.documents] == [notice.id]

    service.complete("track_approval", "eia_report_form", progress="problem",
                     problem="选址需协调")
    service.complete("convene_meeting", meeting_topic="选址协调", meeting_date="2026-04-20",
                     invited=["natural_resources"], meeting_issues="选址")
    service.complete("department_opinion", department_view="同意")
    service.complete("record_minutes", minutes="纪要", decisions=["调整选址"],
                     follow_ups=[{"task": "出具意见", "department": "natural_resources",
                                  "due_date": "2026-04-30"}])
    found = records.search(engine, "meetings", records.Query())
    minutes = [r for r in found if r.case_id == case_id and r.raised]
    assert minutes and minutes[0].status == "open"

    matches = reports.search_cases(engine, reports.CaseQuery(project="冷链"))
    assert [c.id for c in matches.rows] == [case_id]
    steps = history.case_history(engine, case_id)
    assert len(steps.steps) == len(engine.case_events(case_id))
    assert engine.verify_case(case_id).ok
