"""Moving a running case's workflow from one process version's specs to another's.

SpiffWorkflow aligns the task specs of two versions by BPMN id (`SpecDiff`). A case
may move when no task that already ran (completed) or is under way (started) lost
its element or had it changed, and no open task lost its element. The tasks are then
re-bound to the new specs; open tasks whose element changed, and waiting tasks whose
predicted path no longer exists, are re-predicted from the new diagram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.util.diff import SpecDiff
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.errors import EngineError
from engine.runtime.spiff import SERIALIZER, ProcessSpecs

# Attributes of a task spec that describe the element itself; the rest (lookup
# structures, the spec's position in the serialized graph) follow from these.
_IGNORED = frozenset({"lane"})
_DEFINITE = (TaskState.COMPLETED | TaskState.STARTED | TaskState.READY | TaskState.WAITING
             | TaskState.ERROR)


class MigrationRefused(EngineError):
    """A case cannot move to the chosen version; the reasons say which tasks stand in the way."""

    title = "Migration refused"
    status = 409

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message, reasons=reasons)
        self.reasons = reasons


@dataclass
class MigrationCheck:
    """Whether a case's workflow can move to other specs, and why not."""

    reasons: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.reasons


def _label(task: Task) -> str:
    spec = task.task_spec
    name = getattr(spec, "bpmn_name", None)
    ident = getattr(spec, "bpmn_id", None) or spec.name
    return f"{ident} ({name})" if name else str(ident)


def _state_word(task: Task) -> str:
    if task.state == TaskState.COMPLETED:
        return "completed"
    if task.state == TaskState.STARTED:
        return "under way"
    if task.state == TaskState.READY:
        return "open"
    if task.state == TaskState.WAITING:
        return "waiting"
    return TaskState.get_name(task.state).lower()


def _diffs(workflow: BpmnWorkflow, specs: ProcessSpecs
           ) -> list[tuple[Any, BpmnProcessSpec | None, SpecDiff | None]]:
    """(workflow or sub-workflow, its new spec, the diff) for the case and each sub-process."""
    found: list[tuple[Any, BpmnProcessSpec | None, SpecDiff | None]] = [
        (workflow, specs.process_spec,
         SpecDiff(SERIALIZER.registry, workflow.spec, specs.process_spec))]
    for sub in workflow.subprocesses.values():
        new = specs.subprocess_specs.get(sub.spec.name)
        found.append((sub, new, SpecDiff(SERIALIZER.registry, sub.spec, new)
                      if new is not None else None))
    return found


def check(workflow: BpmnWorkflow, specs: ProcessSpecs) -> MigrationCheck:
    """Which tasks of the case prevent it from moving to `specs` (none: it may move)."""
    result = MigrationCheck()
    for flow, new, diff in _diffs(workflow, specs):
        tasks = [t for t in flow.tasks.values() if t.state & _DEFINITE]
        if new is None or diff is None:
            if tasks:
                result.reasons.append(
                    f"the sub-process {flow.spec.name} is running and the new version no "
                    "longer calls it")
            continue
        changed = diff.changed
        for task in tasks:
            aligned = diff.alignment.get(task.task_spec)
            if aligned is None:
                result.reasons.append(f"{_state_word(task)} task {_label(task)} no longer "
                                      "exists in the new version")
                continue
            if task.state & (TaskState.COMPLETED | TaskState.STARTED | TaskState.ERROR):
                attrs = [a for a in changed.get(task.task_spec, []) if a not in _IGNORED]
                if attrs:
                    result.reasons.append(f"{_state_word(task)} task {_label(task)} changed "
                                          f"in the new version ({', '.join(sorted(attrs))})")
    # One reason per element is enough: multi-instance children repeat it.
    result.reasons = list(dict.fromkeys(result.reasons))
    return result


def migrate(workflow: BpmnWorkflow, specs: ProcessSpecs) -> None:
    """Re-bind a case's workflow to `specs` in place (raises MigrationRefused if unsafe).

    Call it with the case's task-id source and the event's time pinned, so the tasks
    it predicts get the same ids on every re-execution.
    """
    verdict = check(workflow, specs)
    if not verdict.safe:
        raise MigrationRefused("the case cannot move to this version: "
                               + "; ".join(verdict.reasons), verdict.reasons)
    plans = _diffs(workflow, specs)
    workflow.subprocess_specs = dict(specs.subprocess_specs)
    for flow, new, diff in plans:
        assert new is not None and diff is not None  # noqa: S101 (check() refused otherwise)
        changed = diff.changed
        removed = set(diff.removed)
        flow.spec = new
        stale: list[Task] = []
        for task in list(flow.tasks.values()):
            old_spec = task.task_spec
            aligned = diff.alignment.get(old_spec)
            if aligned is not None:
                task.task_spec = aligned
            if task.state & (TaskState.READY | TaskState.WAITING) and (
                    old_spec in changed or _predicts_stale(task, removed, changed)):
                stale.append(task)
        for task in stale:
            if task.id in flow.tasks:
                task.reset_branch(None)
        _drop_unbound(flow, new)
        if getattr(flow, "last_task", None) is not None and flow.last_task not in flow.tasks:
            flow.last_task = None


def _predicts_stale(task: Task, removed: set[Any], changed: dict[Any, Any]) -> bool:
    """Whether the predicted (not yet reached) tasks below `task` follow the old diagram."""
    for child in task.children:
        if child.state & TaskState.PREDICTED_MASK or child.state == TaskState.FUTURE:
            if child.task_spec in removed or child.task_spec in changed:
                return True
            if _predicts_stale(child, removed, changed):
                return True
    return False


def _drop_unbound(flow: Any, spec: BpmnProcessSpec) -> None:
    """Predicted tasks still bound to an element the new version removed are dropped."""
    names = set(spec.task_specs)
    for task in list(flow.tasks.values()):
        if task.id in flow.tasks and task.task_spec.name not in names:
            if task.state & _DEFINITE:
                raise MigrationRefused(f"task {_label(task)} has no element in the new "
                                       "version", [f"task {_label(task)} was removed"])
            task._drop_children(force=True)
            if task.parent is not None:
                task.parent._children.remove(task.id)
            flow.tasks.pop(task.id, None)
