"""The timer worker survives database outages, failing cases and lock contention."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event

from engine.actors import Actor
from engine.cases import timers
from engine.runtime.clock import MovableClock
from tests.conftest import FIXTURES, ROOT
from tests.pgserver import own_postgres
from webapp.worker import run_worker

OFFICE = Actor("office", "office", "leading_group_office")
AGENT_A = Actor("agent_a", "agent", "dept_a")
AGENT_B = Actor("agent_b", "agent", "dept_b")

LATE_SCRIPT = """
    <bpmn:sequenceFlow id="f5" sourceRef="review_late" targetRef="late"/>
    <bpmn:scriptTask id="late" name="超时处理">
      <bpmn:script>late_share = total // (divisor - 1)</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f6" sourceRef="late" targetRef="end"/>"""


def _late_pack(tmp_path: Path) -> Path:
    """The mini process with a script after its timer that fails when divisor is 1."""
    pack = tmp_path / "late_pack"
    shutil.copytree(FIXTURES / "mini", pack)
    bpmn = pack / "mini.bpmn"
    source = bpmn.read_text(encoding="utf-8")
    source = source.replace(
        '<bpmn:sequenceFlow id="f5" sourceRef="review_late" targetRef="end"/>', LATE_SCRIPT)
    bpmn.write_text(source.replace('<bpmn:flowNodeRef>end</bpmn:flowNodeRef>',
                                   '<bpmn:flowNodeRef>end</bpmn:flowNodeRef>'
                                   '<bpmn:flowNodeRef>late</bpmn:flowNodeRef>'),
                    encoding="utf-8")
    return pack


def _waiting_on_review(engine, divisor: int = 3) -> int:
    """A mini case at its review task, whose boundary timer is due three days later."""
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {"total": 9, "divisor": divisor}, AGENT_A)
    return case.id


# Point 14 --------------------------------------------------------------------------------

@pytest.mark.postgres
def test_a_completion_and_the_timer_worker_never_deadlock(make_engine, pg_url, clock):
    """Force the interleaving of issue 14: the worker is about to fire a case's timer while
    a completion holds the case and is about to delete that timer."""
    web = make_engine(pg_url, FIXTURES / "mini")
    worker = make_engine(pg_url, FIXTURES / "mini", migrate=False, load=False)
    case_id = _waiting_on_review(web)
    clock.advance(days=3, hours=1)  # the timer is due and the review is still open
    [review] = web.list_tasks(case_id=case_id)
    met = threading.Barrier(2, timeout=20)
    web_lock, worker_lock = web._lock_case, worker._lock_case

    def web_locked_then_wait(s, cid, *args, **kwargs):  # the completion holds the case row...
        case = web_lock(s, cid, *args, **kwargs)
        met.wait()
        time.sleep(0.3)  # ...while the worker goes for its locks
        return case

    def worker_waits_then_locks(s, cid, *args, **kwargs):
        met.wait()  # the completion holds the case now
        return worker_lock(s, cid, *args, **kwargs)

    web._lock_case = web_locked_then_wait
    worker._lock_case = worker_waits_then_locks
    outcome: dict[str, object] = {}

    def complete() -> None:
        try:
            outcome["completion"] = web.complete_task(review.id, {"approved": True},
                                                      AGENT_B).status
        except Exception as exc:  # noqa: BLE001 - the test reports what happened
            outcome["completion"] = exc

    def fire() -> None:
        try:
            outcome["worker"] = worker.fire_due_timers()
        except Exception as exc:  # noqa: BLE001
            outcome["worker"] = exc

    threads = [threading.Thread(target=complete), threading.Thread(target=fire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome == {"completion": "completed", "worker": 0}, outcome
    web._lock_case, worker._lock_case = web_lock, worker_lock
    types = [e.type for e in web.case_events(case_id)]
    assert types.count("task_completed") == 2 and "timer_fired" not in types
    assert web.verify_case(case_id).ok
    assert worker.fire_due_timers() == 0


# Point 12: one case's failure ---------------------------------------------------------------

def test_one_failing_case_is_retried_later_and_stops_no_other(make_engine, db_url, clock,
                                                              tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(timers, "RETRY_FIRST_SECONDS", 2.0)
    engine = make_engine(db_url, _late_pack(tmp_path))
    failing = _waiting_on_review(engine, divisor=1)
    healthy = _waiting_on_review(engine, divisor=3)
    clock.advance(days=3, hours=1)
    with caplog.at_level(logging.ERROR, logger="engine.cases.timers"):
        assert engine.fire_due_timers() == 1
        assert engine.get_case(healthy).status == "completed"
        assert engine.get_case(failing).status == "running"
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [
            f"timers of case {failing} failed (1 time(s)); trying again in 2.0 s"]
        assert "division or modulo by zero" in caplog.records[0].getMessage()
        caplog.clear()
        assert engine.fire_due_timers() == 0  # waiting out its delay: not tried again yet
        assert caplog.records == []
        time.sleep(2.1)
        assert engine.fire_due_timers() == 0
        assert "failed (2 time(s)); trying again in 4.0 s" in caplog.records[0].getMessage()
    assert [e.type for e in engine.case_events(failing)][-1] == "task_completed"
    assert engine.verify_case(failing).ok and engine.verify_case(healthy).ok


# Point 12: SQLite "database is locked" -------------------------------------------------------

def test_the_worker_outlives_a_locked_sqlite_database(make_engine, sqlite_url, clock, caplog):
    engine = make_engine(sqlite_url, FIXTURES / "mini")
    case_id = _waiting_on_review(engine)
    clock.advance(days=3, hours=1)

    @event.listens_for(engine.db.engine, "connect")
    def _impatient(dbapi_conn, _record):  # give up on a lock after 0.1 s, not 30 s
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    engine.db.dispose()
    engine.config = dataclasses.replace(engine.config, timer_poll_seconds=0.1)
    holder = create_engine(sqlite_url, isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    with holder.connect() as conn, caplog.at_level(logging.WARNING):
        conn.exec_driver_sql("BEGIN EXCLUSIVE")  # another process holds the database
        thread = threading.Thread(target=run_worker, args=(engine,),
                                  kwargs={"stop": stop, "report": lambda _m: None})
        thread.start()
        deadline = time.monotonic() + 10
        while not any("locked" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the worker never met the lock"
            time.sleep(0.05)
        assert thread.is_alive()
        conn.exec_driver_sql("ROLLBACK")
    try:
        deadline = time.monotonic() + 15
        while engine.get_case(case_id).status != "completed":
            assert thread.is_alive(), "the worker died"
            assert time.monotonic() < deadline, "the timer never fired after the lock"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
        holder.dispose()
    assert engine.verify_case(case_id).ok


# Point 12: PostgreSQL killed and restarted under a running `zerorun worker` -----------------

@pytest.fixture
def pg_server():
    yield from own_postgres()


def test_the_worker_outlives_a_postgresql_restart(pg_server, make_engine, tmp_path):
    # Cases are made with a clock three days back, so that their timers are due in real
    # time when the worker (on the real clock) looks after the restart.
    past = MovableClock(datetime.now(UTC) - timedelta(days=4))
    engine = make_engine(pg_server.url, FIXTURES / "mini")
    engine.clock = past
    env = {**os.environ, "DATABASE_URL": pg_server.url, "ZERORUN_TIMER_POLL": "0.2",
           "ZERORUN_INSTANCE": str(tmp_path), "ZERORUN_PROCESSES": str(FIXTURES / "mini")}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "webapp.cli", "worker"], cwd=ROOT, env=env,
            stdout=log_file, stderr=subprocess.STDOUT)
    try:
        before = _waiting_on_review(engine)
        _wait_for(lambda: engine.get_case(before).status == "completed", worker, log_path,
                  "the worker fired nothing before the outage")
        engine.db.dispose()
        pg_server.kill()
        _wait_for(lambda: "database unavailable" in log_path.read_text(), worker, log_path,
                  "the worker never noticed the outage")
        time.sleep(1.5)  # a few failed rounds
        assert worker.poll() is None, log_path.read_text()
        pg_server.start()
        cases = [_waiting_on_review(engine) for _ in range(3)]
        _wait_for(lambda: all(engine.get_case(c).status == "completed" for c in cases),
                  worker, log_path, "timers did not fire after the restart")
        for case_id in [before, *cases]:
            assert engine.verify_case(case_id).ok
    finally:
        worker.terminate()
        worker.wait(10)
        engine.db.dispose()


def _wait_for(condition, worker, log_path: Path, failure: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001, S110 - the database may be on its way back
            pass
        assert worker.poll() is None, f"the worker exited: {log_path.read_text()}"
        assert time.monotonic() < deadline, f"{failure}: {log_path.read_text()}"
        time.sleep(0.2)

