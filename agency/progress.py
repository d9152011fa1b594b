"""Progress reports to the leading-group office: each department's weekly report on the items
it is approving reaches the office (a notification as it is submitted), which reads them per
case and as a weekly digest: the reports of the week, who has not reported, which items stall."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import Notification
from agency.reference import reference_of
from engine.hooks import CaseChanged
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, HumanTask, User

if TYPE_CHECKING:
    from engine.cases import Engine

REPORT = "progress_report"
TRACKING = "track_approval"
STALL_DAYS = 10  # an item in approval with nothing done for this long is stalled


@dataclass(frozen=True)
class ReportLine:
    """One submitted progress report."""

    case_id: int
    case_title: str
    item: str
    department: str
    reported_by: str
    reported_at: datetime
    summary: str
    issues: str


@dataclass(frozen=True)
class MissingLine:
    """A report that was asked for and not submitted within its week."""

    case_id: int
    case_title: str
    item: str
    department: str
    asked_at: datetime
    task_id: str


@dataclass(frozen=True)
class StalledLine:
    """An item in approval on which nothing has been done for a while."""

    case_id: int
    case_title: str
    item: str
    department: str
    idle_days: int
    last_activity: datetime


@dataclass(frozen=True)
class WeeklyDigest:
    """The office's weekly digest."""

    week_start: date
    week_end: date
    department: str | None
    reports: list[ReportLine]
    missing: list[MissingLine]
    stalled: list[StalledLine]

    def table_rows(self) -> dict[str, list[list[Any]]]:
        """The digest as tables (header first), for CSV and Excel."""
        def when(moment: datetime) -> str:
            return moment.astimezone(SERVICE_TZ).strftime("%Y-%m-%d %H:%M")
        return {
            "reports": [["案件 case", "名称 title", "事项 item", "部门 department",
                         "报送人 by", "报送时间 at", "进展情况 summary", "需协调的问题 issues"]]
            + [[r.case_id, r.case_title, r.item, r.department, r.reported_by,
                when(r.reported_at), r.summary, r.issues] for r in self.reports],
            "not_reported": [["案件 case", "名称 title", "事项 item", "部门 department",
                              "要求报送时间 asked at"]]
            + [[m.case_id, m.case_title, m.item, m.department, when(m.asked_at)]
               for m in self.missing],
            "stalled": [["案件 case", "名称 title", "事项 item", "部门 department",
                         "停滞天数 idle days", "最后办理 last activity"]]
            + [[x.case_id, x.case_title, x.item, x.department, x.idle_days,
                when(x.last_activity)] for x in self.stalled],
        }


def week_of(day: date) -> date:
    """The Monday of a day's week."""
    return day - timedelta(days=day.weekday())


def _bounds(week_start: date) -> tuple[datetime, datetime]:
    start = datetime.combine(week_start, time(0, 0), tzinfo=SERVICE_TZ)
    return start, start + timedelta(days=7)


def _names(engine: Engine) -> dict[str, str]:
    return {c: str(d.get("name", c)) for c, d in reference_of(engine).departments.items()}


def _line(row: HumanTask, titles: dict[int, str], names: dict[str, str]) -> ReportLine:
    result = row.result or {}
    return ReportLine(row.case_id, titles.get(row.case_id, ""), row.item_name or "",
                      names.get(row.department or "", row.department or ""),
                      row.completed_by or "", row.completed_at or row.created_at,
                      str(result.get("report_summary", "")), str(result.get("report_issues", "")))


def case_reports(engine: Engine, case_id: int) -> list[ReportLine]:
    """Every progress report of a case, newest first."""
    names = _names(engine)
    with engine.db.reading() as s:
        case = s.get(Case, case_id)
        titles = {case_id: case.title if case else ""}
        rows = list(s.scalars(select(HumanTask).where(
            HumanTask.case_id == case_id, HumanTask.spec_name == REPORT,
            HumanTask.state == "completed").order_by(HumanTask.completed_at.desc())))
    return [_line(r, titles, names) for r in rows]


def weekly_digest(engine: Engine, week_start: date, department: str | None = None
                  ) -> WeeklyDigest:
    """The reports submitted in a week, the reports asked for then and not submitted within
    it, and the items whose approval stalls at the week's end (one department's, if given)."""
    week_start = week_of(week_start)
    start, end = _bounds(week_start)
    now = engine.clock()
    until = min(end, now)
    names = _names(engine)
    with engine.db.reading() as s:
        titles = {c.id: c.title for c in s.scalars(select(Case))}
        rows = list(s.scalars(select(HumanTask).where(HumanTask.state != "cancelled")
                              .order_by(HumanTask.created_at, HumanTask.id)))
    if department is not None:
        rows = [r for r in rows if r.department == department]
    reports = [_line(r, titles, names) for r in rows if r.spec_name == REPORT
               and r.state == "completed" and r.completed_at is not None
               and start <= r.completed_at < end]
    # A report not answered rolls forward (one open report per item, never a second one): it
    # is missing in every week it stays open, not only in the week it was asked for.
    missing = [MissingLine(r.case_id, titles.get(r.case_id, ""), r.item_name or "",
                           names.get(r.department or "", r.department or ""), r.created_at, r.id)
               for r in rows if r.spec_name == REPORT and r.created_at < end
               and (r.completed_at is None or r.completed_at >= end)
               and r.created_at < until - timedelta(days=2)]  # two days to write it
    stalled: list[StalledLine] = []
    for r in rows:
        if r.spec_name != TRACKING or r.created_at >= until:
            continue
        if r.state == "completed" and r.completed_at is not None and r.completed_at < until:
            continue
        done = [x.completed_at for x in rows if x.case_id == r.case_id
                and x.item_code == r.item_code and x.completed_at is not None
                and x.completed_at < until]
        last = max([r.created_at, *done])
        idle = (until - last).days
        if idle >= STALL_DAYS:
            stalled.append(StalledLine(r.case_id, titles.get(r.case_id, ""), r.item_name or "",
                                       names.get(r.department or "", r.department or ""),
                                       idle, last))
    stalled.sort(key=lambda x: -x.idle_days)
    return WeeklyDigest(week_start, week_start + timedelta(days=6), department, reports,
                        missing, stalled)


def report_submitted(s: Session, changed: CaseChanged) -> None:
    """The engine's hook: a progress report completed by this command reaches the office.

    The command completed its task row in this session, so the report is found among the
    session's own objects: no query (and no early flush) on every other command."""
    rows = [row for row in list(s.identity_map.values())
            if isinstance(row, HumanTask) and row.case_id == changed.case_id
            and row.spec_name == REPORT and row.state == "completed"
            and row.completed_at == changed.now]
    if not rows:
        return
    office = list(s.scalars(select(User).where(User.active.is_(True), User.role == "office")))
    for row in rows:
        summary = str((row.result or {}).get("report_summary", ""))[:300]
        for user in office:
            s.add(Notification(
                username=user.username, kind="progress_report_submitted",
                title=f"【进展报告】{changed.case_title}" + (
                    f" · {row.item_name}" if row.item_name else ""),
                body=f"{row.department} {row.completed_by} 报送：{summary}",
                case_id=changed.case_id, task_id=row.id, created_at=changed.now))
