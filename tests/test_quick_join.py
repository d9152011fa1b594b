"""The engine's parallel-gateway join (engine/runtime/spiff.py `_QuickJoin`) decides exactly as
SpiffWorkflow's own: the same task tree, task ids and data after every completion."""

from __future__ import annotations

from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from bench.casegen import item_list, write_pack, write_parallel_pack
from engine.runtime import expressions
from engine.runtime.spiff import (
    IdSource,
    ProcessSpecs,
    _QuickJoin,
    case_namespace,
    dump_specs,
    load_specs,
    new_workflow,
    state_dict,
    task_ids,
)


def _library_specs(pack: Path, process: str) -> ProcessSpecs:
    parser = SpiffBpmnParser()
    parser.add_bpmn_files([str(path) for path in sorted(pack.glob("*.bpmn"))])
    return ProcessSpecs(parser.get_spec(process), parser.get_subprocess_specs(process))


def _without_times(value: object) -> object:
    """The state without the wall-clock moment of each state change."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "last_state_change"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _run(specs: ProcessSpecs, data: dict[str, object]) -> list[object]:
    """Complete every ready task, first in order, recording the state after each step."""
    ids = IdSource(case_namespace(7))
    engine = expressions.SafeScriptEngine(functions={})
    states: list[object] = []
    with task_ids(ids):
        workflow = new_workflow(specs, engine)
        workflow.task_tree.data.update(data)
        workflow.do_engine_steps()
        n = 0
        while ready := workflow.get_tasks(state=TaskState.READY, manual=True):
            ready[n % len(ready)].data.update({"route": "fast" if n % 3 else "slow"})
            ready[n % len(ready)].run()
            workflow.do_engine_steps()
            states.append(_without_times(state_dict(workflow)))
            n += 1
    assert workflow.completed
    return states


@pytest.mark.parametrize("shape", ["blocks", "parallel_rows"])
def test_quick_join_gives_the_library_tree(tmp_path: Path, shape: str) -> None:
    pack = write_pack(tmp_path / "pack", blocks=4, items=3)
    process, data = "bench_case", {"items": item_list(3)}
    if shape == "parallel_rows":
        pack = write_parallel_pack(pack, rows=2, branches=4)
        process, data = "parallel_rows", {}
    library = _library_specs(pack, process)
    quick = load_specs(dump_specs(library))
    joins = [s for s in quick.process_spec.task_specs.values() if isinstance(s, ParallelGateway)]
    assert joins and all(isinstance(s, _QuickJoin) for s in joins)
    # The library's classes are untouched (the raw benchmark runs in the same process).
    assert not any(isinstance(s, _QuickJoin) for s in library.process_spec.task_specs.values())
    assert _run(quick, data) == _run(library, data)
