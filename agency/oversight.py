"""What the leading group watches: each open task's overdue level and the service's figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    distinct,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, aliased

from agency import clocks
from agency.clocks import TimeFigure, paused_items, time_figures
from agency.models import CaseItem, ItemPause, ItemSpan
from agency.reference import (
    ReferenceData,
    ServiceSettings,
    WorkingCalendar,
    reference_of,
    warning_limits,
)
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, Department, HumanTask

if TYPE_CHECKING:
    from engine.cases import Engine, TaskView

LEVELS = ("none", "yellow", "red")
# Tasks the pack raises when a limit nears or passes; their item is at least that level.
WARNING_TASKS = {"yellow_warning": "yellow", "red_warning": "red", "escalate_supply": "red"}
ITEM_DONE_TASKS = ("handover_results", "hand_back_materials")
PHASE_NAMES = {"1": "立项用地规划许可", "2": "工程建设许可", "3": "施工许可", "4": "竣工验收"}
# Every `stage` label the pack's user tasks use (processes/README.md), in Chinese.
STAGE_NAMES = {"intake": "受理与告知", "preparation": "材料准备", "handling": "业务办理",
               "acceleration": "加快审批", "closing": "项目办结", "follow_up": "跟踪服务",
               "phase": "阶段统筹", "policy": "惠企政策", "meeting": "联席会议",
               "safeguard": "保障措施"}


_RANK = {level: n for n, level in enumerate(LEVELS)}


def _worse(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def due_level(ref: ReferenceData, created_at: datetime, due_at: datetime | None,
              now: datetime, memo: dict[tuple[date, date], str] | None = None) -> str:
    """The level of one task by its own limit, the one rule for inboxes, the dashboard and the
    warnings sent: red after the due date, yellow in its last stretch (the configured share of
    the working days from the task's start to its due date), never yellow on its first day.
    Red is the inbox's "overdue" count too: the due moment has passed. `memo` keeps the
    calendar's answers per (start, due) day for a caller leveling many tasks at one moment."""
    if due_at is None:
        return "none"
    if now > due_at:
        return "red"
    today = now.astimezone(SERVICE_TZ).date()
    start = created_at.astimezone(SERVICE_TZ).date()
    if today <= start:  # a brand-new task is not 临期 the day it appears
        return "none"
    due = due_at.astimezone(SERVICE_TZ).date()
    if memo is not None and (start, due) in memo:
        return memo[(start, due)]
    days = ref.calendar.working_days_between(start, due)
    if days <= 0:
        level = "yellow" if today >= due else "none"
    else:
        _, yellow, _ = warning_limits(ref.calendar, ref.settings, start, days)
        level = "yellow" if today >= min(yellow, due) else "none"
    if memo is not None:
        memo[(start, due)] = level
    return level


class _OpenTask(Protocol):
    """A task row or view: what its level is computed from."""

    @property
    def id(self) -> str: ...
    @property
    def case_id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def spec_name(self) -> str: ...
    @property
    def item_code(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime | None: ...


def levels_in(s: Session, ref: ReferenceData, tasks: Iterable[_OpenTask], now: datetime
              ) -> dict[str, str]:
    """Each given open task's overdue level, read in the caller's session.

    A task is at least as late as its own limit says, and as the warnings the
    diagrams raised for its approval item (a yellow or red warning task).
    """
    tasks = list(tasks)
    raised = _raised_warnings(s, {t.case_id for t in tasks})
    # An item whose clock stands still (R12) is paused, not late, whatever it was before.
    paused = paused_items(s, ref, {t.case_id for t in tasks if t.item_code}, now)
    levels: dict[str, str] = {}
    memo: dict[tuple[date, date], str] = {}
    for task in tasks:
        if task.state != "ready" or (task.case_id, task.item_code or "") in paused:
            levels[task.id] = "none"
            continue
        level = due_level(ref, task.created_at, task.due_at, now, memo)
        level = _worse(level, WARNING_TASKS.get(task.spec_name, "none"))
        if task.item_code:
            level = _worse(level, raised.get((task.case_id, task.item_code), "none"))
        levels[task.id] = level
    return levels


def warning_levels(engine: Engine, tasks: Iterable[TaskView]) -> dict[str, str]:
    """Each given open task's overdue level: "none", "yellow" or "red"."""
    with engine.db.reading() as s:
        return levels_in(s, reference_of(engine), tasks, engine.clock())


def _raised_warnings(s: Session, case_ids: set[int]) -> dict[tuple[int, str], str]:
    if not case_ids:
        return {}
    found: dict[tuple[int, str], str] = {}
    # Many cases (the dashboard's): every raised warning, not an IN list of thousands.
    of_cases = (HumanTask.case_id.in_(case_ids),) if len(case_ids) <= 500 else ()
    rows = s.execute(select(HumanTask.case_id, HumanTask.item_code, HumanTask.spec_name)
                     .where(*of_cases,
                            HumanTask.spec_name.in_(tuple(WARNING_TASKS)),
                            HumanTask.state != "cancelled",
                            HumanTask.item_code.is_not(None)))
    for case_id, item_code, spec_name in rows:
        key = (case_id, str(item_code))
        found[key] = _worse(found.get(key, "none"), WARNING_TASKS[spec_name])
    return found


@dataclass
class ItemTime:
    """Handling times of one approval item across the cases that finished it."""

    code: str
    name: str
    count: int
    average_days: float
    slowest_days: int
    slowest_case: str


@dataclass
class Figures:
    """The dashboard's figures, for one department or the whole service."""

    today: date
    department: str | None
    open_cases: int
    # (phase label, stage label) -> number of open cases with a ready task there.
    by_phase_stage: dict[tuple[str, str], int]
    # department code -> {"name", "yellow", "red", "items": [...], "more"}: the first
    # `LISTED` late items (by case), and how many more the counts include.
    overdue: dict[str, dict[str, Any]]
    item_times: list[ItemTime]
    # Cases that ended this month, each with its status: `completed` (办结) or
    # `terminated` (终止), never counted as each other (R09; see ENDED_STATUSES).
    closed_this_month: list[dict[str, Any]] = field(default_factory=list)
    # Commitments (告知承诺) found not kept: case, item and the department's decision.
    broken_commitments: list[dict[str, Any]] = field(default_factory=list)
    # Government and applicant time per department and item (R12, agency/clocks.py), and
    # the items whose clock stands still today.
    clock_times: list[TimeFigure] = field(default_factory=list)
    paused: list[clocks.ItemTime] = field(default_factory=list)

    @property
    def completed_this_month(self) -> list[dict[str, Any]]:
        """The cases 办结 this month: completed, never terminated ones."""
        return [c for c in self.closed_this_month if c["status"] == "completed"]

    @property
    def terminated_this_month(self) -> list[dict[str, Any]]:
        """The cases whose service was terminated this month."""
        return [c for c in self.closed_this_month if c["status"] == "terminated"]

    @property
    def overdue_red(self) -> int:
        return sum(d["red"] for d in self.overdue.values())

    @property
    def overdue_yellow(self) -> int:
        return sum(d["yellow"] for d in self.overdue.values())

    def table_rows(self) -> dict[str, list[list[Any]]]:
        """The figures as tables (header row first), for CSV and Excel export."""
        return {
            "open_cases_by_phase_stage": [["阶段 phase", "环节 stage", "办理中案件 open cases"]]
            + [[p, st, n] for (p, st), n in sorted(self.by_phase_stage.items())],
            "overdue_by_department": [["部门 department", "黄色预警 yellow", "红色预警 red"]]
            + [[d["name"], d["yellow"], d["red"]] for d in self.overdue.values()],
            "handling_times": [["事项 item", "办结数 finished", "平均工作日 average working days",
                                "最慢工作日 slowest working days", "最慢案件 slowest case"]]
            + [[t.name, t.count, t.average_days, t.slowest_days, t.slowest_case]
               for t in self.item_times],
            "closed_this_month": [["案件 case", "名称 title", "状态 status", "办结时间 ended"]]
            + [[c["id"], c["title"], ENDED_STATUSES[c["status"]], c["ended"]]
               for c in self.closed_this_month],
            "government_time": [["部门 department", "事项 item", "计时事项 items",
                                 "已办结 finished", "政府用时 government days",
                                 "申请人用时 applicant days", "其他不计时 other excluded days",
                                 "办结平均政府用时 average government days"]]
            + [[t.department_name, t.item_name, t.items, t.finished, t.government_days,
                t.applicant_days, t.procedure_days, t.average_government_days]
               for t in self.clock_times],
        }


def figures(engine: Engine, department: str | None = None) -> Figures:
    """Open cases by phase and stage, overdue items by department, handling times per item,
    cases closed this month; for one department's items when `department` is given.

    Levels are SQL: each open task's stored moments (`due_at`, `warn_at`) compared with now,
    and the warnings raised for its item, grouped per item by the database. The whole
    service's figures are GROUP BY counts; a department's read the open tasks' narrow
    columns (whether an item is the department's is in the case data). Case data is read
    only for the cases a figure names.
    """
    now = engine.clock()
    ref = reference_of(engine)
    today = now.astimezone(SERVICE_TZ).date()
    if not engine.extensions.get("warn_moments_checked"):
        # Once per process: open tasks indexed before the moments were kept (a database
        # migrated or restored without `zerorun setup`) get theirs, as the heatmap's rows.
        with engine.db.transaction() as s:
            store_warn_moments(s, ref.calendar, ref.settings, missing_only=True)
        engine.extensions["warn_moments_checked"] = True
    with engine.db.reading() as s:
        names = {code: name for code, name in s.execute(select(Department.code, Department.name))}
        facts = _CaseFacts(s)
        if department is None:
            open_cases, by_phase_stage, late = _open_figures(s, now)
        else:
            open_cases, by_phase_stage, mine_late = _open_figures_of(s, now, facts, department)
            late = _late_of(facts, mine_late)
        overdue: dict[str, dict[str, Any]] = {
            code: {"name": names.get(code, code), "yellow": yellow, "red": red,
                   "items": items, "more": yellow + red - len(items)}
            for code, (yellow, red, items) in late.items()}

        def mine(row: Any) -> bool:
            return department is None or row.department == department or \
                facts.item_department(row.case_id, row.item_code, row.department) == department

        item_times = _item_times(s, ref, facts, department)
        closed = _closed_this_month(s, today, facts, department, mine)
        broken = _broken_commitments(s, facts, mine)
    times = [t for t in clocks.item_times(engine)
             if department is None or t.department == department]
    return Figures(today, department, open_cases, by_phase_stage,
                   dict(sorted(overdue.items(), key=lambda kv: (-kv[1]["red"],
                                                                -kv[1]["yellow"], kv[0]))),
                   item_times, closed, broken, time_figures(times, ref),
                   [t for t in times if t.paused is not None])


def _phase_stage(phase: str | None, stage: str | None) -> tuple[str, str]:
    return (PHASE_NAMES.get(phase or "", "全流程" if not phase else phase),
            STAGE_NAMES.get(stage or "", stage or "其他"))


def _ranks(now: datetime) -> tuple[Any, Any, Any]:
    """SQL ranks (0 none, 1 yellow, 2 red) of an open task: by its own limit, by being a
    warning task, by the warnings raised for its item; and the open tasks they apply to.
    An item whose clock stands still (R12) is paused, not late: every rank is 0."""
    today = now.astimezone(SERVICE_TZ).date().isoformat()
    paused = select(ItemPause.id).where(
        ItemPause.case_id == HumanTask.case_id, ItemPause.item_code == HumanTask.item_code,
        ItemPause.resumed_on.is_(None), ItemPause.ends_on >= today).exists()
    own = case((paused, 0), (HumanTask.due_at < now, 2), (HumanTask.warn_at <= now, 1),
               else_=0)
    spec = case((paused, 0), *((HumanTask.spec_name == name, _RANK[level])
                               for name, level in WARNING_TASKS.items()), else_=0)
    warning = aliased(HumanTask)
    raised = (select(warning.case_id, warning.item_code,
                     func.max(case(*((warning.spec_name == name, _RANK[level])
                                     for name, level in WARNING_TASKS.items()), else_=0))
                     .label("rank"))
              .where(warning.spec_name.in_(tuple(WARNING_TASKS)), warning.state != "cancelled",
                     warning.item_code.is_not(None))
              .group_by(warning.case_id, warning.item_code).subquery())
    open_tasks = (select().select_from(HumanTask)
                  .join(Case, Case.id == HumanTask.case_id)
                  .outerjoin(raised, and_(raised.c.case_id == HumanTask.case_id,
                                          raised.c.item_code == HumanTask.item_code))
                  .where(HumanTask.state == "ready", Case.status == "running"))
    return own, spec, (open_tasks, case((paused, 0), else_=func.coalesce(raised.c.rank, 0)))


# The project unit's own tasks (acknowledge, sign, rate) lapse on their own timers: no item
# waits on them, so they never make an item late.
PROJECT_UNIT = "project_unit"


# Late items listed per department (by case); the others are only counted, so the page and
# its report stay small however many items are late.
LISTED = 20

# Per department code: yellow count, red count, the first `LISTED` late items.
Late = dict[str, tuple[int, int, list[dict[str, Any]]]]


def _open_figures(s: Session, now: datetime) -> tuple[int, dict[tuple[str, str], int], Late]:
    """The whole service's open cases, cases per phase and stage, and late items per
    department, counted by the database; only the items a page lists are read."""
    ready = (select().select_from(HumanTask).join(Case, Case.id == HumanTask.case_id)
             .where(HumanTask.state == "ready", Case.status == "running"))
    open_cases = s.scalar(ready.add_columns(func.count(distinct(HumanTask.case_id)))) or 0
    groups = s.execute(ready.add_columns(HumanTask.phase, HumanTask.stage,
                                         func.count(distinct(HumanTask.case_id)))
                       .group_by(HumanTask.phase, HumanTask.stage)).all()
    raw: dict[tuple[str, str], list[tuple[str | None, str | None, int]]] = defaultdict(list)
    for phase, stage, count in groups:
        raw[_phase_stage(phase, stage)].append((phase, stage, count))
    by_phase_stage = {}
    for label, parts in sorted(raw.items()):
        if len(parts) == 1:
            by_phase_stage[label] = parts[0][2]
        else:  # raw values showing under one label: count their cases once
            by_phase_stage[label] = s.scalar(ready.add_columns(
                func.count(distinct(HumanTask.case_id))).where(or_(*(
                    and_(HumanTask.phase.is_(phase) if phase is None else HumanTask.phase == phase,
                         HumanTask.stage.is_(stage) if stage is None else HumanTask.stage == stage)
                    for phase, stage, _ in parts)))) or 0
    own, spec, (open_tasks, raised) = _ranks(now)
    key = func.coalesce(HumanTask.item_code, literal("task:") + HumanTask.id)
    items = (open_tasks.add_columns(HumanTask.case_id.label("case_id"), key.label("key"),
                                    func.max(own).label("own"), func.max(spec).label("spec"),
                                    func.max(raised).label("raised"),
                                    func.min(HumanTask.id).label("first"))
             .where(or_(HumanTask.item_code.is_not(None), HumanTask.due_at.is_not(None)),
                    HumanTask.department.is_distinct_from(PROJECT_UNIT))
             .group_by(HumanTask.case_id, key)
             .having(or_(func.max(own) > 0, func.max(spec) > 0, func.max(raised) > 0))
             .subquery())
    first = aliased(HumanTask)
    postgres = s.get_bind().dialect.name == "postgresql"
    # The department the case data gives the item (kept by the database with the data,
    # migration 0023), else the task's own: as `_CaseFacts.item_department`.
    code = func.coalesce(func.nullif(CaseItem.department, ""), func.nullif(first.department, ""),
                         literal(""))
    rank = (func.greatest if postgres else func.max)(items.c.own, items.c.spec, items.c.raised)
    late = (select(items.c.case_id, items.c.key, items.c.first, rank.label("rank"),
                   code.label("code"))
            .join(first, first.id == items.c.first)
            .outerjoin(CaseItem, and_(CaseItem.case_id == items.c.case_id,
                                      CaseItem.item_code == first.item_code))
            .subquery())
    # Items in the order of (case, key) as Python orders them (code points, not a locale).
    in_order = (late.c.case_id, late.c.key.collate("C") if postgres else late.c.key)
    counted = select(
        late, func.row_number().over(partition_by=late.c.code, order_by=in_order).label("n"),
        func.sum(case((late.c.rank == 1, 1), else_=0)).over(partition_by=late.c.code)
        .label("yellow"),
        func.sum(case((late.c.rank == 2, 1), else_=0)).over(partition_by=late.c.code)
        .label("red")).subquery()
    listed = aliased(HumanTask)
    found: Late = {}
    # Core rows (no ORM row processing): the listed late items of each department with the
    # department's counts; titles read for these rows only.
    for row in s.connection().execute(
            select(counted.c.code, counted.c.case_id, counted.c.rank, counted.c.yellow,
                   counted.c.red, listed.item_name, listed.title,
                   Case.title.label("case_title"))
            .join(listed, listed.id == counted.c.first).join(Case, Case.id == counted.c.case_id)
            .where(counted.c.n <= LISTED).order_by(counted.c.code, counted.c.n)):
        entry = found.setdefault(str(row.code), (int(row.yellow), int(row.red), []))
        entry[2].append({"case_id": row.case_id, "case_title": row.case_title,
                         "item": row.item_name or row.title, "level": LEVELS[row.rank]})
    return open_cases, by_phase_stage, found


def _late_of(facts: _CaseFacts, late: dict[tuple[int, str], tuple[str, Any]]) -> Late:
    """A department's late items (level and first task per item) per item department."""
    found: Late = {}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"yellow": 0, "red": 0})
    listed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, (level, row) in sorted(late.items(), key=lambda kv: kv[0]):
        code = row.item_department or row.department or ""
        counts[code][level] += 1
        if len(listed[code]) < LISTED:
            listed[code].append({"case_id": key[0], "item": row.item_name or row.title,
                                 "level": level})
    facts.load(item["case_id"] for items in listed.values() for item in items)
    for code, n in counts.items():
        found[code] = (n["yellow"], n["red"], [{"case_id": item["case_id"],
                                                "case_title": facts.title(item["case_id"]),
                                                "item": item["item"], "level": item["level"]}
                                               for item in listed[code]])
    return found


def _open_figures_of(s: Session, now: datetime, facts: _CaseFacts, department: str) -> tuple[
        int, dict[tuple[str, str], int], dict[tuple[int, str], tuple[str, Any]]]:
    """One department's open cases, cases per phase and stage, and late items: the open
    tasks' narrow columns with their ranks computed by the database."""
    own, spec, (open_tasks, raised) = _ranks(now)
    # With the department the case data gives each task's item (kept by the database,
    # migration 0023): no case's data is read.
    rows = s.connection().execute(open_tasks.add_columns(
        HumanTask.id, HumanTask.case_id, HumanTask.item_code, HumanTask.department,
        HumanTask.phase, HumanTask.stage, HumanTask.item_name, HumanTask.title,
        HumanTask.due_at.is_not(None).label("has_due"), own.label("own"),
        spec.label("spec"), raised.label("raised"),
        CaseItem.department.label("item_department"))
        .outerjoin(CaseItem, and_(CaseItem.case_id == HumanTask.case_id,
                                  CaseItem.item_code == HumanTask.item_code))
        .order_by(HumanTask.id)).all()
    by_phase_stage: dict[tuple[str, str], set[int]] = defaultdict(set)
    open_cases: set[int] = set()
    # An open item's level is the worst of its ready tasks'.
    item_rank: dict[tuple[int, str], int] = {}
    item_row: dict[tuple[int, str], Any] = {}
    for row in rows:
        if row.department != department and (row.item_department or row.department) \
                != department:
            continue
        open_cases.add(row.case_id)
        by_phase_stage[_phase_stage(row.phase, row.stage)].add(row.case_id)
        if row.department == PROJECT_UNIT:
            continue  # the enterprise's own tasks (a rating) lapse; no item waits on them
        if row.item_code or row.has_due:  # a task outside any item counts alone
            key = (row.case_id, row.item_code or f"task:{row.id}")
            item_rank[key] = max(item_rank.get(key, 0), row.own, row.spec, row.raised)
            item_row.setdefault(key, row)
    return (len(open_cases), {k: len(v) for k, v in sorted(by_phase_stage.items())},
            {key: (LEVELS[rank], item_row[key]) for key, rank in item_rank.items() if rank})


def warn_moment(calendar: WorkingCalendar, settings: ServiceSettings, created_at: datetime,
                due_at: datetime | None) -> datetime | None:
    """When a task created at `created_at` and due at `due_at` turns yellow by `due_level`'s
    rule (the start of its first yellow day; never its first day): stored with the task
    (`HumanTask.warn_at`) so that pages compare moments in SQL. Red is `due_at` itself."""
    if due_at is None:
        return None
    start = created_at.astimezone(SERVICE_TZ).date()
    due = due_at.astimezone(SERVICE_TZ).date()
    days = calendar.working_days_between(start, due)
    if days <= 0:
        day = due
    else:
        _, yellow, _ = warning_limits(calendar, settings, start, days)
        day = min(yellow, due)
    day = max(day, start + timedelta(days=1))
    return datetime.combine(day, time(0), tzinfo=SERVICE_TZ).astimezone(UTC)


def set_warn_moment(ref: ReferenceData, row: HumanTask) -> None:
    """The engine's `task_indexed` hook: a new task's warn moment, by the calendar in force."""
    row.warn_at = warn_moment(ref.calendar, ref.settings, row.created_at, row.due_at)


def store_warn_moments(s: Session, calendar: WorkingCalendar, settings: ServiceSettings, *,
                       missing_only: bool = False) -> int:
    """Recompute the warn moment of every open task with a limit by `calendar` (after the
    calendar changed, in the same transaction; at setup for tasks indexed before the moments
    were kept), or only of those without one; return how many changed."""
    rows = s.execute(select(HumanTask.id, HumanTask.created_at, HumanTask.due_at,
                            HumanTask.warn_at)
                     .where(HumanTask.state == "ready", HumanTask.due_at.is_not(None),
                            *((HumanTask.warn_at.is_(None),) if missing_only else ()))).all()
    memo: dict[tuple[date, date], datetime | None] = {}
    changed = []
    for task_id, created_at, due_at, stored in rows:
        if due_at is None:
            continue
        days = (created_at.astimezone(SERVICE_TZ).date(), due_at.astimezone(SERVICE_TZ).date())
        if days not in memo:  # the moment depends on the start and due days only
            memo[days] = warn_moment(calendar, settings, created_at, due_at)
        if memo[days] != stored:
            changed.append({"b_id": task_id, "b_warn_at": memo[days]})
    table = cast(Table, HumanTask.__table__)
    for start in range(0, len(changed), 5000):
        s.connection().execute(update(table).where(table.c.id == bindparam("b_id"))
                               .values(warn_at=bindparam("b_warn_at")),
                               changed[start:start + 5000])
    return len(changed)


class _CaseFacts:
    """Titles and approval items (from the case data) of the cases a figure names, read in
    batches on demand."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.known: dict[int, tuple[str, dict[Any, dict[str, Any]]]] = {}
        self.titles: dict[int, str] = {}  # titles read with other rows (items not read)

    def load(self, case_ids: Iterable[int]) -> None:
        wanted = sorted(set(case_ids) - self.known.keys())
        for start in range(0, len(wanted), 500):
            for case_id, title, items in self.s.connection().execute(
                    select(Case.id, Case.title, Case.data["items"])
                    .where(Case.id.in_(wanted[start:start + 500]))):
                self.keep(case_id, title, items)

    def keep(self, case_id: int, title: str, items: Any) -> None:
        self.known[case_id] = (title, {i.get("code"): i for i in (items or [])
                                       if isinstance(i, dict)})

    def _get(self, case_id: int) -> tuple[str, dict[Any, dict[str, Any]]]:
        if case_id not in self.known:
            self.load((case_id,))
        return self.known[case_id]

    def title(self, case_id: int) -> str:
        if case_id in self.titles:
            return self.titles[case_id]
        return self._get(case_id)[0]

    def items(self, case_id: int) -> dict[Any, dict[str, Any]]:
        return self._get(case_id)[1]

    def item_department(self, case_id: int, item_code: str | None, own: str | None
                        ) -> str | None:
        """The department the case data gives an item, else the task's own."""
        item = self.items(case_id).get(item_code)
        return str(item["department"]) if item and item.get("department") else own

    def item_results(self, case_id: int) -> list[Any]:
        results = self.s.scalar(select(Case.data["item_results"]).where(Case.id == case_id))
        return list(results or [])


# The one definition of how a case ended, for every official figure (dashboard, periodic
# report, public summary): 办结 is `completed` only; a terminated service is 终止.
ENDED_STATUSES = {"completed": "已办结", "terminated": "已终止"}


def ended_case_counts(s: Session, since: datetime | None = None,
                      until: datetime | None = None) -> dict[str, int]:
    """Service cases (case_flow) that ended, by status, optionally within [since, until)."""
    query = select(Case.status, func.count()).where(
        Case.process_id == "case_flow", Case.status.in_(tuple(ENDED_STATUSES)))
    if since is not None:
        query = query.where(Case.ended_at >= since)
    if until is not None:
        query = query.where(Case.ended_at < until)
    counts = {status: 0 for status in ENDED_STATUSES}
    counts.update({status: int(n) for status, n in s.execute(query.group_by(Case.status))})
    return counts


def _closed_this_month(s: Session, today: date, facts: _CaseFacts, department: str | None,
                       mine: Any) -> list[dict[str, Any]]:
    """Cases completed or terminated in the current (local) month."""
    first = datetime.combine(today.replace(day=1), time(0), tzinfo=SERVICE_TZ)
    after = datetime.combine((today.replace(day=1) + timedelta(days=32)).replace(day=1),
                             time(0), tzinfo=SERVICE_TZ)
    cases = s.execute(select(Case.id, Case.title, Case.status, Case.ended_at).where(
        Case.status.in_(tuple(ENDED_STATUSES)), Case.ended_at >= first,
        Case.ended_at < after).order_by(Case.id)).all()
    if department is not None and cases:
        facts.load(c.id for c in cases)
        involved = {r.case_id for r in s.execute(
            select(HumanTask.case_id, HumanTask.item_code, HumanTask.department).where(
                HumanTask.case_id.in_([c.id for c in cases]), HumanTask.state != "cancelled"))
            if mine(r)}
        cases = [c for c in cases if c.id in involved]
    return [{"id": c.id, "title": c.title, "status": c.status,
             "ended": c.ended_at.astimezone(SERVICE_TZ).strftime("%Y-%m-%d")} for c in cases]


def _broken_commitments(s: Session, facts: _CaseFacts, mine: Any) -> list[dict[str, Any]]:
    """Verifications that found a commitment not kept, with what the department decided."""
    rows = list(s.scalars(select(HumanTask).where(
        HumanTask.spec_name.in_(("verify_commitment", "commitment_decision")),
        HumanTask.state == "completed")))
    decided = {(r.case_id, r.item_code): (r.result or {}).get("commitment_action")
               for r in rows if r.spec_name == "commitment_decision"}
    found = []
    for row in sorted(rows, key=lambda r: (r.case_id, r.item_code or "")):
        if (row.spec_name != "verify_commitment"
                or (row.result or {}).get("commitment_kept") is not False or not mine(row)):
            continue
        results = {str(r.get("code")): r for r in facts.item_results(row.case_id)
                   if isinstance(r, dict)}
        result = results.get(str(row.item_code), {})
        found.append({"case_id": row.case_id, "case_title": facts.title(row.case_id),
                      "item": row.item_name or row.item_code,
                      "decision": decided.get((row.case_id, row.item_code)) or "pending",
                      "result": result.get("commitment") or ""})
    return found


def _local_day(s: Session, moment: Any) -> Any:
    """The service's local day (UTC+8, no daylight saving) of a stored moment, as the
    database's YYYY-MM-DD text: no datetime is built in Python per row."""
    if s.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", moment) + text("interval '8 hours'"),
                            "YYYY-MM-DD")
    return func.date(moment, "+8 hours")


def _item_times(s: Session, ref: ReferenceData, facts: _CaseFacts, department: str | None
                ) -> list[ItemTime]:
    """Working days from an item's first task to its hand-over, per item code (grouped by
    the database: one row per finished item)."""
    if department is None:  # the finished items the database keeps (migration 0023)
        spans = sorted(s.connection().execute(select(
            ItemSpan.case_id, ItemSpan.item_code, _local_day(s, ItemSpan.started_at),
            _local_day(s, ItemSpan.ended_at), ItemSpan.item_name, literal(1))).all(),
            key=lambda r: (r[0], r[1]))
    else:  # whether a department held a task of the item: from the tasks
        ended = func.max(case((and_(HumanTask.state == "completed",
                                    HumanTask.spec_name.in_(ITEM_DONE_TASKS)),
                               HumanTask.completed_at)))
        # Ours: the department held a task of the item, or the case data gives it the item.
        ours = func.max(case((or_(HumanTask.department == department,
                                  CaseItem.department == department), 1), else_=0))
        # One pass over the item tasks in the order of their index, one row per finished item.
        spans = sorted(s.connection().execute(
            select(HumanTask.case_id, HumanTask.item_code,
                   _local_day(s, func.min(HumanTask.created_at)), _local_day(s, ended),
                   func.max(HumanTask.item_name), ours)
            .outerjoin(CaseItem, and_(CaseItem.case_id == HumanTask.case_id,
                                      CaseItem.item_code == HumanTask.item_code))
            .where(HumanTask.item_code.is_not(None), HumanTask.state != "cancelled")
            .group_by(HumanTask.item_code, HumanTask.case_id)
            .having(ended.is_not(None))).all(), key=lambda r: (r[0], r[1]))
    per_item: dict[str, list[tuple[int, int]]] = defaultdict(list)
    names: dict[str, str] = {}
    memo: dict[tuple[str, str], int] = {}
    for case_id, code, first, end, name, own in spans:
        if not own:
            continue
        key = (str(first), str(end))
        if key not in memo:
            memo[key] = ref.calendar.working_days_between(date.fromisoformat(key[0]),
                                                          date.fromisoformat(key[1]))
        per_item[code].append((memo[key], case_id))
        names[code] = name or code
    slowest_of = {code: max(spans_of, key=lambda d: d[0]) for code, spans_of in per_item.items()}
    facts.load(case_id for _, case_id in slowest_of.values())
    result = []
    for code, spans_of in sorted(per_item.items(), key=lambda kv: names[kv[0]]):
        days, case_id = slowest_of[code]
        result.append(ItemTime(code, names[code], len(spans_of),
                               round(sum(d for d, _ in spans_of) / len(spans_of), 1),
                               days, f"#{case_id} {facts.title(case_id)}"))
    return result
