"""Diagrams by process instance: the case and every called process it started (one
item_approval per item, the stages of each item) with that instance's own states, live on
the case page and as they were at a step of the auditor's replay."""

from __future__ import annotations

import json
import re

from engine.audit.history import case_history
from engine.cases.workflow import ROOT_INSTANCE
from tests.audit_cases import rejected_twice_then_accepted
from tests.conftest import START
from tests.test_audit_web import audit_app, client_as, rejection_seqs  # noqa: F401 - fixture
from tests.test_web_smoke import login
from tests.workspace import PASSWORD, make_workspace


def _by_label(instances, process):
    return {i["label"]: (key, i) for key, i in instances.items() if i["process"] == process}


def test_two_items_have_two_instances_of_the_called_process_with_their_own_states(tmp_path):
    from engine.runtime.clock import MovableClock

    ws = make_workspace(tmp_path, MovableClock(START))
    case_id = ws.start()
    ws.to_phase_one(case_id)
    instances = ws.engine.case_instances(case_id)

    root = instances[ROOT_INSTANCE]
    assert root["process"] == "case_flow" and root["parent"] is None
    [phase_key] = root["calls"]["phase_1"]
    phase = instances[phase_key]
    assert phase["process"] == "phase_1" and phase["parent"] == ROOT_INSTANCE
    items = _by_label(instances, "item_approval")
    waiting_key, waiting = items["建设用地规划许可证"]  # waits for its prerequisites
    moving_key, moving = items["企业投资项目备案"]
    assert {waiting_key, moving_key} <= set(phase["calls"]["items"])
    assert waiting["parent"] == moving["parent"] == phase_key
    assert waiting["element"] == moving["element"] == "items"
    assert waiting["states"] != moving["states"]
    assert "preparation" in moving["states"]["active"]
    assert waiting["states"]["active"] == [] and waiting["states"]["waiting"]
    assert "preparation" not in waiting["calls"] and "preparation" in moving["calls"]
    [stage_key] = moving["calls"]["preparation"]
    stage = instances[stage_key]
    assert (stage["process"], stage["label"]) == ("stage_preparation", "企业投资项目备案")
    assert stage["states"]["active"] == ["prepare_materials"]
    # an instance holds its own elements only, not those of the processes it calls
    assert "prepare_materials" not in moving["states"]["active"] + root["states"]["active"]

    # the case page hands the instances to its diagram
    client = ws.app.test_client()
    login(client, "agent_approval_bureau", PASSWORD)
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    data = json.loads(re.search(r'id="case-diagram-data">(.*?)</script>', page, re.S).group(1))
    assert data["instances"][moving_key]["states"] == moving["states"]
    assert data["root"] == ROOT_INSTANCE


def test_the_replay_gives_each_instance_as_it_was_at_the_step(make_pack_engine, sqlite_url,
                                                               clock):
    engine = make_pack_engine(sqlite_url)
    service = rejected_twice_then_accepted(engine, clock)
    first, second = rejection_seqs(engine, service.case_id)
    history = case_history(engine, service.case_id, second)
    task = next(s.task for s in history.steps if s.seq == second)
    instances = history.moment.instances
    here = instances[task.instance]
    assert here["process"] == "stage_handling" and task.bpmn_id == "check_materials"
    assert "check_materials" in here["states"]["completed"]
    assert here["states"]["active"] == ["notify_rejection"]
    item = instances[here["parent"]]
    assert item["process"] == "item_approval" and item["label"] == "企业投资项目备案"
    handlings = item["calls"]["handling"]  # one stage_handling per round
    assert len(handlings) == 2 and handlings[-1] == task.instance
    assert instances[handlings[0]]["states"]["active"] == []
    assert "notify_rejection" in instances[handlings[0]]["states"]["completed"]

    final = case_history(engine, service.case_id).moment.instances
    assert "notify_rejection" in final[task.instance]["states"]["completed"]
    assert final[ROOT_INSTANCE]["states"]["active"] == []
    assert len(final[here["parent"]]["calls"]["handling"]) == 3


def test_the_replay_page_opens_on_the_instance_of_the_step(audit_app):  # noqa: F811
    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    first, _ = rejection_seqs(engine, case_id)
    page = client_as(audit_app, "auditor").get(f"/audit/cases/{case_id}?step={first}")
    text = page.get_data(as_text=True)
    data = json.loads(re.search(r'class="diagram-data">(.*?)</script>', text, re.S).group(1))
    focus = data["focus"]
    assert focus["element"] == "check_materials"
    assert data["instances"][focus["instance"]]["process"] == "stage_handling"
    assert data["instances"][focus["instance"]]["states"]["active"] == ["notify_rejection"]
