"""An app over the real process pack, with a few accounts, for the web workspace tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from agency import bootstrap, service_engine
from engine.actors import Actor
from engine.cases import Engine, TaskView
from engine.config import Config
from engine.runtime.clock import MovableClock
from tests import webhelpers
from tests.conftest import ROOT
from tests.service import DEFAULT_DATA, KEY_PROJECT, OFFICE, unused_code
from tests.webhelpers import create_accounts, csrf_of
from webapp import create_app

PASSWORD = "workspace-pass-1"
USERS = [
    ("agent_approval_bureau", "agent", "approval_bureau"),
    ("agent2_approval_bureau", "agent", "approval_bureau"),
    ("leader_approval_bureau", "leader", "approval_bureau"),
    ("agent_housing_construction", "agent", "housing_construction"),
    ("agent_drc", "agent", "drc"),
    ("leader_drc", "leader", "drc"),
    ("agent_water", "agent", "water"),
    ("office", "office", "leading_group_office"),
    ("admin", "admin", None),
    ("auditor", "auditor", None),
]


@dataclass
class Workspace:
    """The app, its engine and clock."""

    app: Flask
    engine: Engine
    clock: MovableClock

    def start(self, **project: Any) -> int:
        return self.engine.start_case(
            "case_flow", {"project": unused_code(self.engine, {**KEY_PROJECT, **project})},
            OFFICE).id

    def ready(self, case_id: int, spec_name: str | None = None) -> list[TaskView]:
        return [t for t in self.engine.list_tasks(case_id=case_id, limit=500)
                if spec_name is None or t.spec_name == spec_name]

    def complete(self, case_id: int, spec_name: str, **data: Any) -> TaskView:
        [task] = self.ready(case_id, spec_name)[:1]
        submitted = {**copy.deepcopy(DEFAULT_DATA.get(spec_name, {})), **data}
        if spec_name == "select_items" and "selected_items" not in submitted:
            submitted["selected_items"] = self.engine.get_case(case_id).data["selected_items"]
        self.engine.complete_task(task.id, submitted,
                                  Actor("agent", "agent", task.department), task.version)
        return task

    def to_phase_one(self, case_id: int) -> None:
        """Take a new case through the item list, material list, notice and dispatch."""
        for spec in ("select_items", "review_material_list", "one_time_notice", "dispatch",
                     "confirm_project_code"):
            self.complete(case_id, spec)


def make_workspace(tmp_path: Path, clock: MovableClock) -> Workspace:
    url = f"sqlite:///{tmp_path / 'workspace.db'}"
    config = Config.from_env(database_url=url, processes_dir=ROOT / "processes",
                             data_dir=ROOT / "data", instance_dir=tmp_path)
    engine = service_engine(config, clock_source=clock)
    bootstrap.setup(engine, demo=False, calendar=False)  # no case but the tests' own
    create_accounts(engine, USERS, named=True, password=PASSWORD)
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": tmp_path}})
    return Workspace(app, engine, clock)


def logged_in(app: Flask, username: str) -> FlaskClient:
    client: FlaskClient = webhelpers.logged_in(app, username, PASSWORD)
    return client


def token(client: FlaskClient) -> str:
    return csrf_of(client.get("/").get_data(as_text=True))
