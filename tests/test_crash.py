"""A real gunicorn whose workers are killed with -9 during concurrent completions over HTTP:
afterwards every case verifies, and no task is lost or completed twice."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine import accounts
from engine.actors import Actor
from engine.store.models import HumanTask
from tests.conftest import FIXTURES, ROOT

CASES = 40
CLIENTS = 8
KILL_AFTER = (15, 35, 55)  # completions seen by the clients before each kill -9 of a worker
OFFICE = Actor("office", "office", "leading_group_office")
DATA = {"fill": {"total": 9, "divisor": 3}, "review": {"approved": True}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One API client over plain HTTP, retrying what a dead worker left unanswered."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; status 0 when the connection broke (the worker died under it)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, "/api/v1" + path,
                               body=json.dumps(body) if body is not None else None,
                               headers={"Authorization": f"Bearer {self.token}",
                                        "Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            connection.close()


class Run:
    """Shared bookkeeping of the clients."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed: list[str] = []  # task ids answered 200
        self.already: list[str] = []  # retried after a broken answer: found completed
        self.broken = 0
        self.problems: list[str] = []

    def count(self) -> int:
        with self.lock:
            return len(self.completed) + len(self.already)


def _drive(case_id: int, clients: dict[str, Client], run: Run) -> None:
    """Complete the case's two tasks, each by its department, retrying broken calls."""
    for spec_name, who in (("fill", "a"), ("review", "b")):
        client = clients[who]
        attempted: str | None = None  # a task whose completion got no answer
        for _attempt in range(50):
            status, case = client.call("GET", f"/cases/{case_id}")
            if status != 200:
                time.sleep(0.1)
                continue
            open_tasks = [t for t in case["open_tasks"] if t["spec_name"] == spec_name]
            if not open_tasks and attempted is not None:
                with run.lock:  # the unanswered call did complete it
                    run.already.append(attempted)
                break
            if not open_tasks:
                time.sleep(0.1)
                continue
            task = open_tasks[0]
            status, body = client.call("POST", f"/tasks/{task['id']}/complete",
                                       {"data": DATA[spec_name], "version": task["version"]})
            if status == 200:
                with run.lock:
                    run.completed.append(task["id"])
                break
            if status in (0, 502, 503):
                attempted = task["id"]
                with run.lock:
                    run.broken += 1
                time.sleep(0.1)
                continue
            with run.lock:
                run.problems.append(f"case {case_id} {spec_name}: {status} {body}")
            return
        else:
            with run.lock:
                run.problems.append(f"case {case_id} {spec_name}: gave up")
            return


def _workers_of(master: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            children.append(int(entry.name))
    return children


def _wait_until_serving(client: Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while client.call("GET", "/openapi.json")[0] != 200:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"gunicorn never answered: {log.read_text()}"
        time.sleep(0.2)


def test_killing_web_workers_during_completions_loses_and_doubles_nothing(
        make_engine, db_url, tmp_path):
    engine = make_engine(db_url, FIXTURES / "mini")
    tokens = {}
    with engine.db.transaction() as s:
        for who in ("a", "b"):
            accounts.create_user(s, f"agent_{who}", "password-123", "agent",
                                 department=f"dept_{who}", now=engine.clock())
            tokens[who] = accounts.issue_token(s, f"agent_{who}")
    cases = [engine.start_case("mini", {"due": None}, OFFICE).id for _ in range(CASES)]

    port = _free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "ZERORUN_INSTANCE": str(tmp_path),
           "ZERORUN_PROCESSES": str(FIXTURES / "mini")}
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    clients = {who: Client(port, token) for who, token in tokens.items()}
    run = Run()
    killed: list[int] = []
    try:
        _wait_until_serving(clients["a"], server, log)
        queue = list(cases)
        queue_lock = threading.Lock()

        def client_loop() -> None:
            while True:
                with queue_lock:
                    if not queue:
                        return
                    case_id = queue.pop(0)
                _drive(case_id, clients, run)

        def killer() -> None:
            for threshold in KILL_AFTER:
                while run.count() < threshold and any(t.is_alive() for t in threads):
                    time.sleep(0.01)
                workers = _workers_of(server.pid)
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(workers[0])

        threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        kill_thread = threading.Thread(target=killer)
        kill_thread.start()
        for thread in threads:
            thread.join(120)
        kill_thread.join(10)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)

    assert len(killed) == len(KILL_AFTER), "the workers were not killed during the run"
    assert run.problems == [], run.problems
    answered = run.completed + run.already
    assert len(answered) == len(set(answered)) == 2 * CASES
    for case_id in cases:
        events = engine.case_events(case_id)
        completions = [e.data["task_id"] for e in events if e.type == "task_completed"]
        assert len(completions) == len(set(completions)) == 2, (case_id, completions)
        assert engine.get_case(case_id).status == "completed"
        verification = engine.verify_case(case_id)
        assert verification.ok, verification
    with engine.db.reading() as s:
        rows = s.query(HumanTask).filter(HumanTask.case_id.in_(cases)).all()
    assert sorted(r.state for r in rows) == ["completed"] * (2 * CASES)
    assert {r.id for r in rows} == set(answered)
