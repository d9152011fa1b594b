"""The JSON API of an item's clock (rule R12): its times and pauses, pausing and resuming.

Routes live on the API's blueprint (webapp/api.py), with the case page's permission rules;
the OpenAPI document describes them (webapp/openapi_clocks.py).
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from agency import clocks
from webapp import get_engine
from webapp.api import _check_members, _json_body, _readable_case, authenticated, bp, writer


def pause_json(pause: clocks.PauseView) -> dict[str, Any]:
    return {"reason": pause.reason, "reason_name": pause.reason_name, "kind": pause.kind,
            "started_on": pause.started_on.isoformat(), "planned_days": pause.planned_days,
            "ends_on": pause.ends_on.isoformat(),
            "resumed_on": pause.resumed_on.isoformat() if pause.resumed_on else None,
            "days": pause.days, "note": pause.note, "paused_by": pause.paused_by}


def clock_json(time: clocks.ItemTime) -> dict[str, Any]:
    return {"item_code": time.item_code, "item_name": time.item_name,
            "department": time.department, "started_on": time.started_on.isoformat(),
            "ended_on": time.ended_on.isoformat() if time.ended_on else None,
            "due_on": time.due_on.isoformat() if time.due_on else None,
            "due_provisional": time.provisional,
            "state": "finished" if time.ended_on else "paused" if time.paused else "running",
            "paused": pause_json(time.paused) if time.paused else None,
            "pauses": [pause_json(p) for p in time.pauses],
            "government_days": time.government_days, "applicant_days": time.applicant_days,
            "procedure_days": time.procedure_days}


@bp.get("/cases/<int:case_id>/clocks")
@authenticated
def case_clocks(case_id: int) -> Response:
    """The case's item clocks: due dates, pauses, government and applicant time."""
    engine = get_engine()
    _readable_case(engine, case_id)
    return jsonify({"case_id": case_id, "clocks": [
        clock_json(t) for t in clocks.item_times(engine, {case_id})]})


@bp.post("/cases/<int:case_id>/items/<item_id>/pause")
@authenticated
@writer
def pause_item(case_id: int, item_id: str) -> Response:
    """Stop an item's clock for a reason of the catalogue and a number of working days."""
    body = _json_body(required=True)
    _check_members(body, {"reason": (str, True), "days": (int, True), "note": (str, False)})
    engine = get_engine()
    _readable_case(engine, case_id)
    time = clocks.pause(engine, case_id, item_id, body["reason"], body["days"],
                        body.get("note", ""), g.api_user.actor)
    return jsonify(clock_json(time))


@bp.post("/cases/<int:case_id>/items/<item_id>/resume")
@authenticated
@writer
def resume_item(case_id: int, item_id: str) -> Response:
    """Start an item's stopped clock again today."""
    body = _json_body(required=False)
    _check_members(body, {})
    engine = get_engine()
    _readable_case(engine, case_id)
    return jsonify(clock_json(clocks.resume(engine, case_id, item_id, g.api_user.actor)))
