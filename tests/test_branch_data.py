"""Parallel branches hand on what they changed: an older copy never overwrites a newer value.

The pack `fixtures/branches`: after `init` (status "open", note "start", project P with no
code) three branches run side by side: `task_a` (dept_a) may set status, note, a and
project; `task_b` (dept_b) note, b and project; `parts_c` is a multi-instance call
activity over two parts, each a sub-process whose own two branches (`part_x`, `part_y`)
join before a summary. The join leads to `review`, so the case still runs when the
tests read its data.
"""

from __future__ import annotations

import itertools
import shutil
from typing import Any

import pytest

from engine.actors import Actor
from engine.runtime import branch_data
from tests.conftest import FIXTURES

PACK = FIXTURES / "branches"
LEGACY = FIXTURES / "branches_recorded" / "legacy.db"
OFFICE = Actor("office", "office", "leading_group_office")
AGENT_A = Actor("agent_a", "agent", "dept_a")
AGENT_B = Actor("agent_b", "agent", "dept_b")

A = {"a": 1, "status": "stopped", "note": "from a", "project": {"name": "P2", "code": ""}}
B = {"b": 2, "note": "from b", "project": {"name": "P", "code": "C-1"}}


def _ready(engine: Any, case_id: int, spec: str) -> list[Any]:
    return [t for t in engine.list_tasks(case_id=case_id) if t.spec_name == spec]


def _do(engine: Any, case_id: int, step: str, part_order: tuple[str, str]) -> None:
    """Run one branch to its end: a, b, or c (both parts, each in `part_order`)."""
    if step == "a":
        [task] = _ready(engine, case_id, "task_a")
        engine.complete_task(task.id, A, AGENT_A)
    elif step == "b":
        [task] = _ready(engine, case_id, "task_b")
        engine.complete_task(task.id, B, AGENT_B)
    else:
        for spec in part_order:
            for task in _ready(engine, case_id, spec):
                value = {"part_x": {"x": 10, "shared": "x"},
                         "part_y": {"y": 20, "shared": "y"}}[spec]
                actor = AGENT_A if spec == "part_x" else AGENT_B
                engine.complete_task(task.id, value, actor)


ORDERS = list(itertools.permutations("abc"))


@pytest.mark.parametrize("part_order", [("part_x", "part_y"), ("part_y", "part_x")],
                         ids=["x-first", "y-first"])
@pytest.mark.parametrize("order", ORDERS, ids=["".join(o) for o in ORDERS])
def test_every_arrival_order_keeps_every_branch_change(make_engine, db_url, clock, order,
                                                       part_order):
    engine = make_engine(db_url, PACK)
    case = engine.start_case("branches", {}, OFFICE)
    assert engine.get_case(case.id).data["status"] == "open"
    done: set[str] = set()
    for step in order:
        clock.advance(minutes=5)
        _do(engine, case.id, step, part_order)
        done.add(step)
        data = engine.get_case(case.id).data
        # What a finished branch wrote is on the case at once and stays there while the
        # others, holding older copies, run on and arrive.
        if "a" in done:
            assert (data["status"], data["a"], data["project"]["name"]) == ("stopped", 1, "P2")
        else:
            assert data["status"] == "open"
        if "b" in done:
            assert (data["b"], data["project"]["code"]) == (2, "C-1")
        else:
            assert data["project"]["code"] == ""
    [review] = engine.list_tasks(case_id=case.id)
    assert review.spec_name == "review"
    data = engine.get_case(case.id).data
    assert data["project"] == {"name": "P2", "code": "C-1"}
    assert (data["status"], data["a"], data["b"]) == ("stopped", 1, 2)
    # a and b both wrote `note`: the branch that arrived later wins.
    later = max("ab", key=order.index)
    assert data["note"] == f"from {later}"
    # Each part's own branches joined the same way; both wrote `shared`, the later wins.
    # The parts started before a (or b) arrived kept the status they were given.
    shared = "y" if part_order[-1] == "part_y" else "x"
    assert [(r["part"], r["x"], r["y"], r["shared"]) for r in data["part_results"]] == [
        ("x", 10, 20, shared), ("y", 10, 20, shared)]
    assert {r["status"] for r in data["part_results"]} == {"open"}
    assert engine.verify_case(case.id).ok
    engine.complete_task(review.id, {}, AGENT_A)
    final = engine.get_case(case.id)
    assert final.status == "completed"
    assert final.data["status"] == "stopped" and final.data["project"]["code"] == "C-1"
    assert engine.verify_case(case.id).ok


def test_the_join_records_a_key_two_branches_wrote_differently(make_engine, db_url, clock):
    engine = make_engine(db_url, PACK)
    case = engine.start_case("branches", {}, OFFICE)
    for step in "bac":
        clock.advance(minutes=5)
        _do(engine, case.id, step, ("part_x", "part_y"))
    workflow = engine.replay(case.id)
    [join] = [t for t in workflow.tasks.values() if t.task_spec.name == "join"
              and t.internal_data.get("merge_conflicts")]
    assert join.internal_data["merge_conflicts"] == ["note"]
    assert join.data["note"] == "from a"


def test_a_key_every_branch_removed_is_removed_one_kept_is_kept():
    base = {"keep": 1, "gone": 2, "half": 3, "deep": {"x": 1, "y": 2}}
    merged, conflicts = branch_data.merge_branches(base, [
        {"keep": 1, "deep": {"x": 1, "y": 5}},
        {"keep": 1, "half": 3, "deep": {"x": 9, "y": 2}, "new": [1]},
    ])
    assert merged == {"keep": 1, "half": 3, "deep": {"x": 9, "y": 5}, "new": [1]}
    assert conflicts == []
    # A value replaced by one of another type counts as a change (True is not 1).
    merged, _ = branch_data.merge_branches({"v": 1}, [{"v": True}, {"v": 1}])
    assert merged["v"] is True


# Recorded by main before this change (tests/fixtures/branches_recorded/legacy.db): case id ->
# (branch order, status, what the case's data showed). The old rules laid every branch's
# whole copy over the case's data, so finished branches' changes read as lost.
RECORDED = {1: ("abc", "running", "open", "start", ""),
            2: ("cab", "running", "open", "from b", "C-1"),
            3: ("acb", "completed", "open", "from b", "C-1"),
            4: ("ab", "running", "open", "start", "")}


def test_cases_recorded_before_keep_their_rules_verify_and_run_on(make_engine, tmp_path):
    """Cases recorded by the engine before this change re-execute under the rules they ran
    under (their events name none), verify, and go on running under them."""
    db = tmp_path / "recorded.db"
    shutil.copy(LEGACY, db)
    engine = make_engine(f"sqlite:///{db}", PACK)
    for case_id, (_, status, state, note, code) in RECORDED.items():
        case = engine.get_case(case_id)
        assert (case.status, case.data["status"], case.data["note"],
                case.data["project"]["code"]) == (status, state, note, code)
        assert engine.verify_case(case_id).ok
        assert not branch_data.merges_changes(engine.replay(case_id))
    _do(engine, 4, "c", ("part_x", "part_y"))  # the running case finishes its last branch
    [review] = engine.list_tasks(case_id=4)
    assert review.spec_name == "review"
    assert engine.verify_case(4).ok
    started = engine.start_case("branches", {}, OFFICE)  # a new case takes the new rules
    assert branch_data.merges_changes(engine.replay(started.id))
