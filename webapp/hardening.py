"""What every request passes before a view sees it, and what every response carries:
text without NUL or lone surrogates, JSON of bounded depth, ids within the database's
integer range, and the security headers."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from flask import Flask, Response, g, has_request_context, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import IntegerConverter

from engine.errors import FieldError
from webapp.limits import MAX_ID, MAX_JSON_DEPTH

_SURROGATE = re.compile("[\ud800-\udfff]")


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` that matches only ids the database can hold (others answer 404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Install the converter (before any route is added), the checks and the headers."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(refuse_bad_input)
    app.after_request(security_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce


def bad_text(text: str) -> str | None:
    """Why a text may not be stored (NUL or a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character, which is not allowed"
    if _SURROGATE.search(text):
        return "contains a lone surrogate (invalid Unicode), which is not allowed"
    return None


def json_problems(value: Any, path: str = "") -> tuple[list[FieldError], int]:
    """Bad texts (keys and values) of parsed JSON, by path, and its nesting depth;
    iterative, so that any depth is measured without recursion."""
    problems: list[FieldError] = []
    deepest = 0
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        if isinstance(item, str):
            reason = bad_text(item)
            if reason:
                problems.append(FieldError(_printable(where) or "(body)", reason))
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                reason = bad_text(key)
                if reason:
                    problems.append(FieldError(_printable(name), "the member's name " + reason))
                stack.append((child, name, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return problems, deepest


def _printable(name: str) -> str:
    return name.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\0")


def refuse_bad_input() -> Any:
    """Refuse, before any view runs, a request whose text fields could not be stored."""
    if isinstance(request.routing_exception, MethodNotAllowed) and any(
            part.isdigit() and int(part) > MAX_ID for part in request.path.split("/")):
        # An id too large for the database matched no rule; where another method's rule has
        # the same shape, routing says 405: the id names nothing, so it is "not found".
        raise NotFound()
    problems: list[FieldError] = []
    if request.path.startswith("/api/"):
        request.get_data(cache=True)  # the API reads its raw body; reading a form must not eat it
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and (reason := bad_text(value)):
            problems.append(FieldError(name, reason))
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            reason = bad_text(name) or bad_text(value)
            if reason:
                problems.append(FieldError(_printable(name), reason))
    for name, upload in request.files.items(multi=True):
        reason = bad_text(upload.filename or "")
        if reason:
            problems.append(FieldError(_printable(name), "the file's name " + reason))
    too_deep = False
    if request.is_json and request.content_length != 0:
        raw = request.get_data(cache=True)
        try:
            body = json.loads(raw)
        except RecursionError:
            too_deep = True
        except ValueError:
            body = None  # the view says what is wrong with it
        else:
            found, depth = json_problems(body)
            problems.extend(found)
            too_deep = depth > MAX_JSON_DEPTH
    if too_deep:
        return _refusal(400, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep; "
                             "nothing was changed", [])
    if problems:
        return _refusal(400, "the request contains text that cannot be stored; "
                             "nothing was changed", problems)
    return None


def _refusal(status: int, message: str, problems: list[FieldError]) -> Any:
    if request.path.startswith("/api/"):
        from webapp.api import error_response

        return error_response(status, "bad_request", message, problems)
    detail = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return render_template("error.html", title=_("Bad request"),
                           message=_("The request contains text that cannot be stored "
                                     "(a NUL character or invalid Unicode); nothing was "
                                     "saved.") + (f" ({detail})" if detail else "")), status


def csp_nonce() -> str:
    """This response's nonce for the few inline scripts (the self-contained case report)."""
    if not has_request_context():
        return ""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    nonce: str = g.csp_nonce
    return nonce


def security_headers(response: Response) -> Response:
    """Scripts only from this site (the bpmn-js bundles are local), no framing, no sniffing,
    no full referrer to other sites; a page that set its own stricter header keeps it."""
    scripts = "'self'" + (f" 'nonce-{g.csp_nonce}'" if "csp_nonce" in g else "")
    response.headers.setdefault("Content-Security-Policy", (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"))
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
