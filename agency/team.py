"""The agency team (代办专班): each unit's agents, their absences and substitutes (the B post
takes an absent agent's tasks), training sessions with attendance, the yearly assessment of
each agent from measured figures, and the satisfaction the enterprises expressed."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import AgentAbsence, Notification, TrainingSession
from agency.reference import reference_of
from engine.actors import SYSTEM, Actor
from engine.errors import FieldError, Forbidden, InvalidData
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Event, HumanTask, User

if TYPE_CHECKING:
    from engine.cases import Engine

log = logging.getLogger(__name__)
KEEPERS = ("office", "admin")
# What the forms call satisfaction, as a score of 1-5 (the enterprise's own rating is 1-5).
SCORES = {"very_satisfied": 5, "satisfied": 4, "basically_satisfied": 3, "neutral": 3,
          "unsatisfied": 2, "very_unsatisfied": 1}
RATING_FIELDS = ("service_rating", "satisfaction", "enterprise_satisfaction")
COMMENT_FIELDS = ("rating_comment", "satisfaction_comment")


def _local_day(moment: datetime) -> date:
    return moment.astimezone(SERVICE_TZ).date()


# Absences and substitutes ------------------------------------------------------------------

def _user(s: Session, username: str) -> User | None:
    return s.scalar(select(User).where(User.username == username))


@dataclass(frozen=True)
class AbsenceView:
    """An agent away, and who takes their tasks."""

    id: int
    username: str
    substitute: str
    starts_on: date
    ends_on: date
    reason: str
    created_by: str
    moved: int = 0  # tasks handed to the substitute when it was recorded

    def in_force(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on


def _absence_view(row: AgentAbsence) -> AbsenceView:
    return AbsenceView(row.id, row.username, row.substitute, row.starts_on, row.ends_on,
                       row.reason, row.created_by)


def substitutes_on(s: Session, day: date) -> dict[str, str]:
    """Absent agent -> substitute, for the absences in force on a day."""
    rows = s.scalars(select(AgentAbsence).where(AgentAbsence.starts_on <= day,
                                                AgentAbsence.ends_on >= day)
                     .order_by(AgentAbsence.id))
    return {row.username: row.substitute for row in rows}


def record_absence(engine: Engine, username: str, substitute: str, starts_on: date,
                   ends_on: date, reason: str, actor: Actor) -> AbsenceView:
    """The office, or the unit's responsible leader for its own agents, records an agent's
    absence and the colleague who stands in; the tasks the agent holds go to the substitute
    at once when the absence has begun, and the substitute is told."""
    if actor.role not in (*KEEPERS, "leader"):
        raise Forbidden("only the leading-group office keeps the agency team")
    errors: list[FieldError] = []
    with engine.db.transaction() as s:
        away = _user(s, username)
        stand_in = _user(s, substitute)
        if away is None or away.role != "agent" or not away.active:
            errors.append(FieldError("username", "choose an active agent"))
        elif actor.role == "leader" and away.department != actor.department:
            errors.append(FieldError("username", "choose an agent of your own unit"))
        if stand_in is None or stand_in.role != "agent" or not stand_in.active:
            errors.append(FieldError("substitute", "choose an active agent"))
        elif away is not None and (stand_in.username == away.username
                                   or stand_in.department != away.department):
            errors.append(FieldError("substitute", "the substitute must be another agent of "
                                                   "the same unit"))
        if ends_on < starts_on:
            errors.append(FieldError("ends_on", "the absence ends before it starts"))
        if len(reason) > 500:
            errors.append(FieldError("reason", "at most 500 characters"))
        if errors:
            raise InvalidData("the absence was not recorded", errors)
        row = AgentAbsence(username=username, substitute=substitute, starts_on=starts_on,
                           ends_on=ends_on, reason=reason.strip(), created_by=actor.username,
                           created_at=engine.clock())
        s.add(row)
        s.flush()
        view = _absence_view(row)
    moved = hand_over(engine) if view.in_force(_local_day(engine.clock())) else 0
    _tell_substitute(engine, view, moved)
    return replace(view, moved=moved)


def _tell_substitute(engine: Engine, absence: AbsenceView, moved: int) -> None:
    """A notification to the colleague who stands in: for whom, when, and what came over."""
    with engine.db.transaction() as s:
        away = _user(s, absence.username)
        name = (away.display_name or away.username) if away is not None else absence.username
        days = f"{absence.starts_on.isoformat()} 至 {absence.ends_on.isoformat()}"
        title = f"替岗：{name} {days} 不在岗"
        body = (f"{name} 自 {days} 不在岗（{absence.reason or '未写原因'}），由您替岗："
                "期间其任务与预警转给您。"
                + (f"已转交 {moved} 项任务，见待办。" if moved else "目前没有需要转交的任务。"))
        s.add(Notification(username=absence.substitute, kind="absence_substitute",
                           title=title, body=body, created_at=engine.clock()))


def handed_over(engine: Engine, tasks: list[Any]) -> dict[str, str]:
    """Task id -> the username it was handed over from, for tasks that a substitute holds
    because their holder is away (their last hand-over went to the current holder)."""
    open_tasks = {t.id: t for t in tasks if t.assignee}
    cases = {t.case_id for t in open_tasks.values()}
    if not cases:
        return {}
    found: dict[str, str] = {}
    with engine.db.reading() as s:
        for data in s.scalars(select(Event.data).where(
                Event.type == "task_reassigned", Event.case_id.in_(cases)).order_by(Event.id)):
            task = open_tasks.get(str(data.get("task_id")))
            if task is not None:
                found[task.id] = str(data.get("from") or "")
                if data.get("to") != task.assignee:
                    del found[task.id]
    return {k: v for k, v in found.items() if v}


def list_absences(engine: Engine) -> list[AbsenceView]:
    """Every recorded absence, latest first."""
    with engine.db.reading() as s:
        return [_absence_view(r) for r in s.scalars(
            select(AgentAbsence).order_by(AgentAbsence.starts_on.desc(), AgentAbsence.id))]


def hand_over(engine: Engine) -> int:
    """Give every open task held by an agent away today to their substitute (one command per
    task, recorded in its case as `task_reassigned`); return how many moved."""
    today = _local_day(engine.clock())
    with engine.db.reading() as s:
        away = substitutes_on(s, today)
        if not away:
            return 0
        held = list(s.execute(select(HumanTask.id, HumanTask.assignee).where(
            HumanTask.state == "ready", HumanTask.assignee.in_(tuple(away)))))
        users = {u.username: u for u in s.scalars(select(User).where(
            User.username.in_(tuple(away.values()))))}
    moved = 0
    for task_id, assignee in held:
        user = users.get(away.get(str(assignee), ""))
        if user is None or not user.active:
            # A substitute deactivated since: the task stays; /team shows the absence
            # needs another substitute.
            log.warning("task %s not handed over: substitute %s is not active", task_id,
                        away.get(str(assignee)))
            continue
        engine.reassign_task(task_id, Actor(user.username, user.role, user.department), SYSTEM)
        moved += 1
    return moved


# The team -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """An account of the team, and whether it is away today."""

    username: str
    display_name: str
    role: str
    away: AbsenceView | None


@dataclass(frozen=True)
class Unit:
    """One unit of the team: the people the plan names and the accounts that act for it."""

    code: str
    name: str
    named_leader: str
    named_agent: str
    members: list[Member]


def team(engine: Engine) -> list[Unit]:
    """The units of the attachment with their leader, agent and accounts."""
    ref = reference_of(engine)
    today = _local_day(engine.clock())
    absences = [a for a in list_absences(engine) if a.in_force(today)]
    away = {a.username: a for a in absences}
    with engine.db.reading() as s:
        users = list(s.scalars(select(User).where(User.active.is_(True),
                                                  User.role.in_(("agent", "leader")))
                               .order_by(User.role, User.username)))
    units = []
    for code, entry in ref.departments.items():
        if entry.get("external"):
            continue
        members = [Member(u.username, u.display_name or u.username, u.role,
                          away.get(u.username)) for u in users if u.department == code]
        units.append(Unit(code, str(entry.get("name", code)), str(entry.get("leader", "")),
                          str(entry.get("agent", "")), members))
    return units


def agents(engine: Engine) -> list[tuple[str, str, str | None]]:
    """(username, display name, department) of every active agent."""
    with engine.db.reading() as s:
        return [(u.username, u.display_name or u.username, u.department) for u in s.scalars(
            select(User).where(User.active.is_(True), User.role == "agent")
            .order_by(User.department, User.username))]


# Training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingView:
    """A training session and who attended."""

    id: int
    title: str
    held_on: date
    hours: float
    topics: str
    invited: list[str]
    attended: list[str]


def record_training(engine: Engine, title: str, held_on: date, hours: float, topics: str,
                    invited: list[str], attended: list[str], actor: Actor) -> TrainingView:
    """The office records a training session with the agents invited and those present."""
    if actor.role not in KEEPERS:
        raise Forbidden("only the leading-group office keeps the agency team")
    known = {username for username, _, _ in agents(engine)}
    errors: list[FieldError] = []
    if not title.strip() or len(title) > 300:
        errors.append(FieldError("title", "give a title of at most 300 characters"))
    if not 0.5 <= hours <= 100:
        errors.append(FieldError("hours", "between 0.5 and 100 hours"))
    if not invited:
        errors.append(FieldError("invited", "invite at least one agent"))
    if set(invited) - known or set(attended) - known:
        errors.append(FieldError("invited", "only active agents can be invited"))
    if set(attended) - set(invited):
        errors.append(FieldError("attended", "only invited agents can attend"))
    if errors:
        raise InvalidData("the training session was not recorded", errors)
    with engine.db.transaction() as s:
        row = TrainingSession(title=title.strip(), held_on=held_on, hours=hours,
                              topics=topics.strip(), invited=sorted(set(invited)),
                              attended=sorted(set(attended)), created_by=actor.username,
                              created_at=engine.clock())
        s.add(row)
        s.flush()
        return TrainingView(row.id, row.title, row.held_on, row.hours, row.topics,
                            list(row.invited), list(row.attended))


def list_training(engine: Engine, year: int | None = None) -> list[TrainingView]:
    """Training sessions (of a year), latest first."""
    query = select(TrainingSession).order_by(TrainingSession.held_on.desc(),
                                             TrainingSession.id.desc())
    if year is not None:
        query = query.where(TrainingSession.held_on >= date(year, 1, 1),
                            TrainingSession.held_on <= date(year, 12, 31))
    with engine.db.reading() as s:
        return [TrainingView(r.id, r.title, r.held_on, r.hours, r.topics, list(r.invited),
                             list(r.attended)) for r in s.scalars(query)]


# Satisfaction and assessment ------------------------------------------------------------------

@dataclass(frozen=True)
class Rating:
    """One expression of satisfaction: a score of 1-5 about an item of a case, or the case."""

    case_id: int
    item_code: str | None
    score: int
    comment: str
    given_on: date


def _score(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 1 <= value <= 5:
        return value
    return SCORES.get(value) if isinstance(value, str) else None


def ratings(engine: Engine, year: int | None = None) -> list[Rating]:
    """Every rating recorded in completed tasks: the enterprise's own (1-5 with a comment),
    and the satisfaction noted at return visits and at closing."""
    found = []
    with engine.db.reading() as s:
        rows = s.execute(select(HumanTask.case_id, HumanTask.item_code, HumanTask.result,
                                HumanTask.completed_at)
                         .where(HumanTask.state == "completed",
                                HumanTask.result.is_not(None)))
        for case_id, item_code, result, completed_at in rows:
            if not isinstance(result, dict) or completed_at is None:
                continue
            day = _local_day(completed_at)
            if year is not None and day.year != year:
                continue
            for name in RATING_FIELDS:
                score = _score(result.get(name))
                if score is not None:
                    comment = next((str(result[c]) for c in COMMENT_FIELDS if result.get(c)), "")
                    found.append(Rating(case_id, item_code, score, comment, day))
                    break
    return found


@dataclass(frozen=True)
class Satisfaction:
    """Average satisfaction (1-5) and how many ratings, per department and per item."""

    count: int
    average: float | None
    # (code, name, count, average), worst first.
    by_department: list[tuple[str, str, int, float]]
    by_item: list[tuple[str, str, int, float]]


def _average(scores: list[int]) -> float:
    return round(sum(scores) / len(scores), 2)


def satisfaction(engine: Engine, year: int | None = None,
                 department: str | None = None) -> Satisfaction:
    """Satisfaction per department and per item. A rating of an item counts for the item's
    department; a rating of the whole case for every department that handled an item in it."""
    ref = reference_of(engine)
    all_ratings = ratings(engine, year)
    with engine.db.reading() as s:
        case_items: dict[int, set[str]] = defaultdict(set)
        for case_id, item_code in s.execute(select(HumanTask.case_id, HumanTask.item_code)
                                            .where(HumanTask.item_code.is_not(None))
                                            .distinct()):
            case_items[case_id].add(str(item_code))
    per_department: dict[str, list[int]] = defaultdict(list)
    per_item: dict[str, list[int]] = defaultdict(list)
    counted: list[int] = []
    for rating in all_ratings:
        codes = [rating.item_code] if rating.item_code else sorted(case_items[rating.case_id])
        departments = {str(ref.items.get(c, {}).get("department", "")) for c in codes} - {""}
        if department is not None and department not in departments:
            continue
        counted.append(rating.score)
        for code in departments:
            per_department[code].append(rating.score)
        if rating.item_code:
            per_item[rating.item_code].append(rating.score)
    names = {c: str(d.get("name", c)) for c, d in ref.departments.items()}
    by_department = sorted(((c, names.get(c, c), len(v), _average(v))
                            for c, v in per_department.items()
                            if department is None or c == department),
                           key=lambda r: (r[3], r[1]))
    by_item = sorted(((c, str(ref.items.get(c, {}).get("name", c)), len(v), _average(v))
                      for c, v in per_item.items()), key=lambda r: (r[3], r[1]))
    return Satisfaction(len(counted), _average(counted) if counted else None, by_department,
                        by_item)


@dataclass(frozen=True)
class Assessment:
    """One agent's measured year."""

    username: str
    display_name: str
    department: str | None
    tasks_done: int
    items_handled: int
    on_time_share: float | None  # of the finished tasks that had a limit
    overdue: int  # finished late, plus open past their limit now
    satisfaction: float | None
    ratings: int
    training_hours: float
    department_name: str = ""


def assessment(engine: Engine, year: int, department: str | None = None) -> list[Assessment]:
    """The yearly assessment of every agent (of one department), from the task index,
    the ratings and the training attended."""
    now = engine.clock()
    ref = reference_of(engine)
    people = [a for a in agents(engine) if department is None or a[2] == department]
    all_ratings = ratings(engine, year)
    sessions = list_training(engine, year)
    with engine.db.reading() as s:
        rows = list(s.execute(select(HumanTask.case_id, HumanTask.item_code,
                                     HumanTask.completed_by, HumanTask.completed_at,
                                     HumanTask.due_at, HumanTask.state, HumanTask.assignee)
                              .where(HumanTask.state.in_(("completed", "ready")))))
    result = []
    for username, display_name, dept in people:
        done = [r for r in rows if r.state == "completed" and r.completed_by == username
                and r.completed_at is not None and _local_day(r.completed_at).year == year]
        limited = [r for r in done if r.due_at is not None]
        late = [r for r in limited if r.completed_at > r.due_at]
        open_late = [r for r in rows if r.state == "ready" and r.assignee == username
                     and r.due_at is not None and r.due_at < now]
        items = {(r.case_id, r.item_code) for r in done if r.item_code}
        cases = {r.case_id for r in done}
        scores = [x.score for x in all_ratings
                  if ((x.case_id, x.item_code) in items if x.item_code else x.case_id in cases)]
        hours = sum(t.hours for t in sessions if username in t.attended)
        result.append(Assessment(
            username, display_name, dept, len(done), len(items),
            round((len(limited) - len(late)) / len(limited), 3) if limited else None,
            len(late) + len(open_late), _average(scores) if scores else None, len(scores),
            hours, str(ref.departments.get(dept or "", {}).get("name", dept or ""))))
    return result
