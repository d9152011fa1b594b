"""Parallel gateways in a row: the loader refuses shapes whose predicted tasks explode."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.casegen import write_parallel_pack
from engine.actors import Actor
from engine.errors import InvalidProcess
from engine.pack.prediction import MAX_PREDICTED
from engine.store.models import CaseSnapshot
from tests.conftest import EngineFactory

OFFICE = Actor("office", "office", "leading_group_office")


def test_four_16_branch_parallel_gateways_in_a_row_are_refused_naming_the_gateway(
        sqlite_url: str, make_engine: EngineFactory, tmp_path: Path) -> None:
    pack = write_parallel_pack(tmp_path / "pack", rows=4, branches=16)
    engine = make_engine(sqlite_url, pack, load=False)
    began = time.perf_counter()
    with pytest.raises(InvalidProcess) as refused:
        engine.load_processes(pack)
    assert time.perf_counter() - began < 10  # decided from the diagram, nothing is run
    [problem] = refused.value.problems
    # The third split is the first from which too much is predicted (16 x 16 x ...).
    assert (problem.file, problem.element) == ("parallel_rows.bpmn", "r3_split")
    assert problem.line is not None
    assert f"at most {MAX_PREDICTED}" in problem.message
    assert "embedded sub-process" in problem.message


@pytest.mark.parametrize(("rows", "branches"), [(1, 16), (2, 8), (3, 4)])
def test_shapes_within_the_bound_load_start_and_verify(
        sqlite_url: str, make_engine: EngineFactory, tmp_path: Path, rows: int,
        branches: int) -> None:
    pack = write_parallel_pack(tmp_path / "pack", rows=rows, branches=branches)
    engine = make_engine(sqlite_url, pack)
    # the bench starts it by hand: it must be marked startable
    case = engine.start_case("parallel_rows", {}, OFFICE)
    with engine.db.reading() as s:
        snapshot = s.get(CaseSnapshot, case.id)
        assert snapshot is not None and len(snapshot.state) < 2_000_000
    while tasks := engine.list_tasks(case_id=case.id, limit=1):
        engine.complete_task(tasks[0].id, {"route": "fast"},
                             Actor("agent", "agent", tasks[0].department))
    assert engine.get_case(case.id).status == "completed"
    assert engine.verify_case(case.id).ok
