"""Request ids, one JSON log line per request and per engine command, request metrics.

Lines go to the `zerorun.requests` and `zerorun.commands` loggers (standard error by
default). They carry ids, names, statuses and durations only: never form data, query
strings, cookies or tokens.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from engine.cases import Engine
from engine.hooks import CommandDone
from webapp import metrics

REQUEST_LOG = logging.getLogger("zerorun.requests")
COMMAND_LOG = logging.getLogger("zerorun.commands")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_app(app: Flask, engine: Engine) -> None:
    """Give every request an id, log and count it; log and count the engine's commands."""
    configure_logging()
    metrics.init_app(engine)
    if not engine.extensions.get("command_log"):
        engine.extensions["command_log"] = True
        engine.hooks.command_done.append(log_command)
    app.before_request_funcs.setdefault(None, []).insert(0, _start)  # before the login
    app.after_request(_finish)
    app.context_processor(lambda: {"request_id": g.get("request_id")})


def configure_logging(stream: Any = None) -> None:
    """One JSON object per line on standard error, once per process."""
    parent = logging.getLogger("zerorun")
    if getattr(parent, "_zerorun_json", False):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    parent.propagate = False
    parent._zerorun_json = True  # type: ignore[attr-defined]


def request_id() -> str | None:
    """The current request's id (the caller's X-Request-ID when well-formed)."""
    return g.get("request_id") if has_request_context() else None


def _start() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    rid = g.get("request_id")
    if rid is None:  # a failure before our first hook ran
        _start()
        rid = g.request_id
    response.headers["X-Request-ID"] = rid
    if request.path.startswith("/api/") and response.status_code >= 400 and response.is_json:
        _add_request_id(response, rid)
    seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
    metrics.count_request(route, request.method, response.status_code, seconds)
    if REQUEST_LOG.isEnabledFor(logging.INFO):
        view_args = request.view_args or {}
        user = g.get("user") or g.get("api_user")
        REQUEST_LOG.info(_line({
            "kind": "request", "request_id": rid, "user": getattr(user, "username", None),
            "method": request.method, "route": route, "path": request.path,
            "status": response.status_code, "duration_ms": round(seconds * 1000, 2),
            "case_id": view_args.get("case_id"), "task_id": view_args.get("task_id"),
            "remote": request.remote_addr}))
    return response


def _add_request_id(response: Response, rid: str) -> None:
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return
    if isinstance(body.get("error"), dict):
        body["error"]["request_id"] = rid
    else:
        body["request_id"] = rid
    response.set_data(json.dumps(body, ensure_ascii=False))


def log_command(done: CommandDone) -> None:
    """One line per engine command (hook on `Hooks.command_done`)."""
    if not COMMAND_LOG.isEnabledFor(logging.INFO):
        return
    COMMAND_LOG.info(_line({
        "kind": "command", "request_id": request_id(), "user": done.actor,
        "command": done.command, "case_id": done.case_id, "task_id": done.task_id,
        "status": done.outcome, "duration_ms": round(done.seconds * 1000, 2)}))


def _line(fields: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"time": stamp, **fields}, ensure_ascii=False, default=str)
