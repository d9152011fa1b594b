"""The HTTP path: `zerorun serve` (gunicorn, 2 workers) driven by agents looping
list inbox -> read task -> complete through /api/v1, from a separate process.

CPU per completion is read from /proc: the gunicorn master and workers, plus (on
PostgreSQL) the server backends connected to the bench database.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bench.casegen import item_list
from engine import accounts
from engine.actors import Actor
from engine.cases import Engine
from engine.config import Config
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Department

ROOT = Path(__file__).resolve().parent.parent
OFFICE = Actor("office", "office", "leading_group_office")
DEPARTMENTS = ("dept_a", "dept_b")
TICKS = os.sysconf("SC_CLK_TCK")


def prepare(url: str, pack: Path, instance: Path, cases: int, agents: int, items: int
            ) -> list[str]:
    """A database with the pack, `cases` running cases and one API token per agent."""
    config = Config.from_env(database_url=url, processes_dir=pack, instance_dir=instance,
                             data_dir=ROOT / "data")
    engine = Engine(config, database=Database(url), functions={})
    schema.upgrade(engine.db)
    tokens = []
    with engine.db.transaction() as s:
        for code in DEPARTMENTS:
            s.add(Department(code=code, name=code, name_en="", leader="", agent="",
                             position=0))
        s.flush()
        for n in range(agents):
            name = f"agent{n}"
            accounts.create_user(s, name, f"password-{name}", "agent",
                                 department=DEPARTMENTS[n % 2], now=engine.clock())
            tokens.append(accounts.issue_token(s, name))
    engine.load_processes(pack)
    for _ in range(cases):
        engine.start_case("bench_case", {"items": item_list(items)}, OFFICE)
    engine.db.dispose()
    return tokens


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(url: str, pack: Path, instance: Path, workers: int = 2) -> Iterator[tuple[str, int]]:
    """`zerorun serve` on a free port; yields its base URL and process id."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "ZERORUN_PROCESSES": str(pack),
           "ZERORUN_DATA": str(ROOT / "data"), "ZERORUN_INSTANCE": str(instance),
           "ZERORUN_SECRET_KEY": "bench"}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port),
         "--workers", str(workers)], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/api/v1/openapi.json", timeout=5):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("zerorun serve did not start") from None
                time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _backends(url: str) -> list[int]:
    """PostgreSQL server processes serving the bench database (same machine)."""
    if not url.startswith("postgresql"):
        return []
    from sqlalchemy import create_engine

    admin = create_engine(url)
    with admin.connect() as conn:
        pids = [int(p) for p in conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")).scalars()]
    admin.dispose()
    return pids


def drive(url: str, pack: Path, instance: Path, tokens: list[str], seconds: float,
          warmup: float) -> dict[str, float]:
    """Serve the database and run the agents against it; return the HTTP figures."""
    with server(url, pack, instance) as (base, pid):
        agents = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.web", base, str(seconds), str(warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert agents.stdin is not None and agents.stdout is not None  # noqa: S101
        agents.stdin.write(json.dumps(tokens) + "\n")
        agents.stdin.close()
        assert agents.stdout.readline().strip() == "measuring"  # noqa: S101
        watched = [pid, *_children(pid), *_backends(url)]
        before = {p: _cpu_ticks(p) for p in [*watched, agents.pid]}
        result = json.loads(agents.stdout.readline())
        spent = sum(_cpu_ticks(p) - before[p] for p in watched) / TICKS
        driving = (_cpu_ticks(agents.pid) - before[agents.pid]) / TICKS
        agents.wait()
    done = result["completions"]
    completes = sorted(result["complete_ms"])
    lists = sorted(result["list_ms"])
    return {
        "completions_per_s": done / result["seconds"],
        "p50_ms": statistics.median(completes) if completes else 0.0,
        "p95_ms": completes[int(len(completes) * 0.95)] if completes else 0.0,
        "list_p95_ms": lists[int(len(lists) * 0.95)] if lists else 0.0,
        "cpu_ms_per_completion": spent * 1000 / done if done else 0.0,
        "agents_cpu_ms_per_completion": driving * 1000 / done if done else 0.0,
        "conflicts": result["conflicts"], "errors": result["errors"],
    }


COUNTED_COMPLETIONS = 20


def statements_per_completion(url: str, pack: Path, instance: Path, tokens: list[str]
                              ) -> float:
    """SQL statements one API completion sends, its case cached (as in a warm worker), with
    the service's hooks as `zerorun serve` runs them. `tokens`: one agent per department."""
    from agency import service_engine
    from webapp import create_app

    config = Config.from_env(database_url=url, processes_dir=pack, instance_dir=instance,
                             data_dir=ROOT / "data")
    engine = service_engine(config, database=Database(url))
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": instance}})
    client = app.test_client()
    sent: list[str] = []
    event.listen(engine.db.engine, "before_cursor_execute",
                 lambda _c, _cu, statement, *_a: sent.append(statement))

    def first_task(query: str) -> tuple[dict[str, str], dict[str, Any]] | None:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            tasks = client.get(f"/api/v1/tasks?limit=1{query}", headers=headers).get_json()
            if tasks["tasks"]:
                return headers, tasks["tasks"][0]
        return None

    # Completions in cases this process holds in its cache count; a first completion in a
    # case fills the cache. What a completion sends depends on the step (new tasks, the
    # elements reached, a snapshot when due): the mean over COUNTED_COMPLETIONS steps.
    cached: list[int] = []
    counted: list[int] = []
    while len(counted) < COUNTED_COMPLETIONS:
        found = next((f for f in (first_task(f"&case_id={case_id}") for case_id in cached)
                      if f is not None), None)
        held = found is not None
        found = found or first_task("")
        assert found is not None  # noqa: S101
        headers, task = found
        client.get(f"/api/v1/tasks/{task['id']}", headers=headers)
        sent.clear()
        answer = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=headers,
                             json={"data": {"route": "fast"}, "version": task["version"]})
        assert answer.status_code == 200, answer.get_json()  # noqa: S101
        if held:
            counted.append(len(sent))
        else:
            cached.append(task["case_id"])
    engine.db.dispose()
    return round(statistics.mean(counted), 1)


# The agents' process ----------------------------------------------------------------


_connections = threading.local()


def _connection(base: str) -> tuple[http.client.HTTPConnection, bool]:
    """The agent thread's open connection (and True), or a new one (and False)."""
    connection: http.client.HTTPConnection | None = getattr(_connections, "open", None)
    if connection is not None:
        return connection, True
    address = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port,
                                            timeout=60)
    _connections.open = connection
    return connection, False


def _call(base: str, token: str, method: str, path: str, body: Any = None
          ) -> tuple[int, Any]:
    """One API call on the agent's own connection, kept open between calls (HTTP
    keep-alive) as a real client does; opened again when the server closed it."""
    data = json.dumps(body).encode() if body is not None else None
    while True:
        connection, reused = _connection(base)
        try:
            connection.request(method, path, body=data, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            connection.close()
            _connections.open = None
            if reused:  # the server closed the idle connection as the call left: anew
                continue
            raise
        if response.will_close:
            connection.close()
            _connections.open = None
        return response.status, json.loads(raw or b"{}")


def agents_main(base: str, seconds: float, warmup: float) -> None:
    """Run one thread per token until the time is up; print the figures as JSON."""
    tokens: list[str] = json.loads(sys.stdin.readline())
    start = time.monotonic()
    measure_from, measure_to = start + warmup, start + warmup + seconds
    lock = threading.Lock()
    figures: dict[str, Any] = {"completions": 0, "conflicts": 0, "errors": 0,
                               "complete_ms": [], "list_ms": []}

    def agent(token: str, seed: int) -> None:
        rng = random.Random(seed)
        while (now := time.monotonic()) < measure_to:
            counted = now >= measure_from
            t0 = time.perf_counter()
            status, page = _call(base, token, "GET", "/api/v1/tasks?limit=50")
            listed = (time.perf_counter() - t0) * 1000
            if status != 200 or not page["tasks"]:
                time.sleep(0.05)
                continue
            task = rng.choice(page["tasks"])
            status, detail = _call(base, token, "GET", f"/api/v1/tasks/{task['id']}")
            if status != 200:
                continue
            t0 = time.perf_counter()
            status, _ = _call(base, token, "POST", f"/api/v1/tasks/{task['id']}/complete",
                              {"data": {"route": rng.choice(("fast", "slow"))},
                               "version": detail["version"]})
            took = (time.perf_counter() - t0) * 1000
            if not counted or time.monotonic() > measure_to:
                continue
            with lock:
                figures["list_ms"].append(listed)
                if status == 200:
                    figures["completions"] += 1
                    figures["complete_ms"].append(took)
                elif status in (409, 404):
                    figures["conflicts"] += 1
                else:
                    figures["errors"] += 1

    threads = [threading.Thread(target=agent, args=(token, n)) for n, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    print("measuring", flush=True)  # noqa: T201
    for thread in threads:
        thread.join()
    figures["seconds"] = seconds
    print(json.dumps(figures), flush=True)  # noqa: T201


if __name__ == "__main__":
    agents_main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
