"""SQLAlchemy models: process versions, cases, the human-task index, timers, events, users."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Department(Base):
    """A unit taking part in the agency service (reference data)."""

    __tablename__ = "department"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    leader: Mapped[str] = mapped_column(String(100), default="")
    agent: Mapped[str] = mapped_column(String(100), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)


class User(Base):
    """An account: agent, leader, office, admin or auditor."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    department: Mapped[str | None] = mapped_column(ForeignKey("department.code"), nullable=True)
    active: Mapped[bool] = mapped_column(default=True)
    api_token_hash: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]
    # Where warnings are mailed (optional; see ZERORUN_SMTP_HOST).
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # Sessions carry the epoch they were opened in; deactivating the account or resetting
    # its password moves it on, which ends every open session at once (migration 0009).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LoginThrottle(Base):
    """Failed logins from one client address in the current window, across accounts."""

    __tablename__ = "login_throttle"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime]
    failures: Mapped[int] = mapped_column(Integer, default=0)


class ProcessVersion(Base):
    """One immutable version of a process, identified by the hash of its content."""

    __tablename__ = "process_version"
    __table_args__ = (
        UniqueConstraint("process_id", "content_hash"),
        UniqueConstraint("process_id", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(300))
    number: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="published")
    startable: Mapped[bool] = mapped_column(default=False)
    author: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The serialized SpiffWorkflow specs (the process and every process it calls),
    # stored once per version rather than inside every case.
    spec: Mapped[bytes] = mapped_column(LargeBinary)
    # Source files (BPMN/DMN XML and forms) by file name: what the editor opens.
    sources: Mapped[dict[str, Any]]
    # Per user task: form, owner rule, labels.
    task_specs: Mapped[dict[str, Any]]


class Case(Base):
    """A running (or finished) case of a process version."""

    __tablename__ = "case"
    __table_args__ = (Index("ix_case_status_id", "status", "id"),
                      Index("ix_case_started_at", "started_at", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    project_code: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(20), default="running", index=True)
    # Incremented by every command that changes the workflow: the optimistic-lock
    # counter and the key of the in-memory cache of live workflows.
    state_version: Mapped[int] = mapped_column(Integer, default=0)
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[dict[str, Any]]
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    end_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class CaseSnapshot(Base):
    """The serialized workflow state of a case after a given event (a cache of the events)."""

    __tablename__ = "case_snapshot"

    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"),
                                         primary_key=True)
    event_seq: Mapped[int] = mapped_column(Integer)
    id_counter: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)


class CaseElement(Base):
    """A BPMN element a case has reached (completed, under way or waiting), kept by every
    command in its transaction so a version's heatmap is a GROUP BY (migration 0018)."""

    __tablename__ = "case_element"
    __table_args__ = (Index("ix_case_element_version", "process_version_id", "process_id",
                            "bpmn_id"),)

    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"),
                                         primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    bpmn_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # The case's version (copied, so the heatmap reads this table alone).
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"))


class HumanTask(Base):
    """The index of human tasks: what inboxes list, without deserializing any workflow."""

    __tablename__ = "human_task"
    __table_args__ = (
        # With the assignee: an inbox's overdue tasks counted from the index alone (0024).
        Index("ix_human_task_department_state", "department", "state", "due_at", "assignee"),
        Index("ix_human_task_assignee_state", "assignee", "state"),
        Index("ix_human_task_case_state", "case_id", "state"),
        # Inbox filters and the "oldest first" order within a department's open tasks.
        Index("ix_human_task_department_state_created", "department", "state", "created_at"),
        Index("ix_human_task_department_state_phase", "department", "state", "phase", "due_at"),
        Index("ix_human_task_department_state_item", "department", "state", "item_code",
              "due_at"),
        Index("ix_human_task_completed_by", "completed_by", "case_id"),
        Index("ix_human_task_item_code", "item_code", "case_id"),
        # "Cases where a department held a task" read from the index alone (audit search).
        Index("ix_human_task_department_case", "department", "case_id"),
        # The warning tasks raised per case and item (the dashboard's levels), and the
        # finished items' spans per item and case (its handling times), from the index alone.
        Index("ix_human_task_spec_state", "spec_name", "state", "case_id", "item_code"),
        Index("ix_human_task_item_spans", "item_code", "case_id", "state", "spec_name",
              "created_at", "completed_at", "item_name", "department"),
        # Tasks per element with their states and times, in order (the heatmap, 0023).
        Index("ix_human_task_element_state", "process_id", "spec_name", "state", "case_id",
              "created_at", "completed_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"))
    process_id: Mapped[str] = mapped_column(String(200))
    spec_name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(500))
    department: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assignee: Mapped[str | None] = mapped_column(String(100), nullable=True)
    state: Mapped[str] = mapped_column(String(20), default="ready")
    version: Mapped[int] = mapped_column(Integer, default=1)
    form: Mapped[str | None] = mapped_column(String(200), nullable=True)
    item_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    item_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    phase: Mapped[str | None] = mapped_column(String(20), nullable=True)
    stage: Mapped[str | None] = mapped_column(String(40), nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # When the service's rule says the task nears its limit (set by the `task_indexed` hook,
    # kept in line by the service when its calendar changes); null: no warning before due_at.
    # Lets pages count levels in SQL (migration 0021_warn_moments).
    warn_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # A task of a green-channel item (绿色通道): handled with priority, shorter limits.
    green_channel: Mapped[bool] = mapped_column(default=False, server_default=false())
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Intake and follow-up (migration 0005_intake): the data submitted when the task was
    # completed, and the element of a multi-instance task (a follow-up action, an opinion,
    # a policy), so follow-up records are queryable without replaying events.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    subject: Mapped[Any | None] = mapped_column(JSON, nullable=True)


class TaskTally(Base):
    """How many ready tasks the index holds per department, assignee, process, stage, phase
    and item ('' where the task's column is NULL or nobody claimed it): what an inbox's
    counts add up instead of counting the backlog. Written only by the database's triggers
    on `human_task`, in the transaction that writes the tasks (migration 0024_task_tallies);
    a key with no ready task has no row."""

    __tablename__ = "task_tally"

    department: Mapped[str] = mapped_column(String(64), primary_key=True)
    assignee: Mapped[str] = mapped_column(String(100), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    stage: Mapped[str] = mapped_column(String(40), primary_key=True)
    phase: Mapped[str] = mapped_column(String(20), primary_key=True)
    item_code: Mapped[str] = mapped_column(String(100), primary_key=True)
    item_name: Mapped[str] = mapped_column(String(300), primary_key=True)
    n: Mapped[int]


class Timer(Base):
    """A timer event waiting in a case, with the moment it is due."""

    __tablename__ = "timer"
    __table_args__ = (UniqueConstraint("case_id", "task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"))
    task_id: Mapped[str] = mapped_column(String(36))
    spec_name: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(index=True)


class Event(Base):
    """An append-only audit event, hash-chained to the previous event of its stream."""

    __tablename__ = "event"
    __table_args__ = (UniqueConstraint("stream", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "case:<id>" for a case's events, "ops" for administrators' operations.
    stream: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"), nullable=True, index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(60), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Attachment(Base):
    """A file uploaded for a case (a material of an item), kept under the instance folder."""

    __tablename__ = "attachment"
    __table_args__ = (Index("ix_attachment_case", "case_id", "id"),
                      Index("ix_attachment_task", "task_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"))
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    material: Mapped[str | None] = mapped_column(String(100), nullable=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(100))
    uploaded_at: Mapped[datetime]


class Seal(Base):
    """A signed Merkle root over the head of every event stream at one moment (audit seal).

    `number` counts seals from 1 and `prev_root` is the previous seal's root, so seals chain;
    the signature covers number, root, tree size, time and previous root. The private key
    that signs lives outside the database.
    """

    __tablename__ = "audit_seal"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    tree_size: Mapped[int] = mapped_column(Integer)
    sealed_at: Mapped[datetime]
    prev_root: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the previous seal (signed fields and signature): the chain's link.
    prev_seal: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class SealLeaf(Base):
    """One leaf of a seal's tree: a stream's last event then, and the root of its event hashes."""

    __tablename__ = "audit_seal_leaf"
    __table_args__ = (Index("ix_audit_seal_leaf_stream", "stream", "seal_number"),)

    seal_number: Mapped[int] = mapped_column(ForeignKey("audit_seal.number"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stream: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    events_root: Mapped[str] = mapped_column(String(64))


class SealedEvent(Base):
    """An event's hash as the first seal that covered it recorded it (to locate rewrites)."""

    __tablename__ = "audit_sealed_event"

    stream: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    seal_number: Mapped[int] = mapped_column(ForeignKey("audit_seal.number"))


class WorkerHeartbeat(Base):
    """The timer worker of one host: when its loop last ran and what it did (migration 0014)."""

    __tablename__ = "worker_heartbeat"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    beat_at: Mapped[datetime]
    started_at: Mapped[datetime]
    loops: Mapped[int] = mapped_column(Integer, default=0)
    timers_fired: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class MessageWait(Base):
    """A message event or receive task waiting in a case, and how callers correlate it."""

    __tablename__ = "message_wait"
    __table_args__ = (Index("ix_message_wait_name", "message", "correlation_key"),)

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message: Mapped[str] = mapped_column(String(200), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    element: Mapped[str] = mapped_column(String(200))
    process_id: Mapped[str] = mapped_column(String(200))
    # The value of the element's `correlationKey` expression when the wait began.
    correlation_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The department the element lets deliver the message (its departmentExpression or its
    # lane, when the wait began); None: the office, administrators and granted accounts.
    department: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MessageGrant(Base):
    """An account (another system's) allowed to deliver a message to whatever waits for it."""

    __tablename__ = "message_grant"

    username: Mapped[str] = mapped_column(String(100), primary_key=True)
    message: Mapped[str] = mapped_column(String(200), primary_key=True)
    granted_by: Mapped[str] = mapped_column(String(100))
    granted_at: Mapped[datetime]


class ExternalJob(Base):
    """A service task with a topic, done by a worker outside (fetch-and-lock, complete, fail)."""

    __tablename__ = "external_job"
    __table_args__ = (Index("ix_external_job_topic", "topic", "state"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the task's id
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    element: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(100))
    # open (fetchable when unlocked and not backed off), incident (no retries left),
    # completed, cancelled (the case moved on without it).
    state: Mapped[str] = mapped_column(String(20))
    retries: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WhatIfRun(Base):
    """A what-if replay: recorded cases re-executed against a draft version, done by the
    worker in slices (migration 0025); nothing of the cases is written."""

    __tablename__ = "whatif_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    # queued, running (a worker holds it until lease_until), done, failed
    state: Mapped[str] = mapped_column(String(20), index=True)
    case_ids: Mapped[list[int]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class WhatIfResult(Base):
    """One case of a what-if run: identical, diverged (where and how) or failed."""

    __tablename__ = "whatif_result"

    run_id: Mapped[int] = mapped_column(ForeignKey("whatif_run.id", ondelete="CASCADE"),
                                        primary_key=True)
    case_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    # For a running case: whether the existing migration check lets it move to the draft.
    migratable: Mapped[bool | None] = mapped_column(nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
