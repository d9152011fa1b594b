"""The agency service's tables: documents, notifications and mail, list imports, links.

They share the engine's declarative base (one schema, one Alembic chain in
`engine/store/migrations/`); the engine never reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
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
