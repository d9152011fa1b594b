"""What-if replay: recorded cases of the real pack re-executed against a draft, timed.

Cases of phase_2 (the construction-engineering phase of the pack: a script, a gateway, a
review task, a called item process per item with its four stages) are recorded through the
engine's commands, each driven a different number of steps (some wait at the review, some
are in their items' handling, some skipped the phase and completed). Then the worker's job
replays them all against two drafts: one that changes only a task's name (every case runs
identically: both executions of every case run to the end, the most work) and one whose
gateway condition sends every case with items the other way (cases diverge at their first
event; running ones are still re-executed to their end for the migration check). One
process replays, as one worker does. Wall and CPU time are both reported: on a machine
shared with other work the wall time measures the neighbours as much as the replay.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from agency import bootstrap, service_engine
from engine.actors import SYSTEM, Actor
from engine.cases import Engine
from engine.config import Config
from engine.pack import whatif
from engine.pack.library import Library
from engine.runtime.clock import MovableClock

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Actor("admin", "admin")
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"

# What each step submits (the pack's forms).
STEP_DATA: dict[str, dict[str, Any]] = {
    "confirm_planning_conditions": {"conditions_confirmed": True},
    "prepare_materials": {"prepared_materials": ["application_form", "business_license"],
                          "forms_filled": True},
    "check_materials": {"decision": "accept"},
    "track_approval": {"progress": "approved", "approval_no": "中审批〔2026〕1号",
                       "approved_date": "2026-03-20"},
    "handover_results": {"handed_documents": ["批准文件"], "handed_to": "张伟",
                         "handed_date": "2026-03-21", "handover_method": "visit"},
}


def record(engine: Engine, clock: MovableClock, cases: int) -> list[int]:
    """Start and drive `cases` phase_2 cases; each completes 0 to 6 steps (or skips)."""
    item = engine.functions["catalogue_item"]
    ids = []
    for n in range(cases):
        items = [] if n % 7 == 6 else [item("design_scheme_review")] + (
            [item("construction_planning_permit")] if n % 2 else [])
        data = {"items": items, "terminated": False, "item_results": [],
                "completed_phases": [],
                "project": {"name": f"试演测试项目 {n}", "code": f"2026-BENCH-{n:06d}"}}
        case = engine.start_case("phase_2", data, SYSTEM)
        ids.append(case.id)
        for _ in range(n % 7):
            ready = [t for t in engine.list_tasks(case_id=case.id)
                     if t.spec_name in STEP_DATA]
            if not ready:
                break
            clock.advance(hours=2)
            engine.complete_task(ready[0].id, STEP_DATA[ready[0].spec_name], SYSTEM)
    return ids


def drafts(engine: Engine) -> dict[str, int]:
    """Two drafts of phase_2: a renamed task (identical runs) and a changed gateway."""
    source = (ROOT / "processes" / "phase_2.bpmn").read_bytes()
    library = Library(engine)
    made = {}
    for name in ("renamed", "gateway"):
        root = etree.fromstring(source)
        if name == "renamed":
            root.find(f".//{B}userTask[@id='confirm_planning_conditions']").set(
                "name", "核实规划条件")
        else:
            root.find(f".//{B}sequenceFlow[@id='flow_has_items_to_confirm_planning_conditions']"
                      f"/{B}conditionExpression").text = "len(phase_items) > 99"
        library.save("phase_2.bpmn", etree.tostring(root, xml_declaration=True,
                                                    encoding="UTF-8"), ADMIN, name)
        made[name] = library.process("phase_2").versions[0].id
    return made


def measure(directory: Path, cases: int = 1000) -> dict[str, Any]:
    url = f"sqlite:///{directory / 'whatif.db'}"
    config = Config.from_env(database_url=url, instance_dir=directory,
                             processes_dir=ROOT / "processes", data_dir=ROOT / "data")
    clock = MovableClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    engine = service_engine(config, clock_source=clock)
    bootstrap.setup(engine, demo=False, calendar=False)
    ids = record(engine, clock, cases)
    events = sum(len(engine.case_events(case_id)) for case_id in ids)
    figures: dict[str, Any] = {"cases": len(ids), "events": events}
    for name, draft in drafts(engine).items():
        run_id = whatif.start_run(engine, draft, ids, ADMIN)
        began, cpu = time.perf_counter(), time.process_time()
        while whatif.work(engine, "bench", seconds=5.0)[1]:
            pass
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        run = whatif.run_view(engine, run_id)
        figures[name] = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                         "cases_per_s": round(len(ids) / seconds, 1),
                         "cases_per_cpu_s": round(len(ids) / cpu, 1),
                         "identical": len(run.of("identical")),
                         "diverged": len(run.of("diverged")),
                         "failed": len(run.of("failed"))}
    engine.db.dispose()
    return figures


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
