"""A case's history as one self-contained file that can be verified offline."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.audit import chain as audit
from engine.audit import seals as sealing
from engine.audit.sealcheck import against, recompute
from engine.cases import WORKFLOW_EVENTS, Engine, apply_event
from engine.cases.workflow import scan_tasks
from engine.errors import CaseNotFound, EngineError
from engine.pack.loader import EngineBpmnParser, SourceFile, content_hash
from engine.pack.xml import parse_xml
from engine.runtime import clock
from engine.runtime.spiff import IdSource, ProcessSpecs, case_namespace, new_workflow, task_ids
from engine.store.models import Case, Event, HumanTask, ProcessVersion

FORMAT = "zerorun-case-export/1"
# The printable HTML report carries the same document in this script element.
_EMBEDDED = re.compile(r'<script type="application/json" id="zerorun-export">(.*?)</script>',
                       re.S)


class ExportUnreadable(EngineError):
    """The file is neither an exported case nor a report that embeds one."""


def read_export(text: str) -> dict[str, Any]:
    """The export document of a JSON export file or of an HTML report that embeds it."""
    embedded = _EMBEDDED.search(text) if text.lstrip().startswith("<") else None
    try:
        document = json.loads(embedded.group(1) if embedded else text)
    except ValueError as exc:
        what = "the report's embedded export" if embedded else "the file"
        raise ExportUnreadable(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ExportUnreadable("the file does not hold an exported case")
    return document


SEAL_PROOFS = 31  # an export carries proofs for this many latest seals unless told otherwise


def export_case(engine: Engine, case_id: int, seal_proofs: int | None = SEAL_PROOFS
                ) -> dict[str, Any]:
    """Everything needed to check a case without the database: events, hashes, process files,
    and inclusion proofs for the `seal_proofs` latest seals covering it (None: all)."""
    with engine.db.reading() as s:
        case = s.get(Case, case_id)
        if case is None:
            raise CaseNotFound(f"case {case_id} does not exist")
        version = s.get(ProcessVersion, case.process_version_id)
        assert version is not None  # noqa: S101 - foreign key
        events = list(s.scalars(select(Event).where(Event.stream == f"case:{case_id}")
                                .order_by(Event.seq)))
        open_tasks = sorted(s.scalars(select(HumanTask.id).where(
            HumanTask.case_id == case_id, HumanTask.state == "ready")))
        return {
            "format": FORMAT,
            "exported_at": audit.format_time(engine.clock()),
            "case": {"id": case.id, "title": case.title, "project_code": case.project_code,
                     "status": case.status, "last_hash": case.last_hash,
                     "open_tasks": open_tasks},
            "process": {"process_id": version.process_id, "version": version.number,
                        "content_hash": version.content_hash, "sources": version.sources},
            "events": [{"seq": e.seq, "stream": e.stream, "type": e.type, "actor": e.actor,
                        "at": audit.format_time(e.at), "data": e.data,
                        "prev_hash": e.prev_hash, "hash": e.hash} for e in events],
            # Every seal covering the case with the inclusion proof of the case's head, and
            # the event hashes as the seals recorded them: `verify-export --seal` checks the
            # case against a seal an auditor holds, with no database.
            "seals": sealing.inclusion_proofs(engine, f"case:{case_id}", seal_proofs),
            "seals_covering": len(sealing.seals_covering(engine, f"case:{case_id}")),
            "sealed_hashes": sealing.sealed_hashes(engine, f"case:{case_id}"),
        }


@dataclass(frozen=True)
class ExportCheck:
    """The result of checking an exported case file."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_export(document: dict[str, Any], script_engine: Any) -> ExportCheck:
    """Check the chain of an exported case, then re-execute it from its own process files."""
    if document.get("format") != FORMAT:
        return ExportCheck(False, 0, None, f"not a {FORMAT} file")
    events = document["events"]
    prev = audit.GENESIS
    for expected, event in enumerate(events, start=1):
        at = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
        if event["seq"] != expected:
            return ExportCheck(False, len(events), expected, f"event {expected} is missing")
        digest = audit.event_hash(prev, event["stream"], event["seq"], event["type"],
                                  event["actor"], at, event["data"])
        if event["prev_hash"] != prev or digest != event["hash"]:
            return ExportCheck(False, len(events), event["seq"],
                               "the event does not match its hash")
        prev = event["hash"]
    if events and document["case"]["last_hash"] != prev:
        return ExportCheck(False, len(events), events[-1]["seq"],
                           "the last event is not the case's last event")
    sources = document["process"]["sources"]
    files = [SourceFile(name, text.encode("utf-8")) for name, text in sources.items()]
    if content_hash(files) != document["process"]["content_hash"]:
        return ExportCheck(False, len(events), None,
                           "the process files do not match the version's content hash")
    specs = _specs(document["process"]["process_id"], sources)
    case_id = document["case"]["id"]
    ids = IdSource(case_namespace(case_id))
    first_at = datetime.fromisoformat(events[0]["at"].replace("Z", "+00:00")) if events \
        else datetime.now().astimezone()
    with clock.pinned(first_at), task_ids(ids):
        workflow = new_workflow(specs, script_engine)
    for event in events:
        if event["type"] not in WORKFLOW_EVENTS:
            continue
        at = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
        try:
            with clock.pinned(at), task_ids(ids):
                apply_event(workflow, event["type"], event["data"], case_id)
        except Exception as exc:  # any failure to re-execute is a verification failure
            return ExportCheck(False, len(events), event["seq"],
                               f"the event cannot be re-executed: {exc}")
    expected_open = sorted(str(t.id) for t in scan_tasks(workflow).ready_manual)
    if expected_open != document["case"]["open_tasks"]:
        return ExportCheck(False, len(events), events[-1]["seq"] if events else None,
                           "the open tasks differ from the re-executed case")
    return ExportCheck(True, len(events))


def verify_export_seal(document: dict[str, Any], held: dict[str, Any], public_key: str
                       ) -> ExportCheck:
    """Check an exported case against a seal an auditor holds: the seal's signature, the
    inclusion proof of the case's sealed head, and that the exported events still lead to it."""
    events = document.get("events") or []
    problem = sealing.signature_problem(held, public_key)
    if held.get("format") != sealing.FORMAT:
        problem = f"the seal file is not a {sealing.FORMAT} seal"
    if problem:
        return ExportCheck(False, len(events), None, f"seal {held.get('number')}: {problem}")
    proof = next((p for p in document.get("seals") or []
                  if p.get("seal", {}).get("number") == held.get("number")), None)
    if proof is None:
        carried = len(document.get("seals") or [])
        if int(document.get("seals_covering") or 0) > carried:
            return ExportCheck(False, len(events), None, f"the export carries proofs for the "
                               f"latest {carried} seals only, not seal {held.get('number')}: "
                               "export the case again with `--seal-proofs 0`")
        return ExportCheck(False, len(events), None, f"the export carries no proof for seal "
                           f"{held.get('number')} (the case was not sealed by it, or the "
                           "export predates it)")
    if proof["seal"] != held:
        return ExportCheck(False, len(events), None, f"the export's seal "
                           f"{held.get('number')} differs from the seal you hold")
    leaf = proof["leaf"]
    if leaf.get("stream") != f"case:{document['case']['id']}" or \
            not sealing.inclusion_holds(proof):
        return ExportCheck(False, len(events), None, "the inclusion proof does not lead from "
                           "the case's sealed head to the seal's root")
    fields = [(e["seq"], e["stream"], e["type"], e["actor"],
               datetime.fromisoformat(e["at"].replace("Z", "+00:00")), e["data"])
              for e in events]
    head = sealing.Head(leaf["stream"], leaf["seq"], leaf["hash"], leaf["events_root"])
    mismatch = against(head, int(held["number"]), recompute(fields),
                       document.get("sealed_hashes") or [])
    if mismatch is not None:
        return ExportCheck(False, len(events), mismatch.first_bad_seq, mismatch.reason)
    return ExportCheck(True, len(events))


def _specs(process_id: str, sources: dict[str, str]) -> ProcessSpecs:
    parser = EngineBpmnParser()
    for name, text in sources.items():
        if name.endswith(".bpmn"):
            parser.add_bpmn_xml(parse_xml(text.encode("utf-8"), name), filename=name)
        elif name.endswith(".dmn"):
            parser.add_dmn_xml(parse_xml(text.encode("utf-8"), name).getroot(), filename=name)
    return ProcessSpecs(parser.get_spec(process_id), parser.get_subprocess_specs(process_id))
