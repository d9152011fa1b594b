"""The process editor in the user's language: the engine's validation messages (English),
BPMN element kinds and the diff's details, translated by pattern like other engine messages."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from webapp.i18n import engine_message
from webapp.labels import joined

ELEMENT_KINDS = {
    "process": _l("Process"), "startEvent": _l("Start event"), "endEvent": _l("End event"),
    "intermediateCatchEvent": _l("Intermediate catch event"),
    "intermediateThrowEvent": _l("Intermediate throw event"),
    "boundaryEvent": _l("Boundary event"), "task": _l("Task"), "userTask": _l("User task"),
    "manualTask": _l("Manual task"), "scriptTask": _l("Script task"),
    "serviceTask": _l("Service task"), "sendTask": _l("Send task"),
    "receiveTask": _l("Receive task"), "businessRuleTask": _l("Business rule task"),
    "callActivity": _l("Call activity"), "subProcess": _l("Sub-process"),
    "exclusiveGateway": _l("Exclusive gateway"), "parallelGateway": _l("Parallel gateway"),
    "inclusiveGateway": _l("Inclusive gateway"), "eventBasedGateway": _l("Event-based gateway"),
    "sequenceFlow": _l("Sequence flow"), "lane": _l("Lane"), "participant": _l("Pool"),
    "textAnnotation": _l("Text annotation"), "association": _l("Association"),
    "dataObjectReference": _l("Data object"), "file": _l("File"),
}

DIFF_LABELS = {
    "name": _l("name"), "condition": _l("condition"), "timer duration": _l("timer duration"),
    "timer date": _l("timer date"), "timer cycle": _l("timer cycle"), "script": _l("script"),
    "instructions": _l("instructions"), "called decision": _l("called decision"),
    "lane members": _l("lane members"), "incoming flows": _l("incoming flows"),
    "outgoing flows": _l("outgoing flows"), "calledElement": _l("called process"),
    "sourceRef": _l("flow source"), "targetRef": _l("flow target"), "type": _l("type"),
}


def element_kind(kind: str) -> str:
    """A BPMN element's kind (e.g. userTask) in the user's language."""
    return str(ELEMENT_KINDS.get(kind, kind))


_Translate = Callable[[dict[str, str]], str]
_PROBLEMS: list[tuple[re.Pattern[str], _Translate]] = [(re.compile(p, re.S), f) for p, f in [
    (r"expression (?P<expr>.+) is not valid: (?P<why>.+)",
     lambda m: _("The expression %(expr)s is not valid: %(why)s", **m)),
    (r"expression (?P<expr>.+) is refused: (?P<why>.+)",
     lambda m: _("The expression %(expr)s is refused: %(why)s", **m)),
    (r"user task has no form \(property formJsonSchemaFilename\)",
     lambda m: _("The user task has no form (property formJsonSchemaFilename).")),
    (r"form file (?P<file>\S+) does not exist or is invalid",
     lambda m: _("The form file %(file)s does not exist or is invalid.", **m)),
    (r"UI schema file (?P<file>\S+) does not exist or is invalid",
     lambda m: _("The UI schema file %(file)s does not exist or is invalid.", **m)),
    (r"output schema file (?P<file>\S+) does not exist or is invalid",
     lambda m: _("The output schema file %(file)s does not exist or is invalid.", **m)),
    (r"user task has no owner: lane (?P<lane>.+) is not a department and there is no "
     r"departmentExpression",
     lambda m: _("The user task has no owner: the lane %(lane)s is not a department and "
                 "there is no departmentExpression.", **m)),
    (r"user task has no owner: put it in a department's lane or give it a "
     r"departmentExpression",
     lambda m: _("The user task has no owner: put it in a department's lane or give it a "
                 "departmentExpression.")),
    (r"property notify names (?P<names>.+); use a comma-separated list of (?P<allowed>.+)",
     lambda m: _("The property notify names %(names)s; use a comma-separated list of "
                 "%(allowed)s.", **m)),
    (r"(?P<kind>\w+) has no outgoing sequence flow, so it leads nowhere",
     lambda m: _("This %(kind)s has no outgoing sequence flow, so it leads nowhere.",
                 kind=element_kind(m["kind"]))),
    (r"(?P<kind>\w+) has no incoming sequence flow, so the process can never reach it; "
     r"connect it or remove it",
     lambda m: _("This %(kind)s has no incoming sequence flow, so the process can never "
                 "reach it; connect it or remove it.", kind=element_kind(m["kind"]))),
    (r"service task has no topic \(property topic\).*",
     lambda m: _("The service task has no topic (property topic): the engine calls no "
                 "services itself; give it a topic for an external worker, or record "
                 "outside facts in a user task instead.")),
    (r"sequential multi-instance sub-process or call activity cannot be run.*",
     lambda m: _("A sequential multi-instance sub-process or call activity cannot be run "
                 "(the second instance fails): make it parallel, or repeat a user task "
                 "inside the process instead.")),
    (r"interrupting boundary event on a multi-instance sub-process or call activity.*",
     lambda m: _("An interrupting boundary event on a multi-instance sub-process or call "
                 "activity cannot be run (the case fails when it fires): make it "
                 "non-interrupting, or catch the event inside the called process.")),
    (r"data stores are not supported.*",
     lambda m: _("Data stores are not supported: case data lives in the case; use a data "
                 "object or task data instead.")),
    (r"pool has no process.*",
     lambda m: _("The pool has no process (a black-box pool) and cannot be run; keep only "
                 "the executable process in the file.")),
    (r"from this element on, the parallel branches .* predict (?P<n>[\d,]+)\+ future tasks "
     r"for one token \(at most (?P<max>\d+)\).*",
     lambda m: _("From this element on, parallel branches that follow each other would make "
                 "the engine predict %(n)s+ future tasks for one token (at most %(max)s), so "
                 "starting or moving a case would take seconds. Put each parallel split "
                 "with its join in an embedded sub-process, or use fewer branches or fewer "
                 "splits in a row.", **m)),
    (r"property retries (?P<value>.+) is not a whole number",
     lambda m: _("The property retries %(value)s is not a whole number.", **m)),
    (r"loop cardinality (?P<n>\d+) is above the (?P<bound>\d+) instances one activity may "
     r"create \(ZERORUN_MAX_INSTANCES\)",
     lambda m: _("The loop cardinality %(n)s is above the %(bound)s instances one activity "
                 "may create (ZERORUN_MAX_INSTANCES).", **m)),
    (r"the file name must end in \.bpmn or \.dmn .*",
     lambda m: _("The file name must end in .bpmn or .dmn and use only letters, digits, "
                 "'_', '-' and '.'.")),
    (r"a form file name must end in \.json .*",
     lambda m: _("A form file name must end in .json and use only letters, digits, '_', "
                 "'-' and '.'.")),
    (r"process is not executable .*",
     lambda m: _("The process is not executable (isExecutable is not \"true\"), so no case "
                 "could run it.")),
    (r"the file defines no process", lambda m: _("The file defines no process.")),
    (r"the file has no decision table", lambda m: _("The file has no decision table.")),
    (r"the file is (?P<size>[\d,]+) bytes; at most (?P<max>[\d,]+) bytes are accepted",
     lambda m: _("The file is %(size)s bytes; at most %(max)s bytes are accepted.", **m)),
    (r"not well-formed XML: (?P<why>.+)",
     lambda m: _("The XML is not well-formed: %(why)s", **m)),
    (r"DOCTYPE declarations \(DTDs and entities\) are not allowed in process files",
     lambda m: _("DOCTYPE declarations (DTDs and entities) are not allowed in process "
                 "files.")),
    (r"BPMN 2\.0 schema: (?P<why>.+)",
     lambda m: _("Not valid against the BPMN 2.0 schema: %(why)s", **m)),
    (r"form is not valid JSON: (?P<why>.+)",
     lambda m: _("The form is not valid JSON: %(why)s", **m)),
    (r"form is not a valid JSON Schema: (?P<why>.+)",
     lambda m: _("The form is not a valid JSON Schema: %(why)s", **m)),
    (r"cannot build process: (?P<why>.+)",
     lambda m: _("The process cannot be built: %(why)s", **m)),
]]


def problem_message(message: str) -> str:
    """A validation problem of the process pack in the user's language."""
    text = message.strip()
    for pattern, translate in _PROBLEMS:
        match = pattern.fullmatch(text)
        if match is not None:
            return translate({k: v for k, v in match.groupdict().items() if v is not None})
    return engine_message(message)


_NAMED_DETAILS = ("sourceRef", "targetRef", "lane members", "incoming flows", "outgoing flows")
_DETAIL = re.compile(r"(?P<what>[^:]+): (?:(?P<kind>added|removed) (?P<value>.*)|"
                     r"(?P<change>.*))", re.S)


def diff_detail(detail: str, names: dict[str, str] | None = None) -> str:
    """One line of the diff's details ("condition: 'a' → 'b'") in the user's language; the
    elements a flow connects are named (`names`: element id -> name)."""
    match = _DETAIL.fullmatch(detail)
    if match is None:
        return detail
    key = match["what"]
    what = str(DIFF_LABELS.get(key, key))

    def named(text: str) -> str:
        if key not in _NAMED_DETAILS or not names:
            return text
        # a list (a lane's members, a node's flows) names each of its elements
        return re.sub(r"'([^']+)'", lambda m: "'" + joined(
            names.get(part, part) for part in m[1].split(", ")) + "'", text)

    if match["kind"] == "added":
        return _("%(what)s: added %(value)s", what=what, value=named(match["value"]))
    if match["kind"] == "removed":
        return _("%(what)s: removed %(value)s", what=what, value=named(match["value"]))
    return f"{what}: {named(match['change'])}"


# Why a case cannot move to another version (engine/pack/migration.py says it in English).
_TASK_STATES = {"completed": _l("已完成"), "under way": _l("办理中"), "open": _l("待办"),
                "waiting": _l("等待")}
_MIGRATION_ATTRIBUTES = {"bpmn_name": _l("name"), "outputs": _l("outgoing flows"),
                         "inputs": _l("incoming flows"), "lane": _l("lane"),
                         "form": _l("form"), "script": _l("script"),
                         "condition": _l("condition"), "extensions": _l("properties"),
                         "documentation": _l("instructions")}
_TASK_LABEL = r"(?P<id>\S+)(?: \((?P<name>.+)\))?"


def _task_named(m: dict[str, str]) -> str:
    return f"“{m['name']}”" if m.get("name") else m["id"]


def migration_reason(reason: str) -> str:
    """One reason a case cannot move to another version, in the user's language."""
    text = reason.strip()
    found = re.fullmatch(r"(?P<state>completed|under way|open|waiting) task " + _TASK_LABEL
                         + r" changed in the new version \((?P<attrs>[^()]+)\)", text)
    if found is not None:
        attrs = [str(_MIGRATION_ATTRIBUTES.get(a.strip(), a.strip()))
                 for a in found["attrs"].split(",")]
        return _("The task %(task)s (%(state)s) was changed in the new version: %(what)s.",
                 state=str(_TASK_STATES[found["state"]]), task=_task_named(found.groupdict()),
                 what=joined(dict.fromkeys(attrs)))
    found = re.fullmatch(r"(?P<state>completed|under way|open|waiting) task " + _TASK_LABEL
                         + r" no longer exists in the new version", text)
    if found is not None:
        return _("The task %(task)s (%(state)s) no longer exists in the new version.",
                 state=str(_TASK_STATES[found["state"]]), task=_task_named(found.groupdict()))
    found = re.fullmatch(r"the sub-process (?P<name>\S+) is running and the new version no "
                         r"longer calls it", text)
    if found is not None:
        return _("The sub-process %(name)s is running and the new version no longer calls it.",
                 name=found["name"])
    return engine_message(text)
