"""The OpenAPI description of the lifecycle, message and external-task routes
(webapp/api_lifecycle.py, webapp/api_interop.py); webapp/openapi.py merges it into the
document it serves."""

from __future__ import annotations

from typing import Any

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                409: "Conflict", 415: "UnsupportedMediaType", 422: "UnprocessableEntity"}
_READ = (401, 403, 404)
_WRITE = (400, 401, 403, 404, 409, 415)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], description: str, example: Any = None,
        status: str = "200") -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {status: {"description": description, "content": {"application/json": content}}}


def _binary(mimetype: str, description: str) -> dict[str, Any]:
    return {"200": {"description": description,
                    "content": {mimetype: {"schema": {"type": "string",
                                                      "format": "binary"}}}}}


def _op(operation_id: str, summary: str, description: str, ok: dict[str, Any],
        errors: tuple[int, ...], *, parameters: list[dict[str, Any]] | None = None,
        body: str | None = None, example: Any = None, body_required: bool = True
        ) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id, "summary": summary, "description": description,
        "responses": {**ok, **{str(s): {"$ref": f"#/components/responses/{_ERROR_NAMES[s]}"}
                               for s in errors}}}
    if parameters:
        operation["parameters"] = parameters
    if body:
        content: dict[str, Any] = {"schema": _ref(body)}
        if example is not None:
            content["example"] = example
        operation["requestBody"] = {"required": body_required,
                                    "content": {"application/json": content}}
    return operation


def _path(name: str, description: str, kind: str = "integer") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema["minimum"] = 1
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


_CASE_ID = _path("case_id", "The case's number.")
_TASK_ID = _path("task_id", "The task's id (a UUID).", "string")
_JOB_ID = _path("job_id", "The job's id (the service task's id, a UUID).", "string")
_PAGING = [_query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 200,
                                          "default": 50}),
           _query("offset", "Items to skip.", {"type": "integer", "minimum": 0,
                                               "default": 0})]


def _obj(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": properties, **extra}


SCHEMAS: dict[str, Any] = {
    "StartableProcess": _obj(
        ["process_id", "name", "start_form_schema", "start_ui_schema"],
        {"process_id": {"type": "string"}, "name": {"type": "string"},
         "start_form_schema": {"type": ["object", "null"],
                               "description": "JSON Schema of `data` for POST /cases."},
         "start_ui_schema": {"type": ["object", "null"]}}),
    "ProcessVersion": _obj(
        ["id", "process_id", "name", "number", "status", "content_hash", "author", "comment",
         "created_at", "published_at"],
        {"id": {"type": "integer"}, "process_id": {"type": "string"},
         "name": {"type": "string"}, "number": {"type": "integer"},
         "status": {"enum": ["draft", "published", "retired"]},
         "content_hash": {"type": "string"}, "author": {"type": "string"},
         "comment": {"type": "string"}, "created_at": _TIME, "published_at": _NULLABLE_TIME}),
    "DeployRequest": _obj(
        ["file_name", "content"],
        {"file_name": {"type": "string", "description": "A .bpmn or .dmn file of the pack."},
         "content": {"type": "string", "description": "The file's XML."},
         "forms": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Form files (name under forms/ -> JSON text)."},
         "comment": {"type": "string"}}),
    "VersionNumbers": _obj(["process_id", "number"], {"process_id": {"type": "string"},
                                                      "number": {"type": "integer"}}),
    "CaseSummary": _obj(
        ["id", "process_id", "title", "project_code", "status", "started_at", "updated_at",
         "ended_at", "end_reason"],
        {"id": {"type": "integer"}, "process_id": {"type": "string"},
         "title": {"type": "string"}, "project_code": _NULLABLE_TEXT,
         "status": {"enum": ["running", "completed", "terminated"]}, "started_at": _TIME,
         "updated_at": _TIME, "ended_at": _NULLABLE_TIME, "end_reason": _NULLABLE_TEXT}),
    "TerminateRequest": _obj(["reason"], {"reason": {"type": "string", "minLength": 1}}),
    "Timer": _obj(
        ["task_id", "element", "name", "kind", "attached_to", "cancels", "due_at"],
        {"task_id": {"type": "string"}, "element": {"type": "string"},
         "name": {"type": "string", "description": "The timer's name in the diagram."},
         "kind": {"enum": ["boundary", "intermediate"]},
         "attached_to": {**_NULLABLE_TEXT, "description": "The activity a boundary timer "
                                                          "watches."},
         "cancels": {"type": ["boolean", "null"],
                     "description": "Whether firing interrupts that activity."},
         "due_at": _TIME}),
    "MessageWait": _obj(
        ["task_id", "message", "element", "process_id", "correlation_key"],
        {"task_id": {"type": "string"}, "message": {"type": "string"},
         "element": {"type": "string"}, "process_id": {"type": "string"},
         "correlation_key": _NULLABLE_TEXT}),
    "DraftRequest": _obj(["data"], {"data": {"type": "object"}}),
    "Draft": _obj(["task_id", "version", "draft"],
                  {"task_id": {"type": "string"}, "version": {"type": "integer"},
                   "draft": {"type": ["object", "null"]}}),
    "Document": _obj(
        ["id", "case_id", "kind", "source", "title", "department", "sha256", "created_by",
         "created_at", "size", "download"],
        {"id": {"type": "integer"}, "case_id": {"type": ["integer", "null"]},
         "kind": {"type": "string"}, "source": {"type": "string"},
         "title": {"type": "string"}, "department": _NULLABLE_TEXT,
         "sha256": {"type": "string"}, "created_by": {"type": "string"},
         "created_at": _TIME, "size": {"type": "integer"},
         "download": {"type": "string", "description": "The PDF's URL."}}),
    "GenerateRequest": _obj(["kind", "source"], {"kind": {"type": "string"},
                                                 "source": {"type": "string"}}),
    "Attachment": _obj(
        ["id", "case_id", "task_id", "material", "filename", "content_type", "size",
         "sha256", "uploaded_by", "uploaded_at", "download"],
        {"id": {"type": "integer"}, "case_id": {"type": "integer"},
         "task_id": _NULLABLE_TEXT, "material": _NULLABLE_TEXT,
         "filename": {"type": "string"}, "content_type": {"type": "string"},
         "size": {"type": "integer"}, "sha256": {"type": "string"},
         "uploaded_by": {"type": "string"}, "uploaded_at": _TIME,
         "download": {"type": "string"}}),
    "UploadRequest": _obj(["filename", "content_base64"],
                          {"filename": {"type": "string"},
                           "content_base64": {"type": "string", "contentEncoding": "base64"},
                           "material": {"type": "string",
                                        "description": "The material it provides."}}),
    "EnterpriseLink": _obj(
        ["id", "case_id", "recipient", "created_by", "created_at", "revoked_at",
         "revoked_by", "active"],
        {"id": {"type": "integer"}, "case_id": {"type": "integer"},
         "recipient": {"type": "string"}, "created_by": {"type": "string"},
         "created_at": _TIME, "revoked_at": _NULLABLE_TIME, "revoked_by": _NULLABLE_TEXT,
         "active": {"type": "boolean"}, "url": {"type": "string",
                                                "description": "Given once, at creation."}}),
    "LinkRequest": _obj([], {"recipient": {"type": "string"}}),
    "Notification": _obj(
        ["id", "kind", "title", "body", "case_id", "task_id", "created_at", "read_at"],
        {"id": {"type": "integer"}, "kind": {"type": "string"}, "title": {"type": "string"},
         "body": {"type": "string"}, "case_id": {"type": ["integer", "null"]},
         "task_id": _NULLABLE_TEXT, "created_at": _TIME, "read_at": _NULLABLE_TIME}),
    "MessageRequest": _obj(
        ["message"],
        {"message": {"type": "string", "description": "The message's name in the diagram."},
         "correlation": _obj([], {
             "case_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
             "project_code": {"type": "string"},
             "key": {"type": "string", "description": "The value of the waiting element's "
                                                      "`correlationKey` expression."}}),
         "payload": {"type": "object", "description": "Checked against the message's "
                                                      "schema (forms/message.<name>."
                                                      "schema.json)."}}),
    "MessageDelivery": _obj(
        ["message", "case_id", "element", "process_id", "case_started", "case"],
        {"message": {"type": "string"}, "case_id": {"type": "integer"},
         "element": {"type": "string", "description": "The BPMN id that caught it."},
         "process_id": {"type": "string"},
         "case_started": {"type": "boolean", "description": "A message start event began "
                                                            "a new case."},
         "case": _ref("Case")}),
    "FetchRequest": _obj(
        ["topic", "worker_id", "lock_seconds"],
        {"topic": {"type": "string"}, "worker_id": {"type": "string"},
         "lock_seconds": {"type": "integer", "minimum": 1, "maximum": 3600},
         "max_jobs": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1}}),
    "Job": _obj(
        ["id", "case_id", "process_id", "element", "topic", "state", "retries", "worker_id",
         "locked_until", "error", "created_at", "completed_at", "variables", "output_schema"],
        {"id": {"type": "string"}, "case_id": {"type": "integer"},
         "process_id": {"type": "string"}, "element": {"type": "string"},
         "topic": {"type": "string"},
         "state": {"enum": ["open", "incident", "completed", "cancelled"]},
         "retries": {"type": ["integer", "null"]}, "worker_id": _NULLABLE_TEXT,
         "locked_until": _NULLABLE_TIME, "error": _NULLABLE_TEXT, "created_at": _TIME,
         "completed_at": _NULLABLE_TIME,
         "variables": {"type": "object", "description": "The service task's data."},
         "output_schema": {"type": ["object", "null"],
                           "description": "What `variables` of a completion must satisfy."}}),
    "JobCompleteRequest": _obj(["worker_id"], {"worker_id": {"type": "string"},
                                               "variables": {"type": "object"}}),
    "JobFailureRequest": _obj(
        ["worker_id", "error", "retries"],
        {"worker_id": {"type": "string"}, "error": {"type": "string"},
         "retries": {"type": "integer", "minimum": 0, "maximum": 100,
                     "description": "Retries left; 0 makes an incident."},
         "retry_seconds": {"type": "integer", "minimum": 0, "maximum": 86400,
                           "default": 0, "description": "Back-off before the next try."}}),
    "JobRetryRequest": _obj([], {"retries": {"type": "integer", "minimum": 1, "maximum": 100,
                                             "default": 1}}),
}


SCHEMAS["ProcessVersionFiles"] = _obj(
    [*SCHEMAS["ProcessVersion"]["required"], "main_file", "files"],
    {**SCHEMAS["ProcessVersion"]["properties"], "main_file": _NULLABLE_TEXT,
     "files": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "File name -> text (BPMN/DMN XML, form JSON)."}})


def _list(key: str, item: str, *extra: str) -> dict[str, Any]:
    props: dict[str, Any] = {key: {"type": "array", "items": _ref(item)}}
    for name in extra:
        props[name] = {"type": ["integer", "string"]}
    return _obj([key, *extra], props)


_PAGE = _obj(["cases", "total", "limit", "offset", "next_offset"],
             {"cases": {"type": "array", "items": _ref("CaseSummary")},
              "total": {"type": "integer", "minimum": 0}, "limit": {"type": "integer"},
              "offset": {"type": "integer"}, "next_offset": {"type": ["integer", "null"]}})
_PROJECT_CODE = "2026-640502-34-03-000127"

# Filters added to GET /tasks (webapp/api.py task_query_filters).
TASK_FILTERS = [
    _query("case_id", "Only this case's tasks.", {"type": "integer", "minimum": 1}),
    _query("process_id", "Only tasks of this (called) process, e.g. `stage_acceleration`.",
           {"type": "string"}),
    _query("phase", "Approval phase `1`..`4`.", {"type": "string"}),
    _query("item", "Approval item code.", {"type": "string",
                                           "examples": ["construction_permit"]}),
    _query("stage", "`preparation`, `handling`, `acceleration`, `closing`, ...",
           {"type": "string"}),
    _query("due_before", "Tasks due before this moment (now: the overdue ones).",
           {"type": "string", "format": "date-time"}),
]

PATHS: dict[str, Any] = {
    "/processes": {"get": _op(
        "listProcesses", "Startable processes",
        "The processes the caller may start, each with its start form's JSON Schema.",
        _ok(_list("processes", "StartableProcess"), "The processes."), (401,))},
    "/processes/{process_id}/versions": {"get": _op(
        "listProcessVersions", "Versions of a process", "Every stored version, newest first.",
        _ok(_obj(["process_id", "versions"], {"process_id": {"type": "string"},
                                              "versions": {"type": "array",
                                                           "items": _ref("ProcessVersion")}}),
            "The versions."), _READ,
        parameters=[_path("process_id", "The process id.", "string")])},
    "/process-versions/{version_id}": {"get": _op(
        "getProcessVersion", "A version with its BPMN",
        "The version's files as stored (BPMN, DMN, forms); administrators and auditors.",
        _ok(_ref("ProcessVersionFiles"), "The version."), _READ,
        parameters=[_path("version_id", "The version's id.")])},
    "/processes/deploy": {"post": _op(
        "deployProcess", "Deploy a new version (draft)",
        "Administrators: the file is validated with the whole pack as in the editor; "
        "changed processes are stored as drafts. Problems answer 422 with "
        "`details.problems` naming file, line and element id; nothing is stored.",
        {**_ok(_obj(["created", "unchanged"], {
            "created": {"type": "array", "items": _ref("VersionNumbers")},
            "unchanged": {"type": "array", "items": _ref("VersionNumbers")}}),
            "Nothing changed (same content).", status="200"),
         **_ok(_obj(["created", "unchanged"], {
             "created": {"type": "array", "items": _ref("VersionNumbers")},
             "unchanged": {"type": "array", "items": _ref("VersionNumbers")}}),
             "Drafts stored.", {"created": [{"process_id": "stage_closing", "number": 2}],
                                "unchanged": []}, status="201")},
        (*_WRITE, 422), body="DeployRequest",
        example={"file_name": "stage_closing.bpmn", "content": "<bpmn:definitions …>",
                 "comment": "handover by post"})},
    "/process-versions/{version_id}/publish": {"post": _op(
        "publishProcessVersion", "Publish a version",
        "Administrators: new cases use it; running cases keep their version.",
        _ok(_obj(["published"], {"published": {"type": "array",
                                               "items": _ref("VersionNumbers")}}),
            "What was published."), _WRITE,
        parameters=[_path("version_id", "The version's id.")])},
    "/cases": {"get": _op(
        "searchCases", "Search cases",
        "Newest first, paged with the total. Agents and leaders see their department's "
        "cases only.",
        _ok(_PAGE, "A page of cases."), (400, 401, 403), parameters=[
            _query("status", "Case status.", {"enum": ["running", "completed",
                                                       "terminated"]}),
            _query("process_id", "Process id.", {"type": "string"}),
            _query("project_code", "Exact project code.", {"type": "string",
                                                           "examples": [_PROJECT_CODE]}),
            _query("department", "A department holding or having held a task.",
                   {"type": "string"}),
            _query("overdue", "`true`: cases with a ready task past its due time.",
                   {"enum": ["true", "false"], "default": "false"}),
            _query("started_from", "Started on or after (date).",
                   {"type": "string", "format": "date"}),
            _query("started_before", "Started before (date).",
                   {"type": "string", "format": "date"}),
            _query("q", "Text in the case title.", {"type": "string"}), *_PAGING])},
    "/cases/{case_id}/terminate": {"post": _op(
        "terminateCase", "Terminate a case",
        "The office and administrators stop a running case with a reason; its tasks, "
        "timers, message waits and jobs are withdrawn.",
        _ok(_ref("Case"), "The case after it."), _WRITE, parameters=[_CASE_ID],
        body="TerminateRequest", example={"reason": "项目单位申请终止"})},
    "/cases/{case_id}/timers": {"get": _op(
        "listCaseTimers", "A case's timers and message waits",
        "Timers with their due time and what they are; the messages the case waits for.",
        _ok(_obj(["case_id", "timers", "messages"], {
            "case_id": {"type": "integer"},
            "timers": {"type": "array", "items": _ref("Timer")},
            "messages": {"type": "array", "items": _ref("MessageWait")}}), "The waits."),
        _READ, parameters=[_CASE_ID])},
    "/tasks/{task_id}/draft": {
        "put": _op("saveDraft", "Save a draft",
                   "Keep half-filled form data on a ready task of the caller's department.",
                   _ok(_ref("Task"), "The task."), _WRITE, parameters=[_TASK_ID],
                   body="DraftRequest", example={"data": {"progress_note": "材料审查中"}}),
        "get": _op("readDraft", "Read a draft", "The draft saved on a task (or null).",
                   _ok(_ref("Draft"), "The draft."), _READ, parameters=[_TASK_ID])},
    "/cases/{case_id}/documents": {
        "get": _op("listDocuments", "A case's documents",
                   "Issued documents, and the kinds its data allows generating now.",
                   _ok(_obj(["case_id", "documents", "available"], {
                       "case_id": {"type": "integer"},
                       "documents": {"type": "array", "items": _ref("Document")},
                       "available": {"type": "array", "items": _obj(
                           ["kind", "source", "label"],
                           {"kind": {"type": "string"}, "source": {"type": "string"},
                            "label": {"type": "string"}})}}), "The documents."),
                   _READ, parameters=[_CASE_ID]),
        "post": _op("generateDocument", "Generate a document",
                    "Agents, leaders and the office produce one of the available documents.",
                    _ok(_ref("Document"), "The stored document.", status="201"), _WRITE,
                    parameters=[_CASE_ID], body="GenerateRequest",
                    example={"kind": "notice", "source": ""})},
    "/documents/{document_id}": {"get": _op(
        "downloadDocument", "Download a document", "The document's PDF.",
        _binary("application/pdf", "The PDF."), _READ,
        parameters=[_path("document_id", "The document's id.")])},
    "/cases/{case_id}/attachments": {"get": _op(
        "listAttachments", "A case's attachments", "Files uploaded for the case.",
        _ok(_obj(["case_id", "attachments"], {"case_id": {"type": "integer"},
                                              "attachments": {"type": "array",
                                                              "items": _ref("Attachment")}}),
            "The attachments."), _READ, parameters=[_CASE_ID])},
    "/tasks/{task_id}/attachments": {"post": _op(
        "uploadAttachment", "Upload an attachment",
        "Attach a file (base64) to a ready task the caller may work on; recorded in the "
        "case's audit chain with its SHA-256.",
        _ok(_ref("Attachment"), "The attachment.", status="201"), (*_WRITE, 422),
        parameters=[_TASK_ID], body="UploadRequest",
        example={"filename": "申请表.pdf", "content_base64": "JVBERi0xLjQK",
                 "material": "application_form"})},
    "/attachments/{attachment_id}": {"get": _op(
        "downloadAttachment", "Download an attachment", "The file as uploaded.",
        _binary("application/octet-stream", "The file."), _READ,
        parameters=[_path("attachment_id", "The attachment's id.")])},
    "/cases/{case_id}/enterprise-links": {"post": _op(
        "createEnterpriseLink", "Create an enterprise link",
        "A progress link for the project unit; `url` (with its token) is given once.",
        _ok(_ref("EnterpriseLink"), "The link.", status="201"), _WRITE,
        parameters=[_CASE_ID], body="LinkRequest", body_required=False,
        example={"recipient": "张伟"})},
    "/enterprise-links/{link_id}/revoke": {"post": _op(
        "revokeEnterpriseLink", "Revoke an enterprise link", "The link stops working.",
        _ok(_ref("EnterpriseLink"), "The link."), _WRITE,
        parameters=[_path("link_id", "The link's id.")])},
    "/notifications": {"get": _op(
        "listNotifications", "The caller's notifications", "Newest first.",
        _ok(_list("notifications", "Notification"), "The notifications."), (400, 401),
        parameters=[_query("unread", "`true`: unread only.",
                           {"enum": ["true", "false"], "default": "false"})])},
    "/messages": {"post": _op(
        "correlateMessage", "Send a BPMN message to a case",
        "Delivers the message to the one element waiting for it (message catch event, "
        "boundary message event, receive task), found by case id, project code and/or "
        "the element's correlation key; with no correlation and no waiting case, a "
        "process whose start event catches it starts a case. Only the waits the caller "
        "may deliver to are looked at: those whose element names the caller's department "
        "(`departmentExpression` or its lane), or every wait of the message for an account "
        "granted it (`zerorun grant-message`); the office and administrators also deliver "
        "to elements that name no sender. 404 when nobody waits for it from the caller, "
        "409 when more than one case (or element) would; one hash-chained "
        "`message_received` event per delivery.",
        _ok(_ref("MessageDelivery"), "Delivered."), (*_WRITE, 422), body="MessageRequest",
        example={"message": "item_approval_result",
                 "correlation": {"project_code": _PROJECT_CODE, "key": "construction_permit"},
                 "payload": {"approved": True, "certificate_no": "640502202603200001",
                             "approved_date": "2026-03-20"}})},
    "/external-tasks/fetch-and-lock": {"post": _op(
        "fetchAndLock", "Fetch and lock external jobs",
        "The office's and administrators' worker accounts lock open jobs of a topic; two "
        "workers never get the same job. A lock that expires frees the job again.",
        _ok(_list("jobs", "Job"), "The locked jobs (maybe none)."), _WRITE,
        body="FetchRequest", example={"topic": "licence_archive", "worker_id": "licence-1",
                                      "lock_seconds": 60, "max_jobs": 5})},
    "/external-tasks/{job_id}/complete": {"post": _op(
        "completeJob", "Complete an external job",
        "The output (`variables`) is checked against the task's output schema; the case "
        "then runs to its next wait.",
        _ok(_ref("Case"), "The case after it."), (*_WRITE, 422), parameters=[_JOB_ID],
        body="JobCompleteRequest",
        example={"worker_id": "licence-1", "variables": {"licence_id": "DZZZ-2026-0001"}})},
    "/external-tasks/{job_id}/failure": {"post": _op(
        "failJob", "Report a failed external job",
        "With retries left the job comes back after `retry_seconds`; at 0 it becomes an "
        "incident the administrators see and retry.",
        _ok(_ref("Job"), "The job."), _WRITE, parameters=[_JOB_ID],
        body="JobFailureRequest",
        example={"worker_id": "licence-1", "error": "licence library unreachable",
                 "retries": 2, "retry_seconds": 60})},
    "/external-tasks/{job_id}/retry": {"post": _op(
        "retryJob", "Retry an incident", "Administrators give a job new retries.",
        _ok(_ref("Job"), "The job."), _WRITE, parameters=[_JOB_ID], body="JobRetryRequest",
        body_required=False, example={"retries": 3})},
    "/external-tasks": {"get": _op(
        "listJobs", "External jobs", "Jobs by state (default `open`); the office, "
        "administrators and auditors.",
        _ok(_list("jobs", "Job"), "The jobs."), (400, 401, 403),
        parameters=[_query("state", "Job state.", {"enum": ["open", "incident",
                                                            "completed", "cancelled"],
                                                   "default": "open"})])},
}
