"""The audit chain: canonical hashing, append-only storage, tamper detection."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from engine.actors import Actor
from engine.audit.chain import GENESIS, canonical_json, event_hash
from tests.conftest import FIXTURES

OFFICE = Actor("office", "office", "leading_group_office")
AGENT_A = Actor("agent_a", "agent", "dept_a")
AGENT_B = Actor("agent_b", "agent", "dept_b")


def test_canonical_json_is_stable():
    assert canonical_json({"b": 1, "a": ["项目", 2.5]}) == '{"a":["项目",2.5],"b":1}'


@pytest.fixture
def finished_case(make_engine, db_url):
    engine = make_engine(db_url, FIXTURES / "mini")
    case = engine.start_case("mini", {"project": {"name": "测试项目"}, "due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.claim_task(task.id, AGENT_A)
    engine.complete_task(task.id, {"total": 6, "divisor": 3}, AGENT_A)
    [review] = engine.list_tasks(case_id=case.id)
    engine.complete_task(review.id, {"approved": True}, AGENT_B)
    return engine, case.id


def test_events_record_actor_time_data_and_chain(finished_case):
    engine, case_id = finished_case
    events = engine.case_events(case_id)
    assert [(e.seq, e.type, e.actor) for e in events] == [
        (1, "case_started", "office"), (2, "task_claimed", "agent_a"),
        (3, "task_completed", "agent_a"), (4, "task_completed", "agent_b")]
    assert events[0].data["data"] == {"project": {"name": "测试项目"}, "due": None}
    assert events[2].data["data"] == {"total": 6, "divisor": 3}
    assert events[0].prev_hash == GENESIS
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    e = events[3]
    assert e.hash == event_hash(e.prev_hash, e.stream, e.seq, e.type, e.actor, e.at, e.data)
    assert engine.verify_case(case_id).ok


def test_the_database_refuses_to_change_events(finished_case):
    engine, case_id = finished_case
    with pytest.raises(DatabaseError, match="append-only"):
        with engine.db.transaction() as s:
            s.execute(text("UPDATE event SET actor = 'mallory' WHERE case_id = :c"),
                      {"c": case_id})
    with pytest.raises(DatabaseError, match="append-only"):
        with engine.db.transaction() as s:
            s.execute(text("DELETE FROM event WHERE case_id = :c"), {"c": case_id})


def _tamper(engine, sql: str, **params) -> None:
    """Change the database behind the engine's back, triggers disabled."""
    with engine.db.transaction() as s:
        if engine.db.postgres:
            s.execute(text("ALTER TABLE event DISABLE TRIGGER USER"))
        else:
            s.execute(text("DROP TRIGGER event_no_update"))
            s.execute(text("DROP TRIGGER event_no_delete"))
        s.execute(text(sql), params)


@pytest.mark.parametrize("sql, seq, words", [
    ("UPDATE event SET data = CAST(:d AS JSON) WHERE case_id = :c AND seq = 3", 3, "altered"),
    ("DELETE FROM event WHERE case_id = :c AND seq = 2", 2, "missing"),
    ("UPDATE event SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END "
     "WHERE case_id = :c AND seq IN (2, 3)", 2, ""),
    ("DELETE FROM event WHERE case_id = :c AND seq = 4", 3, "removed from the end"),
])
def test_tampering_is_detected_at_the_right_event(finished_case, sql, seq, words):
    engine, case_id = finished_case
    params = {"c": case_id}
    if ":d" in sql:
        params["d"] = '{"task_id": "x", "task_spec": "fill", "data": {"total": 60}}'
    if "CASE seq" in sql:
        # Swap two events: move one out of the way first to respect the unique key.
        _tamper(engine, "UPDATE event SET seq = -2 WHERE case_id = :c AND seq = 2", **params)
        with engine.db.transaction() as s:
            s.execute(text("UPDATE event SET seq = 2 WHERE case_id = :c AND seq = 3"), params)
            s.execute(text("UPDATE event SET seq = 3 WHERE case_id = :c AND seq = -2"), params)
    else:
        _tamper(engine, sql, **params)
    result = engine.verify_case(case_id)
    assert not result.ok
    assert result.first_bad_seq == seq
    assert words in result.reason


def test_stored_state_changed_behind_the_engine_is_detected(finished_case):
    engine, case_id = finished_case
    with engine.db.transaction() as s:
        s.execute(text("UPDATE \"case\" SET status = 'running' WHERE id = :c"), {"c": case_id})
    result = engine.verify_case(case_id)
    assert not result.ok and "status" in result.reason


@pytest.mark.parametrize("sql, seq, words", [
    # The first completion's task is reopened: its event no longer matches the task index.
    ("UPDATE human_task SET state = 'ready', completed_by = NULL "
     "WHERE case_id = :c AND spec_name = 'fill'", 3, "does not match this event"),
    # Someone else is named as the one who completed the review.
    ("UPDATE human_task SET completed_by = 'mallory' WHERE case_id = :c AND spec_name = 'review'",
     4, "by mallory"),
    # The case data is edited behind the engine's back.
    ("UPDATE \"case\" SET data = :d WHERE id = :c", 4, "re-executed case in project"),
])
def test_stored_tasks_and_data_changed_behind_the_engine_are_detected(finished_case, sql, seq,
                                                                      words):
    engine, case_id = finished_case
    params = {"c": case_id}
    if ":d" in sql:
        params["d"] = '{"project": {"name": "另一个项目"}, "due": null, "total": 6, ' \
            '"divisor": 3, "approved": true}'
        if engine.db.postgres:
            sql = sql.replace(":d", "CAST(:d AS JSON)")
    with engine.db.transaction() as s:
        s.execute(text(sql), params)
    result = engine.verify_case(case_id)
    assert not result.ok
    assert (result.first_bad_seq, words in result.reason) == (seq, True), result.reason


def test_account_changes_and_migrations_are_operations_events(make_engine, db_url):
    from agency.reports import ops_log
    from engine import accounts

    engine = make_engine(db_url, FIXTURES / "mini")
    with engine.db.transaction() as s:
        accounts.create_user(s, "clerk", "password-1", "agent", department="dept_a",
                             now=engine.clock(), actor="admin")
        accounts.issue_token(s, "clerk", actor="admin")
        accounts.revoke_tokens(s, "clerk", actor="admin")
        accounts.set_password(s, "clerk", "password-2", actor="admin")
    page = ops_log(engine)
    assert page.chain_ok and page.total == len(page.events)
    newest_first = [(e.type, e.actor, e.data.get("username")) for e in page.events[:4]]
    assert newest_first == [("password_reset", "admin", "clerk"),
                            ("api_tokens_revoked", "admin", "clerk"),
                            ("api_token_issued", "admin", "clerk"),
                            ("account_created", "admin", "clerk")]
    assert page.events[-1].type == "schema_migrated"
    assert "process_version_saved" in {e.type for e in page.events}
    assert not any("password" in str(e.data.get(k, "")) for e in page.events for k in e.data
                   if k != "username")
