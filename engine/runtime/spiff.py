"""The engine's use of SpiffWorkflow: specs, snapshots without specs, deterministic task ids."""

from __future__ import annotations

import contextlib
import contextvars
import json
import uuid
import zlib
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import SpiffWorkflow.task as _spiff_task
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnWorkflowConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import (
    ParallelMultiInstanceTask,
    SequentialMultiInstanceTask,
)
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.util.task import BpmnTaskFilter
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.spiff.serializer.task_spec import SpiffBpmnTaskConverter
from SpiffWorkflow.spiff.specs.defaults import NoneTask
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.deep_merge import DeepMerge
from SpiffWorkflow.util.task import TaskState

from engine.runtime import branch_data

# Task ids ---------------------------------------------------------------------------
# SpiffWorkflow gives each task a random uuid4. The engine rebuilds a case by
# re-executing its events, and events name tasks by id, so ids must come out the same
# on every execution: inside a case they are derived from the case's namespace and a
# counter that is saved with every snapshot.


class IdSource:
    """Deterministic task ids for one case: uuid5(namespace, counter)."""

    def __init__(self, namespace: UUID, counter: int = 0) -> None:
        self.namespace = namespace
        self.counter = counter

    def __call__(self) -> UUID:
        self.counter += 1
        return uuid.uuid5(self.namespace, str(self.counter))


_id_source: contextvars.ContextVar[IdSource | None] = contextvars.ContextVar(
    "zerorun_id_source", default=None)


def _next_task_id() -> UUID:
    source = _id_source.get()
    return source() if source is not None else uuid.uuid4()


_spiff_task.uuid4 = _next_task_id

# Completions numbered in the order they happen, for the cases whose branches hand on their
# changes (engine/runtime/branch_data.py): times tie within a command, numbers do not.
_set_state = _spiff_task.Task._set_state


def _set_state_numbered(self: Task, value: int) -> None:
    completes = value == TaskState.COMPLETED and self._state != TaskState.COMPLETED
    _set_state(self, value)
    if completes:
        branch_data.stamp_completion(self)


_spiff_task.Task._set_state = _set_state_numbered


@contextlib.contextmanager
def task_ids(source: IdSource) -> Iterator[IdSource]:
    """Make every task created inside the block take its id from `source`."""
    token = _id_source.set(source)
    try:
        yield source
    finally:
        _id_source.reset(token)


def case_namespace(case_id: int) -> UUID:
    """The uuid namespace of a case's task ids."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"zerorun:case:{case_id}")


# Specs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSpecs:
    """A process spec and the specs of every process it calls: one stored version."""

    process_spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]


_INDEXED_QUERIES = frozenset({"state", "manual", "spec_name", "lane"})


class TooManyInstances(WorkflowTaskException):
    """A multi-instance activity would create more instances than the engine allows."""


def _instances_wanted(spec: Any, my_task: Task) -> int | None:
    """How many instances a multi-instance activity is about to create (None: unknown)."""
    if spec.data_input is not None:
        if not spec.data_input.exists(my_task):
            return None
        items = spec.data_input.get(my_task)
        return len(items) if isinstance(items, Sized) else None
    if spec.cardinality is None:
        return None
    wanted = my_task.workflow.script_engine.evaluate(my_task, spec.cardinality)
    return wanted if isinstance(wanted, int) else None


def _bounded(create: Any) -> Any:
    """Refuse a multi-instance activity above its workflow's bound before its first
    instance exists (twenty thousand tasks from one diagram would stall the service)."""

    def bounded_create(self: Any, my_task: Task) -> Any:
        bound = getattr(my_task.workflow.top_workflow, "max_instances", None)
        if bound is not None and not my_task.internal_data.get("merged") \
                and not any(True for _ in self._instances(my_task)):
            wanted = _instances_wanted(self, my_task)
            if wanted is not None and wanted > bound:
                raise TooManyInstances(
                    f"{self.bpmn_name or self.bpmn_id} would create {wanted} instances; "
                    f"at most {bound} are allowed (ZERORUN_MAX_INSTANCES)", my_task)
        return create(self, my_task)

    return bounded_create


# The two places where SpiffWorkflow creates instances, once the activity has its data.
ParallelMultiInstanceTask.create_children = _bounded(ParallelMultiInstanceTask.create_children)
SequentialMultiInstanceTask.add_next_child = _bounded(SequentialMultiInstanceTask.add_next_child)


class CaseWorkflow(BpmnWorkflow):
    """A BpmnWorkflow whose frequent task queries scan its task dicts.

    SpiffWorkflow answers `get_tasks(state=...)` and refreshes waiting tasks by
    walking the whole task tree, several times per completed task, so a long case
    gets slower with every step. The same tasks are held in flat dicts; scanning
    them gives the same set of tasks (in creation order rather than tree order)
    at a fraction of the cost.
    """

    # The most instances one multi-instance activity may create (None: no bound).
    max_instances: int | None = None

    def get_tasks(self, first_task: Task | None = None, **kwargs: Any) -> list[Task]:
        if first_task is not None or not set(kwargs) <= _INDEXED_QUERIES:
            return super().get_tasks(first_task, **kwargs)
        flows = (self, *self.subprocesses.values())
        # The two queries SpiffWorkflow itself asks after every step (ready tasks, a join's
        # instances), answered without the generic filter; same tasks, same order.
        if len(kwargs) == 1 and "state" in kwargs:
            state = kwargs["state"]
            return [task for flow in flows for task in flow.tasks.values()
                    if task._state & state]
        if len(kwargs) == 1 and "spec_name" in kwargs:
            name = kwargs["spec_name"]
            return [task for flow in flows for task in flow.tasks.values()
                    if task.task_spec.name == name]
        matches = BpmnTaskFilter(**kwargs).matches
        found = [task for task in self.tasks.values() if matches(task)]
        for sub in self.subprocesses.values():
            found.extend(task for task in sub.tasks.values() if matches(task))
        return found

    def update_waiting_tasks(self) -> None:
        waiting = [task for task in self.tasks.values() if task.state == TaskState.WAITING]
        for task in waiting:
            if task.state == TaskState.WAITING:  # an earlier update may have cancelled it
                task.task_spec._update(task)


def _ancestors(task: Task) -> set[int]:
    """The tasks above `task` in its workflow's tree (object ids)."""
    found: set[int] = set()
    parent = task.parent
    while parent is not None:
        found.add(id(parent))
        parent = parent.parent
    return found


def _below(task: Task, top: Task, above_top: set[int]) -> bool:
    """`task.is_descendant_of(top)`, stopping where `task`'s line meets `top`'s: above that
    point every task is an ancestor of `top`, never `top` itself."""
    parent = task.parent
    while parent is not None:
        if parent is top:
            return True
        if id(parent) in above_top:
            return False
        parent = parent.parent
    return False


class _QuickJoin:
    """A parallel gateway's join that answers SpiffWorkflow's ancestry questions from one
    walk up the joining task's line instead of one full walk per instance of the gateway.

    `ParallelGateway._check_threshold_unstructured` and `UnstructuredJoin._run_hook` call
    `Task.is_descendant_of`, which climbs to the root of the task tree, for every task of
    the gateway's spec: in a long case that is most of a completion's cost, and it grows
    with each step. The methods below make the same decisions in the same order (same
    tasks, same data merges), so the task tree, the task ids and every replay are
    unchanged. Only the specs the engine runs get this class (see `load_specs`); the
    library's own class is left as it is.
    """

    name: str
    inputs: list[Any]

    def _check_threshold_unstructured(self, my_task: Task) -> bool:
        tasks = my_task.workflow.get_tasks(spec_name=self.name)
        waiting_inputs = set(self.inputs)
        above = _ancestors(my_task)

        def remove_ancestor(task: Task) -> None:
            while task is not None:
                if task.task_spec in waiting_inputs:
                    waiting_inputs.remove(task.task_spec)
                    return
                task = task.parent

        for task in tasks:
            if _below(task, my_task, above):
                remove_ancestor(task)
            elif id(task) in above:
                continue
            elif task.parent.state == TaskState.COMPLETED and \
                    task.parent.task_spec in waiting_inputs:
                waiting_inputs.remove(task.parent.task_spec)
        return len(waiting_inputs) == 0

    def _run_hook(self, my_task: Task) -> bool:
        above = _ancestors(my_task)
        other_tasks = sorted((t for t in my_task.workflow.tasks.values()
                              if t.task_spec == self and t.has_state(TaskState.FINISHED_MASK)
                              and id(t) not in above), key=lambda t: t.last_state_change)
        changes = branch_data.merges_changes(my_task.workflow)
        if changes:  # each branch hands on what it changed (engine/runtime/branch_data.py)
            my_task.data = branch_data.join_data(my_task, [*other_tasks, my_task])
        for task in other_tasks:
            if not changes:  # cases recorded before: whole copies, the last one wins
                DeepMerge.merge(my_task.data, task.parent.data)
            if task.has_state(TaskState.COMPLETED):
                task._drop_children(force=True)
        if not changes:
            my_task._inherit_data()
        return True


class _MergingInclusiveJoin(_QuickJoin):
    """An inclusive gateway's join: the library's decision when to fire, the engine's
    merge of the branches' data (the quick ancestry check above is the parallel one)."""

    def _check_threshold_unstructured(self, my_task: Task) -> bool:
        decided: bool = super(_QuickJoin, self)._check_threshold_unstructured(  # type: ignore[misc]
            my_task)
        return decided

    def _run_hook(self, my_task: Task) -> bool:
        # The library's inclusive gateway joins through UnstructuredJoin by name, then splits;
        # here the join is the engine's (above), and the split is the gateway's own: every
        # outgoing flow whose condition holds, else the default.
        _QuickJoin._run_hook(self, my_task)
        matches, defaults = self._get_matching_outputs(my_task)  # type: ignore[attr-defined]
        if not matches and not defaults:
            raise WorkflowTaskException("No conditions satisfied on gateway", task=my_task)
        my_task._sync_children(matches or defaults, TaskState.FUTURE)
        for child in my_task.children:
            child.task_spec._predict(child, mask=TaskState.FUTURE | TaskState.PREDICTED_MASK)
        return True


_QUICK_CLASSES: dict[type, type] = {}


def _quick_class(cls: type, mixin: type) -> type:
    quick = _QUICK_CLASSES.get(cls)
    if quick is None:
        quick = _QUICK_CLASSES[cls] = type(cls.__name__, (mixin, cls), {})
        # Serialized (e.g. compared by a migration's diff) as the library's class.
        typename = SERIALIZER.registry.typenames.get(cls)
        if typename is not None:
            SERIALIZER.registry.typenames[quick] = typename
    return quick


def _quicken(spec: BpmnProcessSpec) -> None:
    for task_spec in spec.task_specs.values():
        cls = type(task_spec)
        if issubclass(cls, _QuickJoin):
            continue
        if issubclass(cls, InclusiveGateway):
            task_spec.__class__ = _quick_class(cls, _MergingInclusiveJoin)
        elif issubclass(cls, ParallelGateway):
            task_spec.__class__ = _quick_class(cls, _QuickJoin)


_restoring: contextvars.ContextVar[ProcessSpecs | None] = contextvars.ContextVar(
    "zerorun_restoring", default=None)


class _SpeclessWorkflowConverter(BpmnWorkflowConverter):
    """Serializes a workflow's running state only; its specs are stored once per version."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct: dict[str, Any]) -> BpmnWorkflow:
        specs = _restoring.get()
        if specs is None:
            raise RuntimeError("restoring a workflow needs its specs")
        workflow = self.target_class(specs.process_spec, specs.subprocess_specs,
                                     deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


class ExternalTask(NoneTask):
    """A service task done by a worker outside: it starts and waits until a worker
    completes it (SpiffWorkflow leaves a task STARTED when its run hook answers None)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.manual = False  # the engine runs it up to its wait; no person completes it

    def _run_hook(self, my_task: Task) -> bool | None:
        super()._run_hook(my_task)
        return None


def _make_serializer() -> BpmnWorkflowSerializer:
    config = dict(SPIFF_CONFIG)
    config[ExternalTask] = SpiffBpmnTaskConverter
    del config[BpmnWorkflow]
    config[CaseWorkflow] = _SpeclessWorkflowConverter
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


SERIALIZER = _make_serializer()


def dump_specs(specs: ProcessSpecs) -> bytes:
    """Serialize a version's specs for storage."""
    body = {
        "process": SERIALIZER.to_dict(specs.process_spec),
        "subprocesses": {name: SERIALIZER.to_dict(spec)
                         for name, spec in sorted(specs.subprocess_specs.items())},
    }
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def load_specs(blob: bytes) -> ProcessSpecs:
    """Restore a version's specs from storage."""
    body = json.loads(zlib.decompress(blob))
    specs = ProcessSpecs(
        SERIALIZER.from_dict(body["process"]),
        {name: SERIALIZER.from_dict(dct) for name, dct in body["subprocesses"].items()},
    )
    for spec in (specs.process_spec, *specs.subprocess_specs.values()):
        _quicken(spec)
    return specs


def dump_state(workflow: BpmnWorkflow) -> bytes:
    """Serialize a workflow's running state (without specs), compressed."""
    dct = SERIALIZER.to_dict(workflow)
    # Key order matters: a task's data is stored as a delta from its parent's, so
    # parents must be restored before their children, in the order Spiff wrote them.
    return zlib.compress(json.dumps(dct, separators=(",", ":"),
                                    cls=SERIALIZER._encoder_cls).encode(), 1)


def state_dict(workflow: BpmnWorkflow) -> dict[str, Any]:
    """The running state as plain data (for comparing two workflows)."""
    state: dict[str, Any] = json.loads(json.dumps(SERIALIZER.to_dict(workflow),
                                                  cls=SERIALIZER._encoder_cls))
    return state


def load_state(blob: bytes, specs: ProcessSpecs, script_engine: Any,
               max_instances: int | None = None) -> BpmnWorkflow:
    """Restore a workflow from `dump_state` output and its version's specs."""
    dct = json.loads(zlib.decompress(blob), cls=SERIALIZER.json_decoder_cls)
    token = _restoring.set(specs)
    try:
        workflow: BpmnWorkflow = SERIALIZER.from_dict(dct)
    finally:
        _restoring.reset(token)
    workflow.script_engine = script_engine
    if isinstance(workflow, CaseWorkflow):
        workflow.max_instances = max_instances
    return workflow


def new_workflow(specs: ProcessSpecs, script_engine: Any,
                 max_instances: int | None = None) -> BpmnWorkflow:
    """A fresh workflow of a version."""
    workflow = CaseWorkflow(specs.process_spec, specs.subprocess_specs,
                            script_engine=script_engine)
    workflow.max_instances = max_instances
    return workflow
