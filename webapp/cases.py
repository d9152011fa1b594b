"""Case lists and registering a new case."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import InvalidData
from webapp import get_engine
from webapp.agent import PAGE_SIZE, READERS
from webapp.auth import requires
from webapp.forms import data_from_form, error_paths, fields_for
from webapp.i18n import engine_message
from webapp.pack_i18n import localised

bp = Blueprint("cases", __name__)
STATUSES = ("running", "completed", "terminated")


@bp.route("/cases")
@requires(*READERS)
def index() -> Any:
    """Cases, newest first, searchable by project name or code: every case for the office,
    administrators and auditors; the cases of their department for agents and leaders."""
    engine = get_engine()
    search = request.args.get("q", "").strip()[:200]
    status = request.args.get("status", "running")
    statuses = STATUSES if status == "all" else (status,) if status in STATUSES else ("running",)
    department = g.user.department if g.user.role in ("agent", "leader") else None
    total = engine.count_cases(search=search, statuses=statuses, department=department)
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    cases = engine.list_cases(search=search, statuses=statuses, department=department,
                              limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    query = {k: v for k, v in {"q": search, "status": status}.items() if v}
    return render_template("cases/index.html", cases=cases, total=total, page=page,
                           pages=pages, search=search, status=status,
                           page_url=lambda n: url_for("cases.index") + "?" + urlencode(
                               {**query, "page": n}))


@bp.route("/cases/new", methods=["GET", "POST"])
@requires("agent", "leader", "office", "admin")
def new() -> Any:
    """Register a project with a process's start form, and start its case."""
    engine = get_engine()
    startable = engine.startable_processes(g.user.actor)
    if not startable:
        abort(403)
    ids = [pid for pid, _name in startable]
    process_id = request.values.get("process") or ("case_flow" if "case_flow" in ids else ids[0])
    if process_id not in ids:
        abort(404)
    form = engine.start_form(process_id)
    schema = form.schema if form is not None else None
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = data_from_form(schema, request.form)
        try:
            case = engine.start_case(process_id, values, g.user.actor)
        except InvalidData as exc:
            errors = {path: engine_message(msg) for path, msg in error_paths(exc.errors).items()}
            status = 422
        else:
            flash(_("Case started: %(title)s", title=case.title))
            return redirect(url_for("agent.case", case_id=case.id))
    shown = localised(schema)
    fields = fields_for(shown, values, errors)
    known = {f.name for f in fields}
    other_errors = [m for p, m in errors.items() if p.split(".")[0] not in known]
    return render_template("cases/new.html", startable=startable, process_id=process_id,
                           form=form, fields=fields, errors=errors,
                           description=(shown or {}).get("description"),
                           other_errors=other_errors), status


@bp.route("/cases/<int:case_id>/terminate", methods=["POST"])
@requires("office", "admin")
def terminate(case_id: int) -> Any:
    """Stop a running case at any point, with the reason recorded in its history."""
    engine = get_engine()
    reason = request.form.get("reason", "").strip()
    if not reason:
        flash(_("Give the reason for terminating the case; nothing was changed."), "error")
        return redirect(url_for("agent.case", case_id=case_id))
    if len(reason) > 1000:
        flash(_("The reason is too long (at most 1000 characters); nothing was changed."),
              "error")
        return redirect(url_for("agent.case", case_id=case_id))
    case = engine.terminate_case(case_id, reason, g.user.actor)
    if case.status == "running":  # the diagram stops the service and hands materials back
        flash(_("Service terminated: %(reason)s. Hand back the materials the agents hold, "
                "then record the termination.", reason=reason))
    else:
        flash(_("Case terminated: %(reason)s", reason=reason))
    return redirect(url_for("agent.case", case_id=case_id))
