"""The JSON API for a case's whole lifecycle: processes and versions, case search,
termination, timers, drafts, documents, attachments, enterprise links and notifications.

Routes live on the API's blueprint (webapp/api.py), with the same permission rules as the
pages; the OpenAPI document describes them (webapp/openapi_lifecycle.py).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote

from flask import Response, g, jsonify, request, url_for

from agency import documents, notify
from agency.enterprise import EnterpriseLinks, LinkView
from engine.cases import CaseQuery
from engine.cases.search import CASE_STATUSES
from engine.errors import FieldError, Forbidden, InvalidProcess
from engine.pack.library import Library
from engine.runtime.clock import SERVICE_TZ
from engine.store.files import AttachmentView
from webapp import get_engine
from webapp.api import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ApiError,
    _check_members,
    _int_arg,
    _json_body,
    _readable_case,
    _time,
    authenticated,
    bp,
    case_json,
    task_json,
    writer,
)

READERS = ("agent", "leader", "office", "admin", "auditor")


def _page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"total": total, "limit": limit, "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None, **{
                "items": items}}


def _date_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return datetime.combine(date.fromisoformat(raw), time(0, tzinfo=SERVICE_TZ)
                                ).astimezone(UTC)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"query parameter {name} is not valid",
                       [FieldError(name, "must be a date YYYY-MM-DD")]) from exc


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise ApiError(400, "bad_request", f"query parameter {name} is not valid",
                       [FieldError(name, "must be true or false")])
    return raw == "true"


def _admin() -> None:
    if g.api_user.role != "admin":
        raise Forbidden("only administrators manage process definitions")


# Processes -------------------------------------------------------------------------


def version_json(info: Any) -> dict[str, Any]:
    """A stored process version (without its files)."""
    return {"id": info.id, "process_id": info.process_id, "name": info.name,
            "number": info.number, "status": info.status, "content_hash": info.content_hash,
            "author": info.author, "comment": info.comment,
            "created_at": _time(info.created_at), "published_at": _time(info.published_at)}


@bp.get("/processes")
@authenticated
def list_processes() -> Response:
    """The processes the caller may start, each with its start form's JSON Schema."""
    engine = get_engine()
    found = []
    for process_id, name in engine.startable_processes(g.api_user.actor):
        form = engine.start_form(process_id)
        found.append({"process_id": process_id, "name": name,
                      "start_form_schema": form.schema if form else None,
                      "start_ui_schema": form.ui_schema if form else None})
    return jsonify({"processes": found})


@bp.get("/processes/<process_id>/versions")
@authenticated
def list_versions(process_id: str) -> Response:
    """Every stored version of a process, newest first."""
    entry = Library(get_engine()).process(process_id)
    return jsonify({"process_id": process_id,
                    "versions": [version_json(v) for v in entry.versions]})


@bp.get("/process-versions/<int:version_id>")
@authenticated
def get_version(version_id: int) -> Response:
    """A version with its files (BPMN, DMN and forms) as stored; for administrators and
    auditors, as on the admin pages."""
    if g.api_user.role not in ("admin", "auditor"):
        raise Forbidden("process files are for administrators and auditors")
    files = Library(get_engine()).version(version_id)
    return jsonify({**version_json(files.info), "main_file": files.main_file,
                    "files": files.sources})


@bp.post("/processes/deploy")
@authenticated
@writer
def deploy() -> tuple[Response, int]:
    """Validate a BPMN or DMN file (and forms) against the whole pack and store drafts."""
    _admin()
    body = _json_body(required=True)
    _check_members(body, {"file_name": (str, True), "content": (str, True),
                          "forms": (dict, False), "comment": (str, False)})
    forms = body.get("forms") or {}
    if not all(isinstance(v, str) for v in forms.values()):
        raise ApiError(400, "bad_request", "forms must map file names to text",
                       [FieldError("forms", "every value must be a string")])
    try:
        result = Library(get_engine()).save(
            body["file_name"], body["content"].encode("utf-8"), g.api_user.actor,
            body.get("comment") or "deployed through the API",
            {name: text.encode("utf-8") for name, text in forms.items()})
    except InvalidProcess as exc:
        problems = [{"message": p.message, "file": p.file, "line": p.line,
                     "element": p.element, "element_name": p.element_name}
                    for p in exc.problems]
        response = jsonify({"error": {
            "code": "invalid_process", "message": f"nothing was stored: {len(problems)} "
            "problem(s) in the process definition", "fields": [],
            "details": {"problems": problems}}})
        return response, 422
    return jsonify({
        "created": [{"process_id": p, "number": n} for p, n in result.created],
        "unchanged": [{"process_id": p, "number": n} for p, n in result.unchanged]}), \
        201 if result.created else 200


@bp.post("/process-versions/<int:version_id>/publish")
@authenticated
@writer
def publish(version_id: int) -> Response:
    """Make a version the one new cases use (running cases keep theirs)."""
    _admin()
    done = Library(get_engine()).publish(version_id, g.api_user.actor)
    return jsonify({"published": [{"process_id": p, "number": n} for p, n in done]})


# Cases -------------------------------------------------------------------------------


@bp.get("/cases")
@authenticated
def search_cases() -> Response:
    """Cases matching the filters, newest first, paged with the total."""
    user = g.api_user
    status = request.args.get("status")
    if status is not None and status not in CASE_STATUSES:
        raise ApiError(400, "bad_request", "query parameter status is not valid",
                       [FieldError("status", "must be one of " + ", ".join(CASE_STATUSES))])
    department = request.args.get("department") or None
    if user.role in ("agent", "leader"):
        if department not in (None, user.department):
            raise Forbidden("agents and leaders see the cases of their own department")
        department = user.department
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, None)
    query = CaseQuery(statuses=(status,) if status else CASE_STATUSES,
                      process_id=request.args.get("process_id") or None,
                      project_code=request.args.get("project_code") or None,
                      department=department, overdue=_bool_arg("overdue"),
                      started_from=_date_arg("started_from"),
                      started_before=_date_arg("started_before"),
                      text=(request.args.get("q") or "").strip()[:200] or None)
    cases, total = get_engine().search_cases(query, limit=limit, offset=offset)
    page = _page([_case_summary(c) for c in cases], total, limit, offset)
    page["cases"] = page.pop("items")
    return jsonify(page)


def _case_summary(case: Any) -> dict[str, Any]:
    return {"id": case.id, "process_id": case.process_id, "title": case.title,
            "project_code": case.project_code, "status": case.status,
            "started_at": _time(case.started_at), "updated_at": _time(case.updated_at),
            "ended_at": _time(case.ended_at), "end_reason": case.end_reason}


@bp.post("/cases/<int:case_id>/terminate")
@authenticated
@writer
def terminate_case(case_id: int) -> Response:
    """Stop a running case with a reason (the office and administrators)."""
    body = _json_body(required=True)
    _check_members(body, {"reason": (str, True)})
    if not body["reason"].strip():
        raise ApiError(400, "bad_request", "a reason is required",
                       [FieldError("reason", "must not be empty")])
    engine = get_engine()
    _readable_case(engine, case_id)
    case = engine.terminate_case(case_id, body["reason"][:1000], g.api_user.actor)
    return jsonify(case_json(engine, case))


@bp.get("/cases/<int:case_id>/timers")
@authenticated
def case_timers(case_id: int) -> Response:
    """The timers waiting in a case and the messages it waits for."""
    engine = get_engine()
    _readable_case(engine, case_id)
    return jsonify({"case_id": case_id, "timers": [
        {"task_id": t.task_id, "element": t.element, "name": t.name, "kind": t.kind,
         "attached_to": t.attached_to, "cancels": t.cancels, "due_at": _time(t.due_at)}
        for t in engine.case_timers(case_id)], "messages": [
        {"task_id": w.task_id, "message": w.message, "element": w.element,
         "process_id": w.process_id, "correlation_key": w.correlation_key}
        for w in engine.message_waits(case_id)]})


# Drafts ------------------------------------------------------------------------------


@bp.put("/tasks/<task_id>/draft")
@authenticated
@writer
def save_draft(task_id: str) -> Response:
    """Keep half-filled form data on a ready task without completing it."""
    body = _json_body(required=True)
    _check_members(body, {"data": (dict, True)})
    return jsonify(task_json(get_engine().save_draft(task_id, body["data"], g.api_user.actor)))


@bp.get("/tasks/<task_id>/draft")
@authenticated
def read_draft(task_id: str) -> Response:
    """The draft saved on a task (null when none)."""
    detail = get_engine().get_task(task_id, g.api_user.actor)
    return jsonify({"task_id": task_id, "version": detail.task.version, "draft": detail.draft})


# Documents and attachments -----------------------------------------------------------


def _document_json(doc: documents.DocumentView) -> dict[str, Any]:
    return {"id": doc.id, "case_id": doc.case_id, "kind": doc.kind, "source": doc.source,
            "title": doc.title, "department": doc.department, "sha256": doc.sha256,
            "created_by": doc.created_by, "created_at": _time(doc.created_at),
            "size": doc.size, "download": url_for("api.download_document",
                                                  document_id=doc.id)}


@bp.get("/cases/<int:case_id>/documents")
@authenticated
def list_documents(case_id: int) -> Response:
    """The documents issued for a case, and those its data allows generating now."""
    engine = get_engine()
    _readable_case(engine, case_id)
    docs = documents.list_documents(engine, case_id, g.api_user.actor)
    return jsonify({"case_id": case_id, "documents": [_document_json(d) for d in docs],
                    "available": [{"kind": c.kind, "source": c.source, "label": c.label}
                                  for c in documents.choices(engine, case_id)]})


@bp.post("/cases/<int:case_id>/documents")
@authenticated
@writer
def generate_document(case_id: int) -> tuple[Response, int]:
    """Generate one of the available documents (kind and source from the list)."""
    body = _json_body(required=True)
    _check_members(body, {"kind": (str, True), "source": (str, True)})
    engine = get_engine()
    _readable_case(engine, case_id)
    doc = documents.generate(engine, case_id, body["kind"], body["source"], g.api_user.actor)
    return jsonify(_document_json(doc)), 201


@bp.get("/documents/<int:document_id>")
@authenticated
def download_document(document_id: int) -> Response:
    """A document's PDF."""
    view, _html, pdf = documents.get_document(get_engine(), document_id, g.api_user.actor)
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="document-{view.id}.pdf"'})


def _attachment_json(a: AttachmentView) -> dict[str, Any]:
    return {"id": a.id, "case_id": a.case_id, "task_id": a.task_id, "material": a.material,
            "filename": a.filename, "content_type": a.content_type, "size": a.size,
            "sha256": a.sha256, "uploaded_by": a.uploaded_by,
            "uploaded_at": _time(a.uploaded_at),
            "download": url_for("api.download_attachment", attachment_id=a.id)}


@bp.get("/cases/<int:case_id>/attachments")
@authenticated
def list_attachments(case_id: int) -> Response:
    """The files uploaded for a case."""
    engine = get_engine()
    _readable_case(engine, case_id)
    return jsonify({"case_id": case_id, "attachments": [
        _attachment_json(a) for a in engine.list_attachments(case_id=case_id)]})


@bp.post("/tasks/<task_id>/attachments")
@authenticated
@writer
def upload_attachment(task_id: str) -> tuple[Response, int]:
    """Attach a file (base64 in JSON) to a ready task the caller may work on."""
    body = _json_body(required=True)
    _check_members(body, {"filename": (str, True), "content_base64": (str, True),
                          "material": (str, False)})
    try:
        content = base64.b64decode(body["content_base64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_request", "content_base64 is not valid base64",
                       [FieldError("content_base64", "must be base64")]) from exc
    view = get_engine().add_attachment(task_id, body["filename"], content, g.api_user.actor,
                                       body.get("material"))
    return jsonify(_attachment_json(view)), 201


@bp.get("/attachments/<int:attachment_id>")
@authenticated
def download_attachment(attachment_id: int) -> Response:
    """An attachment's content."""
    view, path = get_engine().get_attachment(attachment_id, g.api_user.actor)
    quoted = quote(view.filename)
    return Response(path.read_bytes(), mimetype=view.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}"})


# Enterprise links and notifications --------------------------------------------------


def _link_json(link: LinkView) -> dict[str, Any]:
    return {"id": link.id, "case_id": link.case_id, "recipient": link.recipient,
            "created_by": link.created_by, "created_at": _time(link.created_at),
            "revoked_at": _time(link.revoked_at), "revoked_by": link.revoked_by,
            "active": link.active}


@bp.post("/cases/<int:case_id>/enterprise-links")
@authenticated
@writer
def create_link(case_id: int) -> tuple[Response, int]:
    """A progress link for the project unit; its URL (with the token) is shown once."""
    body = _json_body(required=False)
    _check_members(body, {"recipient": (str, False)})
    engine = get_engine()
    _readable_case(engine, case_id)
    token, link = EnterpriseLinks(engine).create(case_id, g.api_user.actor,
                                                 body.get("recipient", ""))
    return jsonify({**_link_json(link), "url": url_for("enterprise.progress", token=token,
                                                       _external=True)}), 201


@bp.post("/enterprise-links/<int:link_id>/revoke")
@authenticated
@writer
def revoke_link(link_id: int) -> Response:
    """Stop a progress link from working."""
    return jsonify(_link_json(EnterpriseLinks(get_engine()).revoke(link_id, g.api_user.actor)))


@bp.get("/notifications")
@authenticated
def list_notifications() -> Response:
    """The caller's notifications, newest first."""
    unread = _bool_arg("unread")
    rows = notify.list_notifications(get_engine(), g.api_user.username, unread_only=unread)
    return jsonify({"notifications": [
        {"id": n.id, "kind": n.kind, "title": n.title, "body": n.body, "case_id": n.case_id,
         "task_id": n.task_id, "created_at": _time(n.created_at), "read_at": _time(n.read_at)}
        for n in rows]})
