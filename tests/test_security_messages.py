"""Who may deliver a BPMN message (issue 28, rows 1, 3 and 6): the department the waiting
element names, or an account granted the message; checked before correlating, so that no
answer tells a sender about cases it may not deliver to; and bad correlations or failing
correlation expressions are clear 4xx answers that store nothing."""

from __future__ import annotations

import pytest

from engine import accounts
from engine.actors import Actor
from engine.cases import NobodyWaits
from engine.errors import WorkflowError
from engine.store.models import Case, MessageWait
from tests.conftest import FIXTURES
from tests.test_api_lifecycle import PROJECT, _submission, _through_dispatch
from tests.test_api_lifecycle import caller as caller  # noqa: PLC0414 - the fixture
from tests.test_hardening import sqlite_site as sqlite_site  # noqa: PLC0414 - the fixture

RESULT = {"approved": True, "certificate_no": "640502202603200009",
          "approved_date": "2026-03-20"}


def _to_tracking(api) -> dict:
    """The project's one item taken to its tracking task (waiting for the approval result)."""
    case_id = _through_dispatch(api, PROJECT)
    for _ in range(10):
        tasks = api.call("admin", "GET", f"/tasks?case_id={case_id}")["tasks"]
        [tracking] = [t for t in tasks if t["spec_name"] == "track_approval"] or [None]
        if tracking is not None:
            return tracking
        task = next(t for t in tasks if t["spec_name"] in ("prepare_materials",
                                                           "check_materials"))
        who = api.agent_of(task["department"])
        api.call(who, "POST", f"/tasks/{task['id']}/complete",
                 {"data": _submission(api, who, task), "version": task["version"]})
    raise AssertionError("the item never reached its tracking task")


def _result(api, who: str, correlation: dict, status: int) -> dict:
    return api.call(who, "POST", "/messages", {
        "message": "item_approval_result", "correlation": correlation, "payload": RESULT},
        status=status)


def test_only_the_items_department_or_a_granted_system_delivers_its_result(caller):
    api = caller
    tracking = _to_tracking(api)
    case_id, owner = tracking["case_id"], tracking["department"]
    by_code = {"project_code": PROJECT["code"], "key": tracking["item_code"]}
    # The Bureau's agent holds tasks of this case (it reads the case), but the item is
    # another department's: its approval result is not the Bureau's to deliver.
    involved = api.agent_of("approval_bureau")
    assert owner != "approval_bureau"
    assert api.call(involved, "GET", f"/cases/{case_id}")["id"] == case_id
    for who in (involved, "office", "admin", api.agent_of("water"),
                api.account(f"leader_{'water'}", "leader", "water")):
        for correlation in (by_code, {"case_id": case_id}, {"key": tracking["item_code"]}):
            refused = _result(api, who, correlation, 404)
            # the same answer as when nobody waits: nothing about the case is told
            assert refused["error"]["code"] == "nobody_waits"
            assert "details" not in refused["error"] or "cases" not in refused["error"][
                "details"]
    still = api.call("admin", "GET", f"/tasks?case_id={case_id}")["tasks"]
    assert tracking["id"] in {t["id"] for t in still}
    assert [e.type for e in api.engine.case_events(case_id)].count("message_received") == 0

    # Another department's approval system, with an account granted the message.
    api.account("housing_system", "office", "leading_group_office")
    _result(api, "housing_system", by_code, 404)
    with api.engine.db.transaction() as s:
        assert accounts.grant_message(s, "housing_system", "item_approval_result",
                                      now=api.clock())
    delivered = _result(api, "housing_system", by_code, 200)
    assert (delivered["case_id"], delivered["element"]) == (case_id, "approval_reported")


def test_the_items_own_department_delivers_its_result(caller):
    api = caller
    tracking = _to_tracking(api)
    sender = api.agent_of(tracking["department"])
    delivered = _result(api, sender, {"case_id": tracking["case_id"]}, 200)
    assert tracking["id"] not in {t["id"] for t in delivered["case"]["open_tasks"]}
    # and its leader too (the department's own accounts)
    assert api.engine.verify_case(tracking["case_id"]).ok


@pytest.mark.parametrize("case_id", [2147483648, 10**30, 0, -1])
def test_a_case_id_no_column_holds_is_a_400(caller, case_id):
    answer = caller.call("office", "POST", "/messages", {
        "message": "item_approval_result", "correlation": {"case_id": case_id}},
        status=400, check_body=False)
    assert answer["error"]["fields"][0]["field"] == "correlation.case_id"


SENDERS = FIXTURES / "senders"


def test_engine_filters_waits_by_the_department_an_element_names(make_engine, db_url):
    engine = make_engine(db_url, SENDERS)
    office = Actor("office", "office", "leading_group_office")
    case = engine.start_case("senders", {"owner": "dept_b", "ref": "K-1"}, office)
    with pytest.raises(NobodyWaits):
        engine.correlate_message("result", {"case_id": case.id}, {}, Actor("a", "agent",
                                                                          "dept_a"))
    with pytest.raises(NobodyWaits):
        engine.correlate_message("result", {"case_id": case.id}, {}, office)
    delivered = engine.correlate_message("result", {"key": "K-1"}, {},
                                         Actor("b", "leader", "dept_b"))
    assert delivered.case.status == "completed"
    assert engine.verify_case(case.id).ok


def test_a_failing_correlation_key_refuses_the_start_and_stores_nothing(make_engine, db_url):
    engine = make_engine(db_url, SENDERS)
    office = Actor("office", "office", "leading_group_office")
    with engine.db.reading() as s:
        before = s.query(Case).count()
    with pytest.raises(WorkflowError) as refused:
        engine.start_case("senders", {"owner": "dept_b"}, office)  # no ref: the key fails
    assert refused.value.status == 422 and "ref" in refused.value.message
    with engine.db.reading() as s:
        assert s.query(Case).count() == before
        assert s.query(MessageWait).count() == 0


def test_the_cli_grants_and_revokes_a_message(sqlite_site, monkeypatch):
    from click.testing import CliRunner

    from engine.store.models import Event
    from webapp.cli import main

    site = sqlite_site
    monkeypatch.setenv("DATABASE_URL", site.url)
    runner = CliRunner()
    done = runner.invoke(main, ["grant-message", "office", "item_approval_result"],
                         catch_exceptions=False)
    assert done.exit_code == 0 and "office may deliver message item_approval_result" in \
        done.output
    assert site.engine.message_granted("office", "item_approval_result")
    again = runner.invoke(main, ["grant-message", "office", "item_approval_result"])
    assert again.exit_code == 0 and "nothing changed" in again.output
    refused = runner.invoke(main, ["grant-message", "auditor", "item_approval_result"])
    assert refused.exit_code == 1 and "auditors" in refused.output
    missing = runner.invoke(main, ["grant-message", "nobody", "item_approval_result"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    revoked = runner.invoke(main, ["grant-message", "--revoke", "office",
                                   "item_approval_result"], catch_exceptions=False)
    assert revoked.exit_code == 0 and "may no longer" in revoked.output
    assert not site.engine.message_granted("office", "item_approval_result")
    with site.engine.db.reading() as s:
        kinds = [e.type for e in s.query(Event).filter(Event.stream == "ops")]
    assert kinds.count("message_granted") == 1 and kinds.count("message_grant_revoked") == 1
