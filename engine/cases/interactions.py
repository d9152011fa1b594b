"""Running cases talking to systems outside: BPMN messages and service tasks done by workers.

A message event (start, intermediate catch, boundary) or receive task that waits is kept in
`message_wait`, with the value of the element's `correlationKey` expression; a service task
with a topic that has started is kept in `external_job`. Both tables are brought in line with
the workflow after every command (`sync_interactions`, called from the unit of work), so a
caller finds who waits without loading any case. A delivery or a completion is one command:
one transaction and one hash-chained event (`message_received`, `job_completed`) that
re-execution applies like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session

from engine.actors import STARTERS, Actor
from engine.audit.chain import NewEvent
from engine.cases.commands import Commands
from engine.cases.instrument import command
from engine.cases.views import CaseView, VersionSpecs, plain_data
from engine.errors import (
    CaseNotRunning,
    Conflict,
    EngineError,
    Forbidden,
    NotFound,
    WorkflowError,
)
from engine.pack.loader import message_schema_file
from engine.store.models import Case, ExternalJob, MessageGrant, MessageWait, ProcessVersion

CORRELATION_KEYS = ("case_id", "project_code", "key")
MAX_LOCK_SECONDS = 3600
MAX_JOBS_PER_FETCH = 50
MAX_ID = 2**31 - 1  # what an id column holds: a larger case id names no case


def _deliverable_by(actor: Actor) -> ColumnElement[bool]:
    """The waits an account not granted the message may deliver to: those whose element
    names the account's department; the office and administrators also those that name
    none (elements that declare no sender)."""
    own = (MessageWait.department == actor.department) if actor.department else false()
    if actor.role in ("office", "admin"):
        return or_(MessageWait.department.is_(None), own)
    return own
# A process that models its own termination waits for this message (payload: the reason);
# terminating such a case delivers it there instead of cancelling the workflow.
TERMINATION_MESSAGE = "case_termination"


class NobodyWaits(NotFound):
    """No running case waits for this message with this correlation."""


class AmbiguousMessage(Conflict):
    """More than one case (or element) waits for the message: the correlation must say which."""


@dataclass(frozen=True)
class Delivery:
    """Where a message went."""

    message: str
    case_id: int
    element: str
    process_id: str
    task_id: str
    case_started: bool
    case: CaseView


@dataclass(frozen=True)
class JobView:
    """An external job as workers and administrators see it."""

    id: str
    case_id: int
    process_id: str
    element: str
    topic: str
    state: str
    retries: int | None
    worker_id: str | None
    locked_until: datetime | None
    error: str | None
    created_at: datetime
    completed_at: datetime | None
    data: dict[str, Any]
    output_schema: dict[str, Any] | None


def _job_view(row: ExternalJob, data: dict[str, Any] | None = None,
              output_schema: dict[str, Any] | None = None) -> JobView:
    return JobView(id=row.id, case_id=row.case_id, process_id=row.process_id,
                   element=row.element, topic=row.topic, state=row.state, retries=row.retries,
                   worker_id=row.worker_id, locked_until=row.locked_until, error=row.error,
                   created_at=row.created_at, completed_at=row.completed_at,
                   data=data or {}, output_schema=output_schema)


class InteractionCommands(Commands):
    """Correlating messages, and the fetch-and-lock / complete / fail cycle of workers."""

    # Messages ----------------------------------------------------------------------

    @command()
    def correlate_message(self, message: str, correlation: Mapping[str, Any],
                          payload: Mapping[str, Any], actor: Actor) -> Delivery:
        """Deliver a message to the one element waiting for it (or start a case with it).

        `correlation` names the case (`case_id` or `project_code`) and/or the value of
        the waiting element's `correlationKey` (`key`). NobodyWaits when no running case
        waits for it, AmbiguousMessage when more than one would.
        """
        unknown = sorted(set(correlation) - set(CORRELATION_KEYS))
        if unknown:
            raise EngineError(f"unknown correlation {', '.join(unknown)}; use "
                              f"{', '.join(CORRELATION_KEYS)}")
        case_id = correlation.get("case_id")
        if case_id is not None and not (isinstance(case_id, int) and 0 < case_id <= MAX_ID):
            raise EngineError(f"correlation case_id must be an integer from 1 to {MAX_ID}")
        granted = actor.is_system or self.message_granted(actor.username, message)
        if not (granted or actor.role in ("office", "admin", "agent", "leader")):
            raise Forbidden("only the office, administrators, department accounts and "
                            "accounts granted a message may send messages to cases")
        data = plain_data(payload)
        now = self.clock()
        with self.db.reading() as s:
            query = select(MessageWait.task_id, MessageWait.case_id).join(
                Case, Case.id == MessageWait.case_id).where(
                MessageWait.message == message, Case.status == "running")
            if not granted:
                # Who may deliver is checked before correlating: the waits this sender may
                # not deliver to are not candidates, so no answer (404, 409 and its case
                # ids) tells anything about another department's cases.
                query = query.where(_deliverable_by(actor))
            if case_id is not None:
                query = query.where(MessageWait.case_id == case_id)
            if correlation.get("project_code") is not None:
                query = query.where(Case.project_code == str(correlation["project_code"]))
            if correlation.get("key") is not None:
                query = query.where(MessageWait.correlation_key == str(correlation["key"]))
            found = s.execute(query.order_by(MessageWait.case_id, MessageWait.task_id)).all()
        if not found:
            if not {"case_id", "project_code", "key"} & {k for k, v in correlation.items()
                                                          if v is not None}:
                started = self._start_by_message(message, data, actor, granted)
                if started is not None:
                    return started
            raise NobodyWaits(f"no running case waits for message {message!r} with this "
                              "correlation from you", message_name=message)
        if len({case_id for _, case_id in found}) > 1:
            raise AmbiguousMessage(f"{len({c for _, c in found})} cases wait for message "
                                   f"{message!r}; correlate it by case id, project code or "
                                   "key", cases=sorted({c for _, c in found}))
        if len(found) > 1:
            raise AmbiguousMessage(f"{len(found)} elements of case {found[0][1]} wait for "
                                   f"message {message!r}; correlate it by key",
                                   cases=[found[0][1]])
        task_id, found_case = found[0]
        with self._unit() as s:
            return self._deliver(s, found_case, task_id, message, data, actor, now, False)

    def message_granted(self, username: str, message: str) -> bool:
        """Whether an account was granted a message (`zerorun grant-message`)."""
        with self.db.reading() as s:
            return s.get(MessageGrant, (username, message)) is not None

    @command()
    def terminate_case(self, case_id: int, reason: str, actor: Actor) -> CaseView:
        """Stop a running case with a reason: through the diagram's own termination path
        when it waits for `case_termination` (hand-backs, record), else by cancelling it."""
        if not reason or not reason.strip():
            raise EngineError("a reason is required to terminate a case")
        if not (actor.is_system or actor.role in ("office", "admin")):
            raise Forbidden("only the office or an administrator may terminate a case")
        with self.db.reading() as s:
            task_id = s.scalar(select(MessageWait.task_id).where(
                MessageWait.case_id == case_id, MessageWait.message == TERMINATION_MESSAGE
            ).order_by(MessageWait.task_id).limit(1))
            case = s.get(Case, case_id)
            data = dict(case.data or {}) if case is not None else {}
            ending = (case is not None and case.status == "running"
                      and data.get("terminated") is True
                      and TERMINATION_MESSAGE in _caught_messages(
                          self._version(s, case.process_version_id)))
        if task_id is None and ending:
            # The diagram is on its termination path already: the first reason stands.
            raise Conflict("the service is already being terminated for: "
                           f"{data.get('termination_reason')}; complete its hand-back "
                           "and termination record tasks")
        if task_id is None:
            return super().terminate_case(case_id, reason, actor)
        now = self.clock()
        with self._unit() as s:
            return self._deliver(s, case_id, task_id, TERMINATION_MESSAGE,
                                 {"reason": reason.strip()}, actor, now, False).case

    def _deliver(self, s: Session, case_id: int, task_id: str, message: str,
                 data: dict[str, Any], actor: Actor, now: datetime, started: bool) -> Delivery:
        case = self._lock_case(s, case_id)
        if case.status != "running":
            raise CaseNotRunning(f"case {case.id} is {case.status}")
        wait = s.get(MessageWait, (task_id, message), populate_existing=True)
        if wait is None:
            raise Conflict("the element stopped waiting for this message; send it again",
                           message_name=message)
        version = self._version(s, case.process_version_id)
        version.forms.validate(message_schema_file(message), data)
        element, process_id = wait.element, wait.process_id
        view = self._change(s, case, actor, now, "message_received", {
            "message": message, "task_id": task_id, "element": element,
            "process_id": process_id, "payload": data})
        return Delivery(message, case.id, element, process_id, task_id, started, view)

    def _start_by_message(self, message: str, data: dict[str, Any], actor: Actor,
                          granted: bool) -> Delivery | None:
        """Start a case of the published process whose start event catches the message."""
        with self.db.reading() as s:
            rows = list(s.scalars(select(ProcessVersion).where(
                ProcessVersion.status == "published")))
            starting = [row for row in rows
                        if message in _start_messages(self._version(s, row.id))]
        if not starting:
            return None
        if len(starting) > 1:
            raise AmbiguousMessage(f"{len(starting)} processes start with message "
                                   f"{message!r}", processes=[r.process_id for r in starting])
        row = starting[0]
        now = self.clock()
        with self._unit() as s:
            # A message start event is the process's declared entry point: whoever may start
            # cases may send it, whether or not the process is also startable by hand.
            if not (granted or actor.role in STARTERS):
                raise Forbidden("you may not start cases of this process")
            version = row
            self._version(s, version.id).forms.validate(message_schema_file(message), data)
            view = self._start(s, version, {}, actor, now, None)
            wait = s.scalar(select(MessageWait).where(MessageWait.case_id == view.id,
                                                      MessageWait.message == message))
            if wait is None:
                raise WorkflowError(f"the new case of {row.process_id} does not wait for "
                                    f"message {message!r}")
            return self._deliver(s, view.id, wait.task_id, message, data, actor, now, True)

    def message_waits(self, case_id: int) -> list[MessageWait]:
        """What a case waits for from outside."""
        with self.db.reading() as s:
            rows = list(s.scalars(select(MessageWait).where(MessageWait.case_id == case_id)
                                  .order_by(MessageWait.message, MessageWait.task_id)))
            s.expunge_all()
        return rows

    # External jobs ------------------------------------------------------------------

    @staticmethod
    def _check_worker(actor: Actor) -> None:
        if not (actor.is_system or actor.role in ("office", "admin")):
            raise Forbidden("only the office's and administrators' accounts run external "
                            "workers")

    @command()
    def fetch_and_lock(self, topic: str, worker_id: str, lock_seconds: int, actor: Actor,
                       max_jobs: int = 1) -> list[JobView]:
        """Lock up to `max_jobs` open jobs of a topic for a worker; two workers never get
        the same job (rows are locked with SKIP LOCKED on PostgreSQL, and the update is
        conditional on the job still being free everywhere)."""
        self._check_worker(actor)
        if not worker_id.strip():
            raise EngineError("a worker id is required")
        if not 1 <= lock_seconds <= MAX_LOCK_SECONDS:
            raise EngineError(f"the lock duration must be 1 to {MAX_LOCK_SECONDS} seconds")
        max_jobs = max(1, min(max_jobs, MAX_JOBS_PER_FETCH))
        now = self.clock()
        until = now + timedelta(seconds=lock_seconds)
        locked: list[ExternalJob] = []
        with self.db.transaction() as s:
            free = or_(ExternalJob.locked_until.is_(None), ExternalJob.locked_until <= now)
            query = (select(ExternalJob).join(Case, Case.id == ExternalJob.case_id)
                     .where(ExternalJob.topic == topic, ExternalJob.state == "open", free,
                            Case.status == "running")
                     .order_by(ExternalJob.created_at, ExternalJob.id).limit(max_jobs))
            if self.db.postgres:
                query = query.with_for_update(of=ExternalJob, skip_locked=True)
            for job in s.scalars(query):
                job.worker_id, job.locked_until = worker_id, until
                locked.append(job)
            s.flush()
            views = [self._job_with_data(s, job) for job in locked]
        return views

    def _job_with_data(self, s: Session, job: ExternalJob) -> JobView:
        case = s.get(Case, job.case_id)
        if case is None:
            raise NotFound(f"case {job.case_id} does not exist")
        version = self._version(s, case.process_version_id)
        meta = version.task_specs.get(f"{job.process_id}:{job.element}", {})
        live = self._live(s, case, version)
        try:
            task = live.workflow.get_task_from_id(UUID(job.id))
            data = plain_data(task.data) if task is not None else {}
        finally:
            self._remember(case.id, live)
        return _job_view(job, data, version.forms.schema(meta.get("output_schema")))

    def _locked_job(self, s: Session, job_id: str, worker_id: str, now: datetime
                    ) -> ExternalJob:
        job = s.get(ExternalJob, job_id, with_for_update=self.db.postgres,
                    populate_existing=True)
        if job is None:
            raise NotFound(f"external job {job_id} does not exist")
        if job.state != "open":
            raise Conflict(f"external job {job_id} is {job.state}")
        if job.worker_id != worker_id or job.locked_until is None or job.locked_until <= now:
            raise Conflict(f"external job {job_id} is not locked by worker {worker_id!r} "
                           "(its lock may have expired); fetch it again")
        return job

    @command()
    def complete_job(self, job_id: str, worker_id: str, data: Mapping[str, Any],
                     actor: Actor) -> CaseView:
        """A worker finished a job: its output (checked against the task's output schema)
        goes into the task's data and the case runs on to its next wait."""
        self._check_worker(actor)
        output = plain_data(data)
        now = self.clock()
        case_id = self._job_case(job_id)
        with self._unit() as s:
            case = self._lock_case(s, case_id)
            job = self._locked_job(s, job_id, worker_id, now)
            if case.status != "running":
                raise CaseNotRunning(f"case {case.id} is {case.status}")
            version = self._version(s, case.process_version_id)
            meta = version.task_specs.get(f"{job.process_id}:{job.element}", {})
            version.forms.validate(meta.get("output_schema"), output)
            job.state, job.completed_at, job.error = "completed", now, None
            view = self._change(s, case, actor, now, "job_completed", {
                "task_id": job.id, "element": job.element, "topic": job.topic,
                "worker_id": worker_id, "data": output})
        return view

    def _job_case(self, job_id: str) -> int:
        """The case a job belongs to (read first: its row is locked only after the case's)."""
        with self.db.reading() as s:
            job = s.get(ExternalJob, job_id)
            if job is None:
                raise NotFound(f"external job {job_id} does not exist")
            return job.case_id

    @command()
    def fail_job(self, job_id: str, worker_id: str, error: str, retries: int,
                 retry_seconds: int, actor: Actor) -> JobView:
        """A worker could not do a job: it comes back after `retry_seconds` while retries
        are left; at none the job becomes an incident an administrator must retry."""
        self._check_worker(actor)
        if retries < 0 or retry_seconds < 0:
            raise EngineError("retries and the retry delay cannot be negative")
        now = self.clock()
        case_id = self._job_case(job_id)
        with self.db.transaction() as s:
            case = self._lock_case(s, case_id)
            job = self._locked_job(s, job_id, worker_id, now)
            job.error, job.retries = (error or "no reason given")[:2000], retries
            job.worker_id = None
            if retries == 0:
                job.state, job.locked_until = "incident", None
            else:  # back off: the job stays locked by nobody until the delay has passed
                job.locked_until = now + timedelta(seconds=retry_seconds)
            self._record(s, case, None, NewEvent(
                "job_failed", actor.username, now,
                {"task_id": job.id, "element": job.element, "topic": job.topic,
                 "worker_id": worker_id, "error": job.error, "retries": retries,
                 "incident": retries == 0}))
            view = _job_view(job)
        return view

    @command()
    def retry_job(self, job_id: str, retries: int, actor: Actor) -> JobView:
        """An administrator gives an incident (or a failing job) new retries."""
        if not (actor.is_system or actor.role == "admin"):
            raise Forbidden("only an administrator may retry an external job")
        if retries < 1:
            raise EngineError("give the job at least one retry")
        now = self.clock()
        case_id = self._job_case(job_id)
        with self.db.transaction() as s:
            case = self._lock_case(s, case_id)
            job = s.get(ExternalJob, job_id, populate_existing=True)
            if job is None or job.state not in ("open", "incident"):
                raise Conflict(f"external job {job_id} is {job.state if job else 'gone'}")
            job.state, job.retries, job.locked_until, job.worker_id = "open", retries, None, None
            self._record(s, case, None, NewEvent("job_retried", actor.username, now, {
                "task_id": job.id, "element": job.element, "retries": retries}))
            view = _job_view(job)
        return view

    def list_jobs(self, *, states: tuple[str, ...] = ("open", "incident"),
                  case_id: int | None = None, limit: int = 100) -> list[JobView]:
        """External jobs by state (incidents first), for the admin area and the API."""
        with self.db.reading() as s:
            query = select(ExternalJob).where(ExternalJob.state.in_(states))
            if case_id is not None:
                query = query.where(ExternalJob.case_id == case_id)
            rows = s.scalars(query.order_by(ExternalJob.state.desc(), ExternalJob.created_at)
                             .limit(limit))
            return [_job_view(row) for row in rows]


def _caught_messages(version: VersionSpecs) -> set[str]:
    """The messages the main process of a version catches anywhere (not in called ones)."""
    return {definition.name for spec in version.specs.process_spec.task_specs.values()
            if isinstance(definition := getattr(spec, "event_definition", None),
                          MessageEventDefinition)}


def _start_messages(version: VersionSpecs) -> set[str]:
    names: set[str] = set()
    for spec in version.specs.process_spec.task_specs.values():
        definition = getattr(spec, "event_definition", None)
        if isinstance(definition, MessageEventDefinition) and \
                type(spec).__name__ == "StartEvent":
            names.add(definition.name)
    return names


