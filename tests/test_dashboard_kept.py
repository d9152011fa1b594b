"""The dashboard's kept figures (migration 0023_figures_kept): the finished items' spans and
the departments the case data gives each item, written by the database with every write of
the task index and of a case's data. They must always equal what the full computation
(every task row grouped, every case's data walked) gives: after commands of every kind, on
both databases, and after upgrading a database that had none."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import select, update

from agency.models import CaseItem, ItemSpan
from agency.oversight import ITEM_DONE_TASKS
from engine.cases import Engine
from engine.store import schema
from engine.store.models import Case, HumanTask
from tests.audit_cases import rejected_twice_then_accepted
from tests.service import OFFICE, Service, small_project
from tests.test_library import moved_and_reviewed


def recomputed(engine: Engine) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The spans and item departments computed from every task row and every case's data,
    in Python, as the dashboard computed them before they were kept."""
    with engine.db.reading() as s:
        tasks = list(s.execute(select(HumanTask.case_id, HumanTask.item_code, HumanTask.state,
                                      HumanTask.spec_name, HumanTask.created_at,
                                      HumanTask.completed_at, HumanTask.item_name)))
        cases = list(s.execute(select(Case.id, Case.data)))
    of_item: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for row in tasks:
        if row.item_code is not None and row.state != "cancelled":
            of_item[(row.case_id, row.item_code)].append(row)
    spans = {}
    for key, rows in of_item.items():
        ends = [r.completed_at for r in rows
                if r.state == "completed" and r.spec_name in ITEM_DONE_TASKS and r.completed_at]
        if ends:
            names = [r.item_name for r in rows if r.item_name is not None]
            spans[key] = (min(r.created_at for r in rows), max(ends),
                          max(names) if names else None)
    departments = {}
    for case_id, data in cases:
        items = (data or {}).get("items") if isinstance(data, dict) else None
        by_code = {i.get("code"): i for i in (items if isinstance(items, list) else [])
                   if isinstance(i, dict) and isinstance(i.get("code"), str)}
        for code, item in by_code.items():
            department = item.get("department")
            departments[(case_id, code)] = department if isinstance(department, str) else None
    return spans, departments


def kept(engine: Engine) -> tuple[dict[Any, Any], dict[Any, Any]]:
    with engine.db.reading() as s:
        spans = {(r.case_id, r.item_code): (r.started_at, r.ended_at, r.item_name)
                 for r in s.scalars(select(ItemSpan))}
        departments = {(r.case_id, r.item_code): r.department for r in s.scalars(select(CaseItem))}
    return spans, departments


def assert_kept(engine: Engine) -> tuple[dict[Any, Any], dict[Any, Any]]:
    found = kept(engine)
    assert found == recomputed(engine)
    return found


def test_kept_figures_follow_every_kind_of_command(make_pack_engine, db_url, clock):
    """Start, complete (an item rejected twice, then handed over), timers, terminate; then
    rows changed by hand (a task reopened, an item's department edited in the case data)."""
    engine = make_pack_engine(db_url)
    running = Service(engine, clock)
    running.start(small_project())
    assert_kept(engine)
    running.complete("select_items", selected_items=running.case().data["selected_items"])
    looped = rejected_twice_then_accepted(engine, clock)  # fires the 31-day visit timer too
    spans, departments = assert_kept(engine)
    assert (looped.case_id, "project_filing") in spans  # handed over: a finished item
    assert departments[(looped.case_id, "project_filing")]
    with engine.db.transaction() as s:  # a finished item's first task moved earlier by hand
        first = s.scalars(select(HumanTask).where(
            HumanTask.case_id == looped.case_id, HumanTask.item_code == "project_filing",
            HumanTask.spec_name == "prepare_materials").order_by(HumanTask.created_at)).first()
        first.created_at -= timedelta(days=3)
    moved, _ = assert_kept(engine)
    key = (looped.case_id, "project_filing")
    assert moved[key][0] == spans[key][0] - timedelta(days=3)
    stopped = Service(engine, clock)
    stopped.start(small_project())
    stopped.complete("select_items", selected_items=stopped.case().data["selected_items"])
    clock.advance(hours=5)
    engine.terminate_case(stopped.case_id, "项目取消", OFFICE)
    assert_kept(engine)
    with engine.db.transaction() as s:  # a hand-over undone, then its item's data edited
        s.execute(update(HumanTask).where(HumanTask.case_id == looped.case_id,
                                          HumanTask.spec_name.in_(ITEM_DONE_TASKS))
                  .values(state="ready", completed_at=None))
        case = s.get(Case, looped.case_id)
        items = [dict(i) for i in case.data["items"]]
        items[0]["department"] = "somewhere_else"
        items.append({"code": items[0]["code"], "department": 7})  # the last entry wins
        case.data = {**case.data, "items": items}
    spans, departments = assert_kept(engine)
    assert (looped.case_id, "project_filing") not in spans
    assert departments[(looped.case_id, items[0]["code"])] is None
    with engine.db.transaction() as s:  # tasks deleted: their finished items go with them
        s.execute(update(HumanTask).where(HumanTask.case_id == looped.case_id,
                                          HumanTask.spec_name.in_(ITEM_DONE_TASKS))
                  .values(state="completed", completed_at=clock()))
        assert_kept(engine)
    with engine.db.transaction() as s:
        for row in s.scalars(select(HumanTask).where(HumanTask.case_id == looped.case_id)):
            s.delete(row)
    spans, _ = assert_kept(engine)
    assert not [key for key in spans if key[0] == looped.case_id]


def test_a_migrated_case_keeps_its_figures(make_pack_engine, sqlite_url):
    moved_and_reviewed(make_pack_engine(sqlite_url), assert_kept)


def test_upgrading_fills_the_kept_figures(make_pack_engine, db_url, clock):
    """A database from before migration 0023 (its cases and tasks already there) gets every
    row when upgraded; and downgrading removes the tables and their triggers."""
    engine = make_pack_engine(db_url)
    looped = rejected_twice_then_accepted(engine, clock)
    running = Service(engine, clock)
    running.start(small_project())
    expected = assert_kept(engine)
    assert expected[0] and expected[1]
    downgrade_to(engine, "0021_warn_moments")
    # (no command runs on the old database: later migrations add columns the engine reads)
    schema.upgrade(engine.db)
    assert kept(engine) == recomputed(engine)
    assert kept(engine)[0] == expected[0]
    assert looped.case().status == "completed"
    schema.upgrade(engine.db)  # idempotent, as `zerorun setup` runs it
    running.complete("select_items", selected_items=running.case().data["selected_items"])
    running.complete("review_material_list")
    assert_kept(engine)


def downgrade_to(engine: Engine, revision: str) -> None:
    """Take the engine's database back to an earlier migration (its rows kept)."""
    cfg = schema.alembic_config(engine.db.url)
    with engine.db.engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)
        connection.commit()
