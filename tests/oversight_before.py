"""The dashboard figures as computed before they were restructured (every task row loaded
and each level computed alone): the reference the restructured `oversight.figures` must
equal (tests/test_dashboard_figures.py). Kept verbatim but for the order of the tasks read
(by id); not used by the product."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.reference import ReferenceData, reference_of, warning_limits
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


def _worse(a: str, b: str) -> str:
    return a if LEVELS.index(a) >= LEVELS.index(b) else b


def due_level(ref: ReferenceData, created_at: datetime, due_at: datetime | None,
              now: datetime) -> str:
    """The level of one task by its own limit, the one rule for inboxes, the dashboard and the
    warnings sent: red after the due date, yellow in its last stretch (the configured share of
    the working days from the task's start to its due date), never yellow on its first day.
    Red is the inbox's "overdue" count too: the due moment has passed."""
    if due_at is None:
        return "none"
    if now > due_at:
        return "red"
    today = now.astimezone(SERVICE_TZ).date()
    start = created_at.astimezone(SERVICE_TZ).date()
    due = due_at.astimezone(SERVICE_TZ).date()
    if today <= start:  # a brand-new task is not 临期 the day it appears
        return "none"
    days = ref.calendar.working_days_between(start, due)
    if days <= 0:
        return "yellow" if today >= due else "none"
    _, yellow, _ = warning_limits(ref.calendar, ref.settings, start, days)
    return "yellow" if today >= min(yellow, due) else "none"


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
    levels: dict[str, str] = {}
    for task in tasks:
        if task.state != "ready":
            levels[task.id] = "none"
            continue
        level = due_level(ref, task.created_at, task.due_at, now)
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
    rows = s.execute(select(HumanTask.case_id, HumanTask.item_code, HumanTask.spec_name)
                     .where(HumanTask.case_id.in_(case_ids),
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
    # department code -> {"name", "yellow", "red", "items": [...]}.
    overdue: dict[str, dict[str, Any]]
    item_times: list[ItemTime]
    closed_this_month: list[dict[str, Any]] = field(default_factory=list)
    # Commitments (告知承诺) found not kept: case, item and the department's decision.
    broken_commitments: list[dict[str, Any]] = field(default_factory=list)

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
            + [[c["id"], c["title"], c["status"], c["ended"]] for c in self.closed_this_month],
        }


def figures(engine: Engine, department: str | None = None) -> Figures:
    """Open cases by phase and stage, overdue items by department, handling times per item,
    cases closed this month; for one department's items when `department` is given."""
    from engine.cases.views import task_view

    now = engine.clock()
    ref = reference_of(engine)
    today = now.astimezone(SERVICE_TZ).date()
    with engine.db.reading() as s:
        names = {code: name for code, name in s.execute(select(Department.code, Department.name))}
        cases = {c.id: c for c in s.scalars(select(Case))}
        # The one change: the tasks in id order. The item's first task (whose department and
        # title an overdue item shows) was the first in the table's physical order, which
        # PostgreSQL changes with any UPDATE (e.g. of the tasks' warn moments).
        rows = list(s.scalars(select(HumanTask).where(HumanTask.state != "cancelled")
                              .order_by(HumanTask.id)))
    items_of = {cid: {i.get("code"): i for i in (c.data.get("items") or [])
                      if isinstance(i, dict)} for cid, c in cases.items()}

    def item_department(row: HumanTask) -> str | None:
        item = items_of.get(row.case_id, {}).get(row.item_code)
        return str(item["department"]) if item and item.get("department") else row.department

    def mine(row: HumanTask) -> bool:
        return department is None or item_department(row) == department \
            or row.department == department

    ready = [r for r in rows if r.state == "ready" and cases[r.case_id].status == "running"]
    levels = warning_levels(engine, [task_view(r) for r in ready])

    by_phase_stage: dict[tuple[str, str], set[int]] = defaultdict(set)
    open_cases: set[int] = set()
    for row in ready:
        if not mine(row):
            continue
        open_cases.add(row.case_id)
        phase = PHASE_NAMES.get(row.phase or "", "全流程" if not row.phase else row.phase)
        stage = STAGE_NAMES.get(row.stage or "", row.stage or "其他")
        by_phase_stage[(phase, stage)].add(row.case_id)

    # An open item's level is the worst of its ready tasks'.
    item_level: dict[tuple[int, str], str] = {}
    item_row: dict[tuple[int, str], HumanTask] = {}
    for row in ready:  # a task outside any item (a follow-up action) counts on its own
        if row.department == "project_unit":
            continue  # the one rule changed since: the enterprise's own tasks lapse
        if mine(row) and (row.item_code or row.due_at is not None):
            key = (row.case_id, row.item_code or f"task:{row.id}")
            item_level[key] = _worse(item_level.get(key, "none"), levels[row.id])
            item_row.setdefault(key, row)
    overdue: dict[str, dict[str, Any]] = {}
    for key, level in sorted(item_level.items()):
        if level == "none":
            continue
        row = item_row[key]
        code = item_department(row) or ""
        entry = overdue.setdefault(code, {"name": names.get(code, code), "yellow": 0,
                                          "red": 0, "items": []})
        entry[level] += 1
        entry["items"].append({"case_id": key[0], "case_title": cases[key[0]].title,
                               "item": row.item_name or row.title, "level": level})

    item_times = _item_times(ref, rows, cases, mine)
    month = (today.year, today.month)
    closed = [{"id": c.id, "title": c.title, "status": c.status,
               "ended": c.ended_at.astimezone(SERVICE_TZ).strftime("%Y-%m-%d")}
              for c in sorted(cases.values(), key=lambda c: c.id)
              if c.ended_at is not None and c.status in ("completed", "terminated")
              and (c.ended_at.astimezone(SERVICE_TZ).year,
                   c.ended_at.astimezone(SERVICE_TZ).month) == month
              and (department is None or any(mine(r) for r in rows if r.case_id == c.id))]
    return Figures(today, department, len(open_cases),
                   {k: len(v) for k, v in sorted(by_phase_stage.items())},
                   dict(sorted(overdue.items(), key=lambda kv: (-kv[1]["red"],
                                                                -kv[1]["yellow"], kv[0]))),
                   item_times, closed, _broken_commitments(rows, cases, mine))


def _broken_commitments(rows: list[HumanTask], cases: dict[int, Case],
                        mine: Any) -> list[dict[str, Any]]:
    """Verifications that found a commitment not kept, with what the department decided."""
    decided = {(r.case_id, r.item_code): (r.result or {}).get("commitment_action")
               for r in rows if r.spec_name == "commitment_decision" and r.state == "completed"}
    results = {(cid, str(r.get("code"))): r for cid, c in cases.items()
               for r in (c.data.get("item_results") or []) if isinstance(r, dict)}
    found = []
    for row in sorted(rows, key=lambda r: (r.case_id, r.item_code or "")):
        if (row.spec_name != "verify_commitment" or row.state != "completed"
                or (row.result or {}).get("commitment_kept") is not False or not mine(row)):
            continue
        result = results.get((row.case_id, str(row.item_code)), {})
        found.append({"case_id": row.case_id, "case_title": cases[row.case_id].title,
                      "item": row.item_name or row.item_code,
                      "decision": decided.get((row.case_id, row.item_code)) or "pending",
                      "result": result.get("commitment") or ""})
    return found


def _item_times(ref: ReferenceData, rows: list[HumanTask], cases: dict[int, Case],
                mine: Any) -> list[ItemTime]:
    """Working days from an item's first task to its hand-over, per item code."""
    spans: dict[tuple[int, str], list[HumanTask]] = defaultdict(list)
    for row in rows:
        if row.item_code:
            spans[(row.case_id, row.item_code)].append(row)
    per_item: dict[str, list[tuple[int, str]]] = defaultdict(list)
    names: dict[str, str] = {}
    for (case_id, code), item_rows in spans.items():
        done = [r for r in item_rows if r.spec_name in ITEM_DONE_TASKS
                and r.state == "completed" and r.completed_at is not None]
        if not done or not any(mine(r) for r in item_rows):
            continue
        start = min(r.created_at for r in item_rows).astimezone(SERVICE_TZ).date()
        end = max(r.completed_at for r in done if r.completed_at is not None)
        days = ref.calendar.working_days_between(start, end.astimezone(SERVICE_TZ).date())
        per_item[code].append((days, f"#{case_id} {cases[case_id].title}"))
        names[code] = item_rows[0].item_name or code
    result = []
    for code, spans_of in sorted(per_item.items(), key=lambda kv: names[kv[0]]):
        slowest = max(spans_of, key=lambda s: s[0])
        result.append(ItemTime(code, names[code], len(spans_of),
                               round(sum(d for d, _ in spans_of) / len(spans_of), 1),
                               slowest[0], slowest[1]))
    return result
