"""Pure functions over one SpiffWorkflow workflow: applying events, scanning its tasks, its data."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.specs.defaults import EndEvent
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity, SubWorkflowTask
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.cases.deadlines import DEADLINES_MOVED, move_deadlines
from engine.cases.views import WORKFLOW_EVENTS, plain_data
from engine.cases.waits import message_definitions
from engine.errors import (
    ChainBreak,
    Conflict,
    EngineError,
    WorkflowError,
)
from engine.runtime import branch_data, expressions, recorded
from engine.store.models import (
    Event,
    HumanTask,
)


def apply_event(workflow: BpmnWorkflow, event_type: str, payload: dict[str, Any],
                case_id: int) -> None:
    """Re-run one recorded event against a workflow (commands and replays share this).

    An event that carries the answers its command got from the reference functions
    (`calls`) is re-run with those answers (see engine/recorded.py). Names local to a
    script's loops are dropped as they were when the event was recorded: events marked
    `loop_locals` dropped some; older events kept them all (see LoopScoping).
    """
    scoping = contextlib.nullcontext() if expressions.active_loop_scoping() is not None \
        else expressions.loop_scoping(bool(payload.get("loop_locals")))
    try:
        with recorded.served(payload.get("calls")), scoping:
            run_event(workflow, event_type, payload, case_id)
    except SpiffWorkflowException as exc:
        raise WorkflowError(f"the process failed: {exc}") from exc
    except (KeyError, ValueError) as exc:  # a recorded event whose data is not what it names
        raise WorkflowError(f"the event's data cannot be applied: {exc!r}") from exc
    except expressions.UnsafeExpression as exc:
        raise WorkflowError(f"an expression was refused: {exc.message}") from exc

def run_event(workflow: BpmnWorkflow, event_type: str, payload: dict[str, Any],
               case_id: int) -> None:
    if event_type == "case_started":
        branch_data.start_mode(workflow, payload.get(branch_data.MODE_KEY))
        workflow.task_tree.data.update(copy.deepcopy(payload["data"]))
        workflow.do_engine_steps()
    elif event_type == "task_completed":
        task = workflow.get_task_from_id(UUID(payload["task_id"]))
        if task is None or task.state != TaskState.READY:
            raise Conflict(f"task {payload['task_id']} is not ready in case {case_id}")
        task.data.update(copy.deepcopy(payload["data"]))
        task.run()
        workflow.do_engine_steps()
    elif event_type == "timer_fired":
        workflow.refresh_timers()
        workflow.do_engine_steps()
    elif event_type == "case_terminated":
        workflow.cancel()
    elif event_type == "message_received":
        deliver_message(workflow, payload, case_id)
    elif event_type == DEADLINES_MOVED:
        move_deadlines(workflow, payload, case_id)
    elif event_type == "job_completed":
        task = workflow.get_task_from_id(UUID(payload["task_id"]))
        if task is None or task.state != TaskState.STARTED:
            raise Conflict(f"job {payload['task_id']} is not under way in case {case_id}")
        task.data.update(copy.deepcopy(payload["data"]))
        task.complete()
        workflow.do_engine_steps()
    drop_orphans(workflow)

def deliver_message(workflow: BpmnWorkflow, payload: dict[str, Any], case_id: int) -> None:
    """Hand a message to the one waiting element it was correlated with, then run on.

    The payload goes where the message's `messageVariable` says, or into the element's
    data when the message names none.
    """
    task = workflow.get_task_from_id(UUID(payload["task_id"]))
    waiting = getattr(task.task_spec, "event_definition", None) if task else None
    definition = next((d for d in message_definitions(waiting)
                       if d.name == payload["message"]), None)
    if task is None or task.state != TaskState.WAITING or definition is None:
        raise Conflict(f"element {payload.get('element')} of case {case_id} does not wait "
                       f"for message {payload['message']!r}")
    body = copy.deepcopy(payload["payload"])
    task.task_spec.catch(task, BpmnEvent(definition, payload=body))
    if getattr(definition, "message_var", None) is None:
        task.data.update(copy.deepcopy(body))
    task.task_spec._update(task)
    workflow.do_engine_steps()


def drop_orphans(workflow: BpmnWorkflow) -> None:
    """Forget sub-processes whose calling task was dropped (the case was cancelled, or an
    interrupting boundary event cancelled a sub-process that had called others).

    Cancelling drops the children of unfinished tasks, but SpiffWorkflow keeps the
    sub-processes they had started; a restored case would not have them, so the
    running state would differ from its snapshot.
    """
    while True:
        alive = set(workflow.tasks)
        for sub in workflow.subprocesses.values():
            alive.update(sub.tasks)
        orphans = [key for key in workflow.subprocesses if key not in alive]
        if not orphans:
            return
        for key in orphans:
            del workflow.subprocesses[key]

def drawers(workflow: BpmnWorkflow) -> dict[int, Any]:
    """For each of a case's flows (by object id), the flow whose diagram draws its elements:
    itself, or for an embedded sub-process (which SpiffWorkflow runs as a process of its
    own) the flow around it."""
    drawn: dict[int, Any] = {id(workflow): workflow}
    pending = list(workflow.subprocesses.values())
    while pending:
        waiting = []
        for sub in pending:
            parent = sub.parent_workflow
            if parent is None or id(parent) not in drawn:
                waiting.append(sub)
                continue
            caller = parent.tasks.get(sub.parent_task_id)
            embedded = caller is not None and isinstance(caller.task_spec, SubWorkflowTask) \
                and not isinstance(caller.task_spec, CallActivity)
            drawn[id(sub)] = drawn[id(parent)] if embedded else sub
        if len(waiting) == len(pending):  # orphans: each draws itself
            for sub in waiting:
                drawn[id(sub)] = sub
            break
        pending = waiting
    return drawn

def _expanded(task: Task) -> bool:
    """Whether a task is an embedded sub-process (drawn expanded around its own steps)."""
    return isinstance(task.task_spec, SubWorkflowTask) and not isinstance(task.task_spec,
                                                                           CallActivity)

def states_by_element(workflow: BpmnWorkflow) -> dict[str, dict[str, list[str]]]:
    """BPMN element ids of a workflow by state, per process (an embedded sub-process's
    elements under the process whose diagram draws them)."""
    drawn = drawers(workflow)
    states: dict[str, dict[str, set[str]]] = {}
    for task in workflow.get_tasks():
        bpmn_id = getattr(task.task_spec, "bpmn_id", None)
        if bpmn_id is None:
            continue
        if task.state == TaskState.COMPLETED:
            key = "completed"
        elif task.state in (TaskState.READY, TaskState.STARTED):
            key = "active"
        elif task.state == TaskState.WAITING:
            key = "waiting"
        else:
            continue
        if key != "completed" and _expanded(task):
            continue  # its steps under way are shown, not the whole sub-process around them
        flow = drawn.get(id(task.workflow), task.workflow)
        process = states.setdefault(flow.spec.name,
                                    {"completed": set(), "active": set(), "waiting": set()})
        process[key].add(bpmn_id)
    return {pid: {k: sorted(v) for k, v in by_state.items()} for pid, by_state in
            states.items()}

ROOT_INSTANCE = "case"


def process_instances(workflow: BpmnWorkflow) -> dict[str, dict[str, Any]]:
    """Each process instance of a case (the case itself and every called process it started).

    Keyed by instance id (`ROOT_INSTANCE` for the case, else the id of the calling task),
    each holds its `process`, the `parent` instance and calling `element` (a call activity
    of the parent's diagram), a `label` (the item or element the instance works on), its
    own element `states` (as `states_by_element`) and the instances it `calls`, by element.
    """
    drawn = drawers(workflow)

    def key_of(owner: Any) -> str:
        owner = drawn.get(id(owner), owner)  # an embedded sub-process: the instance around it
        return ROOT_INSTANCE if owner is workflow else str(owner.parent_task_id)

    instances: dict[str, dict[str, Any]] = {ROOT_INSTANCE: _instance(workflow.spec.name)}
    for sub in workflow.subprocesses.values():
        caller = workflow.get_task_from_id(sub.parent_task_id)
        if caller is None or drawn.get(id(sub), sub) is not sub:
            continue
        parent = key_of(caller.workflow)
        element = getattr(caller.task_spec, "bpmn_id", None) or caller.task_spec.name
        instances[str(sub.parent_task_id)] = _instance(
            sub.spec.name, parent=parent, element=element, label=_label(caller))
    for key, entry in instances.items():
        caller_key = entry.get("parent")
        if caller_key in instances:
            instances[caller_key]["calls"].setdefault(entry["element"], []).append(key)
    for task in workflow.get_tasks():
        bpmn_id = getattr(task.task_spec, "bpmn_id", None)
        state = _STATE_KEYS.get(task.state)
        owner = instances.get(key_of(task.workflow))
        if state is not None and state != "completed" and _expanded(task):
            continue  # its steps under way are shown, not the whole sub-process around them
        if bpmn_id is not None and state is not None and owner is not None:
            owner["states"][state].add(bpmn_id)
    for entry in instances.values():
        entry["states"] = {k: sorted(v) for k, v in entry["states"].items()}
    return instances


_STATE_KEYS = {TaskState.COMPLETED: "completed", TaskState.READY: "active",
               TaskState.STARTED: "active", TaskState.WAITING: "waiting"}


def _instance(process: str, *, parent: str | None = None, element: str | None = None,
              label: str | None = None) -> dict[str, Any]:
    return {"process": process, "parent": parent, "element": element, "label": label,
            "states": {"completed": set(), "active": set(), "waiting": set()}, "calls": {}}


def _label(caller: Task) -> str | None:
    """What a called instance works on: its item's name, or its multi-instance element."""
    item = item_of(caller)
    if item.get("name"):
        return str(item["name"])
    subject = subject_of(caller)
    if isinstance(subject, dict):
        subject = subject.get("name") or subject.get("title")
    return str(subject) if isinstance(subject, (str, int)) and str(subject) else None


REACHED = (TaskState.COMPLETED, TaskState.READY, TaskState.STARTED, TaskState.WAITING)


def reached_elements(workflow: BpmnWorkflow) -> set[tuple[str, str]]:
    """(process id, BPMN element id) of every element completed, under way or waiting: the
    elements `states_by_element` names, in one pass over the tasks without the tree walk."""
    found: set[tuple[str, str]] = set()
    drawn = drawers(workflow)
    for flow in (workflow, *workflow.subprocesses.values()):
        process_id = drawn.get(id(flow), flow).spec.name
        for task in flow.tasks.values():
            if task.state in REACHED:
                bpmn_id = getattr(task.task_spec, "bpmn_id", None)
                if bpmn_id is not None:
                    found.add((process_id, bpmn_id))
    return found


class DataReplay:
    """Follows the case-level data through a re-execution, as the commands stored it."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.seq = 0

    def __call__(self, event: Event, workflow: BpmnWorkflow) -> None:
        if event.type not in WORKFLOW_EVENTS:
            return
        previous = event.data["data"] if event.type == "case_started" else self.data
        done = event.data.get("task_id") if event.type == "task_completed" else None
        self.data = case_data_after(previous, workflow, scan_tasks(workflow), done)
        self.seq = event.seq

def completions_match(events: list[Event], rows: Mapping[str, HumanTask]) -> ChainBreak | None:
    """Every completion event has its task stored as completed by that actor at that time."""
    completed: set[str] = set()
    for event in events:
        if event.type != "task_completed":
            continue
        task_id = str(event.data.get("task_id"))
        row = rows.get(task_id)
        if row is None:
            return ChainBreak(event.seq, f"the task {task_id} this event completed is missing "
                              "from the stored tasks", event.id)
        if (row.state, row.completed_by, row.completed_at) != ("completed", event.actor,
                                                                event.at):
            when = f"{row.completed_at:%Y-%m-%d %H:%M}" if row.completed_at else "-"
            return ChainBreak(event.seq, f"the stored task {row.title!r} ({row.state}, by "
                              f"{row.completed_by or '-'} at {when}) does not match this "
                              f"event (completed by {event.actor} at "
                              f"{event.at:%Y-%m-%d %H:%M})", event.id)
        completed.add(task_id)
    for row in rows.values():
        if row.state == "completed" and row.id not in completed:
            last = events[-1].seq if events else 0
            return ChainBreak(last, f"the stored task {row.title!r} is marked completed by "
                              f"{row.completed_by} but no event completed it")
    return None

def process_ids(xml_text: str) -> list[str]:
    import re

    return re.findall(r'<(?:\w+:)?process\b[^>]*\bid="([^"]+)"', xml_text)

def task_data(workflow: BpmnWorkflow, task_id: str) -> dict[str, Any]:
    task = workflow.get_task_from_id(UUID(task_id))
    return plain_data(task.data) if task is not None else {}

class ReplayFailed(EngineError):
    """A recorded event could not be re-executed."""

    def __init__(self, message: str, seq: int, event_id: int | None) -> None:
        super().__init__(message)
        self.seq, self.event_id = seq, event_id

@dataclass(frozen=True)
class Scan:
    """What one pass over a workflow's tasks found."""

    ready_manual: list[Task]
    top_active: list[Task]
    top_ends: list[Task]
    completed: bool

ACTIVE = TaskState.READY | TaskState.STARTED | TaskState.WAITING

def scan_tasks(workflow: BpmnWorkflow) -> Scan:
    """One pass over every task of the case (SpiffWorkflow's tree iterator walks the
    whole tree once per query; the engine needs several answers after each command)."""
    ready: list[Task] = []
    active: list[Task] = []
    ends: list[Task] = []
    unfinished = False
    for task in workflow.tasks.values():
        state = task.state
        if state & ACTIVE:
            active.append(task)
            if state == TaskState.READY and task.task_spec.manual:
                ready.append(task)
        if state & TaskState.NOT_FINISHED_MASK:
            unfinished = True
        elif state == TaskState.COMPLETED and isinstance(task.task_spec, EndEvent):
            ends.append(task)
    scope = main_scope(workflow)
    for key, sub in workflow.subprocesses.items():
        shared = key in scope
        for task in sub.tasks.values():
            if task.state == TaskState.READY and task.task_spec.manual:
                ready.append(task)
            if shared and task.state & ACTIVE:
                active.append(task)
    return Scan(ready, active, ends, not unfinished)

def drawn_in(process_spec: Any, subprocess_specs: Mapping[str, Any]) -> dict[str, str]:
    """Embedded sub-processes by spec name -> the process whose diagram draws them (their
    elements are that diagram's, though SpiffWorkflow runs them as processes of their own)."""
    owner: dict[str, str] = {}
    specs = {process_spec.name: process_spec, **subprocess_specs}
    for name, spec in specs.items():
        for task_spec in spec.task_specs.values():
            if isinstance(task_spec, SubWorkflowTask) and not isinstance(task_spec,
                                                                          CallActivity):
                owner[task_spec.spec] = name
    for name in list(owner):  # an embedded one inside an embedded one: the outermost draws it
        while owner[name] in owner:
            owner[name] = owner[owner[name]]
    return owner

def main_scope(workflow: BpmnWorkflow) -> set[UUID]:
    """The embedded sub-processes of the main process (at any depth, not through a call
    activity): BPMN gives them the main process's data, so their tasks are the case's."""
    scope: set[UUID] = set()
    changed = True
    while changed:
        changed = False
        for key, sub in workflow.subprocesses.items():
            if key in scope:
                continue
            parent = sub.parent_workflow
            task = parent.tasks.get(key) if parent is not None else None
            if (task is not None and (parent is workflow or parent.parent_task_id in scope)
                    and isinstance(task.task_spec, SubWorkflowTask)
                    and not isinstance(task.task_spec, CallActivity)):
                scope.add(key)
                changed = True
    return scope

def case_data_after(previous: Mapping[str, Any], workflow: BpmnWorkflow, scan: Scan,
                    done_task: str | None) -> dict[str, Any]:
    """The case-level data: what the main process knows after a command.

    Item-level data stays in the called processes (and in the task index). A case takes
    the changes of the top-level steps each command completed (engine/runtime/
    branch_data.py); a case recorded before that keeps the newest data of its top-level
    tasks under way, as it did when its events were recorded.
    """
    if branch_data.merges_changes(workflow):
        scope = main_scope(workflow) if workflow.subprocesses else set()
        return branch_data.case_changes(previous, workflow, _plain_value,
                                        [workflow.subprocesses[key] for key in scope])
    data = dict(previous)
    if done_task is not None:
        done = workflow.tasks.get(UUID(done_task))
        if done is None:  # a task of an embedded sub-process of the main process
            scope = main_scope(workflow)
            done = next((sub.tasks[UUID(done_task)] for key, sub in workflow.subprocesses.items()
                         if key in scope and UUID(done_task) in sub.tasks), None)
        if done is not None:
            data.update(plain_data(done.data))
    for task in scan.top_active:
        data.update(plain_data(task.data))
    if scan.completed:
        for task in scan.top_ends:
            data.update(plain_data(task.data))
        data.update(plain_data(workflow.data))
    return data

def _plain_value(value: Any) -> Any:
    return plain_data({"v": value})["v"]

def item_of(task: Task) -> dict[str, Any]:
    """The approval item a task is about: `item` in its data, or its multi-instance element."""
    item = task.data.get("item")
    if not isinstance(item, dict) and task.parent is not None:
        input_item = getattr(task.parent.task_spec, "input_item", None)
        if input_item is not None:
            item = task.data.get(input_item.bpmn_id)
    return item if isinstance(item, dict) else {}

def subject_of(task: Task) -> Any:
    """The element a multi-instance task works on (a follow-up action, an opinion, a policy)."""
    input_item = getattr(task.parent.task_spec, "input_item", None) if task.parent else None
    if input_item is None:
        return None
    value = task.data.get(input_item.bpmn_id)
    return plain_data({"v": value})["v"] if value is not None else None

def wanted_timers(workflow: BpmnWorkflow) -> dict[str, tuple[str, datetime]]:
    """The timers the case's workflow waits on: task id -> (timer name, when due)."""
    wanted: dict[str, tuple[str, datetime]] = {}
    for task in workflow.event_manager.tasks.values():
        due = timer_due(task)
        if due is not None:
            wanted[str(task.id)] = (task.task_spec.name, due)
    return wanted


def timer_due(task: Task) -> datetime | None:
    value = task._get_internal_data("event_value")
    if isinstance(value, dict):  # cycle timers keep their next firing
        value = value.get("next") if value.get("cycles", 0) != 0 else None
    if not value:
        return None
    try:
        moment: datetime = TimerEventDefinition.get_datetime(str(value))
    except ValueError:
        return None
    return moment
