"""The agency service's tables: documents, notifications and mail, list imports, links.

They share the engine's declarative base (one schema, one Alembic chain in
`engine/store/migrations/`); the engine never reads them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.store.models import Base

# Documents, notifications and mail (oversight) ----------------------------------------


class Document(Base):
    """A document produced from a case's data (or the service's figures), kept as issued."""

    __tablename__ = "document"
    __table_args__ = (Index("ix_document_case_kind", "case_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for the periodic progress report of the whole service.
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))
    # What it was produced from within the case: a task id, a department code, or "".
    source: Mapped[str] = mapped_column(String(100), default="")
    title: Mapped[str] = mapped_column(String(500))
    department: Mapped[str | None] = mapped_column(String(64), nullable=True)
    html: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    # The document's number under the service's scheme (中卫代办〔2026〕第3号); None before it.
    number: Mapped[str | None] = mapped_column(String(80), nullable=True, default=None)


class DocumentCounter(Base):
    """The last document number issued in a year: numbers are allocated in the document's
    transaction, per year, and never reused."""

    __tablename__ = "document_counter"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


class Notification(Base):
    """A message for one user in the app (a warning raised, a task escalated)."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_read", "username", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)


class OutboxMail(Base):
    """An e-mail queued in the transaction that caused it; the worker sends and retries it."""

    __tablename__ = "outbox_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


# Intake, follow-up and enterprise access (migration 0005_intake) -----------------------


class ProjectImport(Base):
    """An uploaded project list waiting in preview until the office imports or discards it."""

    __tablename__ = "project_import"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(40))
    # Each row: {"line": n, "values": {field: text}}; errors: {str(line): [{field, message}]}.
    rows: Mapped[list[Any]]
    errors: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    case_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class EnterpriseLink(Base):
    """A revocable read-only link for a project unit; only the token's digest is stored."""

    __tablename__ = "enterprise_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    recipient: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


# Webhooks (migration 0011_messages_jobs) ------------------------------------------------


class WebhookSubscription(Base):
    """An administrator's subscription of a URL to event types, with its signing secret."""

    __tablename__ = "webhook_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    event_types: Mapped[list[Any]] = mapped_column(JSON)
    # Encrypted with the webhook key kept outside the database (agency/webhooks.py).
    secret: Mapped[str] = mapped_column(String(400))
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event to one subscription, written in the event's transaction; the worker sends
    it with retries and keeps what the receiver answered (the subscription's delivery log)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
                      Index("ix_webhook_delivery_subscription", "subscription_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id"))
    event_type: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    # pending (to send or to retry), sent, failed (no attempts left)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


# Warnings, agent team, training, satisfaction (migration 0008_service_team) ------------


class WarningSent(Base):
    """One overdue warning told to one user: each level of a task's limit reaches each person
    once, whether the sweep or a diagram's warning task told them."""

    __tablename__ = "warning_sent"
    __table_args__ = (UniqueConstraint("case_id", "subject", "level", "username",
                                       name="uq_warning_sent"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"))
    # "item:<code>:<stage>" for an approval item in one stage, "task:<id>" for another task.
    subject: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(10))
    username: Mapped[str] = mapped_column(String(100))
    task_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]


class AgentAbsence(Base):
    """An agent away for a period, and the colleague (B post) who takes their tasks."""

    __tablename__ = "agent_absence"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    substitute: Mapped[str] = mapped_column(String(100))
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class TrainingSession(Base):
    """A training session of the agency team, with the agents who attended it."""

    __tablename__ = "training_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    held_on: Mapped[date] = mapped_column(index=True)
    hours: Mapped[float]
    topics: Mapped[str] = mapped_column(Text, default="")
    # Usernames of the agents invited and of those who attended.
    invited: Mapped[list[Any]] = mapped_column(JSON)
    attended: Mapped[list[Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


# The working-day calendar kept by the office -------------------------------------------


class CalendarDay(Base):
    """A day the office declared a public holiday or a make-up working day, over the
    published calendar of `data/calendar.json`; `kind` "normal" undoes a published entry."""

    __tablename__ = "calendar_day"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # ISO date
    kind: Mapped[str] = mapped_column(String(10))  # holiday | workday | normal
    note: Mapped[str] = mapped_column(String(200), default="")
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime]


# The dashboard's figures kept by the database (migration 0023_figures_kept) ------------


class ItemSpan(Base):
    """A finished approval item of a case: its first task's creation and its hand-over (the
    dashboard's handling times). Written only by the database's triggers on `human_task`,
    from the item's tasks, in the transaction that writes them."""

    __tablename__ = "item_span"

    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"),
                                         primary_key=True)
    item_code: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    item_name: Mapped[str | None] = mapped_column(String(300), nullable=True)


class CaseItem(Base):
    """An approval item of a case's data (`items`, by code) and the department it names, if
    any. Written only by the database's triggers on `case`, whenever its data is written."""

    __tablename__ = "case_item"

    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"),
                                         primary_key=True)
    item_code: Mapped[str] = mapped_column(Text, primary_key=True)
    department: Mapped[str | None] = mapped_column(Text, nullable=True)


class ItemPause(Base):
    """A stop of an approval item's clock (行政许可法 §45): why, from when, for how many
    working days, and when it was resumed. Written only from the case's `deadlines_moved`
    events (agency/clocks.py), in the transaction that records them."""

    __tablename__ = "item_pause"
    __table_args__ = (Index("ix_item_pause_case_item", "case_id", "item_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"))
    item_code: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))  # applicant | procedure
    started_on: Mapped[str] = mapped_column(String(10))  # ISO date
    planned_days: Mapped[int]
    ends_on: Mapped[str] = mapped_column(String(10))  # the last paused working day, planned
    resumed_on: Mapped[str | None] = mapped_column(String(10), nullable=True)
    days: Mapped[int]  # working days counted: the planned ones, or those up to the resumption
    note: Mapped[str] = mapped_column(String(500), default="")
    paused_by: Mapped[str] = mapped_column(String(100))
    event_seq: Mapped[int]
