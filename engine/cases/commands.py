"""Commands: each one transaction over a case's state, task index and events."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.actors import STARTERS, SYSTEM, Actor, OnBehalf
from engine.audit import chain as audit
from engine.audit.chain import GENESIS, NewEvent
from engine.cases.instrument import command
from engine.cases.queries import Queries
from engine.cases.views import (
    COMMENT_MAX,
    COMMENT_ROLES,
    WORKFLOW_EVENTS,
    CaseView,
    CommentView,
    LiveCase,
    LoadResult,
    TaskView,
    attachment_view,
    plain_data,
    task_view,
)
from engine.cases.workflow import apply_event
from engine.errors import (
    Conflict,
    EngineError,
    FieldError,
    Forbidden,
    InvalidData,
    ProcessNotFound,
    TaskNotFound,
    TaskNotReady,
)
from engine.hooks import DataSubmitted
from engine.pack.loader import (
    Pack,
    PackParser,
    ParsedProcess,
    SourceFile,
    read_pack_dir,
    start_form_files,
)
from engine.runtime import branch_data, clock, recorded
from engine.runtime.spiff import (
    IdSource,
    case_namespace,
    dump_specs,
    new_workflow,
    task_ids,
)
from engine.store.files import AttachmentView, check_upload
from engine.store.models import (
    Case,
    HumanTask,
    ProcessVersion,
)


class Commands(Queries):
    """Deploying versions, starting cases, completing, claiming and releasing tasks."""

    def parse_pack(self, files: list[SourceFile]) -> Pack:
        """Validate pack files without storing anything (raises InvalidProcess)."""
        return PackParser(self.department_names(), self.functions,
                          self.config.max_instances).parse(files)

    def load_processes(self, directory: Path | None = None, *, actor: Actor = SYSTEM,
                       comment: str = "loaded from the process pack") -> LoadResult:
        """Load every process of a pack folder; a content already stored creates nothing."""
        pack = self.parse_pack(read_pack_dir(directory or self.config.processes_dir))
        return self.store_pack(pack, actor=actor, comment=comment)

    @command()
    def store_pack(self, pack: Pack, *, actor: Actor, comment: str,
                   publish: bool = True) -> LoadResult:
        """Store a new immutable version of each process whose content changed."""
        result = LoadResult()
        now = self.clock()
        with self.db.transaction() as s:
            for parsed in pack.processes.values():
                existing = s.scalar(select(ProcessVersion).where(
                    ProcessVersion.process_id == parsed.process_id,
                    ProcessVersion.content_hash == parsed.content_hash))
                if existing is not None:
                    result.unchanged.append((parsed.process_id, existing.number))
                    continue
                version = self._new_version(s, parsed, pack, actor, comment, now, publish)
                result.created.append((parsed.process_id, version.number))
        return result

    def _new_version(self, s: Session, parsed: ParsedProcess, pack: Pack, actor: Actor,
                     comment: str, now: datetime, publish: bool) -> ProcessVersion:
        number = (s.scalar(select(func.max(ProcessVersion.number)).where(
            ProcessVersion.process_id == parsed.process_id)) or 0) + 1
        if publish:
            s.execute(update(ProcessVersion).where(
                ProcessVersion.process_id == parsed.process_id,
                ProcessVersion.status == "published").values(status="retired"))
        version = ProcessVersion(
            process_id=parsed.process_id, name=parsed.name, number=number,
            content_hash=parsed.content_hash, status="published" if publish else "draft",
            startable=parsed.startable, author=actor.username, comment=comment,
            created_at=now, published_at=now if publish else None,
            spec=dump_specs(parsed.specs),
            sources={name: pack.sources[name] for name in parsed.files},
            task_specs=parsed.task_specs)
        s.add(version)
        s.flush()
        audit.append_ops(s, NewEvent("process_version_saved", actor.username, now, {
            "process_id": parsed.process_id, "version": number,
            "content_hash": parsed.content_hash, "status": version.status,
            "comment": comment}))
        return version

    @command()
    def start_case(self, process_id: str, data: Mapping[str, Any], actor: Actor, *,
                   version_id: int | None = None, title: str | None = None) -> CaseView:
        """Start a case of the published (or given) version and run it to its first wait."""
        now = self.clock()
        with self._unit() as s:
            row = self._startable_version(s, process_id, actor, version_id)
            view = self._start(s, row, plain_data(data), actor, now, title)
        return view

    @command()
    def start_cases(self, process_id: str, starts: Sequence[tuple[Mapping[str, Any], str | None]],
                    actor: Actor, *,
                    then: Callable[[Session, list[CaseView]], None] | None = None
                    ) -> list[CaseView]:
        """Start many cases (data, title) in one transaction: all of them or none.

        `then` runs inside the same transaction once every case has started, so a
        caller can record what the batch belongs to; if it raises, nothing is kept.
        """
        now = self.clock()
        with self._unit() as s:
            row = self._startable_version(s, process_id, actor, None)
            views = [self._start(s, row, plain_data(data), actor, now, title)
                     for data, title in starts]
            if then is not None:
                then(s, views)
        return views

    def _startable_version(self, s: Session, process_id: str, actor: Actor,
                           version_id: int | None) -> ProcessVersion:
        row = (s.get(ProcessVersion, version_id) if version_id is not None
               else self.published_version(s, process_id))
        if row is None or row.process_id != process_id:
            raise ProcessNotFound(f"process {process_id!r} has no version {version_id}")
        # Called-only processes (an item's approval, a phase) run inside the case that calls
        # them: nobody starts one directly with made-up data, whatever their role. Only the
        # system (the command line, the engine's own tests) starts any process.
        if not (actor.is_system or (row.startable and actor.role in STARTERS)):
            raise Forbidden("you may not start cases of this process")
        return row

    def _start(self, s: Session, row: ProcessVersion, initial: dict[str, Any], actor: Actor,
               now: datetime, title: str | None) -> CaseView:
        """Create one case inside the caller's transaction and run it to its first wait."""
        version = self._version(s, row.id)
        start_form = start_form_files(row.process_id)[0]
        if version.forms.schema(start_form) is not None:
            version.forms.validate(start_form, initial)
        raw_project = initial.get("project")
        project: dict[str, Any] = raw_project if isinstance(raw_project, dict) else {}
        case = Case(process_version_id=row.id, process_id=row.process_id,
                    title=title or str(project.get("name") or row.name),
                    project_code=project.get("code"), status="running", state_version=0,
                    event_seq=0, last_hash=GENESIS, data=initial,
                    started_by=actor.username, started_at=now, updated_at=now)
        s.add(case)
        s.flush()
        for hook in self.hooks.data_submitted:
            hook(s, DataSubmitted(case, None, initial, actor))
        ids = IdSource(case_namespace(case.id))
        with clock.pinned(now), task_ids(ids):
            workflow = new_workflow(version.specs, self.script_engine,
                                    self.config.max_instances)
            with recorded.record() as calls:
                apply_event(workflow, "case_started", {
                    "data": initial, branch_data.MODE_KEY: branch_data.CHANGES}, case.id)
            live = LiveCase(workflow, ids, 0, 0, 0, departments=set(), timers={},
                            elements=set(), elements_version=row.id, open_tasks=set())
            open_rows = self._after_change(s, case, live, version, now, None)
        self._record(s, case, live, NewEvent("case_started", actor.username, now, {
            "process_id": row.process_id, "process_version_id": row.id,
            "version": row.number, "content_hash": row.content_hash, "data": initial,
            branch_data.MODE_KEY: branch_data.CHANGES,
            **({"calls": calls} if calls else {})}))
        self._snapshot(s, case, live, force=True)
        self._pending.append((case.id, live))
        return self._answer(s, case, live, open_rows)

    @command()
    def complete_task(self, task_id: str, data: Mapping[str, Any], actor: Actor,
                      seen_version: int | None = None) -> CaseView:
        """Complete a ready task with the actor's data; the next wait state is reached."""
        submitted = plain_data(data)
        return self._task_command(task_id, actor, seen_version, "task_completed", submitted)

    @command()
    def complete_for(self, task_id: str, data: Mapping[str, Any], actor: Actor,
                     on_behalf: OnBehalf, seen_version: int | None = None) -> CaseView:
        """Complete an external lane's ready task on its participant's behalf: the actor is
        one the lane's proxy names; the event records whom it acted for (`on_behalf_of`),
        how the participant confirmed the step and the evidence, stored in the same
        transaction. Re-execution applies it as any completion."""
        submitted = plain_data(data)
        return self._task_command(task_id, actor, seen_version, "task_completed", submitted,
                                  on_behalf)

    @command()
    def claim_task(self, task_id: str, actor: Actor, seen_version: int | None = None
                   ) -> TaskView:
        """Take a ready task of the actor's department so colleagues see it is being handled."""
        return self._assign(task_id, actor, seen_version, claim=True)

    @command()
    def release_task(self, task_id: str, actor: Actor, seen_version: int | None = None
                     ) -> TaskView:
        """Give a claimed task back to the department's inbox."""
        return self._assign(task_id, actor, seen_version, claim=False)

    @command()
    def reassign_task(self, task_id: str, to: Actor, actor: Actor) -> TaskView:
        """Hand a ready task to another user of its department (a substitute while its holder
        is away); only the system or the office may."""
        if not (actor.is_system or actor.role == "office"):
            raise Forbidden("only the office may hand tasks to a substitute")
        now = self.clock()
        with self.db.transaction() as s:
            case, row = self._lock_one_task(s, task_id)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            if to.is_system or not to.may_work_on(row.department):
                raise Forbidden(f"{to.username} may not work on tasks of {row.department}")
            before = row.assignee
            row.assignee, row.claimed_at = to.username, now
            row.version += 1
            self._record(s, case, None, NewEvent("task_reassigned", actor.username, now, {
                "task_id": row.id, "task_spec": row.spec_name, "from": before,
                "to": to.username}))
            return task_view(row, case.title)

    @command()
    def save_draft(self, task_id: str, data: Mapping[str, Any], actor: Actor) -> TaskView:
        """Keep half-filled form data on a task without completing it."""
        now = self.clock()
        with self.db.transaction() as s:
            # The case first, then the task, as every command locks them: the other order
            # could deadlock against a completion of the same case on PostgreSQL.
            case, row = self._lock_one_task(s, task_id)
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            row.draft = plain_data(data)
            row.version += 1
            self._record(s, case, None, NewEvent("task_draft_saved", actor.username, now,
                                                 {"task_id": row.id}))
            view = task_view(row, case.title)
        return view

    @command()
    def record_case_event(self, case_id: int, event_type: str, data: Mapping[str, Any],
                          actor: Actor) -> None:
        """Append a non-workflow event (e.g. `document_generated`) to a case's chain."""
        with self.db.transaction() as s:
            self.append_case_event(s, case_id, NewEvent(event_type, actor.username,
                                                        self.clock(), plain_data(data)))

    def append_case_event(self, s: Session, case_id: int, new: NewEvent) -> None:
        """Append a non-workflow event inside the caller's transaction (replays skip it)."""
        if new.type in WORKFLOW_EVENTS:
            raise EngineError(f"{new.type} events are recorded by the engine's commands only")
        case = self._lock_case(s, case_id)
        self._record(s, case, None, new)

    @command()
    def add_comment(self, case_id: int, text: str, actor: Actor,
                    task_id: str | None = None) -> CommentView:
        """Leave a comment on a case (or one of its tasks) for the departments involved.

        Comments are case events: hash-chained, shown to whoever may read the case, and
        skipped by re-execution, since they change nothing in the workflow."""
        text = (text or "").strip()
        if actor.role not in COMMENT_ROLES:
            raise Forbidden("only agents, leaders and the office may comment on cases")
        problem = ("write the comment first; nothing was saved" if not text else
                   f"a comment has at most {COMMENT_MAX} characters; nothing was saved"
                   if len(text) > COMMENT_MAX else None)
        if problem:
            raise InvalidData(problem, [FieldError("text", problem)])
        self.check_case_visible(case_id, actor)
        now = self.clock()
        with self.db.transaction() as s:
            if task_id is not None:
                row = s.get(HumanTask, task_id)
                if row is None or row.case_id != case_id:
                    raise TaskNotFound(f"task {task_id} is not a task of case {case_id}")
            case = self._lock_case(s, case_id)
            self._record(s, case, None, NewEvent("comment_added", actor.username, now,
                                                 {"text": text, "task_id": task_id}))
            seq = case.event_seq
        return CommentView(seq, case_id, task_id, text, actor.username, now)

    @command()
    def terminate_case(self, case_id: int, reason: str, actor: Actor) -> CaseView:
        """Stop a running case with a reason; its open tasks and timers are withdrawn."""
        if not reason or not reason.strip():
            raise EngineError("a reason is required to terminate a case")
        if not (actor.is_system or actor.role in ("office", "admin")):
            raise Forbidden("only the office or an administrator may terminate a case")
        return self._case_command(case_id, actor, "case_terminated", {"reason": reason.strip()})

    @command()
    def add_attachment(self, task_id: str, filename: str, content: bytes, actor: Actor,
                       material: str | None = None) -> AttachmentView:
        """Attach a file to a ready task the actor may work on (recorded in the case's
        audit chain with its SHA-256)."""
        name, content_type = check_upload(filename, content)
        now = self.clock()
        with self.db.transaction() as s:
            case, row = self._lock_one_task(s, task_id)
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            attachment = self._store_attachment(s, case, row, actor, now, name, content_type,
                                                content, material)
            return attachment_view(attachment)

    def _assign(self, task_id: str, actor: Actor, seen_version: int | None, claim: bool
                ) -> TaskView:
        now = self.clock()
        with self.db.transaction() as s:
            case, row = self._lock_one_task(s, task_id)  # the case first, then its task
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            if seen_version is not None and row.version != seen_version:
                raise Conflict("this task changed since you opened it; reload it",
                               task_id=task_id, version=row.version)
            if claim:
                if row.assignee and row.assignee != actor.username:
                    raise Conflict(f"this task is already claimed by {row.assignee}")
                row.assignee, row.claimed_at = actor.username, now
            else:
                is_leader = actor.role == "leader" and actor.department == row.department
                if row.assignee is None:
                    raise Conflict("this task is not claimed")
                if row.assignee != actor.username and not (is_leader or actor.is_system):
                    raise Forbidden(f"only {row.assignee} or the department's leader may "
                                    "release this task")
                row.assignee, row.claimed_at = None, None
            row.version += 1
            self._record(s, case, None, NewEvent(
                "task_claimed" if claim else "task_released", actor.username, now,
                {"task_id": row.id, "task_spec": row.spec_name}))
            return task_view(row, case.title)

