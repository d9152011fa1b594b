"""The dashboard's figures are computed from aggregates and narrow reads (agency.oversight);
they must equal what the former computation (every task row loaded, each level computed
alone: tests/oversight_before.py) gives, for the whole service and for each department."""

from __future__ import annotations

import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from agency import bootstrap, oversight, service_engine
from agency.reference import ReferenceData
from engine.config import Config
from engine.store.models import Case, Department, HumanTask, ProcessVersion
from tests import oversight_before

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 18, 3, 0, tzinfo=UTC)
SPECS = ["prepare_materials", "check_materials", "track_approval", "handover_results",
         "hand_back_materials", "yellow_warning", "red_warning", "escalate_supply",
         "verify_commitment", "commitment_decision", "record_visit"]


def fill(engine, cases: int, seed: int, moments: bool = True) -> None:
    """Cases of every status with tasks of every state, items, warnings, commitments."""
    rng = random.Random(seed)
    items = list(ReferenceData.load(ROOT / "data").items.values())
    with engine.db.transaction() as s:
        version_id = s.scalar(select(ProcessVersion.id).where(
            ProcessVersion.process_id == "case_flow"))
        departments = list(s.scalars(select(Department.code)))
        first = (s.scalar(select(Case.id).order_by(Case.id.desc()).limit(1)) or 0) + 1
        task_rows = []
        for n in range(first, first + cases):
            chosen = rng.sample(items, rng.randint(1, 4))
            status = rng.choice(["running", "running", "running", "completed", "terminated"])
            ended = NOW - timedelta(days=rng.randint(0, 40)) if status != "running" else None
            data = {"items": [{"code": i["code"], "name": i["name"],
                               **({"department": i["department"]} if rng.random() < 0.8
                                  else {})} for i in chosen],
                    "item_results": [{"code": i["code"], "commitment": rng.choice(
                        ["", "补交材料"])} for i in chosen]}
            if rng.random() < 0.08:  # case data of an odd shape is read as having no items
                data["items"] = rng.choice([{"code": "odd"}, [*data["items"], "x", 3], None])
            s.execute(insert(Case), [{
                "id": n, "process_version_id": version_id, "process_id": "case_flow",
                "title": f"项目 {n}", "status": status, "data": data, "started_by": "office",
                "started_at": NOW - timedelta(days=90), "updated_at": NOW, "ended_at": ended}])
            for k in range(rng.randint(2, 12)):
                item = rng.choice(chosen + [None])
                spec = rng.choice(SPECS)
                state = rng.choice(["ready", "ready", "completed", "completed", "cancelled"])
                created = NOW - timedelta(hours=rng.randint(1, 900))
                result = None
                if spec == "verify_commitment":
                    result = {"commitment_kept": rng.choice([True, False])}
                elif spec == "commitment_decision":
                    result = {"commitment_action": rng.choice(["revoke", "rectify"])}
                task_rows.append({
                    "id": f"{n:08d}-{k:04d}-0000-0000-000000000000", "case_id": n,
                    "process_id": "stage_handling", "spec_name": spec, "title": f"{spec} {k}",
                    "department": rng.choice(departments), "state": state, "version": 1,
                    "item_code": item["code"] if item else None,
                    "item_name": item["name"] if item else None,
                    "phase": rng.choice(["1", "2", "3", "4", None, "x"]),
                    "stage": rng.choice(["handling", "closing", None, "odd"]),
                    "due_at": (NOW + timedelta(hours=rng.randint(-300, 600))
                               if rng.random() < 0.85 else None),
                    "created_at": created, "result": result,
                    "completed_at": (created + timedelta(hours=rng.randint(1, 400))
                                     if state == "completed" else None)})
        s.execute(insert(HumanTask), task_rows)
    # Rows written directly have no warn moments yet: as for tasks indexed before the
    # moments were kept, `zerorun setup` computes them.
    if moments:
        assert bootstrap.store_warn_moments(engine) > 0


def before(engine, department=None, listed=oversight.LISTED):
    """The former computation's figures (the two modules' own classes as dicts), with the
    late items listed per department cut to the first `listed`, the others counted."""
    figures = asdict(oversight_before.figures(engine, department))
    for entry in figures["overdue"].values():
        entry["more"] = len(entry["items"]) - min(len(entry["items"]), listed)
        entry["items"] = entry["items"][:listed]
    return figures


def compared(figures) -> dict:
    """The figures the former computation had: not the item clocks' (R12: government time,
    paused items), which are new."""
    return {k: v for k, v in asdict(figures).items() if k not in ("clock_times", "paused")}


@pytest.mark.parametrize(("seed", "listed"), [(1, oversight.LISTED), (2, 3)])
def test_the_figures_equal_the_former_computation(tmp_path, seed, listed, db_url, monkeypatch):
    """The figures of the whole service and of each department; also with only the first
    three late items of each department listed (the others counted)."""
    monkeypatch.setattr(oversight, "LISTED", listed)
    url = db_url
    config = Config.from_env(database_url=url, instance_dir=tmp_path,
                             processes_dir=ROOT / "processes", data_dir=ROOT / "data")
    engine = service_engine(config, clock_source=lambda: NOW)
    bootstrap.setup(engine, demo=False, calendar=False)
    fill(engine, 60, seed)
    with engine.db.reading() as s:
        departments = [None, *s.scalars(select(Department.code))]
    seen = {"red": 0, "yellow": 0, "times": 0, "closed": 0, "broken": 0, "more": 0}
    for department in departments:
        new = oversight.figures(engine, department)
        assert compared(new) == before(engine, department, listed), department
        seen["more"] += sum(d["more"] for d in new.overdue.values())
        seen["red"] += new.overdue_red
        seen["yellow"] += new.overdue_yellow
        seen["times"] += len(new.item_times)
        seen["closed"] += len(new.closed_this_month)
        seen["broken"] += len(new.broken_commitments)
    if listed > 10:
        seen.pop("more")  # 60 cases: no department has that many late items
    assert all(seen.values()), seen  # every figure was exercised
    engine.db.dispose()


def test_tasks_without_moments_get_them_on_the_first_dashboard(tmp_path):
    """A database migrated (or restored) without `zerorun setup`: its open tasks have no warn
    moments; the first dashboard of a process stores them, and shows the same figures."""
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    config = Config.from_env(database_url=url, instance_dir=tmp_path,
                             processes_dir=ROOT / "processes", data_dir=ROOT / "data")
    engine = service_engine(config, clock_source=lambda: NOW)
    bootstrap.setup(engine, demo=False, calendar=False)
    fill(engine, 40, 4, moments=False)
    missing = (HumanTask.state == "ready", HumanTask.due_at.is_not(None),
               HumanTask.warn_at.is_(None))
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask).where(*missing)) > 20
    figures = oversight.figures(engine)
    assert compared(figures) == before(engine)
    assert figures.overdue_yellow > 0
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask).where(*missing)) == 0
    engine.db.dispose()


def test_the_figures_follow_a_calendar_change(tmp_path, db_url):
    """The office declares holidays: the open tasks' stored warn moments are recomputed with
    the change, and the figures still equal the former computation (which reads the calendar
    in force) for the whole service and each department."""
    from agency import calendar
    from tests.service import OFFICE

    url = db_url
    config = Config.from_env(database_url=url, instance_dir=tmp_path,
                             processes_dir=ROOT / "processes", data_dir=ROOT / "data")
    engine = service_engine(config, clock_source=lambda: NOW)
    bootstrap.setup(engine, demo=False, calendar=False)
    fill(engine, 60, 3)

    def moments():
        with engine.db.reading() as s:
            return dict(s.execute(select(HumanTask.id, HumanTask.warn_at).where(
                HumanTask.state == "ready", HumanTask.due_at.is_not(None))).all())

    with engine.db.reading() as s:
        departments = [None, *s.scalars(select(Department.code))]
    stored = moments()
    first = asdict(oversight.figures(engine))
    today = NOW.astimezone(oversight.SERVICE_TZ).date()
    for back in range(1, 22):  # the working days of the last three weeks become holidays
        day = today - timedelta(days=back)
        if day.weekday() < 5:
            calendar.declare(engine, day, "holiday", "", OFFICE)
    changed = moments()
    assert sum(stored[k] != changed[k] for k in stored) > len(stored) // 4
    assert asdict(oversight.figures(engine)) != first  # some items changed level
    for department in departments:
        new = oversight.figures(engine, department)
        assert compared(new) == before(engine, department), department
    # Undone: the moments are those of the published calendar again.
    for back in range(1, 22):
        day = today - timedelta(days=back)
        if day.weekday() < 5:
            calendar.declare(engine, day, "normal", "", OFFICE)
    assert moments() == stored
    assert asdict(oversight.figures(engine)) == first
    engine.db.dispose()


def test_the_stored_moments_give_the_levels_of_the_rule():
    """A task is red after due_at and yellow from warn_at: the levels `due_level` gives at
    every moment (any start, limit and time of day; holidays and make-up days)."""
    from datetime import date

    from agency.reference import ServiceSettings, WorkingCalendar

    holidays = frozenset(date(2026, 10, 1) + timedelta(days=n) for n in range(7))
    calendar = WorkingCalendar(holidays, frozenset({date(2026, 9, 27), date(2026, 10, 10)}))
    ref = ReferenceData({}, calendar=calendar, settings=ServiceSettings())
    rng = random.Random(5)
    base = datetime(2026, 9, 15, tzinfo=UTC)
    levels = {"none": 0, "yellow": 0, "red": 0}
    for _ in range(3000):
        created = base + timedelta(minutes=rng.randint(0, 40 * 24 * 60))
        due = (created + timedelta(minutes=rng.randint(-600, 30 * 24 * 60))
               if rng.random() < 0.9 else None)
        warn = oversight.warn_moment(calendar, ref.settings, created, due)
        for _ in range(5):
            now = created + timedelta(minutes=rng.randint(0, 40 * 24 * 60))
            expected = oversight.due_level(ref, created, due, now)
            got = ("red" if due is not None and now > due else
                   "yellow" if warn is not None and now >= warn else "none")
            assert got == expected, (created, due, now, warn)
            levels[got] += 1
    assert all(n > 500 for n in levels.values()), levels


def test_the_calendar_table_answers_like_counting_day_by_day():
    """Working days from the calendar's table of counts equal counting day by day, across
    holidays and make-up days and outside the table's years."""
    from datetime import date

    from agency.reference import WorkingCalendar

    holidays = frozenset(date(2026, 10, 1) + timedelta(days=n) for n in range(7))
    calendar = WorkingCalendar(holidays, frozenset({date(2026, 9, 27), date(2026, 10, 10)}))

    def add(start: date, days: int) -> date:
        current = start
        while days > 0:
            current += timedelta(days=1)
            days -= calendar.is_working_day(current)
        return current

    def between(start: date, end: date) -> int:
        if end < start:
            return -between(end, start)
        return sum(calendar.is_working_day(start + timedelta(days=n))
                   for n in range(1, (end - start).days + 1))

    rng = random.Random(3)
    starts = [date(2026, 9, 20) + timedelta(days=n) for n in range(30)]
    starts += [date(1999, 12, 20), date(2059, 12, 20), date(2070, 1, 1)]
    for start in starts:
        for days in (-1, 0, 1, 2, 5, 9, 30, rng.randint(0, 400)):
            assert calendar.add_working_days(start, days) == add(start, days), (start, days)
        for span in (-40, -1, 0, 1, 6, 13, 45, rng.randint(-500, 500)):
            end = start + timedelta(days=span)
            assert calendar.working_days_between(start, end) == between(start, end), (start, end)
