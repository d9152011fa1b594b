"""What parallel branches hand on: the values each changed, never a stale copy.

Each branch of a parallel (or inclusive) split starts with a copy of the data at the
split. SpiffWorkflow's join lays the whole copy of every branch over the next one, so
a branch that arrives last writes back, unchanged, values that another branch changed
meanwhile (a project terminated in one branch reads as running again after the join).

Cases started since `CHANGES` was introduced follow these rules instead:

- A branch's writes are the values it changed against the data at the split (compared
  key by key, into nested objects): a key it added, a value it replaced.
- At the join the data at the split is taken, and the writes of every branch are laid
  over it in the order the branches arrived; a key no branch changed keeps its value
  from the split. A key that every branch removed is removed; a key one branch removed
  and another kept is kept.
- Two branches writing different values to one key: the branch that arrived later wins,
  and the join records the key (`merge_conflicts` in the join's internal data).
- The case's own data (what the case page and the reports read) takes, after each
  command, the changes of the top-level steps completed by that command, in the order
  they completed; a long-running branch's copy never overwrites it.

Older cases keep the rules they were recorded under (the whole copies, last one wins),
so every recorded case re-executes exactly as it ran: the mode is fixed when a case
starts (`case_started` records it) and kept in the root task's internal data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

MODE_KEY = "branch_data"
CHANGES = "changes"

_MISSING = object()

Path = tuple[str, ...]


def start_mode(workflow: BpmnWorkflow, mode: str | None) -> None:
    """Fix how the case's branches merge, as its first event records it."""
    if mode == CHANGES:
        workflow.task_tree.internal_data[MODE_KEY] = CHANGES


_STAMP = "done_seq"


def stamp_completion(task: Task) -> None:
    """Number a step of a case that merges changes as it completes, in the order steps
    complete (the clock is pinned to the command's time, so times tie within a command);
    the numbers are kept in the tasks' internal data, so a restored case goes on counting."""
    top = task.workflow.top_workflow
    root = top.task_tree
    if root is None or root.internal_data.get(MODE_KEY) != CHANGES:
        return
    number = int(root.internal_data.get(_STAMP, 0)) + 1
    root.internal_data[_STAMP] = number
    task.internal_data[_STAMP] = number


def completed_order(task: Task) -> tuple[int, float]:
    """When a step completed, for ordering: its completion number, else its time."""
    return int(task.internal_data.get(_STAMP, 0)), task.last_state_change


def merges_changes(workflow: Any) -> bool:
    """Whether the case a workflow (or one of its sub-processes) belongs to merges changes."""
    root = workflow.top_workflow.task_tree
    return bool(root is not None and root.internal_data.get(MODE_KEY) == CHANGES)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def changes(base: Mapping[str, Any], new: Mapping[str, Any], path: Path = ()
            ) -> Iterator[tuple[Path, Any]]:
    """The values `new` added or replaced against `base`, by path (nested objects compared
    key by key)."""
    for key, value in new.items():
        old = base.get(key, _MISSING)
        if isinstance(old, dict) and isinstance(value, dict):
            yield from changes(old, value, (*path, key))
        elif old is _MISSING or not _same(old, value):
            yield (*path, key), value


def lay_over(target: dict[str, Any], path: Path, value: Any) -> None:
    """Write `value` at `path` in `target`, making the objects on the way where missing."""
    node = target
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = copy.deepcopy(value)


def merge_branches(base: Mapping[str, Any], branches: Iterable[Mapping[str, Any]]
                   ) -> tuple[dict[str, Any], list[str]]:
    """The data after a join: `base` (the data at the split) with each branch's changes laid
    over it in arrival order; and the keys two branches wrote differently."""
    branches = list(branches)
    merged = copy.deepcopy(dict(base))
    for key in list(merged):
        if branches and all(key not in branch for branch in branches):
            del merged[key]
    written: dict[Path, Any] = {}
    conflicts: list[str] = []
    for branch in branches:
        for path, value in changes(base, branch):
            earlier = _written_over(written, path)
            if earlier is not _MISSING and not _same(earlier, value):
                name = ".".join(path)
                if name not in conflicts:
                    conflicts.append(name)
            written[path] = value
            lay_over(merged, path, value)
    return merged, conflicts


def _written_over(written: Mapping[Path, Any], path: Path) -> Any:
    """What an earlier branch wrote at `path`, or at a path above or below it."""
    if path in written:
        return written[path]
    for other, value in written.items():
        if other[:len(path)] == path or path[:len(other)] == other:
            return value
    return _MISSING


def split_of(tasks: list[Task]) -> Task | None:
    """The nearest task all of `tasks` descend from (the split their branches started at)."""
    if not tasks:
        return None
    line: list[Task] = []
    node = tasks[0].parent
    while node is not None:
        line.append(node)
        node = node.parent
    depth = {id(task): n for n, task in enumerate(line)}
    deepest = 0
    for task in tasks[1:]:
        node = task.parent
        while node is not None and id(node) not in depth:
            node = node.parent
        if node is None:
            return None
        deepest = max(deepest, depth[id(node)])
    return line[deepest] if line else None


def join_data(join_task: Task, arrived: list[Task]) -> dict[str, Any]:
    """The data a join hands on: `arrived` are the join's instances (one per branch, the
    last one `join_task` itself); each instance's parent ends a branch, and the branches
    arrived when those ended (a join's waiting instances are cancelled and replaced as
    branches arrive, so their own times do not tell)."""
    ends = sorted((task.parent for task in arrived if task.parent is not None),
                  key=completed_order)
    split = split_of(ends)
    base = split.data if split is not None else {}
    merged, conflicts = merge_branches(base, (end.data for end in ends))
    if conflicts:
        join_task.internal_data["merge_conflicts"] = conflicts
    # Keys in the order a restored task has them (its parent's keys first, then its own):
    # a snapshot stores a task's data as changes from its parent's.
    own = join_task.parent.data if join_task.parent is not None else {}
    ordered = {key: merged[key] for key in own if key in merged}
    ordered.update((key, value) for key, value in merged.items() if key not in ordered)
    return ordered


# The case's data -------------------------------------------------------------------------

_SEEN_ATTR = "_zerorun_steps_seen"


def note_steps_seen(workflow: BpmnWorkflow) -> None:
    """Take every step completed so far as already in the case's data (a workflow restored
    or caught up: the commands that ran those steps stored their changes)."""
    setattr(workflow, _SEEN_ATTR, {
        task.id for flow in (workflow, *workflow.subprocesses.values())
        for task in flow.tasks.values() if task.state == TaskState.COMPLETED})


def case_changes(previous: Mapping[str, Any], workflow: BpmnWorkflow,
                 plain: Callable[[Any], Any], shared: Iterable[Any] = ()) -> dict[str, Any]:
    """The case's data after a command: `previous` with the changes of the steps of the main
    process the command completed, in the order they completed (`shared`: the embedded
    sub-processes whose steps share its data; `plain` turns a value into what the case's
    data can store)."""
    seen: set[Any] | None = getattr(workflow, _SEEN_ATTR, None)
    if seen is None:
        seen = set()
        setattr(workflow, _SEEN_ATTR, seen)
    done = [task for flow in (workflow, *shared) for task in flow.tasks.values()
            if task.state == TaskState.COMPLETED and task.id not in seen]
    written: list[tuple[Path, Any]] = []
    for task in sorted(done, key=completed_order):
        seen.add(task.id)
        # A multi-instance activity's instances work on their own element (their data
        # reaches the case through the activity's output when it completes); their
        # parent's data keeps changing as they finish, so it is no base to compare with.
        if task.parent is not None and not isinstance(task.parent.task_spec, LoopTask):
            written.extend(changes(task.parent.data, task.data))
    if not written:
        return dict(previous)
    data = copy.deepcopy(dict(previous))
    for path, value in written:
        lay_over(data, path, plain(value))
    return data
