"""Overdue warnings for every task with a due date, in every stage.

Yellow (临期) reaches the agents of the task's department and the responsible leader; red
(超期) reaches them and the leading-group office. Each level of a limit reaches each person
once: what was told is kept in `warning_sent`, whether the sweep told it or a diagram's own
warning task (the acceleration stage's yellow and red warnings) did. The levels are the ones
the dashboard counts (`oversight.levels_in`), evaluated in the transaction of every command
on the case and, as time passes, by the worker's sweep (one transaction per case).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import Notification, OutboxMail, WarningSent
from agency.notify import department_name, recipients
from agency.oversight import LEVELS, WARNING_TASKS, levels_in
from agency.reference import ReferenceData, reference_of
from engine.hooks import CaseChanged, TaskRaised
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, HumanTask

if TYPE_CHECKING:
    from engine.cases import Engine

# Who hears of each level (targets of `notify.recipients`).
TARGETS = {"yellow": ("department", "leader"), "red": ("department", "leader", "office")}
LEVEL_NAMES = {"yellow": "黄色预警（临近时限）", "red": "红色预警（已超期）"}


def subject_of(row: HumanTask) -> str:
    """What a warning is about: an approval item in one stage (its limit there), or the task
    itself when it belongs to no item."""
    if row.item_code:
        return f"item:{row.item_code}:{row.stage or ''}"
    return f"task:{row.id}"


def item_departments(case: Case) -> set[str]:
    """The departments with an item in a case: their agents and leaders read it."""
    return {str(item["department"]) for item in (case.data or {}).get("items") or []
            if isinstance(item, dict) and item.get("department")}


def _item_department(case: Case | None, item_code: str | None) -> str | None:
    if case is None or not item_code:
        return None
    for item in case.data.get("items") or []:
        if isinstance(item, dict) and item.get("code") == item_code and item.get("department"):
            return str(item["department"])
    return None


def _told(s: Session, case_id: int) -> set[tuple[str, str, str]]:
    return {(subject, level, username) for subject, level, username in s.execute(
        select(WarningSent.subject, WarningSent.level, WarningSent.username)
        .where(WarningSent.case_id == case_id))}


def sweep_case(s: Session, ref: ReferenceData, case_id: int, now: datetime, *,
               mail: bool, open_tasks: Sequence[HumanTask] | None = None) -> int:
    """Tell everyone the open tasks' levels concern what they have not been told; return how
    many notifications were added (in the caller's transaction). `open_tasks`: the case's
    open task rows when the caller holds them all (a command), instead of reading them."""
    case = s.get(Case, case_id)
    if case is None or case.status != "running":
        return 0
    if open_tasks is None:
        rows = list(s.scalars(select(HumanTask).where(
            HumanTask.case_id == case_id, HumanTask.state == "ready",
            HumanTask.due_at.is_not(None)).order_by(HumanTask.created_at, HumanTask.id)))
    else:
        rows = sorted((row for row in open_tasks if row.state == "ready" and row.due_at),
                      key=lambda row: (row.created_at, row.id))
    if not rows:
        return 0
    levels = levels_in(s, ref, rows, now)
    worst: dict[str, tuple[str, HumanTask]] = {}
    for row in rows:
        level = levels.get(row.id, "none")
        if level == "none":
            continue
        subject = subject_of(row)
        if subject not in worst or LEVELS.index(level) > LEVELS.index(worst[subject][0]):
            worst[subject] = (level, row)
    if not worst:
        return 0
    told = _told(s, case_id)
    added = 0
    for subject, (level, row) in worst.items():
        users = recipients(s, list(TARGETS[level]), row.department,
                           _item_department(case, row.item_code),
                           now.astimezone(SERVICE_TZ).date())
        for user in users:
            if (subject, level, user.username) in told:
                continue
            told.add((subject, level, user.username))
            _tell(s, case, row, level, subject, user, now, mail=mail)
            added += 1
    return added


def _tell(s: Session, case: Case, row: HumanTask, level: str, subject: str, user: Any,
          now: datetime, *, mail: bool) -> None:
    what = row.item_name or row.title
    due = row.due_at.astimezone(SERVICE_TZ).strftime("%Y-%m-%d") if row.due_at else ""
    title = f"【{LEVEL_NAMES[level]}】{case.title} · {what}"
    state = "已超过期限" if level == "red" else "即将到期"
    body = (f"案件 #{case.id}「{case.title}」的「{what}」（{row.title}，由 "
            f"{department_name(s, row.department)} 办理）{state}，期限 {due}。")
    s.add(Notification(username=user.username, kind=f"warning_{level}", title=title,
                       body=body, case_id=case.id, task_id=row.id, created_at=now))
    s.add(WarningSent(case_id=case.id, subject=subject, level=level, username=user.username,
                      task_id=row.id, created_at=now))
    if mail and user.email:
        s.add(OutboxMail(recipient=user.email, subject=title,
                         body=f"{user.display_name}：\n\n{body}\n\n—— 零跑路代办服务",
                         created_at=now, attempts=0, next_attempt_at=now))


def case_changed(s: Session, changed: CaseChanged, *, reference: ReferenceData,
                 mail: bool) -> None:
    """The engine's hook: evaluate the case's warnings in the command's transaction."""
    sweep_case(s, reference, changed.case_id, changed.now, mail=mail,
               open_tasks=changed.open_tasks)


def task_raised(s: Session, raised: TaskRaised) -> None:
    """A diagram's own warning task told its targets: remember it, so the sweep does not
    tell the same people the same level of the same limit again."""
    level = WARNING_TASKS.get(raised.task.spec_name)
    if level is None:
        return
    row = raised.task
    subject = subject_of(row)
    told = _told(s, raised.case_id)
    for user in recipients(s, list(raised.targets), row.department, raised.item_department,
                           raised.now.astimezone(SERVICE_TZ).date()):
        if (subject, level, user.username) not in told:
            told.add((subject, level, user.username))
            s.add(WarningSent(case_id=raised.case_id, subject=subject, level=level,
                              username=user.username, task_id=row.id, created_at=raised.now))


def sweep(engine: Engine, limit: int = 500) -> int:
    """The worker's sweep: each running case with a dated open task, one transaction each;
    return how many notifications were sent."""
    ref = reference_of(engine)
    now = engine.clock()
    with engine.db.reading() as s:
        case_ids = list(s.scalars(
            select(HumanTask.case_id).join(Case, Case.id == HumanTask.case_id)
            .where(HumanTask.state == "ready", HumanTask.due_at.is_not(None),
                   Case.status == "running")
            .distinct().order_by(HumanTask.case_id).limit(limit)))
    added = 0
    for case_id in case_ids:
        with engine.db.transaction() as s:
            locked = select(Case).where(Case.id == case_id)
            if engine.db.postgres:
                locked = locked.with_for_update()
            s.execute(locked)  # commands on the case wait, so nobody is told twice
            added += sweep_case(s, ref, case_id, now, mail=engine.config.mail_enabled)
    return added
