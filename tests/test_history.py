"""A case's history rebuilt by re-execution: data per step, diffs, the case at one step."""

from __future__ import annotations

import pytest

from engine.audit.history import Change, case_history, diff
from engine.errors import NotFound
from tests.audit_cases import REJECTION_REASONS, rejected_twice_then_accepted


@pytest.fixture
def finished(make_pack_engine, sqlite_url, clock):
    engine = make_pack_engine(sqlite_url)
    return engine, rejected_twice_then_accepted(engine, clock)


def test_diff_names_each_changed_path():
    before = {"project": {"name": "甲", "code": "1"}, "items": [{"code": "a", "ok": False}],
              "gone": 1}
    after = {"project": {"name": "乙", "code": "1"}, "items": [{"code": "a", "ok": True}],
             "new": [1, 2]}
    assert diff(before, after) == [
        Change("gone", "removed", 1, None),
        Change("items[0].ok", "changed", False, True),
        Change("new", "added", None, [1, 2]),
        Change("project.name", "changed", "甲", "乙")]
    assert diff(before, before) == []


def test_every_event_is_a_step_with_its_task_and_the_data_it_left(finished):
    engine, service = finished
    history = case_history(engine, service.case_id)
    events = engine.case_events(service.case_id)
    assert [s.seq for s in history.steps] == [e.seq for e in events]
    assert [s.hash for s in history.steps] == [e.hash for e in events]
    # The data after the last step is exactly what the case stored.
    assert history.steps[-1].case_data == engine.get_case(service.case_id).data
    rejections = [s for s in history.steps if s.submitted.get("decision") == "reject"]
    assert [s.submitted["rejection_reasons"] for s in rejections] == REJECTION_REASONS
    assert {(s.task.title, s.task.item_name, s.task.department, s.actor) for s in rejections} \
        == {("核对、检查、接收材料并受理", "企业投资项目备案", "drc", "agent_drc")}
    dispatch = next(s for s in history.steps if s.task and s.task.bpmn_id == "dispatch")
    assert Change("dispatch_no", "added", None, "PQ-2026-001") in dispatch.changes


def test_the_case_at_a_step_is_rebuilt_as_it_was_then(finished):
    engine, service = finished
    events = engine.case_events(service.case_id)
    first_rejection = next(e.seq for e in events if e.data.get("data", {}).get("decision")
                           == "reject")
    moment = case_history(engine, service.case_id, first_rejection).moment
    assert moment is not None and moment.seq == first_rejection
    assert [(t.title, t.department) for t in moment.open_tasks] == [
        ("一次性告知不予受理原因", "approval_bureau")]
    assert moment.states["stage_handling"]["completed"][:1] and \
        "check_materials" in moment.states["stage_handling"]["completed"]
    assert "notify_rejection" in moment.states["stage_handling"]["active"]
    assert "close_case" not in moment.states["case_flow"]["completed"]
    assert engine.element_states(service.case_id, first_rejection) == moment.states
    last = case_history(engine, service.case_id).moment
    assert last is not None and "close_case" in last.states["case_flow"]["completed"]
    with pytest.raises(NotFound, match="no step 99"):
        case_history(engine, service.case_id, 99)
