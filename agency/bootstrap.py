"""First-run set-up: schema, reference data, process pack, demo accounts, a demo case."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from engine import accounts
from engine.actors import SYSTEM, Actor
from engine.cases import Engine
from engine.errors import NotFound
from engine.store import schema
from engine.store.models import Case, Department, User

log = logging.getLogger(__name__)

DEMO_PASSWORD = "zerorun-demo"  # noqa: S105 - printed for the demo accounts on purpose


@dataclass
class DemoLogin:
    """A demo account shown to a new user."""

    username: str
    role: str
    department: str | None
    display_name: str


@dataclass
class SetupReport:
    """What set-up did."""

    departments: int = 0
    versions_created: list[tuple[str, int]] = field(default_factory=list)
    users_created: int = 0
    demo_case: int | None = None
    calendar_case: int | None = None
    logins: list[DemoLogin] = field(default_factory=list)


def sync_departments(engine: Engine) -> int:
    """Insert or update the departments of data/departments.json."""
    entries: list[dict[str, Any]] = json.loads(
        (engine.config.data_dir / "departments.json").read_text(encoding="utf-8"))
    with engine.db.transaction() as s:
        for position, entry in enumerate(entries, start=1):
            row = s.get(Department, entry["code"])
            if row is None:
                row = Department(code=entry["code"])
                s.add(row)
            row.name, row.name_en = entry["name"], entry.get("name_en", "")
            row.leader, row.agent = entry.get("leader", ""), entry.get("agent", "")
            row.position = position
    return len(entries)


def demo_accounts(engine: Engine) -> list[tuple[str, str, str | None, str]]:
    """(username, role, department, display name) of every demo account."""
    with engine.db.reading() as s:
        departments = list(s.scalars(select(Department).order_by(Department.position)))
    wanted: list[tuple[str, str, str | None, str]] = [
        ("admin", "admin", None, "系统管理员"),
        ("auditor", "auditor", None, "审计员"),
    ]
    for dept in departments:
        if dept.code == "project_unit":  # the enterprise acts through its link, no account
            continue
        if dept.code == "leading_group_office":
            wanted.append(("office", "office", dept.code, f"{dept.name}（{dept.agent or '值班'}）"))
            continue
        wanted.append((f"agent_{dept.code}", "agent", dept.code, dept.agent or dept.name))
        wanted.append((f"leader_{dept.code}", "leader", dept.code, dept.leader or dept.name))
    return wanted


def create_demo_accounts(engine: Engine) -> int:
    """Create the demo accounts that do not exist yet."""
    created = 0
    now = engine.clock()
    with engine.db.transaction() as s:
        existing = set(s.scalars(select(User.username)))
        for username, role, department, display in demo_accounts(engine):
            if username in existing:
                continue
            accounts.create_user(s, username, DEMO_PASSWORD, role, display_name=display,
                                 department=department, now=now)
            created += 1
    return created


CALENDAR = "service_calendar"


def setup(engine: Engine, *, demo: bool = True, calendar: bool = True) -> SetupReport:
    """Everything `make run` needs; running it again keeps the data."""
    report = SetupReport()
    schema.upgrade(engine.db)
    report.departments = sync_departments(engine)
    report.versions_created = engine.load_processes().created
    if demo:
        report.users_created = create_demo_accounts(engine)
        report.demo_case = start_demo_case(engine)
        report.logins = [DemoLogin(u, r, d, n) for u, r, d, n in demo_accounts(engine)]
    if calendar:
        report.calendar_case = start_service_calendar(engine)
    store_warn_moments(engine)
    return report


def store_warn_moments(engine: Engine) -> int:
    """Put every open task's warn moment in line with the calendar in force (tasks indexed
    before the moments were kept, a published calendar changed since); return how many."""
    from agency import calendar, oversight
    from agency.reference import reference_of

    in_force = calendar.refresh(engine)
    with engine.db.transaction() as s:
        return oversight.store_warn_moments(s, in_force, reference_of(engine).settings)


def start_service_calendar(engine: Engine) -> int | None:
    """Start the office's yearly calendar (quarterly symposiums, the DRC's list in March)
    once; it runs for as long as the service does."""
    with engine.db.reading() as s:
        if s.scalar(select(Case.id).where(Case.process_id == CALENDAR,
                                          Case.status == "running").limit(1)) is not None:
            return None
    try:
        return engine.start_case(CALENDAR, {"calendar_closed": False}, SYSTEM).id
    except NotFound:  # a pack without the calendar
        return None


def start_demo_case(engine: Engine) -> int | None:
    """Start one demo case the first time, so a new user sees tasks at once."""
    demo_file = engine.config.data_dir / "demo_case.json"
    if not demo_file.exists():
        return None
    with engine.db.reading() as s:
        if s.scalar(select(func.count()).select_from(Case)):
            return None
    demo = json.loads(demo_file.read_text(encoding="utf-8"))
    office = Actor("office", "office", "leading_group_office")
    case = engine.start_case(demo["process_id"], demo["data"], office)
    for step in demo.get("steps", []):
        tasks = engine.list_tasks(case_id=case.id)
        task = next((t for t in tasks if t.spec_name == step["task"]
                     and step.get("item") in (None, t.item_code)), None)
        if task is None:
            log.warning("demo step %s: no such ready task", step["task"])
            break
        engine.complete_task(task.id, step["data"], SYSTEM)
    return case.id
