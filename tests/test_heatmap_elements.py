"""The heatmap reads the elements each case reached from rows every command keeps
(case_element, migration 0018); those rows must say exactly what rebuilding each case says."""

from __future__ import annotations

import statistics
from collections import defaultdict

from sqlalchemy import delete, func, select

from agency.reports import process_heatmap
from engine.cases import Engine
from engine.cases.elements import stored_elements
from engine.store.models import Case, CaseElement, HumanTask, ProcessVersion
from tests.audit_cases import rejected_twice_then_accepted
from tests.service import OFFICE, Service, small_project
from tests.test_library import review, waiting_case_moved_to_a_new_version


def rebuilt(engine: Engine, case_id: int) -> set[tuple[str, str]]:
    """The elements of a case as its workflow shows them (what the heatmap used to rebuild)."""
    engine._forget(case_id)  # from the snapshot and events, not from the cache
    return {(pid, bpmn_id) for pid, by_state in engine.element_states(case_id).items()
            for ids in by_state.values() for bpmn_id in ids}


def rebuilt_heatmap(engine: Engine, process_id: str, number: int) -> dict:
    """The heatmap as it was computed before migration 0018: every case rebuilt."""
    with engine.db.reading() as s:
        version = s.scalar(select(ProcessVersion).where(
            ProcessVersion.process_id == process_id, ProcessVersion.number == number))
        case_ids = list(s.scalars(select(Case.id).where(Case.process_version_id == version.id)))
        tasks = list(s.execute(select(HumanTask.process_id, HumanTask.spec_name, HumanTask.state,
                                      HumanTask.created_at, HumanTask.completed_at)
                               .where(HumanTask.case_id.in_(case_ids))))
    reached: dict[tuple[str, str], int] = defaultdict(int)
    for case_id in case_ids:
        for key in rebuilt(engine, case_id):
            reached[key] += 1
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    open_tasks: dict[tuple[str, str], int] = defaultdict(int)
    for pid, spec, state, created, completed in tasks:
        if state == "completed" and completed is not None:
            durations[(pid, spec)].append((completed - created).total_seconds() / 3600)
        elif state == "ready":
            open_tasks[(pid, spec)] += 1
    # An embedded sub-process's elements are drawn in the diagram around it (its tasks are
    # indexed under the sub-process).
    drawn = engine.embedded_processes(version.id)
    for figures in (reached, durations, open_tasks):
        for key in [k for k in figures if k[0] in drawn]:
            figures[(drawn[key[0]], key[1])] += figures.pop(key)
    return {key: (reached.get(key, 0), len(durations.get(key, [])), open_tasks.get(key, 0),
                  round(statistics.median(durations[key]), 2) if durations.get(key) else None,
                  round(max(durations[key]), 2) if durations.get(key) else None)
            for key in set(reached) | set(durations) | set(open_tasks)}


def table_heatmap(engine: Engine, process_id: str, number: int) -> dict:
    heat = process_heatmap(engine, process_id, number)
    return {(pid, eid): (h.cases, h.tasks_done, h.tasks_open, h.median_hours, h.max_hours)
            for pid, by_id in heat.elements.items() for eid, h in by_id.items()}


def element_rows(engine: Engine, case_id: int) -> set[tuple[str, str]]:
    with engine.db.reading() as s:
        return set(stored_elements(s, case_id))


def test_rows_equal_a_rebuild_for_looping_running_and_terminated_cases(make_pack_engine,
                                                                        db_url, clock):
    engine = make_pack_engine(db_url)
    looped = rejected_twice_then_accepted(engine, clock).case_id  # a rejection loop, twice
    running = Service(engine, clock)
    running.start(small_project())
    running.complete("select_items", selected_items=running.case().data["selected_items"])
    running.complete("review_material_list")
    stopped = Service(engine, clock)
    stopped.start(small_project())
    clock.advance(hours=5)
    engine.terminate_case(stopped.case_id, "项目取消", OFFICE)
    for case_id in (looped, running.case_id, stopped.case_id):
        assert element_rows(engine, case_id) == rebuilt(engine, case_id), case_id
    # A ready task of the terminated case was cancelled: it no longer counts as reached.
    assert engine.get_case(stopped.case_id).status == "terminated"
    assert table_heatmap(engine, "case_flow", 1) == rebuilt_heatmap(engine, "case_flow", 1)
    heat = table_heatmap(engine, "case_flow", 1)
    assert heat[("case_flow", "dispatch")][0] == 1  # only the looped case got that far
    assert heat[("stage_handling", "check_materials")][1:4] == (3, 0, 20.0)


def test_cases_from_before_the_table_are_indexed_once_by_the_heatmap(make_pack_engine,
                                                                     db_url, clock):
    engine = make_pack_engine(db_url)
    done = rejected_twice_then_accepted(engine, clock).case_id
    running = Service(engine, clock)
    running.start(small_project())
    running.complete("select_items", selected_items=running.case().data["selected_items"])
    expected = rebuilt_heatmap(engine, "case_flow", 1)
    with engine.db.transaction() as s:  # as after migration 0018: no rows for old cases
        s.execute(delete(CaseElement))
    for case_id in (done, running.case_id):
        engine._forget(case_id)
    assert table_heatmap(engine, "case_flow", 1) == expected
    assert element_rows(engine, done) == rebuilt(engine, done)
    assert element_rows(engine, running.case_id) == rebuilt(engine, running.case_id)
    with engine.db.reading() as s:
        rows = s.scalar(select(func.count()).select_from(CaseElement))
    assert engine.index_elements(running.case().process_version_id) == 0  # nothing left
    # The next command of the running case (its workflow cached without known rows) keeps
    # the rows exact.
    running.complete("review_material_list")
    assert element_rows(engine, running.case_id) == rebuilt(engine, running.case_id)
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(CaseElement)) > rows


def test_a_migrated_case_counts_on_its_new_version(make_pack_engine, sqlite_url):
    engine = make_pack_engine(sqlite_url)
    waiting, target = waiting_case_moved_to_a_new_version(engine)
    review(engine, waiting.id)
    with engine.db.reading() as s:
        versions = set(s.scalars(select(CaseElement.process_version_id)
                                 .where(CaseElement.case_id == waiting.id)))
    assert versions == {target.id}
    assert element_rows(engine, waiting.id) == rebuilt(engine, waiting.id)
    assert ("phase_2", "confirm_drawings") in element_rows(engine, waiting.id)
    assert table_heatmap(engine, "phase_2", 2) == rebuilt_heatmap(engine, "phase_2", 2)
    assert table_heatmap(engine, "phase_2", 1) == {}
