"""The OpenAPI 3.1 document of the JSON API, served at /api/v1/openapi.json.

Written by hand beside webapp/api.py; tests/test_api.py checks that every route is
described here (and nothing else is), and validates real responses against it.
"""

from __future__ import annotations

import copy
from typing import Any

from engine.accounts import MAX_BAD_TOKENS
from webapp import openapi_clocks as item_clocks
from webapp import openapi_lifecycle as lifecycle
from webapp import openapi_unit_tasks as unit_tasks
from webapp.limits import MAX_BODY_BYTES, MAX_ID, MAX_JSON_DEPTH

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_TEXT = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status][0]}"}
            for status in statuses}


_ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON, a body member of the wrong type, a missing or unknown "
                        "member, a query parameter out of range, a body nested too deeply, "
                        "or text with a NUL character or a lone surrogate anywhere in the "
                        "request (code `bad_request`; `fields` names where). Nothing was "
                        "changed."),
    401: ("Unauthorized", "No API token, or a token that is unknown, revoked or belongs to a "
                          "deactivated user (code `unauthorized`)."),
    403: ("Forbidden", "The caller's role or department may not do this (code `forbidden`). "
                       "Nothing was changed."),
    404: ("NotFound", "No such task, case or process, or one the caller may not see: the "
                      "answer is the same, so an id tells an outsider nothing (codes "
                      "`task_not_found`, `case_not_found`, `process_not_found`, "
                      "`not_found`)."),
    409: ("Conflict", "The task is no longer ready (`task_not_ready`: already completed or "
                      "cancelled), the given version is stale or the task is claimed by "
                      "someone else (`conflict`; `details.version` is the current version), "
                      "or the case has ended (`case_not_running`). Nothing was changed."),
    415: ("UnsupportedMediaType", "The body is not sent as `application/json` "
                                  "(code `unsupported_media_type`)."),
    429: ("TooManyRequests", "Too many requests with an unknown or revoked API token came "
                             "from the caller's address in the last minute (code "
                             "`too_many_requests`): every request from it waits the seconds "
                             "the `Retry-After` header gives, a valid token too."),
    503: ("ServiceUnavailable", "The database cannot be reached for a moment (code "
                                "`service_unavailable`); nothing was changed. Try again after "
                                "the seconds the `Retry-After` header gives."),
    422: ("UnprocessableEntity", "The data does not satisfy the form (`invalid_data`: the "
                                 "task's form, or the process's start form where it has one; "
                                 "one entry in `fields` per problem), or the process refused "
                                 "it (`workflow_error`). Nothing was changed."),
}

_TASK_ID = {"name": "task_id", "in": "path", "required": True,
            "description": "The task's id (a UUID).", "schema": {"type": "string"}}
_CASE_ID = {"name": "case_id", "in": "path", "required": True,
            "description": "The case's number.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
_PAGE = [
    {"name": "limit", "in": "query", "description": "Page size.",
     "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    {"name": "offset", "in": "query", "description": "Tasks to skip.",
     "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0}},
]

_SCHEMAS: dict[str, Any] = {
    "FieldError": {
        "type": "object", "additionalProperties": False, "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "Dotted path of the field, e.g. "
                                                     "`project.phone` or `version`."},
            "message": {"type": "string"},
        },
    },
    "Error": {
        "type": "object", "additionalProperties": False, "required": ["error"],
        "properties": {"error": {
            "type": "object", "additionalProperties": False,
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z_]+$",
                         "description": "Stable, machine-readable: `bad_request`, "
                                        "`unauthorized`, `forbidden`, `not_found`, "
                                        "`task_not_found`, `case_not_found`, "
                                        "`process_not_found`, `method_not_allowed`, "
                                        "`conflict`, `task_not_ready`, `case_not_running`, "
                                        "`unsupported_media_type`, `invalid_data`, "
                                        "`workflow_error`, `service_unavailable`, "
                                        "`internal_server_error`."},
                "message": {"type": "string", "description": "For people; says what to do."},
                "fields": {"type": "array", "items": _ref("FieldError"),
                           "description": "The fields at fault (empty when none is)."},
                "details": {"type": "object",
                            "description": "Extra facts, e.g. the task's current `version` "
                                           "after a stale-version conflict."},
                "request_id": {"type": "string",
                               "description": "The request's id (the caller's X-Request-ID "
                                              "or one made up), to quote when reporting it."},
            },
        }},
    },
    "Task": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "case_id", "case_title", "process_id", "spec_name", "title",
                     "department", "assignee", "state", "version", "form", "item_code",
                     "item_name", "phase", "stage", "due_at", "created_at", "completed_at",
                     "completed_by"],
        "properties": {
            "id": {"type": "string"},
            "case_id": {"type": "integer"},
            "case_title": {"type": "string"},
            "process_id": {"type": "string", "description": "The (called) process the task "
                                                           "belongs to."},
            "spec_name": {"type": "string", "description": "The BPMN id of the user task."},
            "title": {"type": "string"},
            "department": {**_NULLABLE_TEXT, "description": "Code of the owning department."},
            "assignee": {**_NULLABLE_TEXT, "description": "Who claimed it; null while it is in "
                                                          "the department's inbox."},
            "state": {"enum": ["ready", "completed", "cancelled"]},
            "version": {"type": "integer", "minimum": 1,
                        "description": "Changes with every claim, release, draft and "
                                       "completion; send it back to detect stale views."},
            "form": {**_NULLABLE_TEXT, "description": "File name of the form's JSON Schema."},
            "item_code": {**_NULLABLE_TEXT, "description": "The approval item, if any."},
            "item_name": _NULLABLE_TEXT,
            "phase": {**_NULLABLE_TEXT, "description": "Approval phase `1`..`4`."},
            "stage": {**_NULLABLE_TEXT, "description": "`preparation`, `handling`, "
                                                       "`acceleration` or `closing`."},
            "due_at": _NULLABLE_TIME,
            "created_at": {"type": "string", "format": "date-time"},
            "completed_at": _NULLABLE_TIME,
            "completed_by": _NULLABLE_TEXT,
        },
    },
    "TaskDetail": {
        "type": "object", "additionalProperties": False,
        "required": ["form_schema", "ui_schema", "instructions", "data", "draft"],
        "properties": {
            "form_schema": {"type": ["object", "null"],
                            "description": "The JSON Schema (2020-12) that `data` of a "
                                           "completion must satisfy."},
            "ui_schema": {"type": ["object", "null"],
                          "description": "Hints for rendering the form (order, widgets)."},
            "instructions": {"type": "string", "description": "Instructions for the agent."},
            "data": {"type": "object", "description": "The task's data while it is ready "
                                                      "(empty once it is finished)."},
            "draft": {"type": ["object", "null"], "description": "Saved half-filled form."},
        },
    },
    "TaskPage": {
        "type": "object", "additionalProperties": False,
        "required": ["tasks", "total", "limit", "offset", "next_offset"],
        "properties": {
            "tasks": {"type": "array", "items": _ref("Task")},
            "total": {"type": "integer", "minimum": 0,
                      "description": "Tasks matching the filters, over all pages."},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"],
                            "description": "The offset of the next page; null on the last."},
        },
    },
    "Case": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "process_id", "process_version_id", "title", "project_code",
                     "status", "state_version", "data", "started_by", "started_at",
                     "updated_at", "ended_at", "end_reason", "departments", "open_tasks",
                     "open_tasks_total"],
        "properties": {
            "id": {"type": "integer"},
            "process_id": {"type": "string"},
            "process_version_id": {"type": "integer"},
            "title": {"type": "string"},
            "project_code": _NULLABLE_TEXT,
            "status": {"enum": ["running", "completed", "terminated"]},
            "state_version": {"type": "integer"},
            "data": {"type": "object", "description": "The case-level data."},
            "started_by": {"type": "string"},
            "started_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "ended_at": _NULLABLE_TIME,
            "end_reason": _NULLABLE_TEXT,
            "departments": {"type": "array", "items": {"type": "string"},
                            "description": "Departments that hold or held a task of it."},
            "open_tasks": {"type": "array", "items": _ref("Task"), "maxItems": 200,
                           "description": "Ready tasks, with their department and assignee: "
                                          "the first 200; `GET /cases/{case_id}/tasks` "
                                          "pages through all of them."},
            "open_tasks_total": {"type": "integer", "minimum": 0,
                                 "description": "How many ready tasks the case has."},
        },
    },
    "CompletedTask": {
        "type": "object", "additionalProperties": False, "required": ["task", "case"],
        "properties": {"task": _ref("Task"), "case": _ref("Case")},
    },
    "Event": {
        "type": "object", "additionalProperties": False,
        "required": ["seq", "type", "actor", "at", "data", "prev_hash", "hash"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "type": {"type": "string", "description": "`case_started`, `task_claimed`, "
                                                      "`task_released`, `task_draft_saved`, "
                                                      "`task_completed`, `timer_fired`, "
                                                      "`case_terminated`, `deadlines_moved` "
                                                      "(an item's clock paused or resumed, or "
                                                      "its due date computed again on a "
                                                      "declared calendar; `data.clock` says "
                                                      "which)."},
            "actor": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "data": {"type": "object"},
            "prev_hash": {"type": "string"},
            "hash": {"type": "string", "description": "SHA-256 chaining this event to the "
                                                      "previous one."},
        },
    },
    "EventList": {
        "type": "object", "additionalProperties": False, "required": ["case_id", "events"],
        "properties": {"case_id": {"type": "integer"},
                       "events": {"type": "array", "items": _ref("Event")}},
    },
    "VersionRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {"version": {"type": "integer",
                                   "description": "The task version the caller saw; a "
                                                  "different current version is a 409."}},
    },
    "CompleteRequest": {
        "type": "object", "additionalProperties": False, "required": ["data", "version"],
        "properties": {
            "data": {"type": "object", "description": "The form's fields (see the task's "
                                                      "`form_schema`)."},
            "version": {"type": "integer", "description": "The task version the caller saw."},
        },
    },
    "StartCaseRequest": {
        "type": "object", "additionalProperties": False, "required": ["process_id", "data"],
        "properties": {
            "process_id": {"type": "string", "examples": ["case_flow"]},
            "data": {"type": "object",
                     "description": "Start data; for `case_flow`, `{\"project\": {...}}` as "
                                    "in forms/case_flow.start.schema.json."},
            "title": {"type": "string", "description": "Case title (default: the project's "
                                                       "name)."},
        },
    },
}

# A task's detail is the task plus what its form needs.
_SCHEMAS["TaskDetail"]["required"] = [*_SCHEMAS["Task"]["required"],
                                      *_SCHEMAS["TaskDetail"]["required"]]
_SCHEMAS["TaskDetail"]["properties"] = {**_SCHEMAS["Task"]["properties"],
                                        **_SCHEMAS["TaskDetail"]["properties"]}


def _operation(summary: str, description: str, operation_id: str, ok: dict[str, Any],
               errors: tuple[int, ...], *, parameters: list[dict[str, Any]] | None = None,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary,
                                 "description": description, "responses": {**ok,
                                                                           **_errors(*errors),
                                                                           **_errors(503)}}
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    return operation


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


_WRITE_ERRORS = (400, 401, 403, 404, 409, 415)

_PATHS: dict[str, Any] = {
    "/openapi.json": {"get": {
        "operationId": "getOpenApi", "summary": "This document", "security": [],
        "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
    }},
    "/tasks": {"get": _operation(
        "List tasks",
        "For agents, leaders and the office: their department's ready tasks that nobody "
        "claimed plus those they claimed (with `state=completed` or `cancelled`, all of "
        "the department's). For administrators and auditors: every department's tasks. "
        "Soonest due first.",
        "listTasks", {"200": _json(_ref("TaskPage"), "A page of tasks.")}, (400, 401),
        parameters=[
            {"name": "state", "in": "query", "description": "Task state (default `ready`).",
             "schema": {"enum": ["ready", "completed", "cancelled"], "default": "ready"}},
            {"name": "mine", "in": "query",
             "description": "`true`: only tasks the caller claimed.",
             "schema": {"enum": ["true", "false"], "default": "false"}},
            *_PAGE,
        ])},
    "/tasks/{task_id}": {"get": _operation(
        "Read a task",
        "The task with its form's JSON Schema, UI schema, instructions, data and draft. "
        "For the owning department's agents and leader, the office, administrators and "
        "auditors.",
        "getTask", {"200": _json(_ref("TaskDetail"), "The task.")}, (400, 401, 404),
        parameters=[_TASK_ID])},
    "/tasks/{task_id}/claim": {"post": _operation(
        "Claim a task",
        "Take a ready task of the caller's department so colleagues see it is handled.",
        "claimTask", {"200": _json(_ref("Task"), "The claimed task.")}, _WRITE_ERRORS,
        parameters=[_TASK_ID], body=_body("VersionRequest", required=False))},
    "/tasks/{task_id}/release": {"post": _operation(
        "Release a task",
        "Give a claimed task back to the department's inbox (the holder or the "
        "department's leader).",
        "releaseTask", {"200": _json(_ref("Task"), "The released task.")}, _WRITE_ERRORS,
        parameters=[_TASK_ID], body=_body("VersionRequest", required=False))},
    "/tasks/{task_id}/complete": {"post": _operation(
        "Complete a task",
        "Submit the form's data; it is validated against the task's `form_schema`. The "
        "case then runs to its next wait.",
        "completeTask", {"200": _json(_ref("CompletedTask"),
                                      "The completed task and the case after it.")},
        (*_WRITE_ERRORS, 422), parameters=[_TASK_ID], body=_body("CompleteRequest"))},
    "/cases": {"post": _operation(
        "Start a case",
        "Start a case of the published version of a process marked startable (agents, "
        "leaders, the office and administrators); processes that other processes call "
        "are never started directly.",
        "startCase", {"201": _json(_ref("Case"), "The new case.", headers={
            "Location": {"description": "The case's URL.", "schema": {"type": "string"}}})},
        (400, 401, 403, 404, 415, 422), body=_body("StartCaseRequest"))},
    "/cases/{case_id}": {"get": _operation(
        "Read a case",
        "Status, data, open tasks and who holds them. For agents and leaders of the "
        "departments that hold or held a task of the case, the office, administrators "
        "and auditors.",
        "getCase", {"200": _json(_ref("Case"), "The case.")}, (400, 401, 404),
        parameters=[_CASE_ID])},
    "/cases/{case_id}/events": {"get": _operation(
        "A case's timeline",
        "Every audit event of the case in order (same readers as the case).",
        "listCaseEvents", {"200": _json(_ref("EventList"), "The events.")}, (400, 401, 404),
        parameters=[_CASE_ID])},
    "/cases/{case_id}/tasks": {"get": _operation(
        "A case's open tasks",
        "The case's ready tasks, paged, soonest due first, with their total (same readers "
        "as the case).",
        "listCaseTasks", {"200": _json(_ref("TaskPage"), "A page of the case's tasks.")},
        (400, 401, 404), parameters=[_CASE_ID, *_PAGE])},
}

# The lifecycle, message and external-task routes are described in their own module.
_SCHEMAS.update(lifecycle.SCHEMAS)
for _path, _operations in lifecycle.PATHS.items():
    _PATHS.setdefault(_path, {}).update(_operations)
_PATHS["/tasks"]["get"]["parameters"].extend(lifecycle.TASK_FILTERS)
# The item-clock routes (rule R12), likewise.
_SCHEMAS.update(item_clocks.SCHEMAS)
for _path, _operations in item_clocks.PATHS.items():
    _PATHS.setdefault(_path, {}).update(_operations)
# The project unit's tasks done on its behalf (rule R05), also in their own module.
_SCHEMAS.update(unit_tasks.SCHEMAS)
_PATHS.update(unit_tasks.PATHS)
# Every call that takes a token may be told to wait: too many bad tokens from an address.
for _operations in _PATHS.values():
    for _operation_spec in _operations.values():
        if "401" in _operation_spec["responses"]:
            _operation_spec["responses"].update(_errors(429))

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "zerorun JSON API",
        "version": "1.0.0",
        "description": "Tasks and cases of the zero-run agency service (零跑路代办服务) for "
                       "other government systems. Every call but this document needs "
                       "`Authorization: Bearer <token>` with a per-user token (`zerorun "
                       "issue-token <username>`), and acts as that user with the same "
                       "permission checks as the web pages. Errors are JSON objects "
                       "`{\"error\": {\"code\", \"message\", \"fields\"}}`. Bounds the "
                       "server enforces on every request (400 past them, nothing changed): "
                       f"a body of at most {MAX_BODY_BYTES // (1024 * 1024)} MiB (413 "
                       f"past it), JSON nested at most {MAX_JSON_DEPTH} levels, no NUL "
                       "character or lone surrogate in any text, ids and offsets up to "
                       f"{MAX_ID}; more than {MAX_BAD_TOKENS} unknown tokens from one address "
                       "within a minute make it wait (429).",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearerAuth": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "A per-user API token from `zerorun issue-token <username>`; "
                           "`zerorun revoke-tokens <username>` revokes it."}},
        "schemas": _SCHEMAS,
        "responses": {name: _json(
            _ref("Error"), description,
            headers={"WWW-Authenticate": {"description": "The Bearer challenge.",
                                          "schema": {"type": "string"}}}
            if status == 401 else {"Retry-After": {"description": "Seconds to wait.",
                                                   "schema": {"type": "string"}}}
            if status in (429, 503) else None)
            for status, (name, description) in _ERROR_RESPONSES.items()},
    },
}


def document() -> dict[str, Any]:
    """A copy of the OpenAPI document."""
    return copy.deepcopy(_DOCUMENT)
