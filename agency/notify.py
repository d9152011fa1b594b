"""Notifications in the app and by e-mail: raised with the task that causes them, read per
user, and mail sent by the worker from an outbox with retries."""

from __future__ import annotations

import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from agency.models import Notification, OutboxMail
from engine.config import Config
from engine.errors import Forbidden, NotFound
from engine.hooks import TaskRaised
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Department, User

if TYPE_CHECKING:
    from engine.cases import Engine

log = logging.getLogger(__name__)

MAX_MAIL_ATTEMPTS = 8
MAIL_LEASE = timedelta(minutes=5)  # a worker sending a mail holds it this long


@dataclass(frozen=True)
class NotificationView:
    """A notification as the list shows it."""

    id: int
    kind: str
    title: str
    body: str
    case_id: int | None
    task_id: str | None
    created_at: datetime
    read_at: datetime | None


def _view(row: Notification) -> NotificationView:
    return NotificationView(row.id, row.kind, row.title, row.body, row.case_id, row.task_id,
                            row.created_at, row.read_at)


def recipients(s: Session, targets: list[str], task_department: str | None,
               item_department: str | None, day: date | None = None) -> list[User]:
    """The active users a task's `notify` targets name, each once; on a `day`, an agent
    away is replaced by their substitute."""
    from agency.team import substitutes_on

    found: dict[str, User] = {}
    query = select(User).where(User.active.is_(True)).order_by(User.username)
    away = substitutes_on(s, day) if day is not None else {}
    for target in targets:
        if target == "leader":
            department = item_department or task_department
            rows = s.scalars(query.where(User.role == "leader", User.department == department))
        elif target == "office":
            rows = s.scalars(query.where(User.role == "office"))
        elif target == "department":
            rows = s.scalars(query.where(User.role == "agent",
                                         User.department == task_department))
        else:
            continue
        for user in rows:
            if user.username in away:
                stand_in = s.scalar(select(User).where(User.username == away[user.username]))
                if stand_in is not None and stand_in.active:
                    found.setdefault(stand_in.username, stand_in)
                continue
            found.setdefault(user.username, user)
    return list(found.values())


def department_name(s: Session, code: str | None) -> str:
    """A department's name for the message (the code only if it is not registered)."""
    if not code:
        return "—"
    return s.scalar(select(Department.name).where(Department.code == code)) or code


def task_raised(s: Session, raised: TaskRaised, *, mail: bool) -> None:
    """Notify the targets of a new task and queue their e-mail, in the command's transaction."""
    task, case_id, case_title, now = raised.task, raised.case_id, raised.case_title, raised.now
    subject = f"【{task.title}】{case_title}" + (f" · {task.item_name}" if task.item_name else "")
    due = f"；承诺期限 {task.due_at:%Y-%m-%d}" if task.due_at else ""
    body = (f"案件 #{case_id}「{case_title}」"
            + (f"的事项「{task.item_name}」" if task.item_name else "")
            + f"：{task.title}，由 {department_name(s, task.department)} 办理{due}。")
    users = recipients(s, list(raised.targets), task.department, raised.item_department,
                       now.astimezone(SERVICE_TZ).date())
    for user in users:
        s.add(Notification(username=user.username, kind=task.spec_name, title=subject,
                           body=body, case_id=case_id, task_id=task.id, created_at=now))
        if mail and user.email:
            s.add(OutboxMail(recipient=user.email, subject=subject,
                             body=f"{user.display_name}：\n\n{body}\n\n—— 零跑路代办服务",
                             created_at=now, attempts=0, next_attempt_at=now))


def seal_made(s: Session, document: dict[str, Any], *, addresses: tuple[str, ...],
              now: datetime) -> None:
    """Queue a new audit seal to the configured addresses, so copies exist outside the system."""
    body = (f"零跑路代办服务审计封印第 {document['number']} 号（{document['sealed_at']}）。\n"
            "请将本邮件原样保存在系统之外；核验时以 `zerorun verify-seal` 检查。\n"
            f"Audit seal {document['number']} of the zero-run service: keep this mail outside "
            "the system; check it with `zerorun verify-seal`.\n\n"
            + json.dumps(document, indent=1) + "\n")
    for address in addresses:
        s.add(OutboxMail(recipient=address, subject=f"审计封印 #{document['number']} "
                         f"audit seal {document['root'][:16]}", body=body, created_at=now,
                         attempts=0, next_attempt_at=now))


def seal_addresses(config: Config) -> tuple[str, ...]:
    """The addresses every new seal is mailed to (ZERORUN_SEAL_MAIL_TO)."""
    return tuple(a.strip() for a in config.seal_mail_to.split(",") if a.strip())


def list_notifications(engine: Engine, username: str, *, unread_only: bool = False,
                       limit: int = 100) -> list[NotificationView]:
    """A user's notifications, newest first."""
    query = select(Notification).where(Notification.username == username)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    with engine.db.reading() as s:
        return [_view(row) for row in s.scalars(query)]


def unread_count(engine: Engine, username: str) -> int:
    """How many notifications the user has not read."""
    with engine.db.reading() as s:
        return s.scalar(select(func.count()).select_from(Notification).where(
            Notification.username == username, Notification.read_at.is_(None))) or 0


def mark_read(engine: Engine, username: str, notification_id: int | None = None) -> int:
    """Mark one of the user's notifications (or all of them) read; return how many changed."""
    now = engine.clock()
    with engine.db.transaction() as s:
        if notification_id is not None:
            row = s.get(Notification, notification_id)
            if row is None:
                raise NotFound(f"notification {notification_id} does not exist")
            if row.username != username:
                raise Forbidden("this notification is addressed to someone else")
            if row.read_at is not None:
                return 0
            row.read_at = now
            return 1
        result = s.execute(update(Notification).where(
            Notification.username == username, Notification.read_at.is_(None))
            .values(read_at=now))
        return int(getattr(result, "rowcount", 0) or 0)


def deliver_outbox(engine: Engine, limit: int = 50) -> tuple[int, int]:
    """Send the queued e-mails that are due; return (sent, failed this round).

    A failed mail is tried again later, waiting longer each time, up to
    MAX_MAIL_ATTEMPTS attempts; its last error is kept.
    """
    config = engine.config
    if not config.mail_enabled:
        return 0, 0
    now = engine.clock()
    with engine.db.transaction() as s:
        query = (select(OutboxMail).where(OutboxMail.sent_at.is_(None),
                                          OutboxMail.next_attempt_at <= now,
                                          OutboxMail.attempts < MAX_MAIL_ATTEMPTS)
                 .order_by(OutboxMail.id).limit(limit))
        if engine.db.postgres:
            query = query.with_for_update(skip_locked=True)
        due = list(s.scalars(query))
        for mail in due:  # leased, so another worker does not send it at the same time
            mail.next_attempt_at = now + MAIL_LEASE
        batch = [(m.id, m.recipient, m.subject, m.body) for m in due]
    sent = failed = 0
    for mail_id, recipient, subject, body in batch:
        error = _send(config, recipient, subject, body)
        with engine.db.transaction() as s:
            row = s.get(OutboxMail, mail_id)
            if row is None:
                continue
            row.attempts += 1
            if error is None:
                row.sent_at, row.last_error = engine.clock(), None
                sent += 1
            else:
                row.last_error = error
                row.next_attempt_at = engine.clock() + timedelta(minutes=2 ** row.attempts)
                failed += 1
                log.warning("mail %s to %s failed (attempt %s): %s", mail_id, recipient,
                            row.attempts, error)
    return sent, failed


def _send(config: Config, recipient: str, subject: str, body: str) -> str | None:
    """Send one message; return the error text, or None when the server accepted it."""
    message = EmailMessage()
    message["From"] = config.smtp_from
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=15) as smtp:
            if config.smtp_starttls == "1":
                smtp.starttls()
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password)
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
