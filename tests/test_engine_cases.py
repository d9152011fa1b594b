"""Cases on the engine: start, tasks, claims, completions, conflicts, atomicity, caching."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.casegen import human_task_count, item_list, write_pack
from engine.actors import SYSTEM, Actor
from engine.errors import (
    CaseNotRunning,
    Conflict,
    Forbidden,
    InvalidData,
    TaskNotFound,
    TaskNotReady,
    WorkflowError,
)
from engine.runtime.spiff import dump_state, load_state, state_dict
from engine.store.models import Case, Event, HumanTask
from tests.conftest import FIXTURES

AGENT_A = Actor("agent_a", "agent", "dept_a")
AGENT_A2 = Actor("agent_a2", "agent", "dept_a")
AGENT_B = Actor("agent_b", "agent", "dept_b")
OFFICE = Actor("office", "office", "leading_group_office")
MINI = FIXTURES / "mini"


def actor_for(department: str | None) -> Actor:
    return AGENT_A if department == "dept_a" else AGENT_B


def assert_round_trip(engine, case_id):
    """Saving and restoring the live workflow changes nothing, and replay agrees."""
    live = engine._cache[case_id]
    version = engine._versions[live_version(engine, case_id)]
    restored = load_state(dump_state(live.workflow), version.specs, engine.script_engine)
    assert state_dict(restored) == state_dict(live.workflow)
    assert state_dict(engine.replay(case_id)) == state_dict(live.workflow)


def live_version(engine, case_id):
    return engine.get_case(case_id).process_version_id


@pytest.fixture
def bench_pack(tmp_path: Path) -> Path:
    return write_pack(tmp_path / "pack", blocks=2, items=3)


def test_a_case_runs_to_completion_with_every_step_restorable(make_engine, db_url, bench_pack):
    engine = make_engine(db_url, bench_pack)
    case = engine.start_case("bench_case", {"items": item_list(3)}, OFFICE)
    assert case.status == "running"
    completed = 0
    while True:
        tasks = engine.list_tasks(case_id=case.id)
        if not tasks:
            break
        task = tasks[0]
        route = "fast" if completed % 2 else "slow"
        engine.complete_task(task.id, {"route": route}, actor_for(task.department), task.version)
        completed += 1
        if engine.get_case(case.id).status == "running":
            assert_round_trip(engine, case.id)
    assert completed == human_task_count(2, 3)
    final = engine.get_case(case.id)
    assert final.status == "completed"
    assert engine.verify_case(case.id).ok


def test_ready_tasks_are_listed_by_department_assignee_and_case(make_engine, sqlite_url,
                                                                bench_pack):
    engine = make_engine(sqlite_url, bench_pack)
    case = engine.start_case("bench_case", {"items": item_list(3)}, OFFICE)
    [first] = engine.list_tasks(case_id=case.id)
    assert (first.spec_name, first.department, first.title) == ("b1_open", "dept_a",
                                                                "步骤 b1_open")
    engine.complete_task(first.id, {}, AGENT_A)
    by_b = engine.list_tasks(department="dept_b")
    assert sorted(t.spec_name for t in by_b) == ["b1_par1", "b1_par2", "b1_par3"]
    assert engine.list_tasks(department="dept_a") == []
    claimed = engine.claim_task(by_b[0].id, AGENT_B)
    assert claimed.assignee == "agent_b"
    assert [t.id for t in engine.list_tasks(assignee="agent_b")] == [by_b[0].id]
    released = engine.release_task(by_b[0].id, AGENT_B)
    assert released.assignee is None and released.version == claimed.version + 1
    for task in by_b:
        engine.complete_task(task.id, {"route": "fast"}, AGENT_B)
    items = engine.list_tasks(case_id=case.id)
    assert sorted((t.spec_name, t.item_code, t.department) for t in items) == [
        ("b1_items", "item1", "dept_a"), ("b1_items", "item2", "dept_b"),
        ("b1_items", "item3", "dept_a")]


def test_claim_release_and_completion_conflicts(make_engine, db_url, bench_pack):
    engine = make_engine(db_url, bench_pack)
    case = engine.start_case("bench_case", {"items": item_list(3)}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    # another department's agent cannot tell the task from a missing one
    with pytest.raises(TaskNotFound):
        engine.complete_task(task.id, {"route": "fast"}, AGENT_B)
    with pytest.raises(TaskNotFound):
        engine.claim_task(task.id, AGENT_B)
    claimed = engine.claim_task(task.id, AGENT_A)
    with pytest.raises(Conflict, match="already claimed by agent_a"):
        engine.claim_task(task.id, AGENT_A2)
    with pytest.raises(Conflict, match="claimed by agent_a"):
        engine.complete_task(task.id, {}, AGENT_A2)
    with pytest.raises(Conflict, match="changed since you opened it"):
        engine.complete_task(task.id, {}, AGENT_A, seen_version=task.version)
    engine.complete_task(task.id, {}, AGENT_A, seen_version=claimed.version)
    with pytest.raises(TaskNotReady, match="already completed by agent_a"):
        engine.complete_task(task.id, {}, AGENT_A)
    assert [e.type for e in engine.case_events(case.id)] == [
        "case_started", "task_claimed", "task_completed"]


def test_wrong_department_changes_nothing(make_engine, sqlite_url, bench_pack):
    engine = make_engine(sqlite_url, bench_pack)
    case = engine.start_case("bench_case", {"items": item_list(3)}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    with pytest.raises(TaskNotFound):
        engine.complete_task(task.id, {"route": "fast"}, AGENT_B)
    assert engine.get_case(case.id).state_version == 1
    assert len(engine.case_events(case.id)) == 1
    assert engine.list_tasks(case_id=case.id)[0].state == "ready"


@pytest.mark.parametrize("data, field, message", [
    ({"total": "ten", "divisor": 2}, "total", "is not of type 'integer'"),
    ({"divisor": 2}, "total", "this field is required"),
    ({"total": 10, "divisor": 2, "phone": "12345"}, "phone", "does not match"),
    ({"total": 10, "divisor": 2, "item": {"department": "dept_b"}}, "item",
     "not part of the form"),
])
def test_invalid_form_data_is_refused_field_by_field(make_engine, sqlite_url, data, field,
                                                     message):
    engine = make_engine(sqlite_url, MINI)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    with pytest.raises(InvalidData) as info:
        engine.complete_task(task.id, data, AGENT_A)
    assert any(e.field == field and message in e.message for e in info.value.errors)
    assert engine.get_case(case.id).state_version == 1


def test_a_failing_script_rolls_the_whole_command_back(make_engine, db_url):
    engine = make_engine(db_url, MINI)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    with pytest.raises(WorkflowError, match="division by zero|ZeroDivision"):
        engine.complete_task(task.id, {"total": 10, "divisor": 0}, AGENT_A)
    with engine.db.reading() as s:
        events = select(func.count()).select_from(Event).where(Event.case_id == case.id)
        assert s.scalar(events) == 1
        assert s.get(HumanTask, task.id).state == "ready"
        assert s.get(Case, case.id).state_version == 1
    engine.complete_task(task.id, {"total": 10, "divisor": 2}, AGENT_A)
    [review] = engine.list_tasks(case_id=case.id)
    assert review.spec_name == "review" and review.department == "dept_b"
    assert engine.get_case(case.id).data["share"] == 5


def test_due_dates_come_from_the_due_expression(make_engine, sqlite_url):
    engine = make_engine(sqlite_url, MINI)
    case = engine.start_case("mini", {"due": "2026-03-10"}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    assert task.due_at.isoformat() == "2026-03-10T10:00:00+00:00"  # 18:00 in Zhongwei


def test_concurrent_completions_of_one_task_exactly_one_wins(make_engine, db_url, bench_pack):
    engine = make_engine(db_url, bench_pack)
    case = engine.start_case("bench_case", {"items": item_list(3)}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        try:
            engine.complete_task(task.id, {"route": "fast"}, AGENT_A)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    types = [e.type for e in engine.case_events(case.id)]
    assert types == ["case_started", "task_completed"]
    assert len(engine.list_tasks(case_id=case.id)) == 3
    assert engine.verify_case(case.id).ok


def test_another_worker_continues_a_case_from_the_database(make_engine, db_url, bench_pack):
    first = make_engine(db_url, bench_pack, snapshot_every=3)
    second = make_engine(db_url, bench_pack, migrate=False, load=False, snapshot_every=3)
    case = first.start_case("bench_case", {"items": item_list(3)}, OFFICE)
    for turn in range(12):
        engine = (first, second)[turn % 2]
        task = engine.list_tasks(case_id=case.id)[0]
        engine.complete_task(task.id, {"route": "fast"}, actor_for(task.department))
    assert first.verify_case(case.id).ok
    assert state_dict(first.replay(case.id)) == state_dict(second.replay(case.id))
    ready_first = {t.id for t in first.list_tasks(case_id=case.id)}
    assert ready_first == {t.id for t in second.list_tasks(case_id=case.id)}


def test_termination_withdraws_tasks_and_timers(make_engine, sqlite_url):
    engine = make_engine(sqlite_url, MINI)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {"total": 4, "divisor": 2}, AGENT_A)
    with pytest.raises(Forbidden):
        engine.terminate_case(case.id, "no reason", AGENT_A)
    ended = engine.terminate_case(case.id, "项目单位主动要求终止", OFFICE)
    assert (ended.status, ended.end_reason) == ("terminated", "项目单位主动要求终止")
    assert engine.list_tasks(case_id=case.id) == []
    assert engine.fire_due_timers() == 0
    with pytest.raises(CaseNotRunning):
        engine.terminate_case(case.id, "again", OFFICE)
    last = engine.case_events(case.id)[-1]
    assert (last.type, last.actor, last.data) == ("case_terminated", "office",
                                                  {"reason": "项目单位主动要求终止"})


def test_a_case_stays_on_its_version(make_engine, sqlite_url, tmp_path):
    pack = write_pack(tmp_path / "p", blocks=1, items=2)
    engine = make_engine(sqlite_url, pack)
    old = engine.start_case("bench_case", {"items": item_list(2)}, OFFICE)
    write_pack(pack, blocks=2, items=2)
    result = engine.load_processes(pack)
    assert result.created == [("bench_case", 2)]
    assert engine.load_processes(pack).created == []
    new = engine.start_case("bench_case", {"items": item_list(2)}, OFFICE)
    assert new.process_version_id != old.process_version_id
    count = 0
    while tasks := engine.list_tasks(case_id=old.id):
        engine.complete_task(tasks[0].id, {"route": "slow"}, actor_for(tasks[0].department))
        count += 1
    assert count == human_task_count(1, 2)
    assert engine.get_case(old.id).status == "completed"


def test_system_actor_may_complete_any_task(make_engine, sqlite_url, bench_pack):
    engine = make_engine(sqlite_url, bench_pack)
    case = engine.start_case("bench_case", {"items": item_list(1)}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {}, SYSTEM)
    assert engine.case_events(case.id)[-1].actor == "system"


def test_element_states_now_and_at_an_earlier_step(make_engine, sqlite_url):
    engine = make_engine(sqlite_url, MINI)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {"total": 8, "divisor": 4}, AGENT_A)
    now = engine.element_states(case.id)["mini"]
    assert "review" in now["active"] and {"fill", "compute"} <= set(now["completed"])
    assert "review_late" in now["waiting"]
    before = engine.element_states(case.id, upto_seq=1)["mini"]
    assert before["active"] == ["fill"] and "review" not in before["completed"]


def test_a_task_shows_its_form_and_data_only_to_its_department(make_engine, sqlite_url):
    engine = make_engine(sqlite_url, MINI)
    case = engine.start_case("mini", {"due": None, "project": {"name": "示范"}}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    detail = engine.get_task(task.id, AGENT_A)
    assert detail.form_schema["required"] == ["total", "divisor"]
    assert detail.data["project"] == {"name": "示范"}
    with pytest.raises(TaskNotFound):
        engine.get_task(task.id, AGENT_B)
    engine.save_draft(task.id, {"total": 3}, AGENT_A)
    assert engine.get_task(task.id, AGENT_A).draft == {"total": 3}


@pytest.mark.postgres
def test_saving_a_draft_locks_the_case_before_the_task(make_engine, pg_url):
    """Every command locks its case, then its tasks. A draft saved the other way round held
    the task while it waited for the case, so a completion holding the case and waiting
    for the task deadlocked with it."""
    from sqlalchemy import create_engine, text

    engine = make_engine(pg_url, MINI)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    other = create_engine(pg_url)
    saved: list[object] = []
    with other.connect() as conn:
        trans = conn.begin()
        # A completion of this case holds the case row...
        conn.execute(text('SELECT id FROM "case" WHERE id = :id FOR UPDATE'), {"id": case.id})
        worker = threading.Thread(target=lambda: saved.append(
            engine.save_draft(task.id, {"total": 3}, AGENT_A)))
        worker.start()
        for _ in range(200):  # until the draft waits for a lock
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar()
            if waiting:
                break
            threading.Event().wait(0.02)
        assert waiting, "the draft never waited for the case"
        # ...and can still take the task's row: the waiting draft holds none.
        locked = conn.execute(text(
            "SELECT id FROM human_task WHERE id = :id FOR UPDATE NOWAIT"), {"id": task.id})
        assert locked.scalar() == task.id
        trans.rollback()
    worker.join(10)
    other.dispose()
    assert saved and engine.get_task(task.id, AGENT_A).draft == {"total": 3}
    engine.complete_task(task.id, {"total": 3, "divisor": 1}, AGENT_A)
    assert [t.spec_name for t in engine.list_tasks(case_id=case.id)] == ["review"]


def _opens_a_transaction(method: object) -> bool:
    import ast
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(inspect.unwrap(method)))  # type: ignore[arg-type]
    calls = {ast.unparse(node.func) for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call)}
    return bool(calls & {"self.db.transaction", "self._unit", "self._task_command",
                         "self._case_command", "self._assign", "self._migrate"})


def test_every_front_door_method_that_writes_is_a_timed_command():
    from engine.cases import Engine
    from engine.cases.instrument import command_names

    commands = command_names(Engine)
    writers = {name for name in dir(Engine) if not name.startswith("_")
               and callable(getattr(Engine, name)) and _opens_a_transaction(getattr(Engine, name))}
    assert writers - set(commands) == set()
    assert {"reassign_task", "add_comment", "correlate_message", "fetch_and_lock",
            "complete_job", "fail_job", "retry_job", "save_draft"} <= set(commands)


def test_the_hooks_hear_of_every_command_with_its_case(make_engine, sqlite_url):
    engine = make_engine(sqlite_url, MINI)
    heard = []
    engine.hooks.command_done.append(heard.append)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.add_comment(case.id, "请尽快补齐材料", OFFICE)
    engine.claim_task(task.id, AGENT_A)
    engine.reassign_task(task.id, AGENT_A2, OFFICE)
    assert [(d.command, d.outcome, d.case_id) for d in heard] == [
        ("start_case", "ok", case.id), ("add_comment", "ok", case.id),
        ("claim_task", "ok", case.id), ("reassign_task", "ok", case.id)]
