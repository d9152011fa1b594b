"""The task tally (migration 0024_task_tallies): how many ready tasks the index holds per
department, assignee, process, stage, phase and item, kept by the database with every write
of `human_task`, so that an inbox's counts cost the same whatever the backlog. It must always
equal a count of the task rows: after commands of every kind, bulk writes and deletions, on
both databases, and after upgrading a database that had none; and the inbox's figures read
from it must be the ones counting the rows gives."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, event, select, text, update

from bench.inbox import NOW, fill
from engine.actors import Actor
from engine.cases import Engine
from engine.config import Config
from engine.store import schema
from engine.store.models import HumanTask, TaskTally
from tests.audit_cases import rejected_twice_then_accepted
from tests.service import OFFICE, Service, small_project
from tests.test_backup import empty_url, source, zerorun  # noqa: F401 - fixtures
from tests.test_dashboard_kept import downgrade_to
from tests.test_library import moved_and_reviewed

KEY = ("department", "assignee", "process_id", "stage", "phase", "item_code", "item_name")


def recomputed(engine: Engine) -> dict[tuple[str, ...], int]:
    """Every ready task row counted per key, in Python."""
    with engine.db.reading() as s:
        rows = s.execute(select(*(getattr(HumanTask, c) for c in KEY))
                         .where(HumanTask.state == "ready")).all()
    return dict(Counter(tuple(v if v is not None else "" for v in row) for row in rows))


def kept(engine: Engine) -> dict[tuple[str, ...], int]:
    with engine.db.reading() as s:
        return {tuple(getattr(r, c) for c in KEY): r.n for r in s.scalars(select(TaskTally))}


def assert_kept(engine: Engine) -> dict[tuple[str, ...], int]:
    found = kept(engine)
    assert found == recomputed(engine)
    return found


def agent(task: Any) -> Actor:
    return Actor(f"agent_{task.department}", "agent", task.department)


def test_the_tally_follows_every_kind_of_write(make_pack_engine, db_url, clock):
    """Start, complete, claim, release, timers, an item rejected and redone, terminate (its
    tasks cancelled); then rows written by hand: a bulk load, bulk moves of department,
    assignee and phase, a cancelled task reopened, deletions."""
    engine = make_pack_engine(db_url)
    running = Service(engine, clock)
    running.start(small_project())
    assert assert_kept(engine)
    running.complete("select_items", selected_items=running.case().data["selected_items"])
    task = running.task("review_material_list")
    claimed = engine.claim_task(task.id, agent(task))
    assert claimed.assignee == agent(task).username
    tally = assert_kept(engine)
    assert any(key[1] == agent(task).username for key in tally)
    engine.release_task(task.id, agent(task))
    assert_kept(engine)
    engine.claim_task(task.id, agent(task))
    running.complete("review_material_list")  # a claimed task completed
    assert_kept(engine)
    rejected_twice_then_accepted(engine, clock)  # fires the 31-day visit timer too
    assert_kept(engine)
    stopped = Service(engine, clock)
    stopped.start(small_project())
    stopped.complete("select_items", selected_items=stopped.case().data["selected_items"])
    assert stopped.ready()
    engine.terminate_case(stopped.case_id, "项目取消", OFFICE)
    assert not stopped.ready()
    assert_kept(engine)
    fill(engine, 20)  # the bench's bulk load: rows inserted directly, many per statement
    filled = assert_kept(engine)
    assert sum(n for key, n in filled.items() if key[0] == "approval_bureau") >= 20
    with engine.db.transaction() as s:  # several keys moved in one statement each
        s.execute(update(HumanTask).where(HumanTask.case_id == stopped.case_id)
                  .values(state="ready"))  # cancelled tasks reopened
        s.execute(update(HumanTask).where(HumanTask.department == "approval_bureau",
                                          HumanTask.state == "ready")
                  .values(department="drc", phase=None))
        s.execute(update(HumanTask).where(HumanTask.assignee.is_(None),
                                          HumanTask.state == "ready",
                                          HumanTask.department == "drc")
                  .values(assignee="agent_drc"))
    moved = assert_kept(engine)
    assert not [key for key in moved if key[0] == "approval_bureau"]
    with engine.db.transaction() as s:
        s.execute(delete(HumanTask).where(HumanTask.department == "drc",
                                          HumanTask.state == "ready"))
    assert not [key for key in assert_kept(engine) if key[0] == "drc"]
    with engine.db.transaction() as s:
        s.execute(delete(HumanTask))
    assert assert_kept(engine) == {}


def test_a_migrated_case_keeps_its_tally(make_pack_engine, db_url):
    moved_and_reviewed(make_pack_engine(db_url), assert_kept)


def test_a_rolled_back_write_leaves_the_tally_alone(make_pack_engine, db_url, clock):
    """A transaction rolled back, and a savepoint rolled back inside one that commits."""
    engine = make_pack_engine(db_url)
    running = Service(engine, clock)
    running.start(small_project())
    before = assert_kept(engine)
    with engine.db.engine.connect() as connection:
        with connection.begin():
            connection.execute(update(HumanTask).values(assignee="someone"))
            with connection.begin_nested() as nested:
                connection.execute(delete(HumanTask))
                nested.rollback()
            connection.execute(update(HumanTask).values(phase="9"))
            with connection.begin_nested() as nested:
                connection.execute(update(HumanTask).values(department="nowhere"))
                nested.rollback()
        moved = assert_kept(engine)
        assert {(key[1], key[4]) for key in moved} == {("someone", "9")}
        with pytest.raises(RuntimeError), connection.begin():
            connection.execute(update(HumanTask).values(assignee=None, state="cancelled"))
            raise RuntimeError("rolled back")
    assert assert_kept(engine) == moved != before


@pytest.mark.postgres
@pytest.mark.postgres
def test_crossing_commands_do_not_deadlock_on_the_tally(make_pack_engine, pg_url, clock):
    """Two transactions of different cases, each leaving a key the other enters, in crossed
    order: the tally rows are taken at commit, in key order, so neither waits on the other
    before committing (updated as each row was written, the second would wait for the
    first, which would wait for it in turn)."""
    engine = make_pack_engine(pg_url)  # SQLite has one writer at a time
    first, second = Service(engine, clock), Service(engine, clock)
    first.start(small_project())
    second.start(small_project())
    [a] = first.ready()
    [b] = second.ready()
    assert (a.department, a.item_code) == (b.department, b.item_code)
    writers = create_engine(pg_url)
    try:
        with writers.connect() as one, writers.connect() as two:
            for connection in (one, two):
                connection.execute(text("SET lock_timeout = '3s'"))
            one.execute(update(HumanTask).where(HumanTask.id == a.id).values(assignee="x"))
            two.execute(update(HumanTask).where(HumanTask.id == b.id).values(assignee="y"))
            one.execute(update(HumanTask).where(HumanTask.id == a.id).values(assignee="y"))
            two.execute(update(HumanTask).where(HumanTask.id == b.id).values(assignee="x"))
            one.commit()
            two.commit()
    finally:
        writers.dispose()
    tally = assert_kept(engine)
    assert sorted(key[1] for key, n in tally.items() for _ in range(n)
                  if key[0] == a.department) == ["x", "y"]


def test_upgrading_fills_the_tally(make_pack_engine, db_url, clock):
    """A database from before migration 0024 (its tasks already there) gets its tally when
    upgraded; downgrading removes the table and its triggers."""
    engine = make_pack_engine(db_url)
    running = Service(engine, clock)
    running.start(small_project())
    fill(engine, 5)
    expected = assert_kept(engine)
    downgrade_to(engine, "0023_figures_kept")
    # Tasks written while the database has no tally (commands need the newest schema: later
    # migrations add columns the engine reads, so the old database gets rows directly).
    fill(engine, 3)
    schema.upgrade(engine.db)
    assert kept(engine) == recomputed(engine) != expected
    schema.upgrade(engine.db)  # idempotent, as `zerorun setup` runs it
    running.complete("select_items", selected_items=running.case().data["selected_items"])
    running.complete("review_material_list")
    assert_kept(engine)


def inbox_figures(engine: Engine, username: str, department: str | None,
                  open_to: str | None) -> dict[str, Any]:
    """Every figure of an inbox page the tally answers, with the filters a page offers."""
    phases, items = engine.task_phases_and_items(department)
    figures: dict[str, Any] = {
        "counts": engine.task_counts(username, department=department, open_to=open_to),
        "phases": phases, "items": items,
        "all": engine.count_tasks(department=department, open_to=open_to),
        "mine": engine.count_tasks(department=department, assignee=username),
        "mine_open": engine.count_tasks(department=department, assignee=username,
                                        open_to=username)}
    for phase in [*phases, "9"]:
        figures[f"phase {phase}"] = engine.count_tasks(department=department, open_to=open_to,
                                                       phase=phase)
    for code, _ in items[:5]:
        figures[f"item {code}"] = engine.count_tasks(department=department, open_to=open_to,
                                                     item_code=code)
        figures[f"item {code} stage"] = engine.count_tasks(
            department=department, item_code=code, stage="handling",
            process_id="stage_handling")
    return figures


def counted(engine: Engine, username: str, department: str | None,
            open_to: str | None) -> dict[str, Any]:
    """The same figures counted from the task rows, in Python."""
    with engine.db.reading() as s:
        tasks = s.scalars(select(HumanTask).where(HumanTask.state == "ready")).all()
    now = engine.clock()
    mine = [t for t in tasks if department in (None, t.department)]
    shown = [t for t in mine if open_to is None or t.assignee in (None, open_to)]
    phases = sorted({t.phase for t in mine if t.phase})
    items = sorted({(t.item_code, t.item_name or t.item_code) for t in mine if t.item_code},
                   key=lambda pair: pair[1])
    figures: dict[str, Any] = {
        "counts": (len(shown), len([t for t in mine if t.assignee == username]),
                   len([t for t in shown if t.due_at and t.due_at < now])),
        "phases": phases, "items": items, "all": len(shown),
        "mine": len([t for t in mine if t.assignee == username]),
        "mine_open": len([t for t in mine if t.assignee == username])}
    for phase in [*phases, "9"]:
        figures[f"phase {phase}"] = len([t for t in shown if t.phase == phase])
    for code, _ in items[:5]:
        figures[f"item {code}"] = len([t for t in shown if t.item_code == code])
        figures[f"item {code} stage"] = len([t for t in mine if t.item_code == code and
                                             t.stage == "handling" and
                                             t.process_id == "stage_handling"])
    return figures


def test_inbox_figures_read_from_the_tally_are_the_counted_ones(make_pack_engine, db_url,
                                                                 clock):
    engine = make_pack_engine(db_url)
    fill(engine, 40)  # tasks of many items, a tenth claimed by agent_x, a third overdue
    clock.set(NOW)
    for username, department, open_to in (
            ("agent_approval_bureau", "approval_bureau", "agent_approval_bureau"),
            ("agent_x", "approval_bureau", "agent_x"),
            ("agent_x", None, None),  # an administrator's view of every department
            ("agent_x", "drc", "agent_x")):
        figures = inbox_figures(engine, username, department, open_to)
        counts = figures.pop("counts")
        expected = counted(engine, username, department, open_to)
        assert (counts.ready, counts.claimed_by_me, counts.overdue) == expected.pop("counts")
        assert figures == expected
    assert inbox_figures(engine, "agent_x", "approval_bureau", "agent_x")["counts"].overdue


def test_an_inbox_s_figures_read_no_task_row_but_the_overdue_ones(make_pack_engine,
                                                                  sqlite_url, clock):
    """The plans of the statements an inbox's figures send (SQLite's planner needs no
    statistics, so its plans are the same on every machine): the tally by its key, and
    the overdue tasks as a range of the (department, state, due date, assignee) index,
    read alone."""
    engine = make_pack_engine(sqlite_url)
    fill(engine, 10)
    clock.set(NOW)
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine.db.engine, "before_cursor_execute", record)
    try:
        engine.task_counts("agent_x", department="approval_bureau", open_to="agent_x")
        engine.task_phases_and_items("approval_bureau")
        engine.count_tasks(department="approval_bureau", open_to="agent_x", phase="1")
    finally:
        event.remove(engine.db.engine, "before_cursor_execute", record)
    plans = []
    with engine.db.engine.connect() as connection:
        for statement, parameters in sent:
            if statement.startswith("SELECT"):
                plans.append(" / ".join(row[3] for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters)))
    assert len(plans) == 3
    for plan in plans:
        assert "SCAN human_task" not in plan and "SCAN task_tally" not in plan, plan
        assert re.search(r"SEARCH task_tally USING (COVERING )?INDEX sqlite_autoindex_task_tally_1 "
                         r"\(department=\?", plan), plan
    assert ("human_task USING COVERING INDEX ix_human_task_department_state "
            "(department=? AND state=? AND due_at<?)") in plans[0]


def test_a_restored_backup_has_its_tally_once(
        source, db_url, empty_url, tmp_path, monkeypatch):  # noqa: F811 - imported fixtures
    """pg_restore loads the rows before it creates the triggers (and SQLite's copy is a
    copy): the tasks restored are not counted a second time."""
    before = assert_kept(source)
    assert before
    code, out = zerorun(monkeypatch, db_url, tmp_path, "backup", str(tmp_path / "backup"))
    assert code == 0, out
    code, out = zerorun(monkeypatch, empty_url, tmp_path / "restored", "restore",
                        str(tmp_path / "backup"))
    assert code == 0, out
    restored = Engine(Config.from_env(database_url=empty_url), functions={})
    try:
        assert assert_kept(restored) == before
    finally:
        restored.db.dispose()
