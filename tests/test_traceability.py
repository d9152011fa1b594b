"""Every reference of docs/traceability.md names something that exists, and every row that
claims behaviour names a scenario test that exercises what the row names."""

from __future__ import annotations

import ast
import json
import re
from functools import cache

from lxml import etree

from tests.conftest import ROOT

TABLE = ROOT / "docs" / "traceability.md"
REFERENCE = re.compile(r"(bpmn|dmn|form|data|code|planned|test):([\w/.]+)(?:#([\w ]+))?")
BEHAVIOUR = ("bpmn", "dmn", "form", "data", "code")


def rows() -> list[tuple[str, list[tuple[str, str, str]]]]:
    found = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("Clause of the plan", "---"):
            found.append((cells[0], REFERENCE.findall(cells[3])))
    return found


def xml_ids(path) -> set[str]:
    root = etree.parse(str(path)).getroot()  # noqa: S320 - our own files
    return {node.get("id") for node in root.iter() if isinstance(node.tag, str)}


def exists(kind: str, target: str, anchor: str) -> bool:
    if kind == "bpmn":
        return anchor in xml_ids(ROOT / "processes" / f"{target}.bpmn")
    if kind == "dmn":
        return anchor in xml_ids(ROOT / "processes" / f"{target}.dmn")
    if kind == "form":
        path = ROOT / "processes" / "forms" / f"{target}.schema.json"
        if not path.exists():
            return False
        return not anchor or anchor in json.loads(path.read_text(encoding="utf-8"))["properties"]
    if kind == "data":
        entries = json.loads((ROOT / "data" / f"{target}.json").read_text(encoding="utf-8"))
        return any(entry.get("code") == anchor for entry in entries)
    if kind == "code":
        source = (ROOT / target).read_text(encoding="utf-8")
        return re.search(rf"^\s*(def|class) {anchor}\b", source, re.MULTILINE) is not None
    if kind == "test":
        return scenario_source(target, anchor) is not None
    return kind == "planned" and target.isdigit() and bool(anchor)


@cache
def scenario_source(module: str, name: str) -> str | None:
    """The source of test function `name` of tests/<module>.py, if it exists."""
    path = ROOT / "tests" / f"{module}.py"
    if not path.exists():
        return None
    source = path.read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(source, node)
    return None


def exercises(source: str, anchors: list[str]) -> bool:
    """The test asserts something and touches at least one element the row names (a task,
    a form field, a catalogue code, a function) by name."""
    names = {a for a in anchors if a}
    return "assert" in source and any(re.search(rf"\b{re.escape(a)}\b", source) for a in names)


def test_every_clause_is_carried_by_something_that_exists():
    table = rows()
    assert len(table) >= 35
    missing = [(clause, f"{kind}:{target}#{anchor}") for clause, refs in table
               for kind, target, anchor in refs if not exists(kind, target, anchor)]
    assert missing == []
    assert all(refs for _, refs in table), "a clause without a reference"


def test_the_seed_plan_sections_are_all_covered():
    clauses = " ".join(clause for clause, _ in rows())
    sections = ("一", "二(一)", "二(二)", "三(一)1", "三(一)2", "三(一)3", "三(二)1", "三(二)2",
                "三(二)3", "三(二)4", "三(三)1", "三(三)2", "三(三)3", "四(一)", "四(二)", "四(三)")
    for section in sections:
        assert section in clauses, section


def test_a_wrong_reference_is_noticed():
    assert not exists("bpmn", "case_flow", "no_such_task")
    assert not exists("form", "item_list", "no_such_field")
    assert not exists("data", "departments", "no_such_unit")
    assert not exists("code", "engine/cases/commands.py", "no_such_function")


def test_every_row_that_claims_behaviour_names_a_scenario_test_exercising_it():
    unproven = []
    for clause, refs in rows():
        anchors = [anchor for kind, _, anchor in refs if kind in BEHAVIOUR]
        if not anchors:
            continue  # planned only
        tests = [(target, anchor) for kind, target, anchor in refs if kind == "test"]
        if not tests:
            unproven.append((clause, "names no test"))
            continue
        for module, name in tests:
            source = scenario_source(module, name)
            if source is None or not exercises(source, anchors):
                unproven.append((clause, f"{module}::{name} does not exercise {anchors}"))
    assert unproven == []


def test_a_test_reference_that_exercises_nothing_of_its_row_is_noticed():
    source = scenario_source("test_scenarios", "test_simulated_approval_converted_to_formal")
    assert source is not None
    assert exercises(source, ["convert_simulated"])
    assert not exercises(source, ["joint_drawing_review", "record_visit"])
    assert scenario_source("test_scenarios", "test_no_such_scenario") is None
