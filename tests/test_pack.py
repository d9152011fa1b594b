"""The process pack as files: schema, layout, owners and forms of every task, the decision table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from lxml import etree

from agency import service_engine
from agency.reference import ReferenceData
from engine.pack.loader import NS, read_pack_dir
from engine.runtime import expressions
from tests.conftest import PACK, ROOT
from tests.service import KEY_PROJECT, small_project

BPMN_FILES = sorted(PACK.glob("*.bpmn"))
FORMS = PACK / "forms"
REF = ReferenceData.load(ROOT / "data")
FLOW_NODES = ("task", "userTask", "manualTask", "scriptTask", "serviceTask", "businessRuleTask",
              "callActivity", "subProcess", "exclusiveGateway", "parallelGateway",
              "inclusiveGateway", "eventBasedGateway", "startEvent", "endEvent",
              "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent")
EXPECTED_PROCESSES = {
    "case_flow", "phase_1", "phase_2", "phase_3", "phase_4", "item_approval",
    "stage_preparation", "stage_handling", "stage_acceleration", "stage_closing",
    "joint_meeting", "return_visit", "policy_redemption", "industry_symposium",
    "agent_training", "public_opinion", "service_calendar", "item_rating", "milestone_visit",
    "commitment_verification"}
# Data the diagrams route on; a form field of the same name would let an agent re-route a case.
ROUTING_DATA = {"project", "item", "items", "materials", "policies", "phase_items",
                "phase_results", "item_results", "terminated", "outcome", "channel",
                "committed_days", "due_date", "yellow_at", "red_at", "rejections", "result",
                "invitee", "action", "policy", "opinion", "simulated", "selected_items_source",
                "limits"}


def tree(path: Path) -> etree._ElementTree:
    return etree.parse(str(path))  # noqa: S320 - our own files


def user_tasks() -> list[tuple[str, etree._Element]]:
    found = []
    for path in BPMN_FILES:
        for task in tree(path).getroot().iter(f"{{{NS['bpmn']}}}userTask"):
            found.append((path.name, task))
    return found


def properties(node: etree._Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in node.iterfind(
        "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS)}


def test_the_whole_pack_validates_and_loads(make_pack_engine, sqlite_url):
    engine = make_pack_engine(sqlite_url)
    pack = engine.parse_pack(read_pack_dir(PACK))
    assert set(pack.processes) == EXPECTED_PROCESSES
    assert {p for p in pack.processes if pack.processes[p].startable} == {
        "case_flow", "industry_symposium", "agent_training", "public_opinion"}


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_every_node_has_a_shape_and_every_flow_an_edge(path):
    root = tree(path).getroot()
    shapes = {s.get("bpmnElement"): s for s in root.iter(f"{{{NS['bpmndi']}}}BPMNShape")}
    edges = {e.get("bpmnElement"): e for e in root.iter(f"{{{NS['bpmndi']}}}BPMNEdge")}
    nodes = [n for tag in FLOW_NODES for n in root.iter(f"{{{NS['bpmn']}}}{tag}")]
    assert nodes
    for node in nodes:
        shape = shapes.get(node.get("id"))
        assert shape is not None, f"{path.name}: {node.get('id')} has no shape"
        bounds = shape.find("{http://www.omg.org/spec/DD/20100524/DC}Bounds")
        assert float(bounds.get("width")) > 0 and float(bounds.get("height")) > 0
    for flow in root.iter(f"{{{NS['bpmn']}}}sequenceFlow"):
        edge = edges.get(flow.get("id"))
        assert edge is not None, f"{path.name}: flow {flow.get('id')} has no edge"
        assert len(edge.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) >= 2
    for lane in root.iter(f"{{{NS['bpmn']}}}lane"):
        assert lane.get("id") in shapes, f"{path.name}: lane {lane.get('id')} has no shape"


def test_every_diagram_names_its_tasks_and_documents_its_process():
    for path in BPMN_FILES:
        root = tree(path).getroot()
        process = root.find("bpmn:process", NS)
        assert process.get("name") and process.find("bpmn:documentation", NS) is not None
        for tag in ("userTask", "callActivity", "scriptTask", "businessRuleTask"):
            for node in root.iter(f"{{{NS['bpmn']}}}{tag}"):
                assert node.get("name"), f"{path.name}: {node.get('id')} has no name"


# Every departmentExpression of the pack, with the data it can meet at run time.
OWNER_BINDINGS: dict[str, list[dict[str, Any]]] = {
    "item['department']": [{"item": item} for item in REF.items.values()],
    "policy['department']": [{"policy": policy} for policy in REF.policies],
    "invitee": [{"invitee": code} for code in REF.departments],
    "action['department']": [{"action": {"department": code}} for code in REF.departments],
    "opinion['department']": [{"opinion": {"department": code}} for code in REF.departments],
    "handling_department": [{"handling_department": code} for code in REF.departments],
    "visit_department": [{"visit_department": code} for code in REF.departments
                         if not REF.departments[code].get("external")],
    "'approval_bureau'": [{}],  # the Bureau decides with the unit after a refusal (R04)
}


def test_every_user_task_has_a_form_and_an_owner():
    names = {d["name"]: code for code, d in REF.departments.items()}
    seen_expressions = set()
    tasks = user_tasks()
    assert len(tasks) >= 35
    for file, task in tasks:
        label = f"{file}:{task.get('id')} {task.get('name')}"
        props = properties(task)
        form = props.get("formJsonSchemaFilename")
        assert form and (FORMS / form).exists(), f"{label}: form {form} missing"
        assert task.find("bpmn:extensionElements/spiffworkflow:instructionsForEndUser",
                         NS) is not None, f"{label}: no instructions for the agent"
        expression = props.get("departmentExpression")
        if expression:
            seen_expressions.add(expression)
            assert expression in OWNER_BINDINGS, f"{label}: add {expression!r} to the table"
            for binding in OWNER_BINDINGS[expression]:
                owner = expressions.evaluate(expression, binding)
                assert owner in REF.departments, f"{label}: {binding} gives {owner!r}"
            continue
        lane = lane_of(file, task)
        assert lane in names or lane in REF.departments, f"{label}: lane {lane!r} is no department"
    assert seen_expressions == set(OWNER_BINDINGS)


def lane_of(file: str, task: etree._Element) -> str | None:
    root = tree(PACK / file).getroot()
    ids = {task.get("id")}
    parent = task.getparent()
    while parent is not None:  # a task inside a sub-process sits in the sub-process's lane
        if parent.get("id"):
            ids.add(parent.get("id"))
        parent = parent.getparent()
    for lane in root.iter(f"{{{NS['bpmn']}}}lane"):
        if ids & {ref.text for ref in lane.findall("bpmn:flowNodeRef", NS)}:
            return lane.get("name")
    return None


def test_department_fields_of_forms_only_offer_departments():
    # Rules route tasks to whatever department a form field holds, so those fields are closed.
    for name in ("meeting_convene", "meeting_minutes", "symposium", "opinion_register"):
        schema = json.loads((FORMS / f"{name}.schema.json").read_text(encoding="utf-8"))
        fields = json.dumps(schema, ensure_ascii=False)
        for code, entry in REF.departments.items():
            if entry.get("external"):  # the project unit is no government department
                continue
            assert f'"const": "{code}"' in fields
        assert '"oneOf"' in fields


def test_forms_are_valid_titled_and_do_not_touch_routing_data():
    referenced = {properties(t).get("formJsonSchemaFilename") for _, t in user_tasks()}
    files = {p.name for p in FORMS.glob("*.schema.json")}
    assert referenced <= files
    # the start form, and the schemas of a message's payload and of an external job's output
    assert files - referenced == {"case_flow.start.schema.json",
                                  # the service's own forms: acting for the unit (R05)
                                  "on_behalf.schema.json", "agency_authorisation.schema.json",
                                  "message.item_approval_result.schema.json",
                                  "message.case_termination.schema.json",
                                  "licence_archive.output.schema.json"}
    for path in FORMS.glob("*.schema.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        assert schema.get("title"), path.name
        for field, prop in schema["properties"].items():
            assert prop.get("title"), f"{path.name}: {field} has no title"
            if path.name != "case_flow.start.schema.json":
                assert field not in ROUTING_DATA, f"{path.name}: {field} is routing data"


def test_the_registration_form_checks_the_project_code_and_phone():
    schema = json.loads((FORMS / "case_flow.start.schema.json").read_text("utf-8"))
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors({"project": KEY_PROJECT}))
    bad = {**KEY_PROJECT, "code": "2026-640502-34-03-0001", "phone": "12345"}
    fields = {e.path[-1] for e in validator.iter_errors({"project": bad})}
    assert fields == {"code", "phone"}


def suggested(project: dict[str, Any]) -> set[str]:
    """Run the item-selection table of the pack the way the case flow does."""
    root = tree(PACK / "item_selection.dmn").getroot()
    inputs = [i.find("{*}inputExpression/{*}text").text for i in root.iter("{*}input")]
    found = set()
    for rule in root.iter("{*}rule"):
        cells = [c.find("{*}text").text for c in rule.findall("{*}inputEntry")]
        if all(not cell or expressions.evaluate(f"({expr}) == ({cell})", {"project": project})
               for expr, cell in zip(inputs, cells, strict=True)):
            found.add(expressions.evaluate(rule.find("{*}outputEntry/{*}text").text, {}))
    return found


def test_the_decision_table_can_suggest_every_catalogue_item_and_nothing_else():
    everything = {**KEY_PROJECT, "energy_review": True, "soil_water": True, "water_draw": True,
                  "special_fire": True, "civil_air_defence": True, "water_supply": True,
                  "hazardous_chemicals": True, "special_equipment": True, "road_works": True,
                  "cultural_relics": True, "forest_land": True, "pollutant_discharge": True}
    book = {**everything, "eia": "book", "approval_type": "approval"}
    assert suggested(everything) | suggested(book) == set(REF.items)
    assert suggested(small_project()) == {"project_filing"}


def test_setup_leaves_a_demo_case_with_work_in_several_departments(tmp_path, clock):
    from agency import bootstrap
    from engine.config import Config

    config = Config.from_env(database_url=f"sqlite:///{tmp_path / 'demo.db'}",
                             instance_dir=tmp_path, processes_dir=PACK, data_dir=ROOT / "data")
    engine = service_engine(config, clock_source=clock)
    report = bootstrap.setup(engine)
    demo = json.loads((ROOT / "data" / "demo_case.json").read_text(encoding="utf-8"))
    case = engine.get_case(report.demo_case)
    assert case.status == "running" and case.title == demo["data"]["project"]["name"]
    events = [e.type for e in engine.case_events(case.id)]
    assert events.count("task_completed") == len(demo["steps"])  # every step applied
    departments = {t.department for t in engine.list_tasks(case_id=case.id)}
    assert {"approval_bureau", "natural_resources", "ecology_env", "drc"} <= departments
    engine.db.dispose()


def test_every_stage_label_of_the_pack_has_a_name_on_every_page():
    from agency.oversight import STAGE_NAMES
    from webapp.labels import STAGES

    stages = {properties(task).get("stage") for _, task in user_tasks()} - {None}
    assert stages <= set(STAGE_NAMES) and stages <= set(STAGES)
