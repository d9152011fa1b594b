"""The OpenAPI description of the item-clock routes (webapp/api_clocks.py); webapp/openapi.py
merges it into the document it serves."""

from __future__ import annotations

from typing import Any

from webapp.openapi_lifecycle import _CASE_ID, _READ, _WRITE, _obj, _ok, _op, _path, _ref

_DATE = {"type": "string", "format": "date"}
_NULLABLE_DATE = {"type": ["string", "null"], "format": "date"}
_ITEM_CODE = _path("item_id", "The approval item's catalogue code (data/items.json).",
                   "string")
_DAYS = {"type": "integer", "minimum": 0, "description": "Working days."}

SCHEMAS: dict[str, Any] = {
    "ItemPause": _obj(
        ["reason", "reason_name", "kind", "started_on", "planned_days", "ends_on",
         "resumed_on", "days", "note", "paused_by"],
        {"reason": {"type": "string", "description": "A code of data/pause_reasons.json."},
         "reason_name": {"type": "string"},
         "kind": {"enum": ["applicant", "procedure"],
                  "description": "The applicant's time (补正) or a procedure the law keeps "
                                 "outside the limit (expert review, hearing, testing, notice)."},
         "started_on": _DATE, "planned_days": {**_DAYS, "minimum": 1},
         "ends_on": {**_DATE, "description": "The last working day the pause covers as "
                                             "planned; the clock runs again after it."},
         "resumed_on": _NULLABLE_DATE,
         "days": {**_DAYS, "description": "Working days counted: the planned ones, or those "
                                          "up to an early resumption."},
         "note": {"type": "string"}, "paused_by": {"type": "string"}}),
    "ItemClock": _obj(
        ["item_code", "item_name", "department", "started_on", "ended_on", "due_on",
         "due_provisional", "state", "paused", "pauses", "government_days", "applicant_days",
         "procedure_days"],
        {"item_code": {"type": "string"}, "item_name": {"type": "string"},
         "department": {"type": "string"},
         "started_on": {**_DATE, "description": "The day the item was accepted."},
         "ended_on": _NULLABLE_DATE, "due_on": _NULLABLE_DATE,
         "due_provisional": {"type": "boolean",
                             "description": "The due date lies past the declared working-day "
                                            "calendar (counted on weekdays; recomputed when "
                                            "the year is declared)."},
         "state": {"enum": ["running", "paused", "finished"]},
         "paused": {"oneOf": [_ref("ItemPause"), {"type": "null"}]},
         "pauses": {"type": "array", "items": _ref("ItemPause")},
         "government_days": {**_DAYS, "description": "Working days counted against the "
                                                     "department's limit."},
         "applicant_days": _DAYS, "procedure_days": _DAYS}),
    "ItemClocks": _obj(["case_id", "clocks"], {
        "case_id": {"type": "integer"},
        "clocks": {"type": "array", "items": _ref("ItemClock")}}),
    "PauseRequest": _obj(["reason", "days"], {
        "reason": {"type": "string", "examples": ["correction", "expert_review", "hearing"]},
        "days": {"type": "integer", "minimum": 1,
                 "description": "Working days the clock stops for (told to the applicant in "
                                "writing), at most what the law allows for the reason."},
        "note": {"type": "string", "maxLength": 500}}),
    "ResumeRequest": _obj([], {}),
}

_REFUSED = ("The pause is refused with 422 (`clock_error`) when the reason is not in the "
            "catalogue or the days exceed what the law allows for it; 409 (`conflict`) when "
            "the item is not on its clock (not accepted yet, or finished) or already paused. "
            "Nothing is stored then.")

PATHS: dict[str, Any] = {
    "/cases/{case_id}/clocks": {"get": _op(
        "caseClocks", "Item clocks of a case",
        "Each accepted item's due date (provisional past the declared calendar), its pauses "
        "(行政许可法 §45) and its government, applicant and procedure time in working days.",
        _ok(_ref("ItemClocks"), "The clocks."), _READ, parameters=[_CASE_ID])},
    "/cases/{case_id}/items/{item_id}/pause": {"post": _op(
        "pauseItem", "Pause an item's clock",
        "The item's department (its agent or leader) or the office stops the clock; the "
        "item's due date, its open tasks' due dates and its warnings move by the days at "
        "once (a `deadlines_moved` case event). " + _REFUSED,
        _ok(_ref("ItemClock"), "The item's clock after the pause."), (*_WRITE, 422),
        parameters=[_CASE_ID, _ITEM_CODE], body="PauseRequest",
        example={"reason": "expert_review", "days": 10, "note": "组织专家评审，已书面告知"})},
    "/cases/{case_id}/items/{item_id}/resume": {"post": _op(
        "resumeItem", "Resume an item's clock",
        "The clock runs again today; the planned days not used come off the due date. A "
        "clock that is not paused answers 409 (`conflict`) and nothing is stored.",
        _ok(_ref("ItemClock"), "The item's clock after the resumption."), _WRITE,
        parameters=[_CASE_ID, _ITEM_CODE], body="ResumeRequest", body_required=False)},
}
