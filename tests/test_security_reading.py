"""Who may read what (issue 28, row 5): a unit's agents and leader read every case in which
their unit has an item or a task, read-only where the task is not theirs; the office and
auditors read all; outsiders get the ordinary 404; and every link the product shows a user
on a case's pages leads somewhere that user may go."""

from __future__ import annotations

import re

from agency import alerts, notify
from tests.test_alerts import REF, USERS, at, overdue_in_each_stage
from tests.test_alerts import app as app  # noqa: PLC0414 - the fixture
from tests.test_alerts import service as service  # noqa: PLC0414 - the fixture
from tests.webhelpers import create_accounts, csrf_of, logged_in

LINK = re.compile(r'href="(/(?:cases|tasks|attachments|documents)/[^"#?]*)"')


def _red(service, clock) -> int:
    start = overdue_in_each_stage(service)
    clock.set(at(REF.calendar.add_working_days(start, 60)))
    service.engine.fire_due_timers()
    alerts.sweep(service.engine)
    return service.case_id


def _links(page: str) -> set[str]:
    return set(LINK.findall(page))


def test_a_warned_leader_reads_the_case_his_unit_has_an_item_in(service, app, clock):
    case_id = _red(service, clock)
    engine = service.engine
    # The DRC's item is handled by the Bureau's agent (the DRC holds no task in the case),
    # yet its responsible leader is warned of it in red, and must be able to look.
    assert not [t for t in engine.list_tasks(case_id=case_id, limit=500)
                if t.department == "drc"]
    warned = [n for n in notify.list_notifications(engine, "leader_drc")
              if n.kind == "warning_red"]
    assert warned and {n.case_id for n in warned} == {case_id}
    leader = logged_in(app, "leader_drc")
    notifications = leader.get("/notifications").get_data(as_text=True)
    assert f"/cases/{case_id}" in notifications
    page = leader.get(f"/cases/{case_id}")
    assert page.status_code == 200
    assert "不存在" not in page.get_data(as_text=True)


def test_a_unit_with_an_item_reads_the_case_before_it_holds_any_task(service, app):
    from tests.service import small_project

    service.start(small_project(eia="form", soil_water=True))
    selected = service.case().data["selected_items"]
    service.complete("select_items", selected_items=selected)
    items = {i["department"] for i in service.case().data["items"]}
    holding = {t.department for t in service.engine.list_tasks(
        case_id=service.case_id, states=("ready", "completed"), limit=500)}
    assert "water" in items and "water" not in holding
    assert logged_in(app, "leader_water").get(f"/cases/{service.case_id}").status_code == 200
    assert logged_in(app, "agent_water").get(f"/cases/{service.case_id}").status_code == 200


def test_every_task_link_on_a_case_page_opens_for_each_reader(service, app, clock):
    case_id = _red(service, clock)
    create_accounts(service.engine, [("auditor", "auditor", None)])
    readers = ["office", "auditor", "leader_drc", "agent_approval_bureau",
               "leader_approval_bureau", "agent_ecology_env", "leader_ecology_env",
               "agent_water", "leader_water"]
    for username in readers:
        client = logged_in(app, username)
        page = client.get(f"/cases/{case_id}")
        assert page.status_code == 200, username
        links = _links(page.get_data(as_text=True))
        assert any(link.startswith("/tasks/") for link in links), username
        for link in sorted(links):
            answer = client.get(link)
            assert answer.status_code == 200, (username, link, answer.status_code)
            assert "不存在" not in answer.get_data(as_text=True)[:20000] or \
                link.startswith("/documents/"), (username, link)


def test_another_units_ready_task_is_read_only(service, app, clock):
    case_id = _red(service, clock)
    engine = service.engine
    [theirs] = [t for t in engine.list_tasks(case_id=case_id, limit=500)
                if t.department == "ecology_env" and t.state == "ready"][:1]
    client = logged_in(app, "agent_water")
    page = client.get(f"/tasks/{theirs.id}").get_data(as_text=True)
    assert theirs.title in page
    assert 'name="action"' not in page and 'value="complete"' not in page
    # an attempt to complete it is still refused, and changes nothing
    refused = client.post(f"/tasks/{theirs.id}", data={"action": "complete",
                                                       "csrf_token": csrf_of(page)})
    assert refused.status_code in (403, 404)
    assert theirs.id in {t.id for t in engine.list_tasks(case_id=case_id, limit=500)}


def test_outsiders_get_the_ordinary_404(service, app, clock):
    case_id = _red(service, clock)
    create_accounts(service.engine, [("agent_transport", "agent", "transport")])
    [task] = service.engine.list_tasks(case_id=case_id, limit=1)
    client = logged_in(app, "agent_transport")
    for path in (f"/cases/{case_id}", f"/tasks/{task.id}", "/cases/999999"):
        assert client.get(path).status_code == 404, path
    assert USERS  # the accounts of the warned units come from test_alerts
