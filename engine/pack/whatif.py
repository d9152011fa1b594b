"""What-if replay: recorded cases re-executed against a draft version, nothing of them written.

Each chosen case's recorded events run twice in step: against the version(s) the case ran
(exactly as verification does) and against the draft's specs, from the same case id, so
both take their task ids from the same deterministic source. After every event the
elements each execution has completed, has open and waits on are compared; the first
event after which they differ, or that the draft cannot take (the task it completes
would not be ready, its form refuses the recorded data, a rule fails), is the case's
divergence. A running case also gets the existing migration check against the draft.

The replay is a background job: `start_run` stores what to replay (`whatif_run`), the
worker calls `work` for a slice of time at a time, each case's outcome is one
`whatif_result` row, and pages read `run_view`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from engine.actors import Actor
from engine.cases import Engine
from engine.cases.views import MIGRATION_EVENTS, WORKFLOW_EVENTS, VersionSpecs
from engine.cases.workflow import apply_event
from engine.errors import (
    CaseNotFound,
    Conflict,
    EngineError,
    Forbidden,
    InvalidData,
    ProcessNotFound,
)
from engine.pack import migration
from engine.runtime import clock
from engine.runtime.spiff import IdSource, case_namespace, new_workflow, task_ids
from engine.store.models import Case, Event, ProcessVersion, WhatIfResult, WhatIfRun

log = logging.getLogger(__name__)

MAX_CASES = 5000  # cases one run may replay
LEASE = timedelta(minutes=2)  # a run a worker stopped holding is taken up again after this
COMMIT_EVERY = 25  # outcomes written per transaction while a slice runs

# Divergence kinds (the page words them): the task an event completes would not be ready;
# the draft's form refuses the recorded data; a gateway takes another flow; other tasks
# would be ready; the elements reached differ otherwise; the draft fails on the event.
KINDS = ("task_missing", "form", "gateway", "tasks", "path", "error")

_STATES = {TaskState.COMPLETED: "completed", TaskState.READY: "active",
           TaskState.STARTED: "active", TaskState.WAITING: "waiting"}

Key = tuple[str, str, str]  # (process id, BPMN element id, completed | active | waiting)


@dataclass(frozen=True)
class Divergence:
    """Where and how a case would run differently on the draft."""

    seq: int
    event_type: str
    at: datetime
    kind: str
    element: str | None
    element_name: str | None
    recorded: list[dict[str, str]] = field(default_factory=list)
    draft: list[dict[str, str]] = field(default_factory=list)
    fields: list[dict[str, str]] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "event_type": self.event_type, "at": self.at.isoformat(),
                "kind": self.kind, "element": self.element, "element_name": self.element_name,
                "recorded": self.recorded, "draft": self.draft, "fields": self.fields,
                "message": self.message}


@dataclass(frozen=True)
class CaseOutcome:
    """One case replayed against the draft."""

    case_id: int
    title: str
    status: str
    events: int
    outcome: str  # identical | diverged | failed
    divergence: Divergence | None = None
    migratable: bool | None = None  # running cases only
    migration_reasons: list[str] = field(default_factory=list)
    error: str | None = None

    def detail(self) -> dict[str, Any]:
        return {"title": self.title, "status": self.status, "events": self.events,
                "divergence": self.divergence.as_dict() if self.divergence else None,
                "migration_reasons": self.migration_reasons, "error": self.error}


@dataclass(frozen=True)
class ResultView:
    """A stored outcome as the page shows it."""

    case_id: int
    outcome: str
    migratable: bool | None
    title: str
    status: str
    events: int
    divergence: dict[str, Any] | None
    migration_reasons: list[str]
    error: str | None


@dataclass(frozen=True)
class RunView:
    """A what-if run with its progress and the outcomes so far."""

    id: int
    version_id: int
    process_id: str
    state: str
    total: int
    done: int
    requested_by: str
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    results: list[ResultView]

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.done / self.total)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def of(self, outcome: str) -> list[ResultView]:
        return [r for r in self.results if r.outcome == outcome]

    @property
    def migratable(self) -> list[ResultView]:
        return [r for r in self.results if r.migratable]


# Replaying one case ------------------------------------------------------------------------


def _flows(workflow: BpmnWorkflow) -> Iterator[Any]:
    yield workflow
    yield from workflow.subprocesses.values()


def _signature(workflow: BpmnWorkflow) -> Counter[Key]:
    """How many tasks of each element are completed, open or waiting, per process."""
    found: Counter[Key] = Counter()
    for flow in _flows(workflow):
        process_id = flow.spec.name
        for task in flow.tasks.values():
            state = _STATES.get(task.state)
            bpmn_id = getattr(task.task_spec, "bpmn_id", None)
            if state is not None and bpmn_id is not None:
                found[(process_id, bpmn_id, state)] += 1
    return found


def _ready(workflow: BpmnWorkflow, state: TaskState = TaskState.READY) -> list[Task]:
    return [t for flow in _flows(workflow) for t in flow.tasks.values() if t.state == state]


def _element(task: Task) -> tuple[str, str]:
    return task.workflow.spec.name, str(getattr(task.task_spec, "bpmn_id", None)
                                        or task.task_spec.name)


def _label(key: Key, names: dict[tuple[str, str], str]) -> dict[str, str]:
    return {"process": key[0], "element": key[1], "state": key[2],
            "name": names.get((key[0], key[1]), "")}


def _names(*workflows: BpmnWorkflow) -> dict[tuple[str, str], str]:
    names: dict[tuple[str, str], str] = {}
    for workflow in workflows:
        for flow in _flows(workflow):
            for spec in flow.spec.task_specs.values():
                bpmn_id = getattr(spec, "bpmn_id", None)
                if bpmn_id is not None:
                    names[(flow.spec.name, bpmn_id)] = getattr(spec, "bpmn_name", None) or ""
    return names


def _counterpart(recorded: Task | None, draft: BpmnWorkflow, task_id: str,
                 original: BpmnWorkflow, state: TaskState) -> Task | None:
    """The draft's task for a recorded one: the same id if it is the same element in the
    expected state; else the task of that element in the same position among its peers
    (an element added before it shifts the ids the draft gives out)."""
    if recorded is None:
        return None
    same = draft.get_task_from_id(UUID(task_id))
    if same is not None and same.state == state and _element(same) == _element(recorded):
        return same
    peers = [t for t in _ready(original, state) if _element(t) == _element(recorded)]
    mine = [t for t in _ready(draft, state) if _element(t) == _element(recorded)]
    position = next((i for i, t in enumerate(peers) if t.id == recorded.id), None)
    if position is None or position >= len(mine):
        return None
    return mine[position]


def _branch_point(draft: BpmnWorkflow, original: BpmnWorkflow, keys: Iterable[Key],
                  agreed: Counter[Key], other: Counter[Key]) -> Task | None:
    """The last task both executions agree on above the first element that differs."""
    wanted = {(k[0], k[1]) for k in keys}
    for workflow in (draft, original):
        for task in (t for flow in _flows(workflow) for t in flow.tasks.values()):
            if task.state not in _STATES or _element(task) not in wanted:
                continue
            parent = task.parent
            while parent is not None:
                key = (*_element(parent), _STATES.get(parent.state, ""))
                if key[2] and agreed[key] == other[key] and agreed[key] > 0:
                    return parent
                parent = parent.parent
    return None


def _explain(event: Event, original: BpmnWorkflow, draft: BpmnWorkflow,
             mine: Counter[Key], theirs: Counter[Key]) -> Divergence:
    """Why the two executions differ after an event: a gateway's other flow, other open
    tasks, or other elements reached."""
    names = _names(original, draft)
    recorded_only = sorted((theirs - mine).elements())
    draft_only = sorted((mine - theirs).elements())
    recorded = [_label(k, names) for k in dict.fromkeys(recorded_only)]
    drafted = [_label(k, names) for k in dict.fromkeys(draft_only)]
    known = _names(draft)
    gone = [k for k in recorded_only if (k[0], k[1]) not in known]
    if gone:  # the draft no longer has an element the case reached
        return Divergence(event.seq, event.type, event.at, "task_missing", gone[0][1],
                          names.get((gone[0][0], gone[0][1])), recorded, drafted)
    branch = _branch_point(draft, original, [*draft_only, *recorded_only], mine, theirs)
    if branch is not None and isinstance(branch.task_spec, ExclusiveGateway | InclusiveGateway):
        process_id, element = _element(branch)
        return Divergence(event.seq, event.type, event.at, "gateway", element,
                          names.get((process_id, element)), recorded, drafted)
    active = [k for k in (*recorded_only, *draft_only) if k[2] == "active"]
    kind = "tasks" if active else "path"
    first = (active or recorded_only or draft_only)[0]
    return Divergence(event.seq, event.type, event.at, kind, first[1],
                      names.get((first[0], first[1])), recorded, drafted)


def replay_case(engine: Engine, s: Session, draft: VersionSpecs, case: Case) -> CaseOutcome:
    """Re-execute one case's events against its own versions and the draft, in step."""
    events = list(s.scalars(select(Event).where(Event.stream == f"case:{case.id}")
                            .order_by(Event.seq)))
    facts = (case.title, case.status, len(events))
    first_version = case.process_version_id
    if events and events[0].type == "case_started" and \
            events[0].data.get("process_version_id") is not None:
        first_version = int(events[0].data["process_version_id"])
    own = engine._version(s, first_version)
    ids, draft_ids = IdSource(case_namespace(case.id)), IdSource(case_namespace(case.id))
    started = events[0].at if events else engine.clock()
    with clock.pinned(started):
        with task_ids(ids):
            original = new_workflow(own.specs, engine.script_engine, engine.config.max_instances)
        with task_ids(draft_ids):
            drafted = new_workflow(draft.specs, engine.script_engine,
                                   engine.config.max_instances)
    divergence: Divergence | None = None
    for event in events:
        if event.type not in WORKFLOW_EVENTS:
            continue
        payload = event.data
        if divergence is None and event.type not in MIGRATION_EVENTS:
            divergence, payload = _check_event(draft, event, original, drafted)
        try:
            with clock.pinned(event.at), task_ids(ids):
                engine._apply(original, event.type, event.data, case.id)
        except EngineError as exc:
            return CaseOutcome(case.id, *facts, outcome="failed",
                               error=f"event {event.seq}: {exc.message}")
        if divergence is not None:
            if case.status != "running":
                break  # only a running case needs the recorded execution to its end
            continue
        if event.type in MIGRATION_EVENTS:
            continue  # the draft replaces whichever version the case moved to
        try:
            with clock.pinned(event.at), task_ids(draft_ids):
                apply_event(drafted, event.type, payload, case.id)
        except (EngineError, SpiffWorkflowException) as exc:
            message = exc.message if isinstance(exc, EngineError) else str(exc)
            divergence = Divergence(event.seq, event.type, event.at, "error", None, None,
                                    message=message)
            continue
        mine, theirs = _signature(drafted), _signature(original)
        if mine != theirs:
            divergence = _explain(event, original, drafted, mine, theirs)
    migratable, reasons = None, []
    if case.status == "running":
        verdict = migration.check(original, draft.specs)
        migratable, reasons = verdict.safe, verdict.reasons
    return CaseOutcome(case.id, *facts, outcome="diverged" if divergence else "identical",
                       divergence=divergence, migratable=migratable, migration_reasons=reasons)


def _check_event(draft: VersionSpecs, event: Event, original: BpmnWorkflow,
                 drafted: BpmnWorkflow) -> tuple[Divergence | None, dict[str, Any]]:
    """Whether the draft can take a recorded event as it is: the task it names is ready
    (or waiting, or under way) there and the draft's form accepts the recorded data; the
    payload naming the draft's task."""
    payload = event.data
    wanted = {"task_completed": TaskState.READY, "message_received": TaskState.WAITING,
              "job_completed": TaskState.STARTED}.get(event.type)
    if wanted is None or "task_id" not in payload:
        return None, payload
    recorded = original.get_task_from_id(UUID(payload["task_id"]))
    mine = _counterpart(recorded, drafted, payload["task_id"], original, wanted)
    if recorded is None:
        return None, payload  # the recorded execution fails on it too (reported as failed)
    process_id, element = _element(recorded)
    name = getattr(recorded.task_spec, "bpmn_name", None)
    if mine is None:
        names = _names(original, drafted)
        open_now = [_label((*_element(t), "active"), names) for t in _ready(drafted)]
        return Divergence(event.seq, event.type, event.at, "task_missing", element, name,
                          [_label((process_id, element, "active"), names)], open_now), payload
    if event.type == "task_completed":
        meta = draft.task_specs.get(f"{process_id}:{recorded.task_spec.name}", {})
        today = event.at.astimezone(clock.SERVICE_TZ).date().isoformat()
        try:
            draft.forms.validate(meta.get("form"), payload.get("data") or {}, today=today)
        except InvalidData as exc:
            return Divergence(event.seq, event.type, event.at, "form", element, name,
                              fields=[{"field": e.field, "message": e.message}
                                      for e in exc.errors], message=exc.message), payload
    if str(mine.id) != payload["task_id"]:
        payload = {**payload, "task_id": str(mine.id)}
    return None, payload


# Choosing cases and running the job ---------------------------------------------------------


def _require_admin(actor: Actor) -> None:
    if not (actor.is_system or actor.role == "admin"):
        raise Forbidden("only an administrator may replay cases against a draft")


def _draft(s: Session, version_id: int) -> ProcessVersion:
    row = s.get(ProcessVersion, version_id)
    if row is None:
        raise ProcessNotFound(f"process version {version_id} does not exist")
    return row


def replaced_version(s: Session, draft: ProcessVersion) -> ProcessVersion | None:
    """The version a draft would replace: its process's published one."""
    return s.scalar(select(ProcessVersion).where(
        ProcessVersion.process_id == draft.process_id, ProcessVersion.status == "published")
        .order_by(ProcessVersion.number.desc()).limit(1))


def candidates(engine: Engine, version_id: int, closed: int = 20) -> list[int]:
    """The running cases of the version the draft replaces, then its `closed` newest
    completed or terminated ones."""
    with engine.db.reading() as s:
        draft = _draft(s, version_id)
        base = replaced_version(s, draft)
        if base is None:
            return []
        of_base = select(Case.id).where(Case.process_version_id == base.id)
        running = list(s.scalars(of_base.where(Case.status == "running").order_by(Case.id)))
        ended = list(s.scalars(of_base.where(Case.status != "running")
                               .order_by(Case.id.desc()).limit(max(0, closed))))
    return running + sorted(ended)


def search(engine: Engine, version_id: int, text: str, limit: int = 200) -> list[int]:
    """Cases of the draft's process whose number, title or project code matches `text`."""
    text = text.strip()
    with engine.db.reading() as s:
        draft = _draft(s, version_id)
        query = select(Case.id).where(Case.process_id == draft.process_id)
        if text:
            pattern = f"%{text}%"
            matches: list[ColumnElement[bool]] = [Case.title.ilike(pattern),
                                                  Case.project_code.ilike(pattern)]
            if text.lstrip("#").isdigit():
                matches.append(Case.id == int(text.lstrip("#")))
            query = query.where(or_(*matches))
        return list(s.scalars(query.order_by(Case.id.desc()).limit(limit)))


def start_run(engine: Engine, version_id: int, case_ids: Iterable[int], actor: Actor) -> int:
    """Queue a replay of these cases against a draft (the worker runs it); its id.

    Refused (nothing stored) when the version is not a draft, no case is given, too many
    are, or a case does not exist or belongs to another process.
    """
    _require_admin(actor)
    chosen = list(dict.fromkeys(int(c) for c in case_ids))
    if not chosen:
        raise Conflict("choose at least one case to replay")
    if len(chosen) > MAX_CASES:
        raise Conflict(f"a replay takes at most {MAX_CASES} cases; {len(chosen)} were chosen")
    with engine.db.transaction() as s:
        draft = _draft(s, version_id)
        if draft.status != "draft":
            raise Conflict(f"version {draft.number} of {draft.process_id} is not a draft "
                           f"({draft.status})")
        found = dict(s.execute(select(Case.id, Case.process_id).where(Case.id.in_(chosen))).all())
        missing = [c for c in chosen if c not in found]
        if missing:
            raise CaseNotFound("these cases do not exist: "
                               + ", ".join(f"#{c}" for c in missing[:20]))
        foreign = [c for c in chosen if found[c] != draft.process_id]
        if foreign:
            raise Conflict(f"these cases are not cases of {draft.process_id}: "
                           + ", ".join(f"#{c} ({found[c]})" for c in foreign[:20]),
                           cases=foreign)
        run = WhatIfRun(version_id=draft.id, process_id=draft.process_id, state="queued",
                        case_ids=chosen, total=len(chosen), done=0,
                        requested_by=actor.username, created_at=engine.clock())
        s.add(run)
        s.flush()
        return run.id


def _takable(worker: str, now: datetime) -> ColumnElement[bool]:
    """Runs a worker may take: queued ones, its own unfinished ones, and running ones whose
    worker stopped renewing them."""
    return or_(WhatIfRun.state == "queued",
               (WhatIfRun.state == "running")
               & or_(WhatIfRun.worker == worker, WhatIfRun.lease_until < now))


def _claim(engine: Engine, worker: str) -> int | None:
    """Take the oldest run this worker may take (see `_takable`)."""
    now = engine.clock()
    with engine.db.reading() as s:
        ids = list(s.scalars(select(WhatIfRun.id).where(_takable(worker, now))
                             .order_by(WhatIfRun.id).limit(5)))
    for run_id in ids:
        with engine.db.transaction() as s:
            taken = s.execute(update(WhatIfRun).where(WhatIfRun.id == run_id,
                                                      _takable(worker, now))
                              .values(state="running", worker=worker, lease_until=now + LEASE,
                                      started_at=func.coalesce(WhatIfRun.started_at, now)))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return run_id
    return None


def work(engine: Engine, worker: str, seconds: float = 2.0,
         batch_size: int = COMMIT_EVERY) -> tuple[int, bool]:
    """Replay cases of pending runs for about `seconds`; (cases replayed, whether work this
    worker could take is left: a run another worker holds is not).

    Outcomes are written every few cases with the run's progress, as long as this worker
    still holds the run; a case that cannot be read is recorded as failed.
    """
    deadline = time.monotonic() + seconds
    replayed = 0
    while True:  # at least one batch, however short the slice
        run_id = _claim(engine, worker)
        if run_id is None:
            return replayed, False
        try:
            replayed += _work_on(engine, run_id, worker, deadline, batch_size)
        except _LostLease:
            log.warning("what-if run %s was taken over by another worker", run_id)
        except Exception as exc:
            with engine.db.transaction() as s:
                s.execute(update(WhatIfRun).where(WhatIfRun.id == run_id).values(
                    state="failed", error=f"{type(exc).__name__}: {exc}",
                    finished_at=engine.clock()))
            raise
        if time.monotonic() >= deadline:
            break
    with engine.db.reading() as s:
        left = s.scalar(select(func.count()).select_from(WhatIfRun).where(
            _takable(worker, engine.clock()))) or 0
    return replayed, left > 0


def _work_on(engine: Engine, run_id: int, worker: str, deadline: float,
             batch_size: int) -> int:
    with engine.db.reading() as s:
        run = s.get(WhatIfRun, run_id)
        assert run is not None  # noqa: S101 (claimed just now; runs are never deleted)
        pending = list(run.case_ids[run.done:])
        position = run.done
        draft = engine._version(s, run.version_id)
    replayed = 0
    while pending:
        if replayed and time.monotonic() >= deadline:
            break  # the rest in the next slice (at least one batch a slice)
        batch, pending = pending[:batch_size], pending[batch_size:]
        outcomes: list[CaseOutcome] = []
        with engine.db.reading() as s:
            for case_id in batch:
                case = s.get(Case, case_id)
                if case is None:
                    outcomes.append(CaseOutcome(case_id, "", "", 0, "failed",
                                                error="the case no longer exists"))
                    continue
                outcomes.append(replay_case(engine, s, draft, case))
        with engine.db.transaction() as s:
            held = s.execute(update(WhatIfRun).where(
                WhatIfRun.id == run_id, WhatIfRun.worker == worker,
                WhatIfRun.state == "running").values(
                done=WhatIfRun.done + len(outcomes), lease_until=engine.clock() + LEASE))
            if held.rowcount != 1:  # type: ignore[attr-defined]
                raise _LostLease()
            for offset, outcome in enumerate(outcomes):
                s.add(WhatIfResult(run_id=run_id, case_id=outcome.case_id,
                                   position=position + offset, outcome=outcome.outcome,
                                   migratable=outcome.migratable, detail=outcome.detail()))
        position += len(outcomes)
        replayed += len(outcomes)
    if not pending:
        with engine.db.transaction() as s:
            s.execute(update(WhatIfRun).where(WhatIfRun.id == run_id,
                                              WhatIfRun.worker == worker).values(
                state="done", finished_at=engine.clock(), lease_until=None))
    return replayed


class _LostLease(Exception):
    """Another worker took the run over (this one stopped renewing it in time)."""


def run_view(engine: Engine, run_id: int, outcomes: bool = True) -> RunView:
    """A run with its progress and (unless `outcomes` is false) every outcome so far, in
    the order the cases were chosen."""
    with engine.db.reading() as s:
        run = s.get(WhatIfRun, run_id)
        if run is None:
            raise ProcessNotFound(f"what-if run {run_id} does not exist")
        rows: Iterable[WhatIfResult] = s.scalars(
            select(WhatIfResult).where(WhatIfResult.run_id == run_id)
            .order_by(WhatIfResult.position)) if outcomes else []
        results = [ResultView(r.case_id, r.outcome, r.migratable, r.detail.get("title", ""),
                              r.detail.get("status", ""), r.detail.get("events", 0),
                              r.detail.get("divergence"), r.detail.get("migration_reasons", []),
                              r.detail.get("error")) for r in rows]
        return RunView(run.id, run.version_id, run.process_id, run.state, run.total, run.done,
                       run.requested_by, run.created_at, run.finished_at, run.error, results)


def runs_of(engine: Engine, version_id: int) -> list[RunView]:
    """A version's runs, newest first (without their outcomes)."""
    with engine.db.reading() as s:
        rows = list(s.scalars(select(WhatIfRun).where(WhatIfRun.version_id == version_id)
                              .order_by(WhatIfRun.id.desc())))
        return [RunView(r.id, r.version_id, r.process_id, r.state, r.total, r.done,
                        r.requested_by, r.created_at, r.finished_at, r.error, [])
                for r in rows]


def latest_finished(engine: Engine, version_id: int) -> RunView | None:
    """The newest finished run of a version with its outcomes (what publishing summarises)."""
    with engine.db.reading() as s:
        run_id = s.scalar(select(WhatIfRun.id).where(
            WhatIfRun.version_id == version_id, WhatIfRun.state == "done")
            .order_by(WhatIfRun.id.desc()).limit(1))
    return run_view(engine, run_id) if run_id is not None else None

