"""What-if replay: recorded cases re-executed against a draft, nothing of them written."""

from __future__ import annotations

import json

import pytest
from lxml import etree
from sqlalchemy import select

from engine.actors import SYSTEM, Actor
from engine.errors import Conflict, Forbidden
from engine.pack import whatif
from engine.pack.library import Library
from engine.store.models import Case, CaseSnapshot, Event, HumanTask
from tests.conftest import PACK
from tests.test_library import ADMIN, B, phase_2_data, review, with_condition

DI = "{http://www.omg.org/spec/BPMN/20100524/DI}"


def without_review(xml: bytes) -> bytes:
    """phase_2 without its review task: the gateway leads straight to the items."""
    root = etree.fromstring(xml)
    process = root.find(f"{B}process")
    for element_id in ("confirm_planning_conditions", "flow_confirm_planning_conditions_to_items"):
        process.remove(process.find(f"*[@id='{element_id}']"))
        for shape in root.iter(f"{DI}BPMNShape", f"{DI}BPMNEdge"):
            if shape.get("bpmnElement") == element_id:
                shape.getparent().remove(shape)
    process.find(f"{B}sequenceFlow[@id='flow_has_items_to_confirm_planning_conditions']") \
        .set("targetRef", "items")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def renamed_review(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    root.find(f".//{B}userTask[@id='confirm_planning_conditions']").set("name", "核实规划条件")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def tightened_form() -> bytes:
    """The review's form with its note required."""
    schema = json.loads((PACK / "forms" / "planning_conditions.schema.json").read_text())
    schema["required"] = ["conditions_confirmed", "conditions_note"]
    return json.dumps(schema, ensure_ascii=False).encode("utf-8")


def three_cases(engine):
    """One phase_2 case waiting at the review, one past it, one completed without items."""
    waiting = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    past = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    review(engine, past.id)
    skipped = engine.start_case("phase_2", {**phase_2_data(engine), "items": []}, SYSTEM)
    assert engine.get_case(skipped.id).status == "completed"
    return waiting.id, past.id, skipped.id


def draft_of(engine, xml: bytes, forms=None) -> int:
    library = Library(engine)
    library.save("phase_2.bpmn", xml, ADMIN, "what-if", forms)
    draft = library.process("phase_2").versions[0]
    assert draft.status == "draft"
    return draft.id


def replayed(engine, draft_id, case_ids):
    run_id = whatif.start_run(engine, draft_id, case_ids, ADMIN)
    assert whatif.run_view(engine, run_id).state == "queued"
    while True:
        _, more = whatif.work(engine, "test-worker", seconds=30)
        if not more:
            break
    run = whatif.run_view(engine, run_id)
    assert run.state == "done" and run.done == run.total == len(case_ids)
    return run, {r.case_id: r for r in run.results}


def stored(engine):
    """Every case row, event, task row and snapshot, as stored."""
    with engine.db.reading() as s:
        return ([(c.id, c.status, c.state_version, c.event_seq, c.last_hash, c.data,
                  c.process_version_id) for c in s.scalars(select(Case).order_by(Case.id))],
                [(e.id, e.stream, e.seq, e.hash, e.data) for e in
                 s.scalars(select(Event).where(Event.stream.like("case:%")).order_by(Event.id))],
                [(t.id, t.state, t.version) for t in
                 s.scalars(select(HumanTask).order_by(HumanTask.id))],
                [(n.case_id, n.event_seq, n.state) for n in
                 s.scalars(select(CaseSnapshot).order_by(CaseSnapshot.case_id))])


@pytest.fixture
def engine(make_pack_engine, sqlite_url):
    return make_pack_engine(sqlite_url)


def test_an_identical_draft_runs_every_case_identically(engine):
    cases = three_cases(engine)
    draft = draft_of(engine, renamed_review((PACK / "phase_2.bpmn").read_bytes()))
    run, results = replayed(engine, draft, cases)
    assert [r.outcome for r in run.results] == ["identical"] * 3
    waiting, past, skipped = cases
    assert results[waiting].migratable is True and results[skipped].migratable is None


def test_a_changed_gateway_condition_diverges_the_cases_that_took_the_branch(engine):
    waiting, past, skipped = three_cases(engine)
    xml = with_condition((PACK / "phase_2.bpmn").read_bytes(),
                         "flow_has_items_to_confirm_planning_conditions",
                         "len(phase_items) > 99 and not terminated")
    draft = draft_of(engine, xml)
    before = stored(engine)
    run, results = replayed(engine, draft, [waiting, past, skipped])
    assert stored(engine) == before  # nothing of the cases was written
    assert results[skipped].outcome == "identical"
    for case_id in (waiting, past):
        divergence = results[case_id].divergence
        assert results[case_id].outcome == "diverged"
        assert divergence["seq"] == 1 and divergence["event_type"] == "case_started"
        assert divergence["kind"] == "gateway" and divergence["element"] == "has_items"
        assert {e["element"] for e in divergence["recorded"]} >= {"confirm_planning_conditions"}
        assert {e["element"] for e in divergence["draft"]} >= {"end_skipped"}
    # The existing migration check: the gateway it passed has changed.
    assert results[waiting].migratable is False
    assert any("has_items" in r for r in results[waiting].migration_reasons)


def test_a_removed_task_diverges_where_the_case_reached_it(engine):
    waiting, past, skipped = three_cases(engine)
    draft = draft_of(engine, without_review((PACK / "phase_2.bpmn").read_bytes()))
    run, results = replayed(engine, draft, [waiting, past, skipped])
    assert results[skipped].outcome == "identical"
    for case_id in (waiting, past):
        divergence = results[case_id].divergence
        assert divergence["seq"] == 1 and divergence["kind"] == "task_missing"
        assert divergence["element"] == "confirm_planning_conditions"
        assert divergence["element_name"] == "核实规划设计条件"
    assert results[waiting].migratable is False
    assert any("confirm_planning_conditions" in r for r in results[waiting].migration_reasons)


def test_a_tightened_form_refuses_the_recorded_completion(engine):
    waiting, past, skipped = three_cases(engine)
    draft = draft_of(engine, (PACK / "phase_2.bpmn").read_bytes(),
                     {"planning_conditions.schema.json": tightened_form()})
    run, results = replayed(engine, draft, [waiting, past, skipped])
    assert results[waiting].outcome == "identical" and results[skipped].outcome == "identical"
    divergence = results[past].divergence
    assert results[past].outcome == "diverged" and divergence["kind"] == "form"
    assert divergence["event_type"] == "task_completed"
    assert divergence["element"] == "confirm_planning_conditions"
    assert [f["field"] for f in divergence["fields"]] == ["conditions_note"]


def test_candidates_are_the_running_then_the_last_closed_cases_of_the_replaced_version(engine):
    waiting, past, skipped = three_cases(engine)
    draft = draft_of(engine, renamed_review((PACK / "phase_2.bpmn").read_bytes()))
    assert whatif.candidates(engine, draft, closed=5) == [waiting, past, skipped]
    assert whatif.candidates(engine, draft, closed=0) == [waiting, past]
    assert whatif.search(engine, draft, f"#{past}") == [past]


def test_a_replay_of_other_cases_or_by_others_is_refused_and_stores_nothing(engine):
    waiting, _, _ = three_cases(engine)
    other = engine.start_case("phase_3", {**phase_2_data(engine)}, SYSTEM)
    draft = draft_of(engine, renamed_review((PACK / "phase_2.bpmn").read_bytes()))
    with pytest.raises(Conflict, match="not cases of phase_2"):
        whatif.start_run(engine, draft, [waiting, other.id], ADMIN)
    with pytest.raises(Conflict, match="at least one case"):
        whatif.start_run(engine, draft, [], ADMIN)
    with pytest.raises(Forbidden):
        whatif.start_run(engine, draft, [waiting], Actor("auditor", "auditor"))
    published = Library(engine).process("phase_2").published.id
    with pytest.raises(Conflict, match="not a draft"):
        whatif.start_run(engine, published, [waiting], ADMIN)
    assert whatif.runs_of(engine, draft) == []


def test_the_what_if_bench_replays_its_recorded_cases(tmp_path):
    from bench import whatif as bench_whatif

    figures = bench_whatif.measure(tmp_path, cases=8)
    assert figures["cases"] == 8 and figures["events"] > 8
    assert figures["renamed"]["identical"] == 8 and figures["renamed"]["failed"] == 0
    # Every case with items took the changed branch; the one without items (n % 7 == 6) did not.
    assert figures["gateway"]["diverged"] == 7 and figures["gateway"]["identical"] == 1


def test_a_run_left_by_a_stopped_worker_is_taken_over(make_pack_engine, db_url, clock):
    engine = make_pack_engine(db_url)
    cases = three_cases(engine)
    draft = draft_of(engine, renamed_review((PACK / "phase_2.bpmn").read_bytes()))
    run_id = whatif.start_run(engine, draft, cases, ADMIN)
    assert whatif._claim(engine, "worker-a") == run_id  # then worker a stops
    assert whatif.work(engine, "worker-b", seconds=30) == (0, False)  # a still holds it
    assert whatif.run_view(engine, run_id).state == "running"
    clock.advance(minutes=3)  # a's lease ran out
    assert whatif.work(engine, "worker-b", seconds=30) == (3, False)
    run = whatif.run_view(engine, run_id)
    assert run.state == "done" and [r.outcome for r in run.results] == ["identical"] * 3


def test_a_run_goes_on_over_several_slices_of_the_same_worker(engine):
    cases = three_cases(engine)
    draft = draft_of(engine, renamed_review((PACK / "phase_2.bpmn").read_bytes()))
    run_id = whatif.start_run(engine, draft, cases, ADMIN)
    progress = []
    while True:  # slices too short for more than the one batch each is sure to do
        replayed, more = whatif.work(engine, "worker-a", seconds=0, batch_size=1)
        progress.append((replayed, whatif.run_view(engine, run_id, outcomes=False).done))
        if not more:
            break
    assert progress == [(1, 1), (1, 2), (1, 3)]
    assert whatif.run_view(engine, run_id).state == "done"
    assert whatif.work(engine, "worker-a") == (0, False)
