"""The JSON API for systems that talk to running cases: BPMN messages and external workers.

Routes live on the API's blueprint (webapp/api.py), with its authentication, errors and
representations; the OpenAPI document describes them (webapp/openapi_lifecycle.py).
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request

from engine.cases import Delivery, JobView
from engine.cases.interactions import MAX_ID
from engine.errors import FieldError, Forbidden
from webapp import get_engine
from webapp.api import (
    ApiError,
    _check_members,
    _json_body,
    _time,
    authenticated,
    bp,
    case_json,
    writer,
)

JOB_STATES = ("open", "incident", "completed", "cancelled")


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """Where a message went, and the case after it."""
    return {"message": delivery.message, "case_id": delivery.case_id,
            "element": delivery.element, "process_id": delivery.process_id,
            "case_started": delivery.case_started,
            "case": case_json(get_engine(), delivery.case)}


def job_json(job: JobView) -> dict[str, Any]:
    """An external job as workers see it."""
    return {"id": job.id, "case_id": job.case_id, "process_id": job.process_id,
            "element": job.element, "topic": job.topic, "state": job.state,
            "retries": job.retries, "worker_id": job.worker_id,
            "locked_until": _time(job.locked_until), "error": job.error,
            "created_at": _time(job.created_at), "completed_at": _time(job.completed_at),
            "variables": job.data, "output_schema": job.output_schema}


def _positive(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ApiError(400, "bad_request", f"{name} is not valid",
                       [FieldError(name, f"must be an integer from {low} to {high}")])
    return value


@bp.post("/messages")
@authenticated
@writer
def correlate_message() -> Response:
    """Deliver a BPMN message to the one case element waiting for it (or start a case)."""
    body = _json_body(required=True)
    _check_members(body, {"message": (str, True), "correlation": (dict, False),
                          "payload": (dict, False)})
    correlation = body.get("correlation") or {}
    problems = [FieldError(f"correlation.{k}", "unknown member; expected case_id, "
                           "project_code, key")
                for k in correlation if k not in ("case_id", "project_code", "key")]
    case_id = correlation.get("case_id")
    if case_id is not None and (not isinstance(case_id, int) or isinstance(case_id, bool)
                                or not 1 <= case_id <= MAX_ID):
        problems.append(FieldError("correlation.case_id",
                                   f"must be an integer from 1 to {MAX_ID}"))
    for name in ("project_code", "key"):
        if correlation.get(name) is not None and not isinstance(correlation[name], str):
            problems.append(FieldError(f"correlation.{name}", "must be a string"))
    if problems:
        raise ApiError(400, "bad_request", "the correlation is not valid", problems)
    delivery = get_engine().correlate_message(body["message"], correlation,
                                              body.get("payload") or {}, g.api_user.actor)
    return jsonify(delivery_json(delivery))


@bp.post("/external-tasks/fetch-and-lock")
@authenticated
@writer
def fetch_and_lock() -> Response:
    """Lock open jobs of a topic for a worker, with the data of their tasks."""
    body = _json_body(required=True)
    _check_members(body, {"topic": (str, True), "worker_id": (str, True),
                          "lock_seconds": (int, True), "max_jobs": (int, False)})
    lock = _positive(body, "lock_seconds", 60, 1, 3600)
    most = _positive(body, "max_jobs", 1, 1, 50)
    jobs = get_engine().fetch_and_lock(body["topic"], body["worker_id"], lock,
                                       g.api_user.actor, max_jobs=most)
    return jsonify({"jobs": [job_json(j) for j in jobs]})


@bp.post("/external-tasks/<job_id>/complete")
@authenticated
@writer
def complete_job(job_id: str) -> Response:
    """A worker finished its locked job; answers with the case after it."""
    body = _json_body(required=True)
    _check_members(body, {"worker_id": (str, True), "variables": (dict, False)})
    engine = get_engine()
    case = engine.complete_job(job_id, body["worker_id"], body.get("variables") or {},
                               g.api_user.actor)
    return jsonify(case_json(engine, case))


@bp.post("/external-tasks/<job_id>/failure")
@authenticated
@writer
def fail_job(job_id: str) -> Response:
    """A worker could not do its locked job: retry later, or an incident at no retries."""
    body = _json_body(required=True)
    _check_members(body, {"worker_id": (str, True), "error": (str, True),
                          "retries": (int, True), "retry_seconds": (int, False)})
    retries = _positive(body, "retries", 0, 0, 100)
    delay = _positive(body, "retry_seconds", 0, 0, 86400)
    job = get_engine().fail_job(job_id, body["worker_id"], body["error"], retries, delay,
                                g.api_user.actor)
    return jsonify(job_json(job))


@bp.post("/external-tasks/<job_id>/retry")
@authenticated
@writer
def retry_job(job_id: str) -> Response:
    """An administrator gives an incident new retries."""
    body = _json_body(required=False)
    _check_members(body, {"retries": (int, False)})
    retries = _positive(body, "retries", 1, 1, 100)
    return jsonify(job_json(get_engine().retry_job(job_id, retries, g.api_user.actor)))


@bp.get("/external-tasks")
@authenticated
def list_jobs() -> Response:
    """External jobs by state (incidents for administrators to look at)."""
    user = g.api_user
    if user.role not in ("office", "admin", "auditor"):
        raise Forbidden("external jobs are for the office, administrators and auditors")
    state = request.args.get("state", "open")
    if state not in JOB_STATES:
        raise ApiError(400, "bad_request", "query parameter state is not valid",
                       [FieldError("state", "must be one of " + ", ".join(JOB_STATES))])
    return jsonify({"jobs": [job_json(j) for j in get_engine().list_jobs(states=(state,))]})
