"""Several app processes on one database: each keeps its own cache of live cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.casegen import human_task_count, item_list, write_pack
from engine.actors import Actor
from engine.cases import store
from engine.runtime import spiff
from engine.runtime.spiff import state_dict
from tests.conftest import EngineFactory

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
