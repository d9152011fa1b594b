"""The process library: drafts validated against the whole pack, publishing, diffs, migration."""

from __future__ import annotations

import pytest
from lxml import etree
from sqlalchemy import func, select

from engine.actors import SYSTEM, Actor
from engine.errors import Forbidden, InvalidProcess
from engine.pack.library import Library
from engine.pack.migration import MigrationRefused
from engine.store.models import Event, ProcessVersion
from tests.conftest import PACK

ADMIN = Actor("admin", "admin")
NATURAL = Actor("agent_natural", "agent", "natural_resources")
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
SPIFF = "{http://spiffworkflow.org/bpmn/schema/1.0/core}"
DC = "{http://www.omg.org/spec/DD/20100524/DC}"
DI = "{http://www.omg.org/spec/BPMN/20100524/DI}"


def with_confirmation_task(xml: bytes) -> bytes:
    """phase_2 with a user task `confirm_drawings` between the planning conditions and the
    items."""
    root = etree.fromstring(xml)
    process = root.find(f"{B}process")
    flow = process.find(f"{B}sequenceFlow[@id='flow_confirm_planning_conditions_to_items']")
    flow.set("targetRef", "confirm_drawings")
    task = etree.SubElement(process, f"{B}userTask", id="confirm_drawings", name="确认审查意见")
    props = etree.SubElement(etree.SubElement(task, f"{B}extensionElements"),
                             f"{SPIFF}properties")
    etree.SubElement(props, f"{SPIFF}property", name="formJsonSchemaFilename",
                     value="joint_drawing_review.schema.json")
    etree.SubElement(props, f"{SPIFF}property", name="departmentExpression",
                     value="'housing_construction'")
    etree.SubElement(process, f"{B}sequenceFlow", id="flow_confirm_to_items",
                     sourceRef="confirm_drawings", targetRef="items")
    plane = root.find(f"{DI}BPMNDiagram/{DI}BPMNPlane")
    shape = etree.SubElement(plane, f"{DI}BPMNShape", id="confirm_drawings_di",
                             bpmnElement="confirm_drawings")
    etree.SubElement(shape, f"{DC}Bounds", x="600", y="160", width="100", height="80")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def with_condition(xml: bytes, flow_id: str, condition: str) -> bytes:
    root = etree.fromstring(xml)
    node = root.find(f".//{B}sequenceFlow[@id='{flow_id}']/{B}conditionExpression")
    node.text = condition
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def phase_2_data(engine):
    item = engine.functions["catalogue_item"]("design_scheme_review")
    return {"items": [item], "terminated": False, "item_results": [], "completed_phases": [],
            "project": {"name": "工程建设许可测试项目", "code": "2026-TEST-2"}}


def waiting_case_moved_to_a_new_version(engine):
    """A phase_2 case started on the first version, then moved to a published second one
    with a confirmation task (before its first step); returns (case, the new version)."""
    waiting = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    library = Library(engine)
    library.save("phase_2.bpmn", with_confirmation_task((PACK / "phase_2.bpmn").read_bytes()),
                 ADMIN, "")
    target = library.process("phase_2").versions[0]
    library.publish(target.id, ADMIN)
    engine.migrate_case(waiting.id, target.id, ADMIN)
    return waiting, target


def review(engine, case_id):
    """Natural resources confirms the planning conditions, the phase's own first step."""
    [task] = [t for t in engine.list_tasks(case_id=case_id) if t.spec_name ==
              "confirm_planning_conditions"]
    engine.complete_task(task.id, {"conditions_confirmed": True}, NATURAL)


def moved_and_reviewed(engine, check) -> None:
    """`check(engine)` after a waiting case moved to a new version, and after its first step
    there (what a table kept by triggers must follow through a migration)."""
    waiting, _ = waiting_case_moved_to_a_new_version(engine)
    check(engine)
    review(engine, waiting.id)
    check(engine)


def versions(engine, process_id):
    with engine.db.reading() as s:
        return [(v.number, v.status) for v in s.scalars(
            select(ProcessVersion).where(ProcessVersion.process_id == process_id)
            .order_by(ProcessVersion.number))]


@pytest.fixture
def engine(make_pack_engine, sqlite_url):
    return make_pack_engine(sqlite_url)


def test_a_saved_change_is_a_draft_of_the_process_and_of_its_callers(engine):
    library = Library(engine)
    original = (PACK / "phase_2.bpmn").read_bytes()
    result = library.save("phase_2.bpmn", with_confirmation_task(original), ADMIN, "确认任务")
    assert ("phase_2", 2) in result.created and ("case_flow", 2) in result.created
    assert versions(engine, "phase_2") == [(1, "published"), (2, "draft")]
    entry = library.process("phase_2")
    assert entry.published.number == 1 and entry.versions[0].comment == "确认任务"
    with engine.db.reading() as s:
        saved = s.scalars(select(Event).where(Event.stream == "ops",
                                              Event.type == "process_version_saved")
                          .order_by(Event.seq.desc())).first()
    assert saved.actor == "admin" and saved.data["status"] == "draft"
    again = library.save("phase_2.bpmn", with_confirmation_task(original), ADMIN, "again")
    assert again.created == [] and ("phase_2", 2) in again.unchanged


def test_a_refused_save_names_the_element_and_stores_nothing(engine):
    library = Library(engine)
    with engine.db.reading() as s:
        before = s.scalar(select(func.count()).select_from(ProcessVersion))
    bad = with_condition((PACK / "phase_2.bpmn").read_bytes(),
                         "flow_has_items_to_confirm_planning_conditions", "__import__('os')")
    with pytest.raises(InvalidProcess) as info:
        library.save("phase_2.bpmn", bad, ADMIN, "bad")
    [problem] = info.value.problems
    assert problem.element == "flow_has_items_to_confirm_planning_conditions"
    assert problem.element_name == "有事项" and "__import__" in problem.message
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(ProcessVersion)) == before


def test_only_administrators_save_or_publish(engine):
    library = Library(engine)
    auditor = Actor("auditor", "auditor")
    with pytest.raises(Forbidden):
        library.save("phase_2.bpmn", (PACK / "phase_2.bpmn").read_bytes(), auditor, "")
    with pytest.raises(Forbidden):
        library.publish(library.process("phase_2").versions[0].id, auditor)


def test_diff_lists_added_and_changed_elements(engine):
    library = Library(engine)
    library.save("phase_2.bpmn", with_confirmation_task((PACK / "phase_2.bpmn").read_bytes()),
                 ADMIN, "")
    entry = library.process("phase_2")
    changes = {c.element: c for c in library.diff(entry.versions[1].id, entry.versions[0].id)}
    assert changes["confirm_drawings"].kind == "added"
    assert changes["flow_confirm_to_items"].kind == "added"
    flow = changes["flow_confirm_planning_conditions_to_items"]
    assert flow.kind == "changed" and "targetRef: 'items' → 'confirm_drawings'" in flow.details
    assert "confirm_planning_conditions" not in changes


def test_publish_then_new_cases_run_the_new_task_and_old_cases_migrate(engine):
    library = Library(engine)
    waiting = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)  # at the review
    past = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    review(engine, past.id)  # past the review: its element changes, so it cannot move
    library.save("phase_2.bpmn", with_confirmation_task((PACK / "phase_2.bpmn").read_bytes()),
                 ADMIN, "确认任务")
    draft = library.process("phase_2").versions[0]
    published = library.publish(draft.id, ADMIN)
    assert ("phase_2", 2) in published and ("case_flow", 2) in published
    assert versions(engine, "phase_2") == [(1, "retired"), (2, "published")]

    new = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    review(engine, new.id)
    assert "confirm_drawings" in {t.spec_name for t in engine.list_tasks(case_id=new.id)}
    review(engine, waiting.id)  # still on version 1: no new task
    entry = library.process("phase_2")
    assert {v.number: v.running_cases for v in entry.versions} == {1: 2, 2: 1}
    assert "confirm_drawings" not in {t.spec_name for t in
                                      engine.list_tasks(case_id=waiting.id)}


def test_migration_moves_a_case_at_an_unchanged_point_and_can_be_reverted(engine):
    library = Library(engine)
    waiting = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    past = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    review(engine, past.id)
    library.save("phase_2.bpmn", with_confirmation_task((PACK / "phase_2.bpmn").read_bytes()),
                 ADMIN, "")
    target = library.process("phase_2").versions[0]
    library.publish(target.id, ADMIN)

    assert engine.migration_check(waiting.id, target.id).safe
    refusal = engine.migration_check(past.id, target.id)
    assert not refusal.safe
    assert any("confirm_planning_conditions" in r and "changed" in r for r in refusal.reasons)
    with pytest.raises(MigrationRefused):
        engine.migrate_case(past.id, target.id, ADMIN)
    with pytest.raises(Forbidden):
        engine.migrate_case(waiting.id, target.id, Actor("auditor", "auditor"))

    [open_task] = engine.list_tasks(case_id=waiting.id)
    moved = engine.migrate_case(waiting.id, target.id, ADMIN)
    assert moved.process_version_id == target.id
    assert [t.id for t in engine.list_tasks(case_id=waiting.id)] == [open_task.id]
    back = engine.revert_migration(waiting.id, ADMIN)
    assert back.process_version_id != target.id
    engine.migrate_case(waiting.id, target.id, ADMIN)
    types = [e.type for e in engine.case_events(waiting.id)]
    assert types.count("case_migrated") == 2 and "case_migration_reverted" in types

    engine._cache.clear()  # the next command rebuilds the case from its snapshot
    review(engine, waiting.id)
    assert "confirm_drawings" in {t.spec_name for t in engine.list_tasks(case_id=waiting.id)}
    assert engine.verify_case(waiting.id).ok  # re-execution goes through the migrations
    assert engine.verify_case(past.id).ok
