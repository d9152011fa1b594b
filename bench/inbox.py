"""The inbox with 10,000 open cases: the queries one inbox page makes, timed on SQLite;
then the auditors' case search, a process heatmap and the office's dashboard over the
same cases.

The task index is filled directly (cases of the real pack, each with three ready tasks
and ten finished ones, and the 40 to 120 elements each reached) so that only the pages'
queries are measured.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from agency import bootstrap, oversight, service_engine
from agency.reference import ReferenceData, reference_of
from agency.reports import CaseQuery, process_heatmap, search_cases
from engine.cases import Engine
from engine.config import Config
from engine.store.models import Case, CaseElement, HumanTask, ProcessVersion

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)


def fill(engine: Engine, cases: int, seed: int = 7) -> None:
    """Insert `cases` running cases of case_flow with their task index rows."""
    rng = random.Random(seed)
    items = list(ReferenceData.load(ROOT / "data").items.values())
    ref = reference_of(engine)
    with engine.db.transaction() as s:
        version_id = s.scalar(select(ProcessVersion.id).where(
            ProcessVersion.process_id == "case_flow"))
        # after the cases set-up already started (the service calendar)
        first = (s.scalar(select(func.max(Case.id))) or 0) + 1
        ids = range(first, first + cases)
        # Each case's data carries its project and its approval items, as a real case's
        # does (the dashboard reads the items' departments from it).
        chosen = {n: rng.sample(items, 4) for n in ids}
        s.execute(insert(Case), [{
            "id": n, "process_version_id": version_id, "process_id": "case_flow",
            "title": f"项目 {n}", "project_code": f"2026-640502-34-03-{n:06d}",
            "status": "running", "started_by": "office",
            "data": {"project": {"name": f"项目 {n}", "enterprise": f"企业 {n}",
                                 "code": f"2026-640502-34-03-{n:06d}"},
                     "items": [dict(i) for i in chosen[n]], "item_results": []},
            "started_at": NOW - timedelta(days=60), "updated_at": NOW,
        } for n in ids])
        rows: list[dict[str, Any]] = []
        for n in ids:
            item = chosen[n][0]
            for k, (spec, department, state) in enumerate(
                    [("prepare_materials", "approval_bureau", "ready"),
                     ("check_materials", item["department"], "ready"),
                     ("track_approval", item["department"], "ready")]
                    + [("handover_results", "approval_bureau", "completed")] * 10):
                rows.append({
                    "id": f"{n:08d}-{k:04d}-0000-0000-000000000000", "case_id": n,
                    "process_id": "stage_handling", "spec_name": spec, "title": spec,
                    "department": department, "state": state, "version": 1,
                    "item_code": item["code"], "item_name": item["name"],
                    "phase": str(item["phase"]), "stage": "handling",
                    "assignee": "agent_x" if rng.random() < 0.1 else None,
                    "due_at": (due := NOW + timedelta(hours=rng.randint(-240, 480))),
                    "created_at": (created := NOW - timedelta(hours=rng.randint(100, 2000))),
                    # as the service's task_indexed hook sets it on every indexed task
                    "warn_at": oversight.warn_moment(ref.calendar, ref.settings, created, due),
                    **({"completed_at": created + timedelta(hours=rng.randint(1, 99)),
                        "completed_by": "agent_y"} if state == "completed" else {})})
        for start in range(0, len(rows), 5000):
            s.execute(insert(HumanTask), rows[start:start + 5000])
    fill_elements(engine, version_id, ids, rng)


def fill_elements(engine: Engine, version_id: int, ids: range, rng: random.Random) -> None:
    """The elements each case reached (the heatmap's rows): a random share, 40 to 120, of
    the 181 elements of case_flow and the processes it calls, as each command writes them."""
    specs = engine._version_of(version_id).specs
    elements = sorted({(spec.name, task.bpmn_id) for spec in (specs.process_spec,
                                                              *specs.subprocess_specs.values())
                       for task in spec.task_specs.values() if getattr(task, "bpmn_id", None)})
    rows = [{"case_id": n, "process_id": pid, "bpmn_id": bpmn_id,
             "process_version_id": version_id}
            for n in ids for pid, bpmn_id in rng.sample(elements, rng.randint(40, 120))]
    with engine.db.transaction() as s:
        for start in range(0, len(rows), 10000):
            s.execute(insert(CaseElement), rows[start:start + 10000])


def inbox_page(engine: Engine, department: str, username: str, **filters: Any) -> None:
    """The queries the web inbox makes for one page."""
    query = {"department": department, "open_to": username, **filters}
    engine.count_tasks(**query)
    engine.list_tasks(**query, order="due", limit=25, offset=0)
    inbox_counts(engine, department, username)


def inbox_counts(engine: Engine, department: str, username: str) -> None:
    """The figures above an inbox page: its open, claimed and overdue tasks, the phases
    and items to filter by (from the task tally, and the overdue tasks' index)."""
    engine.task_counts(username, department=department, open_to=username)
    engine.task_phases_and_items(department)


def measure(directory: Path, cases: int = 10_000, repeat: int = 30) -> dict[str, float]:
    url = f"sqlite:///{directory / 'inbox.db'}"
    config = Config.from_env(database_url=url, instance_dir=directory,
                             processes_dir=ROOT / "processes", data_dir=ROOT / "data")
    engine = service_engine(config, clock_source=lambda: NOW)
    bootstrap.setup(engine, demo=False)
    fill(engine, cases)
    timings: dict[str, list[float]] = {"plain": [], "filtered": [], "overdue": [],
                                       "counts": []}
    for _ in range(repeat):
        for name, filters in (("plain", {}), ("filtered", {"phase": "1"}),
                              ("overdue", {"due_before": NOW})):
            began = time.perf_counter()
            inbox_page(engine, "approval_bureau", "agent_approval_bureau", **filters)
            timings[name].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        inbox_counts(engine, "approval_bureau", "agent_approval_bureau")
        timings["counts"].append((time.perf_counter() - began) * 1000)
    for name, page in (("audit_search", lambda: search_cases(engine, CaseQuery())),
                       ("audit_search_department", lambda: search_cases(
                           engine, CaseQuery(department="approval_bureau"))),
                       ("dashboard", lambda: oversight.figures(engine)),
                       ("heatmap", lambda: process_heatmap(engine, "case_flow", 1))):
        timings[name] = []
        for _ in range(3):
            began = time.perf_counter()
            page()
            timings[name].append((time.perf_counter() - began) * 1000)
    engine.db.dispose()
    return {name: statistics.median(values) for name, values in timings.items()}
