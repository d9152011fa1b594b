"""Statement budgets: how many SQL statements one API call sends, counted, not timed.

Round trips are what an API call costs beyond the engine's own work (on PostgreSQL each
one is a network exchange and a server wake-up). The counts are deterministic, so each
call has a stated budget and this test fails when a change adds round trips.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from agency import service_engine
from bench.casegen import item_list, write_pack
from engine import accounts
from engine.actors import Actor
from engine.cases import Engine
from engine.config import Config
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Department
from tests.conftest import ROOT
from webapp import create_app

OFFICE = Actor("office", "office", "leading_group_office")

# Statements sent by one call, its bearer token already checked once (it is cached briefly).
# SQLite counts its BEGIN statements; PostgreSQL's transaction control is not a statement.
BUDGET = {
    "sqlite": {
        # BEGIN, the dated tasks, and the undated ones because the dated did not fill the page
        # (this case's tasks have no due date; a full page of dated tasks is one statement).
        # One statement for both bands (a UNION) cost every first page a scan of the
        # department's undated tasks: 0.8 -> 13 ms at 10,000 cases.
        "list": 3,
        "read": 2,  # BEGIN, the task with its case (the workflow is in the process's cache)
        "claim": 5,  # BEGIN, the task with its case, task, case chain head, event
        # BEGIN, the task with the case's other open tasks and the case (one statement),
        # completed task, new tasks, elements reached (the heatmap's rows), case, event.
        "complete": 7,
    },
    # No BEGIN; claim and complete lock the case through the task, then read the task.
    "postgresql": {"list": 2, "read": 1, "claim": 5, "complete": 7},
}
# The app as `zerorun serve` runs it: the agency's hooks take part in every command. They
# add, to a completion, the active webhook subscriptions (a read). The office's warning
# levels are worked out from the case's open task rows the command holds (reading them
# flushed the command half way and wrote the case row twice: 10 statements), and a progress
# report completed by the command is found among the session's own rows.
SERVED_BUDGET = {
    "sqlite": {"list": 3, "read": 2, "claim": 6, "complete": 8},
    "postgresql": {"list": 2, "read": 1, "claim": 6, "complete": 8},
}
# Pooled connections one call takes (each is a reset on return, at worst a ping).
CHECKOUTS = 1


@dataclass
class Setup:
    app: Flask
    engine: Engine
    token: str
    statements: list[str]
    checkouts: list[object]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        "sqlite-served",
                        pytest.param("postgres-served", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    served = request.param.endswith("-served")
    if request.param.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'budget.db'}"
        yield from _setup(url, tmp_path, served)
    else:
        from tests.conftest import _postgres_database

        for url in _postgres_database():
            yield from _setup(url, tmp_path, served)


def _setup(url: str, tmp_path: Path, served: bool = False) -> Iterator[Setup]:
    pack = write_pack(tmp_path / "pack", blocks=3, items=2)
    config = Config.from_env(database_url=url, processes_dir=pack, instance_dir=tmp_path,
                             data_dir=ROOT / "data")
    engine = (service_engine(config, database=Database(url)) if served
              else Engine(config, database=Database(url), functions={}))
    engine.extensions["served"] = served
    schema.upgrade(engine.db)
    with engine.db.transaction() as s:
        for code in ("dept_a", "dept_b"):
            s.add(Department(code=code, name=code, name_en="", leader="", agent="",
                             position=0))
        accounts.create_user(s, "agent_a", "password-agent-a", "agent", department="dept_a",
                             now=engine.clock())
        token = accounts.issue_token(s, "agent_a")
    engine.load_processes(pack)
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": tmp_path}})
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    checkouts: list[object] = []

    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        checkouts.append(record)

    event.listen(engine.db.engine, "before_cursor_execute", count)
    event.listen(engine.db.engine.pool, "checkout", checkout)
    yield Setup(app, engine, token, statements, checkouts)
    event.remove(engine.db.engine, "before_cursor_execute", count)
    event.remove(engine.db.engine.pool, "checkout", checkout)
    engine.db.dispose()


@contextmanager
def counted(setup: Setup) -> Iterator[list[str]]:
    """The statements sent inside the block."""
    setup.statements.clear()
    setup.checkouts.clear()
    sent: list[str] = []
    yield sent
    sent.extend(setup.statements)
    assert len(setup.checkouts) <= CHECKOUTS, f"{len(setup.checkouts)} pooled connections"


def test_each_api_call_stays_within_its_statement_budget(setup: Setup) -> None:
    client = setup.app.test_client()
    headers = {"Authorization": f"Bearer {setup.token}"}
    setup.engine.start_case("bench_case", {"items": item_list(2)}, OFFICE)
    assert client.get("/api/v1/tasks", headers=headers).status_code == 200  # token now known
    sent: dict[str, list[str]] = {}
    with counted(setup) as sent["list"]:
        page = client.get("/api/v1/tasks", headers=headers).get_json()
    [task] = page["tasks"]
    with counted(setup) as sent["read"]:
        detail = client.get(f"/api/v1/tasks/{task['id']}", headers=headers).get_json()
    assert detail["id"] == task["id"]
    with counted(setup) as sent["claim"]:
        claimed = client.post(f"/api/v1/tasks/{task['id']}/claim", headers=headers,
                              json={"version": task["version"]}).get_json()
    assert claimed["assignee"] == "agent_a"
    with counted(setup) as sent["complete"]:
        done = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=headers,
                           json={"data": {"route": "fast"}, "version": claimed["version"]})
    assert done.status_code == 200, done.get_json()
    answer = done.get_json()
    assert answer["task"]["state"] == "completed"
    # The answer shows the case after the command: the next tasks are open.
    assert sorted(t["spec_name"] for t in answer["case"]["open_tasks"]) == \
        ["b1_par1", "b1_par2", "b1_par3"]
    counts = {name: len(statements) for name, statements in sent.items()}
    budgets = SERVED_BUDGET if setup.engine.extensions["served"] else BUDGET
    budget = budgets[setup.engine.db.engine.dialect.name]
    over = {name: (counts[name], budget[name]) for name in budget if counts[name] > budget[name]}
    assert not over, "statements over budget (sent, budget): " + repr(over) + "\n" + "\n".join(
        f"{name}: {s[:90]}" for name in over for s in sent[name])
