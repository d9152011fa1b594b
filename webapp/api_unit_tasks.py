"""The JSON API for the project unit's tasks as the Bureau's agents do them on its behalf
(代为办理, rule R05): list a case's unit tasks, complete one for the unit with how it
confirmed the step and the evidence, and read or record the unit's agency authorisation.

Routes live on the API's blueprint (webapp/api.py), with its authentication, errors and
representations; webapp/openapi_unit_tasks.py describes them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Response, g, jsonify

from agency.enterprise import (
    Authorisation,
    ProxiedStep,
    UnitTasks,
    proxied_steps,
)
from engine.errors import FieldError, InvalidData
from webapp import get_engine
from webapp.api import (
    ApiError,
    _check_members,
    _json_body,
    _time,
    authenticated,
    bp,
    case_json,
    task_detail_json,
    task_json,
    writer,
)

MAX_EVIDENCE = 5


def _step_json(step: ProxiedStep | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {"agent": step.agent, "at": _time(step.at), "on_behalf_of": step.on_behalf_of,
            "confirmation_method": step.method, "confirmation_method_title": step.method_title,
            "confirmed_by": step.confirmed_by, "confirmed_on": step.confirmed_on,
            "note": step.note, "evidence": step.evidence}


def _authorisation_json(found: Authorisation | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {"principal": found.principal, "signatory": found.signatory,
            "signed_on": found.signed_on, "signing_method": found.signing_method,
            "scope": found.scope, "recorded_by": found.recorded_by,
            "recorded_at": _time(found.recorded_at), "document_id": found.document_id}


@bp.get("/cases/<int:case_id>/unit-tasks")
@authenticated
def list_unit_tasks(case_id: int) -> Response:
    """The project unit's open tasks of a case, with their forms, for the agents who may
    record them on its behalf, and the unit's agency authorisation."""
    engine = get_engine()
    unit = UnitTasks(engine)
    tasks = unit.open_tasks(case_id, g.api_user.actor)
    return jsonify({"case_id": case_id,
                    "authorisation": _authorisation_json(unit.authorisation(case_id)),
                    "tasks": [task_detail_json(d) for d in tasks]})


def _evidence(body: dict[str, Any]) -> list[tuple[str, bytes]]:
    raw = body.get("evidence", [])
    if not isinstance(raw, list) or len(raw) > MAX_EVIDENCE:
        raise ApiError(400, "bad_request", "evidence is not valid",
                       [FieldError("evidence", f"must be a list of at most {MAX_EVIDENCE} "
                                               "files")])
    files = []
    for index, entry in enumerate(raw):
        if not (isinstance(entry, dict) and set(entry) == {"filename", "content_base64"}
                and all(isinstance(v, str) for v in entry.values())):
            raise ApiError(400, "bad_request", "evidence is not valid", [FieldError(
                f"evidence.{index}", "must be an object with filename and content_base64")])
        try:
            content = base64.b64decode(entry["content_base64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, "bad_request", "evidence is not valid", [FieldError(
                f"evidence.{index}.content_base64", "must be base64")]) from exc
        files.append((entry["filename"], content))
    return files


@bp.post("/cases/<int:case_id>/unit-tasks/<task_id>/complete-on-behalf")
@authenticated
@writer
def complete_unit_task(case_id: int, task_id: str) -> Response:
    """Complete one of the unit's tasks for it: the task's form data, how the unit confirmed
    the step, and the evidence files (base64); recorded as 代为办理."""
    body = _json_body(required=True)
    # `evidence` is a list: its shape is checked by _evidence (object: any JSON value here).
    _check_members(body, {"data": (dict, True), "confirmation": (dict, True),
                          "evidence": (object, True), "version": (int, True)})
    evidence = _evidence(body)
    engine = get_engine()
    actor = g.api_user.actor
    unit = UnitTasks(engine)
    unit.task(case_id, task_id, actor)
    try:
        unit.check_confirmation(body["confirmation"], evidence)
    except InvalidData as exc:  # named inside their member, as the request gives them
        raise InvalidData(exc.message, [
            FieldError(e.field if e.field == "evidence" else f"confirmation.{e.field}",
                       e.message) for e in exc.errors]) from exc
    case = unit.complete(case_id, task_id, body["data"], body["confirmation"], evidence, actor,
                         body["version"])
    done = case.completed_task or engine.get_task(task_id, actor).task
    return jsonify({"task": task_json(done), "case": case_json(engine, case),
                    "on_behalf": _step_json(proxied_steps(engine, case_id).get(task_id))})


@bp.post("/cases/<int:case_id>/authorisation")
@authenticated
@writer
def record_authorisation(case_id: int) -> tuple[Response, int]:
    """Record the agency authorisation (代办委托书) the unit signed; its document is issued."""
    body = _json_body(required=True)
    _check_members(body, {"data": (dict, True)})
    found = UnitTasks(get_engine()).record_authorisation(case_id, body["data"],
                                                         g.api_user.actor)
    return jsonify(_authorisation_json(found)), 201
