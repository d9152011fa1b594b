"""The JSON API under /api/v1 for other government systems.

Callers authenticate with a per-user API token (`Authorization: Bearer <token>`,
issued by `zerorun issue-token`); session cookies are ignored here, so the API
needs no CSRF token. Every call acts as the token's user with the same
permission checks as the web pages. Errors are always JSON:
`{"error": {"code", "message", "fields": [{"field", "message"}], "details"?}}`.
The OpenAPI document (webapp/openapi.py) describes every route.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, g, jsonify, request, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from engine import accounts
from engine.accounts import MAX_BAD_TOKENS, UserView
from engine.cases import CaseView, Engine, TaskDetail, TaskView
from engine.config import Config
from engine.errors import EngineError, FieldError, Forbidden, InvalidData
from webapp import csrf, get_engine
from webapp.openapi import document

PREFIX = "/api/v1"
REALM = "zerorun"
TASK_STATES = ("ready", "completed", "cancelled")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
BAD_TOKEN_WINDOW = 60.0  # seconds
MAX_OFFSET = 2**31 - 1  # what a database can skip; larger offsets are a client's mistake
# Roles whose users see every task and case, whatever their department.

bp = Blueprint("api", __name__, url_prefix=PREFIX)
csrf.exempt(bp)


def init_app(app: Flask) -> None:
    """Register the API and make every error under /api/v1 a JSON error, routing ones too.

    Errors raised by the API's views go to the blueprint's handlers. An unknown path or
    a wrong method matches no view, so those two are handled app-wide by status code
    (which Flask prefers to any handler of HTTPException, whatever the order in which
    they are registered); outside /api/v1 they go on to the app's own handling.
    """
    app.register_blueprint(bp)
    for status in (404, 405):
        app.register_error_handler(status, _routing_error)
    app.session_interface = ApiWithoutSessions()


class ApiWithoutSessions(SecureCookieSessionInterface):
    """The browser's cookie session, except under /api/v1: an API call acts only as its
    bearer token's user, so a session cookie sent along is not even read (no signature
    checked, no user loaded from it, no cookie set in the answer)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


# Errors ----------------------------------------------------------------------------


class ApiError(Exception):
    """An error of the request itself (body, parameters, credentials)."""

    def __init__(self, status: int, code: str, message: str,
                 fields: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers or {}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_response(status: int, code: str, message: str,
                   fields: list[FieldError] | None = None,
                   details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The one shape of every API error."""
    body: dict[str, Any] = {"code": code, "message": message,
                            "fields": [{"field": f.field, "message": f.message}
                                       for f in fields or []]}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    response.headers.update(headers or {})
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.fields, headers=exc.headers)


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError) -> Response:
    fields = exc.errors if isinstance(exc, InvalidData) else []
    details = {k: v for k, v in exc.details.items() if k != "errors"}
    return error_response(exc.status, _snake(type(exc).__name__), exc.message, fields, details)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return error_response(exc.code or 500, _snake(type(exc).__name__),
                          exc.description or exc.name, headers=_allow_header(exc))


def _routing_error(exc: HTTPException) -> Any:
    """Unknown paths and wrong methods under /api/v1 answer in JSON; elsewhere unchanged."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        return _http_error(exc)
    pages_handler = current_app.error_handler_spec[None][None].get(HTTPException)
    return pages_handler(exc) if pages_handler is not None else exc


def _allow_header(exc: HTTPException) -> dict[str, str]:
    valid = getattr(exc, "valid_methods", None)
    return {"Allow": ", ".join(sorted(valid))} if valid else {}


# Authentication --------------------------------------------------------------------


def _unauthorized(message: str, invalid: bool) -> ApiError:
    challenge = f'Bearer realm="{REALM}"'
    if invalid:
        challenge += f', error="invalid_token", error_description="{message}"'
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _token_user() -> UserView:
    header = request.headers.get("Authorization", "")
    if not header:
        raise _unauthorized("an API token is required: send 'Authorization: Bearer <token>' "
                            "(get one with: zerorun issue-token <username>)", invalid=False)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'", invalid=True)
    engine = get_engine()
    throttle = engine.extensions.get("api_bad_tokens")
    if throttle is None:
        throttle = engine.extensions["api_bad_tokens"] = BadTokens()
    address = request.remote_addr or ""
    wait = throttle.wait(address)
    if wait:
        raise ApiError(429, "too_many_requests", "too many requests with a bad API token from "
                       "your address; try again in a minute",
                       headers={"Retry-After": str(wait)})
    tokens = engine.extensions.get("api_tokens")
    if tokens is None:
        tokens = engine.extensions["api_tokens"] = accounts.TokenCache(
            engine.config.token_cache_seconds, epoch_file=epoch_file(engine.config))
    user = tokens.user(engine.db.reading, token.strip())
    if user is None:
        throttle.failed(address)
        raise _unauthorized("the API token is unknown, revoked or its user is deactivated",
                            invalid=True)
    return user


def epoch_file(config: Config) -> Path:
    """The file every process of this installation replaces after an account change."""
    return config.instance_dir / "accounts.epoch"


class BadTokens:
    """Requests with an unknown token per client address, in this process: past
    `limit` within `window` seconds, the address waits until the window ends (a guessed
    token is not even looked up), whatever token it sends."""

    def __init__(self, limit: int = MAX_BAD_TOKENS, window: float = BAD_TOKEN_WINDOW,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.monotonic = limit, window, monotonic
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def wait(self, address: str) -> int:
        """Seconds the address must wait (0: it may try)."""
        found = self._seen.get(address)
        if found is None:
            return 0
        left = found[0] + self.window - self.monotonic()
        if left <= 0 or found[1] < self.limit:
            return 0
        return max(1, math.ceil(left))

    def failed(self, address: str) -> None:
        """One more unknown token from the address."""
        now = self.monotonic()
        with self._lock:
            if len(self._seen) > 10000:
                self._seen.clear()  # bounded memory, whatever the addresses
            start, count = self._seen.get(address, (now, 0))
            if start + self.window <= now:
                start, count = now, 0
            self._seen[address] = (start, count + 1)


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let only callers with a valid API token through; their account is `g.api_user`."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.api_user = _token_user()
        return view(*args, **kwargs)

    return wrapped


def writer(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse every change to auditors, whatever the target (they read and replay only)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.api_user.role == "auditor":
            raise Forbidden("auditors read cases and tasks but change nothing")
        return view(*args, **kwargs)

    return wrapped


# Reading requests ------------------------------------------------------------------


def _json_body(*, required: bool) -> dict[str, Any]:
    """The request's JSON object; an empty body is `{}` when the body is optional."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "bad_request", "a JSON object is required as the request body")
        return {}
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON with 'Content-Type: application/json'")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    return body


def _check_members(body: dict[str, Any], allowed: dict[str, tuple[type, bool]]) -> None:
    """Check the envelope of a body: known members, their JSON types, the required ones."""
    problems: list[FieldError] = []
    for name in body:
        if name not in allowed:
            problems.append(FieldError(name, "unknown member; expected "
                                       + ", ".join(sorted(allowed))))
    for name, (kind, required) in allowed.items():
        if name not in body:
            if required:
                problems.append(FieldError(name, "this member is required"))
            continue
        value = body[name]
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            problems.append(FieldError(name, f"must be {_JSON_TYPES[kind]}"))
    if problems:
        raise ApiError(400, "bad_request", "the request body is not what this call takes",
                       problems)


_JSON_TYPES = {int: "an integer", str: "a string", dict: "a JSON object"}


def _version_from(body: dict[str, Any]) -> int | None:
    _check_members(body, {"version": (int, False)})
    version: int | None = body.get("version")
    return version


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    # No bound given: what a database column holds (ids, offsets), never an overflow.
    high = MAX_OFFSET if high is None else high
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ApiError(400, "bad_request", f"query parameter {name} is not valid",
                       [FieldError(name, f"must be an integer {bound}")])
    return value


# Representations -------------------------------------------------------------------


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def task_json(task: TaskView) -> dict[str, Any]:
    """A task as the API shows it."""
    return {
        "id": task.id, "case_id": task.case_id, "case_title": task.case_title,
        "process_id": task.process_id, "spec_name": task.spec_name, "title": task.title,
        "department": task.department, "assignee": task.assignee, "state": task.state,
        "version": task.version, "form": task.form, "item_code": task.item_code,
        "item_name": task.item_name, "phase": task.phase, "stage": task.stage,
        "due_at": _time(task.due_at), "created_at": _time(task.created_at),
        "completed_at": _time(task.completed_at), "completed_by": task.completed_by,
    }


def task_detail_json(detail: TaskDetail) -> dict[str, Any]:
    """A task with what its form needs."""
    return {**task_json(detail.task), "form_schema": detail.form_schema,
            "ui_schema": detail.ui_schema, "instructions": detail.instructions,
            "data": detail.data, "draft": detail.draft}


def case_json(engine: Engine, case: CaseView) -> dict[str, Any]:
    """A case with its open tasks and who holds them (as the command that returned the
    case left them, else read: the first page, GET /cases/{id}/tasks pages on)."""
    open_tasks = (case.open_tasks[:MAX_LIMIT] if case.open_tasks is not None
                  else engine.list_tasks(case_id=case.id, limit=MAX_LIMIT))
    departments = (case.departments if case.departments is not None
                   else engine.case_departments(case.id))
    return {
        "id": case.id, "process_id": case.process_id,
        "process_version_id": case.process_version_id, "title": case.title,
        "project_code": case.project_code, "status": case.status,
        "state_version": case.state_version, "data": case.data,
        "started_by": case.started_by, "started_at": _time(case.started_at),
        "updated_at": _time(case.updated_at), "ended_at": _time(case.ended_at),
        "end_reason": case.end_reason,
        "departments": sorted(departments),
        "open_tasks": [task_json(t) for t in open_tasks],
        "open_tasks_total": (len(open_tasks) if len(open_tasks) < MAX_LIMIT
                             else engine.count_tasks(case_id=case.id)),
    }


# Permissions -----------------------------------------------------------------------


def _readable_case(engine: Engine, case_id: int) -> CaseView:
    """The case, if the caller may read it (the same rule as the case page)."""
    return engine.check_case_visible(case_id, g.api_user.actor)


# Routes ----------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this API (no token needed)."""
    return jsonify(document())


@bp.get("/tasks")
@authenticated
def list_tasks() -> Response:
    """The caller's department's tasks (every task for admins and auditors), paged.

    Ready tasks claimed by a colleague are left out, as in the inbox: a department
    member sees the ready tasks nobody claimed and the ones they claimed themselves.
    """
    engine = get_engine()
    user: UserView = g.api_user
    state = request.args.get("state", "ready")
    if state not in TASK_STATES:
        raise ApiError(400, "bad_request", "query parameter state is not valid",
                       [FieldError("state", "must be one of " + ", ".join(TASK_STATES))])
    mine = request.args.get("mine", "false")
    if mine not in ("true", "false"):
        raise ApiError(400, "bad_request", "query parameter mine is not valid",
                       [FieldError("mine", "must be true or false")])
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    inbox = user.role not in ("admin", "auditor")
    filters: dict[str, Any] = {
        "department": user.department if inbox else None, "states": (state,),
        "assignee": user.username if mine == "true" else None,
        "open_to": user.username if inbox and state == "ready" else None,
        **task_query_filters()}
    tasks = engine.list_tasks(**filters, limit=limit, offset=offset)
    # A page that is not full ends the list: its total is known without counting.
    partial = 0 < len(tasks) < limit or (not tasks and offset == 0)
    total = offset + len(tasks) if partial else engine.count_tasks(**filters)
    return jsonify({
        "tasks": [task_json(t) for t in tasks], "total": total, "limit": limit,
        "offset": offset, "next_offset": offset + limit if offset + limit < total else None,
    })


def task_query_filters() -> dict[str, Any]:
    """The optional filters of a task list: case, process, phase, item, stage, due before."""
    filters: dict[str, Any] = {}
    if request.args.get("case_id") is not None:
        filters["case_id"] = _int_arg("case_id", 0, 1, None)
    for arg, name in (("process_id", "process_id"), ("phase", "phase"),
                      ("item", "item_code"), ("stage", "stage")):
        value = request.args.get(arg)
        if value:
            filters[name] = value[:200]
    raw = request.args.get("due_before")
    if raw:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ApiError(400, "bad_request", "query parameter due_before is not valid",
                           [FieldError("due_before", "must be a date-time with a time zone, "
                                       "e.g. 2026-03-20T10:00:00Z")])
        filters["due_before"] = moment
    return filters


@bp.get("/tasks/<task_id>")
@authenticated
def get_task(task_id: str) -> Response:
    """A task with its form's JSON Schema, UI schema, instructions, data and draft."""
    return jsonify(task_detail_json(get_engine().get_task(task_id, g.api_user.actor)))


@bp.post("/tasks/<task_id>/claim")
@authenticated
@writer
def claim_task(task_id: str) -> Response:
    """Take a ready task of the caller's department."""
    seen = _version_from(_json_body(required=False))
    return jsonify(task_json(get_engine().claim_task(task_id, g.api_user.actor, seen)))


@bp.post("/tasks/<task_id>/release")
@authenticated
@writer
def release_task(task_id: str) -> Response:
    """Give a claimed task back to the department's inbox."""
    seen = _version_from(_json_body(required=False))
    return jsonify(task_json(get_engine().release_task(task_id, g.api_user.actor, seen)))


@bp.post("/tasks/<task_id>/complete")
@authenticated
@writer
def complete_task(task_id: str) -> Response:
    """Complete a task with its form's data; answers with the task and the case after it."""
    body = _json_body(required=True)
    _check_members(body, {"data": (dict, True), "version": (int, True)})
    engine = get_engine()
    actor = g.api_user.actor
    case = engine.complete_task(task_id, body["data"], actor, body["version"])
    done = case.completed_task or engine.get_task(task_id, actor).task
    return jsonify({"task": task_json(done), "case": case_json(engine, case)})


@bp.post("/cases")
@authenticated
@writer
def start_case() -> tuple[Response, int, dict[str, str]]:
    """Start a case of a process's published version with its start data."""
    body = _json_body(required=True)
    _check_members(body, {"process_id": (str, True), "data": (dict, True),
                          "title": (str, False)})
    engine = get_engine()
    case = engine.start_case(body["process_id"], body["data"], g.api_user.actor,
                             title=body.get("title") or None)
    location = url_for("api.get_case", case_id=case.id)
    return jsonify(case_json(engine, case)), 201, {"Location": location}


@bp.get("/cases/<int:case_id>")
@authenticated
def get_case(case_id: int) -> Response:
    """A case: status, data, its open tasks and who holds them."""
    engine = get_engine()
    return jsonify(case_json(engine, _readable_case(engine, case_id)))


@bp.get("/cases/<int:case_id>/events")
@authenticated
def case_events(case_id: int) -> Response:
    """The case's timeline: its hash-chained audit events in order."""
    engine = get_engine()
    _readable_case(engine, case_id)
    return jsonify({"case_id": case_id, "events": [
        {"seq": e.seq, "type": e.type, "actor": e.actor, "at": _time(e.at), "data": e.data,
         "prev_hash": e.prev_hash, "hash": e.hash}
        for e in engine.case_events(case_id)]})


@bp.get("/cases/<int:case_id>/tasks")
@authenticated
def case_tasks(case_id: int) -> Response:
    """The case's open tasks, paged, with their total (same readers as the case)."""
    engine = get_engine()
    _readable_case(engine, case_id)
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    tasks = engine.list_tasks(case_id=case_id, limit=limit, offset=offset)
    total = engine.count_tasks(case_id=case_id)
    return jsonify({
        "tasks": [task_json(t) for t in tasks], "total": total, "limit": limit,
        "offset": offset, "next_offset": offset + limit if offset + limit < total else None,
    })
