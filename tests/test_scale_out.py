"""Several app processes on one database: each keeps its own cache of live cases."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from bench.casegen import human_task_count, item_list, write_pack
from engine import accounts
from engine.actors import Actor
from engine.cases import Engine, store
from engine.cases.elements import stored_elements
from engine.cases.workflow import reached_elements, scan_tasks, wanted_timers
from engine.config import Config
from engine.runtime import spiff
from engine.runtime.spiff import state_dict
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Department, Event, HumanTask, Timer
from tests.conftest import ROOT, EngineFactory

OFFICE = Actor("office", "office", "leading_group_office")


def test_a_process_whose_cached_case_another_moved_on_catches_up_without_the_snapshot(
        db_url: str, make_engine: EngineFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pack = write_pack(tmp_path / "pack", blocks=2, items=2)
    first = make_engine(db_url, pack)
    second = make_engine(db_url, pack, migrate=False)
    case = first.start_case("bench_case", {"items": item_list(2)}, OFFICE)
    restored: list[int] = []

    def load_state(*args: Any, **kwargs: Any) -> Any:
        restored.append(1)
        return spiff.load_state(*args, **kwargs)

    monkeypatch.setattr(store, "load_state", load_state)
    engines = [second, first]  # the second process has not seen the case yet
    completed = 0
    while tasks := first.list_tasks(case_id=case.id, limit=1):
        engine = engines[completed % 2]
        task = tasks[0]
        engine.complete_task(task.id, {"route": "fast" if completed % 3 else "slow"},
                             Actor("agent", "agent", task.department), task.version)
        completed += 1
    assert completed == human_task_count(2, 2)
    assert first.get_case(case.id).status == "completed"
    # Only the second process's first command restored the case from its snapshot; after
    # that, each process replayed the one event the other had added.
    assert len(restored) == 1
    for engine in (first, second):
        assert engine.verify_case(case.id).ok
    assert state_dict(first.replay(case.id)) == state_dict(second.replay(case.id))


def test_a_read_in_another_process_shows_the_task_data_after_the_last_command(
        db_url: str, make_engine: EngineFactory, tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "pack", blocks=1, items=2)
    first = make_engine(db_url, pack)
    second = make_engine(db_url, pack, migrate=False)
    case = first.start_case("bench_case", {"items": item_list(2)}, OFFICE)
    [opening] = first.list_tasks(case_id=case.id)
    agent = Actor("agent", "agent", opening.department)
    assert second.get_task(opening.id, agent).data["items"] == item_list(2)  # cached there
    first.complete_task(opening.id, {"route": "fast", "note": "seen by both"}, agent)
    branch = second.list_tasks(case_id=case.id)[0]
    # The second process caught up with the completion it did not run.
    seen = second.get_task(branch.id, Actor("agent", "agent", branch.department)).data
    assert seen["note"] == "seen by both"



def _stored_rows(engine: Engine, case_id: int) -> tuple[dict[str, Any], set[Any], set[str]]:
    with engine.db.reading() as s:
        timers = {t.task_id: t.due_at for t in s.scalars(select(Timer).where(
            Timer.case_id == case_id))}
        return (timers, set(stored_elements(s, case_id)), set(s.scalars(select(HumanTask.id).where(
            HumanTask.case_id == case_id, HumanTask.state == "ready"))))


def _rebuilt_rows(engine: Engine, case_id: int) -> tuple[dict[str, Any], set[Any], set[str]]:
    """What the case's rows must be, from its workflow rebuilt from the store."""
    workflow = engine.replay(case_id)
    return ({task_id: due for task_id, (_, due) in wanted_timers(workflow).items()},
            reached_elements(workflow),
            {str(t.id) for t in scan_tasks(workflow).ready_manual})


def test_a_process_that_catches_up_keeps_the_rows_in_line_without_reading_them_back(
        db_url: str, make_engine: EngineFactory, tmp_path: Path, clock: Any) -> None:
    """The other process's command left the case's timers, element rows and open tasks as
    its workflow implies: a process catching up works them out instead of reading them
    (each read was a statement on half the commands of two app servers), and the rows stay
    right through completions, a timer set and fired, each by the process behind."""
    pack = write_pack(tmp_path / "pack", blocks=2, items=2, timer="PT1H")
    first = make_engine(db_url, pack)
    second = make_engine(db_url, pack, migrate=False)
    case = first.start_case("bench_case", {"items": item_list(2)}, OFFICE)
    second.get_case(case.id)
    second.element_states(case.id)  # the second process has the case cached, then falls behind
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(second.db.engine, "before_cursor_execute", count)
    engines, done = [first, second], 0
    while tasks := [t for t in first.list_tasks(case_id=case.id) if t.spec_name != "after_wait"]:
        engine = engines[done % 2]
        sent.clear()
        engine.complete_task(tasks[0].id, {"route": "fast" if done % 3 else "slow"},
                             Actor("agent", "agent", tasks[0].department))
        if engine is second:
            reads = [q for q in sent if q.lstrip().upper().startswith("SELECT")]
            assert not [q for q in reads if " timer" in q or "case_element" in q], (done, sent)
        assert _stored_rows(first, case.id) == _rebuilt_rows(first, case.id), done
        done += 1
    timers, _, _ = _stored_rows(first, case.id)
    assert len(timers) == 1  # the case waits on its timer
    clock.advance(hours=2)
    behind = second if done % 2 == 0 else first  # the process that did not run the last one
    assert behind.fire_due_timers() == 1
    assert _stored_rows(first, case.id) == _rebuilt_rows(first, case.id)
    assert _stored_rows(first, case.id)[0] == {}  # fired once, its row gone
    event.remove(second.db.engine, "before_cursor_execute", count)
    [last] = first.list_tasks(case_id=case.id)
    engines[done % 2].complete_task(last.id, {}, Actor("agent", "agent", last.department))
    assert first.get_case(case.id).status == "completed"
    for engine in (first, second):
        assert engine.verify_case(case.id).ok

# Two app servers and two timer workers on one PostgreSQL through PgBouncer ---------------


def _pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on port {port}")


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by the test, each in its own group, ended when it finishes."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _start_pgbouncer(started: list[subprocess.Popen[bytes]], server_url: str) -> int:
    """PgBouncer in transaction pooling in front of the test server; returns its port."""
    binary = _pgbouncer()
    assert binary is not None
    server = make_url(server_url)
    folder = Path(tempfile.mkdtemp(prefix="zerorun-pgbouncer-"))
    folder.chmod(0o755)  # PgBouncer refuses to run as root: it runs as nobody
    port = _free_port()
    (folder / "userlist.txt").write_text(f'"{server.username}" ""\n', encoding="utf-8")
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host} port={server.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 8\n"
        "unix_socket_dir =\nlogfile =\npidfile =\n"
        "ignore_startup_parameters = extra_float_digits,options\n", encoding="utf-8")
    for path in folder.iterdir():
        path.chmod(0o644)
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,  # noqa: S603
                               stderr=subprocess.DEVNULL, start_new_session=True)
    started.append(process)
    _wait_for_port(port, process, "pgbouncer")
    return port


def _api(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + "/api/v1" + path, data=data, method=method,  # noqa: S310
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.postgres
def test_two_servers_and_two_workers_through_pgbouncer_lose_nothing_and_fire_timers_once(
        tmp_path: Path) -> None:
    if _pgbouncer() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but pgbouncer is not installed (.ci/run installs it)")
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    from tests.conftest import PG_ENV, _postgres_database

    cases, blocks, items = 6, 1, 2
    per_case = human_task_count(blocks, items) + 1  # and the task after the timer
    pack = write_pack(tmp_path / "pack", blocks=blocks, items=items, timer="PT1S")
    for direct_url in _postgres_database():
        engine = Engine(Config.from_env(database_url=direct_url, processes_dir=pack,
                                        instance_dir=tmp_path, data_dir=ROOT / "data"),
                        database=Database(direct_url), functions={})
        schema.upgrade(engine.db)
        tokens: dict[str, str] = {}
        with engine.db.transaction() as s:
            for code in ("dept_a", "dept_b"):
                s.add(Department(code=code, name=code, name_en="", leader="", agent="",
                                 position=0))
            s.flush()
            for code in ("dept_a", "dept_b"):
                accounts.create_user(s, f"agent_{code}", f"password-{code}", "agent",
                                     department=code, now=engine.clock())
                tokens[code] = accounts.issue_token(s, f"agent_{code}")
        engine.load_processes(pack)
        case_ids = [engine.start_case("bench_case", {"items": item_list(items)}, OFFICE).id
                    for _ in range(cases)]
        with _processes() as started:
            bouncer = _start_pgbouncer(started, os.environ[PG_ENV])
            database = make_url(direct_url).database
            pooled = (f"postgresql+psycopg://postgres@127.0.0.1:{bouncer}/{database}"
                      "?prepare_threshold=none")
            env = {**os.environ, "DATABASE_URL": pooled, "ZERORUN_PROCESSES": str(pack),
                   "ZERORUN_INSTANCE": str(tmp_path), "ZERORUN_SECRET_KEY": "scale-out",
                   "ZERORUN_DATA": str(ROOT / "data"), "ZERORUN_TIMER_POLL": "0.3"}
            bases = []
            for _ in range(2):
                port = _free_port()
                serve = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port),
                     "--workers", "1"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)
                started.append(serve)
                _wait_for_port(port, serve, "zerorun serve")
                bases.append(f"http://127.0.0.1:{port}")
            for _ in range(2):
                started.append(subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "webapp.cli", "worker"], env=env, cwd=ROOT,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            completed: list[str] = []
            deadline = time.monotonic() + 180
            while len(completed) < cases * per_case and time.monotonic() < deadline:
                progressed = False
                for code in ("dept_a", "dept_b"):
                    base = bases[len(completed) % 2]
                    status, page = _api(base, tokens[code], "GET", "/tasks?limit=200")
                    assert status == 200, page
                    for task in page["tasks"]:
                        base = bases[len(completed) % 2]  # alternate servers
                        status, answer = _api(base, tokens[code], "POST",
                                              f"/tasks/{task['id']}/complete",
                                              {"data": {"route": "fast"},
                                               "version": task["version"]})
                        assert status == 200, answer
                        completed.append(task["id"])
                        progressed = True
                if not progressed:
                    time.sleep(0.2)  # waiting for the timers
        assert len(completed) == len(set(completed)) == cases * per_case
        with engine.db.reading() as s:
            events = s.execute(select(Event.case_id, Event.type)).all()
        for case_id in case_ids:
            assert engine.get_case(case_id).status == "completed"
            assert engine.verify_case(case_id).ok
            kinds = [kind for owner, kind in events if owner == case_id]
            assert kinds.count("timer_fired") == 1, case_id  # fired once, by one worker
            assert kinds.count("task_completed") == per_case, case_id  # nothing lost
        engine.db.dispose()
