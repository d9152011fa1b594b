"""The OpenAPI description of the project unit's task routes (webapp/api_unit_tasks.py):
agents of the Approval Service Bureau doing the unit's steps on its behalf (代为办理, rule R05).
webapp/openapi.py merges it into the document it serves."""

from __future__ import annotations

from typing import Any

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                409: "Conflict", 415: "UnsupportedMediaType", 422: "UnprocessableEntity",
                503: "ServiceUnavailable"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": properties}


def _op(operation_id: str, summary: str, description: str, status: str, schema: str,
        errors: tuple[int, ...], parameters: list[dict[str, Any]],
        body: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id, "summary": summary, "description": description,
        "parameters": parameters,
        "responses": {status: {"description": summary,
                               "content": {"application/json": {"schema": _ref(schema)}}},
                      **{str(s): {"$ref": f"#/components/responses/{_ERROR_NAMES[s]}"}
                         for s in (*errors, 503)}}}
    if body:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(body)}}}
    return operation


_CASE_ID = {"name": "case_id", "in": "path", "required": True, "description": "The case's number.",
            "schema": {"type": "integer", "minimum": 1}}
_TASK_ID = {"name": "task_id", "in": "path", "required": True,
            "description": "The unit's task id (a UUID).", "schema": {"type": "string"}}
_TEXT = {"type": "string"}

SCHEMAS: dict[str, Any] = {
    "Authorisation": _obj(
        ["principal", "signatory", "signed_on", "signing_method", "scope", "recorded_by",
         "recorded_at", "document_id"],
        {"principal": _TEXT, "signatory": _TEXT, "signed_on": _TEXT,
         "signing_method": {"type": "string", "description": "`paper` or `visit` (the form "
                                                              "agency_authorisation.schema.json)."},
         "scope": _TEXT, "recorded_by": _TEXT, "recorded_at": _TIME,
         "document_id": {"type": ["integer", "null"],
                         "description": "The issued 代办委托书 (GET /documents/{id})."}}),
    "UnitTaskList": _obj(
        ["case_id", "authorisation", "tasks"],
        {"case_id": {"type": "integer"},
         "authorisation": {"oneOf": [_ref("Authorisation"), {"type": "null"}],
                           "description": "The unit's agency authorisation; none recorded: "
                                          "null, and no step may be done on its behalf."},
         "tasks": {"type": "array", "items": _ref("TaskDetail")}}),
    "EvidenceFile": _obj(
        ["filename", "content_base64"],
        {"filename": {"type": "string", "description": "PDF, JPG, PNG, DOCX or XLSX."},
         "content_base64": {"type": "string", "description": "At most 10 MB once decoded."}}),
    "OnBehalfRequest": _obj(
        ["data", "confirmation", "evidence", "version"],
        {"data": {"type": "object", "description": "The task's form fields (its "
                                                   "`form_schema`), as the unit answered."},
         "confirmation": {"type": "object", "description": (
             "How the unit confirmed the step (form on_behalf.schema.json): "
             "`confirmation_method` (`phone`, `visit` or `paper`), `confirmed_by`, "
             "`confirmed_on` (a date, not after today), `confirmation_note`. Errors name "
             "its fields `confirmation.<field>`.")},
         "evidence": {"type": "array", "minItems": 1, "maxItems": 5,
                      "items": _ref("EvidenceFile"),
                      "description": "The evidence: a call record, visit record or signed "
                                     "paper (1 to 5 files)."},
         "version": {"type": "integer", "description": "The task version the caller saw."}}),
    "OnBehalfStep": _obj(
        ["agent", "at", "on_behalf_of", "confirmation_method", "confirmation_method_title",
         "confirmed_by", "confirmed_on", "note", "evidence"],
        {"agent": _TEXT, "at": _TIME,
         "on_behalf_of": {"type": "string", "description": "`enterprise:<case>`."},
         "confirmation_method": _TEXT, "confirmation_method_title": _TEXT,
         "confirmed_by": _TEXT, "confirmed_on": _TEXT, "note": _TEXT,
         "evidence": {"type": "array", "items": _obj(
             ["attachment_id", "filename", "sha256"],
             {"attachment_id": {"type": "integer"}, "filename": _TEXT, "sha256": _TEXT})}}),
    "OnBehalfCompleted": _obj(
        ["task", "case", "on_behalf"],
        {"task": _ref("Task"), "case": _ref("Case"), "on_behalf": _ref("OnBehalfStep")}),
    "AuthorisationRequest": _obj(
        ["data"],
        {"data": {"type": "object", "description": (
            "The form agency_authorisation.schema.json: `principal`, `signatory`, "
            "`signed_on` (not after today), `signing_method` (`paper` or `visit`), "
            "`authorisation_scope`.")}}),
}

PATHS: dict[str, Any] = {
    "/cases/{case_id}/unit-tasks": {"get": _op(
        "listUnitTasks", "The project unit's open tasks",
        "The case's ready tasks in the project unit's lane with their forms, and the unit's "
        "agency authorisation. For the agents who may act for the unit (the Approval "
        "Service Bureau's); others who read the case get 403, others 404.",
        "200", "UnitTaskList", (400, 401, 403, 404), [_CASE_ID])},
    "/cases/{case_id}/unit-tasks/{task_id}/complete-on-behalf": {"post": _op(
        "completeUnitTaskOnBehalf", "Do one of the unit's steps on its behalf (代为办理)",
        "Complete a ready task of the project unit for it, under its agency authorisation: "
        "the task's form data, how the unit confirmed the step and the evidence, stored in "
        "one transaction and recorded as 代为办理 (`on_behalf_of`, `confirmation` in the "
        "`task_completed` event). 409 when the unit (or another agent) did the step first, "
        "when no authorisation is recorded, or when the version is stale; nothing is "
        "changed then.", "200", "OnBehalfCompleted", (400, 401, 403, 404, 409, 415, 422),
        [_CASE_ID, _TASK_ID], "OnBehalfRequest")},
    "/cases/{case_id}/authorisation": {"post": _op(
        "recordAuthorisation", "Record the unit's agency authorisation (代办委托书)",
        "Record the authorisation the project unit signed at the start of the service; the "
        "代办委托书 document is issued and kept with the case. A later record replaces it.",
        "201", "Authorisation", (400, 401, 403, 404, 415, 422), [_CASE_ID],
        "AuthorisationRequest")},
}
