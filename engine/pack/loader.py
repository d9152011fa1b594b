"""Reading and validating a process pack: BPMN and DMN files plus their forms."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from lxml import etree
from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import SpiffTaskParser

from engine.errors import InvalidProcess, Problem
from engine.pack.prediction import MAX_PREDICTED, explosion
from engine.pack.xml import element_at_line, parse_xml
from engine.runtime import expressions
from engine.runtime.spiff import ExternalTask, ProcessSpecs

log = logging.getLogger(__name__)

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
    "dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/",
}
FORMS_DIR = "forms"
EXPRESSION_PROPERTIES = ("departmentExpression", "dueExpression", "correlationKey")


class EngineBpmnParser(SpiffBpmnParser):
    """SpiffWorkflow's parser, with service tasks done by external workers (see ExternalTask)."""

    OVERRIDE_PARSER_CLASSES = {**SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
                               full_tag("serviceTask"): (SpiffTaskParser, ExternalTask)}


@dataclass


class SourceFile:
    """One file of a pack: its name (relative to the pack) and bytes."""

    name: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass


class ParsedProcess:
    """A validated process ready to be stored as a version."""

    process_id: str
    name: str
    specs: ProcessSpecs
    content_hash: str
    files: list[str]
    task_specs: dict[str, dict[str, Any]]
    startable: bool


@dataclass


class Pack:
    """A validated set of process files."""

    processes: dict[str, ParsedProcess]
    sources: dict[str, str]
    problems: list[Problem] = field(default_factory=list)


def read_pack_dir(directory: Path) -> list[SourceFile]:
    """Every BPMN, DMN and form file under a pack folder."""
    files: list[SourceFile] = []
    for path in sorted(directory.glob("*.bpmn")) + sorted(directory.glob("*.dmn")):
        files.append(SourceFile(path.name, path.read_bytes()))
    forms = directory / FORMS_DIR
    if forms.is_dir():
        for path in sorted(forms.glob("*.json")):
            files.append(SourceFile(f"{FORMS_DIR}/{path.name}", path.read_bytes()))
    return files


class PackParser:
    """Validates pack files and turns them into process specs; collects every problem."""

    def __init__(self, departments: Mapping[str, str], functions: Iterable[str],
                 max_instances: int | None = None) -> None:
        # departments: code or full name -> code
        self.departments = departments
        self.functions = tuple(functions)
        self.max_instances = max_instances

    def parse(self, files: list[SourceFile]) -> Pack:
        """Validate and parse; raise InvalidProcess listing every problem found."""
        problems: list[Problem] = []
        trees: dict[str, etree._ElementTree] = {}
        forms: dict[str, SourceFile] = {}
        for source in files:
            if source.name.startswith(f"{FORMS_DIR}/"):
                forms[source.name.removeprefix(f"{FORMS_DIR}/")] = source
                continue
            try:
                tree = parse_xml(source.data, source.name)
            except InvalidProcess as exc:
                problems.extend(exc.problems)
                continue
            problems.extend(self._schema_problems(tree, source.name))
            trees[source.name] = tree
        if problems:
            raise InvalidProcess(problems)

        form_problems, schemas = self._check_forms(forms)
        problems.extend(form_problems)
        parser = EngineBpmnParser()
        process_files: dict[str, str] = {}
        decision_files: dict[str, str] = {}
        for name, tree in trees.items():
            root = tree.getroot()
            try:
                if root.tag.endswith("}definitions") and root.nsmap.get(root.prefix) == NS["bpmn"]:
                    parser.add_bpmn_xml(tree, filename=name)
                    for proc in root.findall("bpmn:process", NS):
                        process_files[proc.get("id", "")] = name
                else:
                    parser.add_dmn_xml(tree.getroot(), filename=name)
                    for decision in root.iter("{*}decision"):
                        decision_files[decision.get("id", "")] = name
            except ValidationException as exc:
                problems.append(_problem_from_spiff(exc, name, tree))
        for name, tree in trees.items():
            problems.extend(self._check_expressions(tree, name))
            problems.extend(_flow_problems(tree, name))
            problems.extend(_unsupported_problems(tree, name))
            problems.extend(_cardinality_problems(tree, name, self.max_instances))
        task_specs: dict[str, dict[str, dict[str, Any]]] = {}
        for name, tree in trees.items():
            found, owner_problems = self._user_tasks(tree, name, schemas)
            problems.extend(owner_problems)
            task_specs.update(found)
            external, external_problems = _external_tasks(tree, name, schemas)
            problems.extend(external_problems)
            task_specs.update(external)
            task_specs.update(_correlated_elements(tree, self.departments))
        if problems:
            raise InvalidProcess(problems)

        processes: dict[str, ParsedProcess] = {}
        for process_id in parser.get_process_ids():
            file = process_files.get(process_id)
            if file is None:
                continue
            try:
                spec = parser.get_spec(process_id)
                subprocess_specs = parser.get_subprocess_specs(process_id)
            except ValidationException as exc:
                problems.append(_problem_from_spiff(exc, exc.file_name or file,
                                                    trees.get(exc.file_name or file)))
                continue
            except Exception as exc:  # a diagram Spiff cannot build; report, don't crash
                problems.append(Problem(f"cannot build process: {exc}", file=file,
                                        element=process_id))
                continue
            exploding = _prediction_problems(spec, subprocess_specs, process_files, file,
                                             trees)
            if exploding:
                problems.extend(exploding)
                continue
            involved = {file} | {process_files[p] for p in subprocess_specs
                                 if p in process_files}
            involved |= _decision_files(trees, involved, decision_files)
            tasks = {key: meta for key, meta in task_specs.items()
                     if meta["process_id"] in ({process_id} | set(subprocess_specs))}
            form_names = sorted({f"{FORMS_DIR}/{meta['form']}" for meta in tasks.values()
                                 if meta.get("form")}
                                | {f"{FORMS_DIR}/{meta['uischema']}" for meta in tasks.values()
                                   if meta.get("uischema")}
                                | {f"{FORMS_DIR}/{name}" for name in start_form_files(process_id)
                                   if name in schemas}
                                | {f"{FORMS_DIR}/{meta['output_schema']}"
                                   for meta in tasks.values() if meta.get("output_schema")}
                                | {f"{FORMS_DIR}/{name}" for name in
                                   _message_schema_files(trees, involved) if name in schemas})
            hashed = {s.name: s for s in files if s.name in involved or s.name in form_names}
            processes[process_id] = ParsedProcess(
                process_id=process_id,
                name=spec.description or process_id,
                specs=ProcessSpecs(spec, subprocess_specs),
                content_hash=content_hash(hashed.values()),
                files=sorted(hashed),
                task_specs=tasks,
                startable=_is_startable(trees[file], process_id),
            )
        if problems:
            raise InvalidProcess(problems)
        sources = {s.name: s.data.decode("utf-8") for s in files}
        return Pack(processes, sources)

    def _schema_problems(self, tree: etree._ElementTree, name: str) -> list[Problem]:
        root = tree.getroot()
        if not root.tag.startswith("{" + NS["bpmn"]):
            return []  # DMN files are checked by the DMN parser
        validator = VALIDATOR.validator
        if validator.validate(tree):
            return []
        problems = []
        for error in list(validator.error_log)[:20]:
            element = element_at_line(tree, error.line)
            problems.append(Problem(f"BPMN 2.0 schema: {error.message}", file=name,
                                    line=error.line,
                                    element=element.get("id") if element is not None else None,
                                    element_name=element.get("name")
                                    if element is not None else None))
        return problems

    def _check_forms(self, forms: dict[str, SourceFile]
                     ) -> tuple[list[Problem], dict[str, dict[str, Any]]]:
        problems: list[Problem] = []
        schemas: dict[str, dict[str, Any]] = {}
        for name, source in forms.items():
            path = f"{FORMS_DIR}/{name}"
            try:
                schema = json.loads(source.data)
            except ValueError as exc:
                problems.append(Problem(f"form is not valid JSON: {exc}", file=path))
                continue
            if name.endswith(".schema.json"):
                try:
                    Draft202012Validator.check_schema(schema)
                except SchemaError as exc:
                    problems.append(Problem(f"form is not a valid JSON Schema: {exc.message}",
                                            file=path))
                    continue
            schemas[name] = schema
        return problems, schemas

    def _check_expressions(self, tree: etree._ElementTree, name: str) -> list[Problem]:
        problems: list[Problem] = []
        for node, mode in _expression_nodes(tree):
            text = (node.get("value") if node.tag.endswith("property") else node.text) or ""
            if not text.strip():
                continue
            owner = _owner(node)
            try:
                if node.tag.endswith("}inputEntry") or node.tag.endswith("}outputEntry"):
                    _check_dmn_cell(text, self.functions)
                else:
                    expressions.check(text, mode, self.functions)
                if node.tag.split("}")[1] in ("timeDate", "timeDuration", "timeCycle"):
                    _check_literal_timer(node, text)
            except SyntaxError as exc:
                problems.append(Problem(f"expression {text.strip()!r} is not valid: {exc.msg}",
                                        file=name, line=node.sourceline,
                                        element=owner.get("id"), element_name=owner.get("name")))
            except ValueError as exc:
                message = getattr(exc, "message", str(exc))
                problems.append(Problem(f"expression {text.strip()!r} is refused: {message}",
                                        file=name, line=node.sourceline,
                                        element=owner.get("id"), element_name=owner.get("name")))
        return problems

    def _user_tasks(self, tree: etree._ElementTree, name: str, schemas: dict[str, Any]
                    ) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
        found: dict[str, dict[str, Any]] = {}
        problems: list[Problem] = []
        for process in tree.getroot().findall("bpmn:process", NS):
            lanes = _lanes_by_node(process)
            for task in process.iter(f"{{{NS['bpmn']}}}userTask", f"{{{NS['bpmn']}}}manualTask"):
                task_id = task.get("id", "")
                props = _properties(task)

                def problem(message: str, task: etree._Element = task) -> None:
                    problems.append(Problem(message, file=name, line=task.sourceline,
                                            element=task.get("id"),
                                            element_name=task.get("name")))

                form = props.get("formJsonSchemaFilename")
                if not form:
                    problem("user task has no form (property formJsonSchemaFilename)")
                elif form not in schemas:
                    problem(f"form file {FORMS_DIR}/{form} does not exist or is invalid")
                uischema = props.get("formUiSchemaFilename")
                if uischema and uischema not in schemas:
                    problem(f"UI schema file {FORMS_DIR}/{uischema} does not exist or is invalid")
                container = _container(task)
                lane = lanes.get(task_id)
                outer = task.getparent()
                while lane is None and outer is not None and outer is not process:
                    lane = lanes.get(outer.get("id", ""))  # a sub-process's lane covers it
                    outer = outer.getparent()
                static = None
                if lane is not None:
                    static = self.departments.get(lane.strip())
                expression = props.get("departmentExpression")
                if static is None and not expression:
                    problem(f"user task has no owner: lane {lane!r} is not a department and "
                            "there is no departmentExpression" if lane else
                            "user task has no owner: put it in a department's lane or give "
                            "it a departmentExpression")
                notify = [who.strip() for who in props.get("notify", "").split(",")
                          if who.strip()]
                unknown = [who for who in notify if who not in NOTIFY_TARGETS]
                if unknown:
                    problem(f"property notify names {', '.join(map(repr, unknown))}; use a "
                            f"comma-separated list of {', '.join(NOTIFY_TARGETS)}")
                instructions = task.find("bpmn:extensionElements/spiffworkflow:"
                                         "instructionsForEndUser", NS)
                found[f"{container}:{task_id}"] = {
                    "process_id": container,
                    "spec_name": task_id,
                    "title": task.get("name") or task_id,
                    "form": form,
                    "uischema": uischema,
                    "department": static,
                    "department_expression": expression,
                    "due_expression": props.get("dueExpression"),
                    "stage": props.get("stage"),
                    "phase": props.get("phase"),
                    "notify": notify,
                    "instructions": instructions.text.strip()
                    if instructions is not None and instructions.text else "",
                }
        return found, problems


def start_form_files(process_id: str) -> tuple[str, str]:
    """The start form of a process and its UI schema, by convention (names under forms/).

    A process whose pack has `forms/<process id>.start.schema.json` takes its start data
    through that form: the engine validates the data of every new case against it, and
    the web app renders it on the new-case page.
    """
    return f"{process_id}.start.schema.json", f"{process_id}.start.uischema.json"


# Who is told in the app (and by e-mail) when a task with the `notify` property appears:
# the responsible leader of the item's (or task's) department, the leading-group office,
# the agents of the task's department.
NOTIFY_TARGETS = ("leader", "office", "department")


def _properties(node: etree._Element) -> dict[str, str]:
    props = {}
    for prop in node.iterfind("bpmn:extensionElements/spiffworkflow:properties/"
                              "spiffworkflow:property", NS):
        props[prop.get("name", "")] = prop.get("value", "")
    return props


_FLOW_NODES = frozenset({
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
    "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway",
    "complexGateway", "startEvent", "endEvent", "intermediateCatchEvent",
    "intermediateThrowEvent", "boundaryEvent"})


def _flow_problems(tree: etree._ElementTree, name: str) -> list[Problem]:
    """Nodes a token can never reach, and events that lead nowhere."""
    root = tree.getroot()
    if not root.tag.startswith("{" + NS["bpmn"]):
        return []
    problems: list[Problem] = []
    for process in root.findall("bpmn:process", NS):
        scopes = [process, *process.iter(*(f"{{{NS['bpmn']}}}{tag}" for tag in
                                          ("subProcess", "transaction", "adHocSubProcess")))]
        for scope in scopes:
            if scope.get("triggeredByEvent") == "true" or scope.tag.endswith("adHocSubProcess"):
                continue  # event sub-processes start by event; ad-hoc ones have no flow
            flows = scope.findall("bpmn:sequenceFlow", NS)
            incoming = {f.get("targetRef") for f in flows}
            outgoing = {f.get("sourceRef") for f in flows}
            for node in scope:
                if not isinstance(node.tag, str) or etree.QName(node).localname not in _FLOW_NODES:
                    continue
                kind = etree.QName(node).localname
                node_id = node.get("id", "")
                compensation = node.get("isForCompensation") == "true"
                message = None
                if kind in ("startEvent", "boundaryEvent"):
                    if node_id not in outgoing:
                        message = f"{kind} has no outgoing sequence flow, so it leads nowhere"
                elif node_id not in incoming and not compensation:
                    message = (f"{kind} has no incoming sequence flow, so the process can never "
                               "reach it; connect it or remove it")
                if message:
                    problems.append(Problem(message, file=name, line=node.sourceline,
                                            element=node_id, element_name=node.get("name")))
    return problems


def _unsupported_problems(tree: etree._ElementTree, name: str) -> list[Problem]:
    """Elements the engine cannot run: external services, data stores, pools without process."""
    root = tree.getroot()
    if not root.tag.startswith("{" + NS["bpmn"]):
        return []
    problems: list[Problem] = []

    def refuse(node: etree._Element, message: str) -> None:
        problems.append(Problem(message, file=name, line=node.sourceline,
                                element=node.get("id"), element_name=node.get("name")))

    for node in root.iter(f"{{{NS['bpmn']}}}serviceTask"):
        if not _properties(node).get("topic", "").strip():
            refuse(node, "service task has no topic (property topic): the engine calls no "
                   "services itself; give it a topic for an external worker, or record "
                   "outside facts in a user task instead")
    for node in root.iter(f"{{{NS['bpmn']}}}dataStoreReference", f"{{{NS['bpmn']}}}dataStore"):
        refuse(node, "data stores are not supported: case data lives in the case; use a "
               "data object or task data instead")
    for node in root.iter(f"{{{NS['bpmn']}}}participant"):
        if not node.get("processRef"):
            refuse(node, "pool has no process (a black-box pool) and cannot be run; keep "
                   "only the executable process in the file")
    # SpiffWorkflow cannot run these two shapes of a multi-instance sub-process or call
    # activity: the case would stop with an error when the event fires, or at the second
    # instance, after it was started. Refuse them here, where the modeller can fix them.
    repeated: dict[str, etree._Element] = {}
    for tag in ("subProcess", "callActivity", "transaction"):
        for node in root.iter(f"{{{NS['bpmn']}}}{tag}"):
            loop = node.find("bpmn:multiInstanceLoopCharacteristics", NS)
            if loop is None:
                continue
            repeated[node.get("id", "")] = node
            if loop.get("isSequential") == "true":
                refuse(node, "sequential multi-instance sub-process or call activity cannot "
                       "be run (the second instance fails): make it parallel, or repeat a "
                       "user task inside the process instead")
    for node in root.iter(f"{{{NS['bpmn']}}}boundaryEvent"):
        if node.get("attachedToRef") in repeated and node.get("cancelActivity") != "false":
            refuse(node, "interrupting boundary event on a multi-instance sub-process or call "
                   "activity cannot be run (the case fails when it fires): make it "
                   "non-interrupting, or catch the event inside the called process")
    return problems


def _prediction_problems(spec: Any, subprocess_specs: Mapping[str, Any],
                         process_files: Mapping[str, str], file: str,
                         trees: Mapping[str, etree._ElementTree]) -> list[Problem]:
    """Parallel gateways in a row whose predicted future tasks would explode (see
    engine.pack.prediction)."""
    problems = []
    for process_id, process in [(spec.name, spec), *subprocess_specs.items()]:
        found = explosion(process)
        if found is None:
            continue
        where = process_files.get(process_id, file)
        nodes = trees[where].getroot().xpath("//*[@id=$id]", id=found.element) \
            if where in trees else []
        problems.append(Problem(
            f"from this element on, the parallel branches that follow each other would make "
            f"the engine predict {found.predicted:,}+ future tasks for one token (at most "
            f"{MAX_PREDICTED}), so starting or moving a case would take seconds. Put each "
            "parallel split with its join in an embedded sub-process (its tasks are only "
            "predicted once it starts), or use fewer branches or fewer splits in a row",
            file=where,
            line=nodes[0].sourceline if nodes else None, element=found.element,
            element_name=found.element_name))
    return problems


def message_schema_file(message: str) -> str:
    """The JSON Schema a message's payload must satisfy, by convention (under forms/)."""
    return f"message.{message}.schema.json"


def _message_schema_files(trees: Mapping[str, etree._ElementTree],
                          involved: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for name in involved:
        tree = trees.get(name)
        if tree is None:
            continue
        for message in tree.getroot().iter(f"{{{NS['bpmn']}}}message"):
            if message.get("name"):
                names.add(message_schema_file(message.get("name", "")))
    return names


def _correlated_elements(tree: etree._ElementTree, departments: Mapping[str, str]
                         ) -> dict[str, dict[str, Any]]:
    """Message catch events and receive tasks: their `correlationKey` expression, and who
    may deliver their message (a `departmentExpression`, or the department of their lane)."""
    found: dict[str, dict[str, Any]] = {}
    tags = ("intermediateCatchEvent", "boundaryEvent", "receiveTask", "startEvent")
    for process in tree.getroot().findall("bpmn:process", NS):
        lanes = _lanes_by_node(process)
        for node in process.iter(*(f"{{{NS['bpmn']}}}{tag}" for tag in tags)):
            if not node.tag.endswith("receiveTask") and node.find(
                    "bpmn:messageEventDefinition", NS) is None:
                continue
            props = _properties(node)
            key = props.get("correlationKey", "").strip()
            expression = props.get("departmentExpression", "").strip()
            lane = lanes.get(node.get("id", ""))
            static = departments.get(lane.strip()) if lane else None
            if key or expression or static:
                container = _container(node)
                found[f"{container}:{node.get('id', '')}"] = {
                    "kind": "message", "process_id": container,
                    "spec_name": node.get("id", ""), "correlation_key": key or None,
                    "department": static, "department_expression": expression or None}
    return found


def _external_tasks(tree: etree._ElementTree, name: str, schemas: Mapping[str, Any]
                    ) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Service tasks with a topic: what a worker fetches, and the schema of its output."""
    found: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for node in tree.getroot().iter(f"{{{NS['bpmn']}}}serviceTask"):
        props = _properties(node)
        topic = props.get("topic", "").strip()
        if not topic:
            continue
        output = props.get("outputSchemaFilename") or None
        retries = props.get("retries", "3").strip()
        if output and output not in schemas:
            problems.append(Problem(f"output schema file {FORMS_DIR}/{output} does not exist "
                                    "or is invalid", file=name, line=node.sourceline,
                                    element=node.get("id"), element_name=node.get("name")))
        if not retries.isdigit():
            problems.append(Problem(f"property retries {retries!r} is not a whole number",
                                    file=name, line=node.sourceline,
                                    element=node.get("id"), element_name=node.get("name")))
        container = _container(node)
        found[f"{container}:{node.get('id', '')}"] = {
            "kind": "external", "process_id": container, "spec_name": node.get("id", ""),
            "title": node.get("name") or node.get("id", ""), "topic": topic,
            "output_schema": output, "retries": int(retries) if retries.isdigit() else 3}
    return found, problems


def _cardinality_problems(tree: etree._ElementTree, name: str, bound: int | None
                          ) -> list[Problem]:
    """Multi-instance activities whose literal loop cardinality is above the bound (those
    given by a collection or an expression are checked when a case reaches them)."""
    if bound is None:
        return []
    problems: list[Problem] = []
    for node in tree.getroot().iter(f"{{{NS['bpmn']}}}loopCardinality"):
        text = (node.text or "").strip()
        if text.isdigit() and int(text) > bound:
            owner = _owner(node)
            problems.append(Problem(
                f"loop cardinality {int(text)} is above the {bound} instances one activity "
                "may create (ZERORUN_MAX_INSTANCES)", file=name, line=node.sourceline,
                element=owner.get("id"), element_name=owner.get("name")))
    return problems


def _container(node: etree._Element) -> str:
    """The id of the process or embedded sub-process a task runs in (its Spiff spec name)."""
    parent = node.getparent()
    while parent is not None:
        local = etree.QName(parent).localname
        if local in ("process", "subProcess", "transaction", "adHocSubProcess"):
            return parent.get("id", "")
        parent = parent.getparent()
    return ""


def _is_startable(tree: etree._ElementTree, process_id: str) -> bool:
    for process in tree.getroot().findall("bpmn:process", NS):
        if process.get("id") == process_id:
            return _properties(process).get("startable", "").lower() == "true"
    return False


def _lanes_by_node(process: etree._Element) -> dict[str, str]:
    lanes: dict[str, str] = {}
    for lane in process.iter(f"{{{NS['bpmn']}}}lane"):
        for ref in lane.findall("bpmn:flowNodeRef", NS):
            if ref.text:
                lanes[ref.text.strip()] = lane.get("name") or lane.get("id", "")
    return lanes


def _expression_nodes(tree: etree._ElementTree) -> Iterable[tuple[etree._Element, str]]:
    root = tree.getroot()
    for tag in ("conditionExpression", "timeDate", "timeDuration", "timeCycle",
                "loopCardinality", "completionCondition"):
        for node in root.iter(f"{{{NS['bpmn']}}}{tag}"):
            yield node, "eval"
    for node in root.iter(f"{{{NS['bpmn']}}}script", f"{{{NS['spiffworkflow']}}}preScript",
                          f"{{{NS['spiffworkflow']}}}postScript"):
        yield node, "exec"
    for node in root.iter(f"{{{NS['spiffworkflow']}}}property"):
        if node.get("name") in EXPRESSION_PROPERTIES:
            yield node, "eval"
    for tag in ("inputExpression", "inputEntry", "outputEntry"):
        for node in root.iter(f"{{*}}{tag}"):
            text = node.find("{*}text")
            if text is not None:
                yield text, "eval"


def _check_dmn_cell(text: str, functions: tuple[str, ...]) -> None:
    # Spiff turns a cell into `(input) == (cell)` when the cell parses alone, and into
    # `input cell` (e.g. "> 5") otherwise; check whichever form it will evaluate.
    cell = text.replace("?", "dmninputexpr")
    try:
        expressions.check(cell, "eval", functions)
    except SyntaxError:
        expressions.check(f"dmninputexpr {cell}", "eval", (*functions, "dmninputexpr"))


def _check_literal_timer(node: etree._Element, text: str) -> None:
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in "'\"" or stripped[-1] != stripped[0]:
        return  # computed at run time
    value = stripped[1:-1]
    kind = node.tag.split("}")[1]
    try:
        if kind == "timeDuration":
            TimerEventDefinition.parse_iso_duration(value)
        elif kind == "timeCycle":
            TimerEventDefinition.parse_iso_recurring_interval(value)
        else:
            TimerEventDefinition.parse_time_or_duration(value)
    except Exception as exc:  # Spiff raises bare Exception for malformed timers
        raise ValueError(f"timer {value!r} is not a valid ISO 8601 {kind}: {exc}") from exc


def _owner(node: etree._Element) -> etree._Element:
    current: etree._Element | None = node
    while current is not None:
        if current.get("id") and not current.tag.endswith(("}conditionExpression", "}script")):
            return current
        current = current.getparent()
    return node


def _decision_files(trees: dict[str, etree._ElementTree], involved: set[str],
                    decision_files: dict[str, str]) -> set[str]:
    refs: set[str] = set()
    for name in involved:
        for node in trees[name].getroot().iter(f"{{{NS['bpmn']}}}businessRuleTask"):
            for called in node.iter(f"{{{NS['spiffworkflow']}}}calledDecisionId"):
                if called.text and called.text.strip() in decision_files:
                    refs.add(decision_files[called.text.strip()])
    return refs


def content_hash(files: Iterable[SourceFile]) -> str:
    """The identity of a process version: a hash over its files' names and contents."""
    digest = hashlib.sha256()
    for source in sorted(files, key=lambda s: s.name):
        digest.update(f"{source.name}\0{source.digest}\n".encode())
    return digest.hexdigest()


def _problem_from_spiff(exc: ValidationException, name: str,
                        tree: etree._ElementTree | None) -> Problem:
    line = getattr(exc, "line_number", None) or getattr(exc, "sourceline", None)
    element = getattr(exc, "id", None) or None
    if element is None and tree is not None:
        found = element_at_line(tree, line)
        named = re.search(r"with name (.+?) has no", str(getattr(exc, "error_msg", "") or exc),
                          re.S)
        if found is None and named is not None:
            wanted = " ".join(named.group(1).split())
            found = next((node for node in tree.getroot().iter()
                          if isinstance(node.tag, str) and node.get("id")
                          and " ".join((node.get("name") or "").split()) == wanted), None)
        element = found.get("id") if found is not None else None
    return Problem(str(getattr(exc, "error_msg", None) or exc).strip(), file=name,
                   line=line or None, element=element,
                   element_name=getattr(exc, "name", None) or None)
