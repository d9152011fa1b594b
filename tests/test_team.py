"""The agency team: absences and substitutes, training, the yearly assessment, satisfaction,
and the publishable summary."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pdfplumber
import pytest

from agency import alerts, notify, publicity, team
from engine.actors import Actor
from engine.errors import Forbidden, InvalidData
from tests.service import OFFICE, Service, small_project
from tests.test_oversight import intake
from tests.webhelpers import create_accounts, csrf_of, logged_in
from webapp import create_app

USERS = [("office", "office", "leading_group_office"),
         ("agent_approval_bureau", "agent", "approval_bureau"),
         ("agent2_approval_bureau", "agent", "approval_bureau"),
         ("leader_approval_bureau", "leader", "approval_bureau"),
         ("agent_drc", "agent", "drc"), ("leader_drc", "leader", "drc"),
         ("agent_water", "agent", "water"), ("auditor", "auditor", None)]
BUREAU = Actor("agent_approval_bureau", "agent", "approval_bureau")


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    service = Service(make_pack_engine(sqlite_url), clock)
    create_accounts(service.engine, USERS, named=True)
    return service


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return create_app({"TESTING": True, "ENGINE_INSTANCE": service.engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


def finish_small_case(service: Service, clock, *, late: bool = False) -> None:
    """A one-item case to its close: the enterprise very satisfied at the visit and at closing."""
    intake(service, small_project())
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    if late:
        clock.advance(days=10)  # the DRC checks the materials after its limit
    service.complete("check_materials", "project_filing")
    service.complete("track_approval", "project_filing")
    service.complete("handover_results", "project_filing")
    for _ in range(3):
        clock.advance(days=31)
        service.engine.fire_due_timers()
        if service.ready("record_visit"):
            break
    service.complete("record_visit", satisfaction="satisfied")
    service.complete("close_case", enterprise_satisfaction="very_satisfied")
    assert service.case().status == "completed"


def test_an_absent_agents_tasks_and_warnings_go_to_the_substitute(service, app, clock):
    engine = service.engine
    intake(service, small_project())
    service.complete("confirm_project_code")
    task = service.task("prepare_materials", "project_filing")
    engine.claim_task(task.id, BUREAU)
    today = clock().date()
    # Only the office keeps the team; a substitute from another unit is refused.
    with pytest.raises(Forbidden):
        team.record_absence(engine, BUREAU.username, "agent2_approval_bureau", today, today,
                            "", BUREAU)
    with pytest.raises(InvalidData) as refused:
        team.record_absence(engine, BUREAU.username, "agent_drc", today, today, "", OFFICE)
    assert [e.field for e in refused.value.errors] == ["substitute"]
    assert team.list_absences(engine) == []

    team.record_absence(engine, BUREAU.username, "agent2_approval_bureau", today,
                        today + timedelta(days=14), "培训学习", OFFICE)
    [moved] = [t for t in service.ready() if t.id == task.id]
    assert moved.assignee == "agent2_approval_bureau"
    events = [e for e in engine.case_events(service.case_id) if e.type == "task_reassigned"]
    assert [(e.actor, e.data["from"], e.data["to"]) for e in events] == [
        ("system", BUREAU.username, "agent2_approval_bureau")]
    assert engine.verify_case(service.case_id).ok
    # Past the task's limit, within the absence: the warning reaches the substitute only.
    clock.advance(days=7)
    alerts.sweep(engine)
    assert notify.list_notifications(engine, BUREAU.username) == []
    assert [n.kind for n in notify.list_notifications(engine, "agent2_approval_bureau")] \
        == ["warning_red", "absence_substitute"]

    page = logged_in(app, "office").get("/team").get_data(as_text=True)
    assert "agent2_approval_bureau" in page and "罗文虎" in page  # the seed's agent
    assert re.search(r"away until .*?|至 \d{4}-\d{2}-\d{2}", page)


def test_the_office_records_absences_and_training_from_the_team_page(service, app, clock):
    office = logged_in(app, "office")
    page = office.get("/team").get_data(as_text=True)
    token = csrf_of(page)
    bad = office.post("/team/absences", data={
        "csrf_token": token, "username": "agent_approval_bureau", "substitute": "agent_water",
        "starts_on": "2026-03-10", "ends_on": "2026-03-01", "reason": ""})
    assert bad.status_code == 422 and team.list_absences(service.engine) == []
    assert office.post("/team/training", data={
        "csrf_token": token, "title": "代办业务培训", "held_on": "2026-03-05", "hours": "3",
        "topics": "容缺受理", "invited": ["agent_approval_bureau", "agent_drc"],
        "attended": ["agent_approval_bureau"]}).status_code == 302
    page = office.get("/team").get_data(as_text=True)
    assert "代办业务培训" in page and re.search(r'class="attendance">1 / 2<', page)
    refused = office.post("/team/training", data={
        "csrf_token": token, "title": "x", "held_on": "2026-03-05", "hours": "x",
        "invited": ["agent_drc"]})
    assert refused.status_code == 422 and len(team.list_training(service.engine)) == 1
    agent = logged_in(app, "agent_drc")
    assert agent.get("/team").status_code == 403
    assert agent.post("/team/training", data={
        "csrf_token": csrf_of(agent.get("/").get_data(as_text=True))}).status_code == 403
    leader = logged_in(app, "leader_drc")
    assert leader.get("/team").status_code == 200  # leaders read the team
    # a leader records absences of his own unit (an empty form is refused, nothing stored)
    assert leader.post("/team/absences", data={
        "csrf_token": csrf_of(leader.get("/").get_data(as_text=True))}).status_code == 422
    assert leader.post("/team/training", data={
        "csrf_token": csrf_of(leader.get("/").get_data(as_text=True))}).status_code == 403
    assert team.list_absences(service.engine) == []


def test_the_yearly_assessment_and_satisfaction_on_the_dashboard(service, app, clock):
    engine = service.engine
    finish_small_case(service, clock, late=True)
    team.record_training(engine, "代办业务培训", clock().date(), 2.5, "", ["agent_drc"],
                         ["agent_drc"], OFFICE)
    year = clock().year
    rows = {a.username: a for a in team.assessment(engine, year)}
    drc = rows["agent_drc"]
    # The DRC's agent confirmed the project code, checked (after its limit) and tracked the
    # filing: two of its tasks had a limit, one was late.
    assert drc.tasks_done == 3 and drc.items_handled == 1 and drc.overdue == 1
    assert drc.on_time_share == 0.5 and drc.training_hours == 2.5
    assert drc.satisfaction == 4.5 and drc.ratings == 2  # 4 at the visit, 5 at closing
    assert rows["agent_water"].tasks_done == 0 and rows["agent_water"].satisfaction is None
    figures = team.satisfaction(engine)
    assert figures.count == 2 and figures.average == 4.5
    assert [(c, n, avg) for c, _, n, avg in figures.by_department] == [("drc", 2, 4.5)]

    page = logged_in(app, "office").get("/dashboard").get_data(as_text=True)
    row = page.split('data-agent="agent_drc">')[1].split("</tr>")[0]
    assert 'class="done">3<' in row and 'class="overdue">1<' in row and ">50%<" in row
    assert 'class="training">2.5<' in row
    assert re.search(r'data-department="drc"><td>[^<]+</td><td>2</td><td class="score">4.5<',
                     page)
    # A leader sees their unit's agents only.
    leader = logged_in(app, "leader_approval_bureau").get("/dashboard").get_data(as_text=True)
    assert 'data-agent="agent_approval_bureau"' in leader and 'data-agent="agent_drc"' \
        not in leader


def test_the_public_summary_names_no_enterprise(service, app, clock):
    finish_small_case(service, clock)
    project = small_project()
    office = logged_in(app, "office")
    page = office.get("/publicity").get_data(as_text=True)
    assert re.search(r'id="cases-served">1<', page) and re.search(r'id="items-handled">1<', page)
    for name in (project["enterprise"], project["name"], project["lead"], project["phone"]):
        assert name not in page
    released = office.post("/publicity", data={"csrf_token": csrf_of(page)},
                           follow_redirects=True).get_data(as_text=True)
    doc_id = int(re.search(r"/publicity/(\d+)\.pdf", released).group(1))
    pdf = office.get(f"/publicity/{doc_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    with pdfplumber.open(io.BytesIO(pdf.data)) as opened:
        text = re.sub(r"\s", "", "".join(p.extract_text() or "" for p in opened.pages))
    assert "零跑路代办服务成效公示" in text and "企业投资项目备案" in text
    for name in (project["enterprise"], project["name"], project["lead"], project["phone"]):
        assert re.sub(r"\s", "", name) not in text
    summary = publicity.public_summary(service.engine)
    assert summary.satisfaction.average == 4.5 and summary.cases_closed == 1
    # Only the office releases it; agents do not see it.
    auditor = logged_in(app, "auditor")
    assert auditor.get("/publicity").status_code == 200
    assert auditor.post("/publicity", data={"csrf_token": csrf_of(
        auditor.get("/publicity").get_data(as_text=True))}).status_code == 403
    assert logged_in(app, "agent_drc").get(f"/publicity/{doc_id}.pdf").status_code == 403
    with pytest.raises(Forbidden):
        publicity.release(service.engine, Actor("leader_drc", "leader", "drc"))
