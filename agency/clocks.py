"""An approval item's clock (rules R12 and R13).

The committed limit of an item runs from its acceptance (the acceleration stage's
`accepted_date`, `committed_days`), on the declared working-day calendar. Time the law does
not count (行政许可法 §45: the applicant's corrections, expert review, hearings, testing,
public notice; the catalogue `data/pause_reasons.json`) stops it: a department pauses the
item for a number of working days (the time it told the applicant in writing, at most what
the law allows for the reason), and the item's due date, the due of its open tasks and the
moments its yellow and red warnings wait for move by as many working days at once; resumed
early, they move back by the days not used. A due date past the calendar's declared horizon
is provisional, and is computed again when the office declares the year.

Every move is one engine event, `deadlines_moved`, carrying the new dates and why (a pause, a
resumption, a calendar declared); `item_pause` is kept from those events in the transaction
that records them, so a replay reproduces the dates and the table says what the events say.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import ItemPause
from agency.reference import ReferenceData, WorkingCalendar, reference_of, warning_limits
from engine.actors import Actor
from engine.errors import N_, Conflict, EngineError, Forbidden
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, Event, HumanTask

if TYPE_CHECKING:
    from engine.cases import Engine

# The stage whose tasks run on the item's committed limit (processes/README.md, `stage`).
CLOCK_STAGE = "acceleration"
# The stage that starts when the item's result arrived: its clock stops there.
END_STAGE = "closing"
# The names the acceleration stage keeps its limit under (stage_acceleration's set_limits).
LIMIT_NAMES = ("accepted_date", "committed_days", "due_date")
PAUSERS = ("agent", "leader", "office")


class ClockError(EngineError):
    """A pause or resumption that cannot be made; the message says why."""

    title = "Invalid clock change"
    status = 422


@dataclass(frozen=True)
class PauseView:
    """One stop of an item's clock."""

    reason: str
    reason_name: str
    kind: str
    started_on: date
    planned_days: int
    ends_on: date  # the last working day the pause stops the clock for, as planned
    resumed_on: date | None
    days: int  # working days counted: the planned ones, or those up to the resumption
    note: str
    paused_by: str

    def active(self, today: date) -> bool:
        """Whether the clock stands still today."""
        return self.resumed_on is None and today <= self.ends_on

    def used(self, calendar: WorkingCalendar, today: date) -> int:
        """The working days of this pause that have passed by `today`."""
        if not self.active(today):
            return self.days
        return min(self.days, max(0, calendar.working_days_between(self.started_on, today)))


@dataclass(frozen=True)
class ItemTime:
    """An item's time on its clock, in working days: the department's (counted against the
    limit), the applicant's and the procedures' the law does not count."""

    case_id: int
    item_code: str
    item_name: str
    department: str
    started_on: date
    ended_on: date | None
    due_on: date | None
    provisional: bool
    paused: PauseView | None
    pauses: tuple[PauseView, ...]
    government_days: int
    applicant_days: int
    procedure_days: int


def pause_views(rows: list[ItemPause], calendar: WorkingCalendar,
                ref: ReferenceData) -> list[PauseView]:
    """The stored pauses as views (with the last paused day as planned)."""
    return [PauseView(row.reason, str(ref.pause_reasons.get(row.reason, {}).get(
        "name", row.reason)), row.kind, date.fromisoformat(row.started_on), row.planned_days,
        date.fromisoformat(row.ends_on),
        date.fromisoformat(row.resumed_on) if row.resumed_on else None, row.days, row.note,
        row.paused_by) for row in rows]


def _pauses(s: Session, case_ids: set[int] | None, item_code: str | None = None, *,
            open_only: bool = False) -> dict[tuple[int, str], list[ItemPause]]:
    query = select(ItemPause).order_by(ItemPause.case_id, ItemPause.id)
    if open_only:
        query = query.where(ItemPause.resumed_on.is_(None))
    if case_ids is not None:
        if not case_ids:
            return {}
        if len(case_ids) <= 500:  # many cases (the dashboard's): every pause, not a long IN
            query = query.where(ItemPause.case_id.in_(case_ids))
    if item_code is not None:
        query = query.where(ItemPause.item_code == item_code)
    found: dict[tuple[int, str], list[ItemPause]] = defaultdict(list)
    for row in s.scalars(query):
        if case_ids is None or row.case_id in case_ids:
            found[(row.case_id, row.item_code)].append(row)
    return found


def paused_items(s: Session, ref: ReferenceData, case_ids: set[int] | None, now: datetime
                 ) -> dict[tuple[int, str], PauseView]:
    """The items of these cases (or of all) whose clock stands still now, with the pause."""
    today = now.astimezone(SERVICE_TZ).date()
    found = {}
    for key, rows in _pauses(s, case_ids, open_only=True).items():
        for view in pause_views(rows, ref.calendar, ref):
            if view.active(today):
                found[key] = view
    return found


def horizon(calendar: WorkingCalendar) -> date | None:
    """The last day the declared calendar knows: the end of the last year with holidays."""
    years = [d.year for d in calendar.holidays]
    return date(max(years), 12, 31) if years else None


def is_provisional(calendar: WorkingCalendar, due: date | datetime | None) -> bool:
    """Whether a due date lies past the declared horizon (counted on guessed weekdays)."""
    if due is None:
        return False
    day = due.astimezone(SERVICE_TZ).date() if isinstance(due, datetime) else due
    until = horizon(calendar)
    return until is None or day > until


# Moving the deadline ---------------------------------------------------------------------


def _limit_rule(ref: ReferenceData, paused_days: int) -> Any:
    def rule(data: Mapping[str, Any]) -> dict[str, str] | None:
        if not all(name in data for name in LIMIT_NAMES) or not data.get("accepted_date"):
            return None
        due, yellow, red = warning_limits(ref.calendar, ref.settings,
                                          date.fromisoformat(str(data["accepted_date"])[:10]),
                                          int(data["committed_days"]), paused_days)
        return {"due_date": due.isoformat(), "yellow_at": f"{yellow.isoformat()}T00:00:00+08:00",
                "red_at": f"{red.isoformat()}T00:00:00+08:00"}
    return rule


def _clock_tasks(s: Session, case_id: int, item_code: str) -> list[HumanTask]:
    return list(s.scalars(select(HumanTask).where(
        HumanTask.case_id == case_id, HumanTask.item_code == item_code,
        HumanTask.state == "ready", HumanTask.stage == CLOCK_STAGE)
        .order_by(HumanTask.created_at, HumanTask.id)))


def _move(engine: Engine, case_id: int, item_code: str, paused_days: int, actor: Actor,
          note: dict[str, Any]) -> bool:
    with engine.db.reading() as s:
        tasks = [row.id for row in _clock_tasks(s, case_id, item_code)]
    if not tasks:
        raise Conflict(N_("该事项不在审批计时中（尚未受理或已办结），不能暂停或恢复计时"))
    moved = engine.move_deadlines(case_id, tasks, _limit_rule(reference_of(engine), paused_days),
                                  actor, {"clock": note})
    return moved is not None


def _counted(views: list[PauseView]) -> int:
    return sum(view.days for view in views)


def _check_actor(engine: Engine, case_id: int, item_code: str, actor: Actor) -> None:
    if actor.is_system:
        return
    with engine.db.reading() as s:
        case = s.get(Case, case_id)
        departments = {row.department for row in _clock_tasks(s, case_id, item_code)}
        if case is not None:
            for item in case.data.get("items") or []:
                if isinstance(item, dict) and item.get("code") == item_code:
                    departments.add(str(item.get("department") or ""))
    if actor.role not in PAUSERS or not (actor.role == "office" or actor.department in
                                         departments):
        raise Forbidden(N_("只有事项主管部门的代办员、责任领导或领导小组办公室"
                           "可以暂停或恢复计时"))


def pause(engine: Engine, case_id: int, item_code: str, reason: str, days: Any, note: str,
          actor: Actor) -> ItemTime:
    """Stop an item's clock for `days` working days for a reason of the catalogue."""
    ref = reference_of(engine)
    entry = ref.pause_reasons.get(reason)
    if entry is None:
        raise ClockError(N_("暂停计时的原因不在目录中；请选择补正、专家评审、听证、"
                            "检验检测、公示等法定事由"))
    if isinstance(days, bool) or not isinstance(days, int | str) or \
            not str(days).strip().isdigit() or int(days) < 1:
        raise ClockError(N_("请填写暂停的工作日数（已书面告知申请人的所需时间），至少 1 个工作日"))
    count = int(days)
    most = entry["max_working_days"] or ref.longest_pause
    if count > most:
        raise ClockError(N_("暂停时间超过法律对该事由允许的最长时间（%(days)s 个工作日）")
                         % {"days": most}, max_working_days=most)
    note = " ".join((note or "").split())[:500]
    _check_actor(engine, case_id, item_code, actor)
    today = engine.clock().astimezone(SERVICE_TZ).date()
    with engine.db.reading() as s:
        views = pause_views(_pauses(s, {case_id}, item_code).get((case_id, item_code), []),
                            ref.calendar, ref)
    if any(view.active(today) for view in views):
        raise Conflict(N_("该事项已暂停计时；请先恢复计时"))
    total = _counted(views) + count
    _move(engine, case_id, item_code, total, actor, {
        "action": "paused", "item": item_code, "reason": reason, "kind": entry["kind"],
        "started_on": today.isoformat(), "days": count,
        "ends_on": ref.calendar.add_working_days(today, count).isoformat(),
        "paused_days": total, "note": note})
    return item_time(engine, case_id, item_code)


def resume(engine: Engine, case_id: int, item_code: str, actor: Actor) -> ItemTime:
    """Start an item's stopped clock again today; the days not used come off its due date."""
    ref = reference_of(engine)
    _check_actor(engine, case_id, item_code, actor)
    today = engine.clock().astimezone(SERVICE_TZ).date()
    with engine.db.reading() as s:
        views = pause_views(_pauses(s, {case_id}, item_code).get((case_id, item_code), []),
                            ref.calendar, ref)
    if not views or not views[-1].active(today):
        raise Conflict(N_("该事项没有暂停计时，无需恢复"))
    current = views[-1]
    used = current.used(ref.calendar, today)
    total = _counted(views[:-1]) + used
    _move(engine, case_id, item_code, total, actor, {
        "action": "resumed", "item": item_code, "resumed_on": today.isoformat(),
        "days": used, "paused_days": total})
    return item_time(engine, case_id, item_code)


def recompute_provisional(engine: Engine, before: date | None, actor: Actor) -> int:
    """After the office declared a year: every running item whose due date lay past the
    horizon `before` is computed again on the declared calendar (one event per item);
    return how many moved."""
    ref = reference_of(engine)
    with engine.db.reading() as s:
        rows = s.execute(select(HumanTask.case_id, HumanTask.item_code, HumanTask.due_at)
                         .join(Case, Case.id == HumanTask.case_id)
                         .where(HumanTask.state == "ready", HumanTask.stage == CLOCK_STAGE,
                                HumanTask.item_code.is_not(None),
                                HumanTask.due_at.is_not(None), Case.status == "running")
                         ).all()
        pauses = _pauses(s, {case_id for case_id, _, _ in rows})
    items = sorted({(case_id, code) for case_id, code, due in rows
                    if code and due is not None
                    and (before is None or due.astimezone(SERVICE_TZ).date() > before)})
    moved = 0
    for case_id, code in items:
        total = _counted(pause_views(pauses.get((case_id, code), []), ref.calendar, ref))
        if _move(engine, case_id, code, total, actor, {
                "action": "recomputed", "item": code, "paused_days": total,
                "calendar_until": (horizon(ref.calendar) or date.min).isoformat()}):
            moved += 1
    return moved


def record(s: Session, case: Case, event: Event) -> None:
    """The engine's case-event hook: keep `item_pause` as the clock events say."""
    note = event.data.get("clock") if event.type == "deadlines_moved" else None
    if not isinstance(note, dict):
        return
    if note.get("action") == "paused":
        s.add(ItemPause(case_id=case.id, item_code=note["item"], reason=note["reason"],
                        kind=note["kind"], started_on=note["started_on"],
                        planned_days=int(note["days"]), ends_on=note["ends_on"], resumed_on=None,
                        days=int(note["days"]), note=note.get("note", ""),
                        paused_by=event.actor, event_seq=event.seq))
    elif note.get("action") == "resumed":
        row = s.scalars(select(ItemPause).where(
            ItemPause.case_id == case.id, ItemPause.item_code == note["item"],
            ItemPause.resumed_on.is_(None)).order_by(ItemPause.id.desc())).first()
        if row is not None:
            row.resumed_on, row.days = note["resumed_on"], int(note["days"])


# Reading the clocks ----------------------------------------------------------------------


def item_times(engine: Engine, case_ids: set[int] | None = None) -> list[ItemTime]:
    """Every item that reached its clock (of the given cases, or all), with its time."""
    ref = reference_of(engine)
    now = engine.clock()
    with engine.db.reading() as s:
        query = select(HumanTask.case_id, HumanTask.item_code, HumanTask.item_name,
                       HumanTask.department, HumanTask.state, HumanTask.stage,
                       HumanTask.created_at, HumanTask.due_at, Case.ended_at).join(
            Case, Case.id == HumanTask.case_id).where(
            HumanTask.stage.in_((CLOCK_STAGE, END_STAGE)), HumanTask.item_code.is_not(None))
        if case_ids is not None:
            query = query.where(HumanTask.case_id.in_(case_ids))
        rows = s.execute(query.order_by(HumanTask.case_id, HumanTask.created_at,
                                        HumanTask.id)).all()
        pauses = _pauses(s, case_ids)
    return times_of(ref, rows, pauses, now)


def times_of(ref: ReferenceData, rows: Any, pauses: dict[tuple[int, str], list[ItemPause]],
             now: datetime) -> list[ItemTime]:
    """The items' times from their task rows of the clock and closing stages and pauses: the
    clock starts with the first clock-stage task (the acceptance) and stops when the
    closing stage starts (the result arrived) or the case ends."""
    today = now.astimezone(SERVICE_TZ).date()
    grouped: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for row in rows:
        grouped[(row.case_id, row.item_code)].append(row)
    found = []
    for (case_id, code), tasks in grouped.items():
        clock_tasks = [t for t in tasks if t.stage == CLOCK_STAGE]
        if not clock_tasks:
            continue
        started = clock_tasks[0].created_at.astimezone(SERVICE_TZ).date()
        closing = [t.created_at for t in tasks if t.stage == END_STAGE]
        end = min(closing) if closing else clock_tasks[0].ended_at
        ended = end.astimezone(SERVICE_TZ).date() if end is not None else None
        dated = [t for t in clock_tasks if t.due_at is not None]
        open_dated = [t for t in dated if t.state == "ready"]
        due_at = (min(t.due_at for t in open_dated) if open_dated
                  else dated[-1].due_at if dated else None)
        due = due_at.astimezone(SERVICE_TZ).date() if due_at is not None else None
        views = pause_views(pauses.get((case_id, code), []), ref.calendar, ref)
        upto = ended or today
        applicant = sum(v.used(ref.calendar, upto) for v in views if v.kind == "applicant")
        procedure = sum(v.used(ref.calendar, upto) for v in views if v.kind != "applicant")
        elapsed = max(0, ref.calendar.working_days_between(started, upto))
        found.append(ItemTime(
            case_id, code, clock_tasks[0].item_name or code, clock_tasks[0].department, started,
            ended, due, ended is None and is_provisional(ref.calendar, due),
            next((v for v in views if v.active(today)), None) if ended is None else None,
            tuple(views), max(0, elapsed - applicant - procedure), applicant, procedure))
    return found


def item_time(engine: Engine, case_id: int, item_code: str) -> ItemTime:
    """One item's clock."""
    found = [t for t in item_times(engine, {case_id}) if t.item_code == item_code]
    if not found:
        raise Conflict(N_("该事项不在审批计时中（尚未受理或已办结），不能暂停或恢复计时"))
    return found[0]


@dataclass(frozen=True)
class TimeFigure:
    """Government and applicant time of the items of one department and item, in working
    days: summed over every item on its clock so far, and the finished items' average."""

    department: str
    department_name: str
    item_code: str
    item_name: str
    items: int
    finished: int
    government_days: int
    applicant_days: int
    procedure_days: int
    finished_government_days: int

    @property
    def average_government_days(self) -> float | None:
        """The finished items' average government time."""
        return round(self.finished_government_days / self.finished, 1) if self.finished \
            else None


def time_figures(times: list[ItemTime], ref: ReferenceData) -> list[TimeFigure]:
    """Summed per department and item, in that order."""
    sums: dict[tuple[str, str], list[Any]] = {}
    for t in times:
        entry = sums.setdefault((t.department, t.item_code), [t.item_name, 0, 0, 0, 0, 0, 0])
        entry[1] += 1
        entry[2] += t.ended_on is not None
        entry[3] += t.government_days
        entry[4] += t.applicant_days
        entry[5] += t.procedure_days
        entry[6] += t.government_days if t.ended_on is not None else 0
    return [TimeFigure(dept, str(ref.departments.get(dept, {}).get("name", dept)), code, *values)
            for (dept, code), values in sorted(sums.items())]
