"""Agents' pages: the department inbox."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from engine.errors import Conflict, InvalidData

from . import get_engine
from .auth import requires
from .forms import data_from_form, fields_for

bp = Blueprint("agent", __name__)


@bp.route("/")
@requires()
def inbox() -> Any:
    """The ready tasks of the user's department and the ones they claimed."""
    engine = get_engine()
    department = g.user.department if g.user.role in ("agent", "leader", "office") else None
    tasks = engine.list_tasks(department=department, limit=100) if department else \
        engine.list_tasks(limit=100)
    return render_template("agent/inbox.html", tasks=tasks)


@bp.route("/tasks/<task_id>/<any(claim, release):action>", methods=["POST"])
@requires("agent", "leader", "office")
def assign(task_id: str, action: str) -> Any:
    """Claim a task for oneself, or give it back to the department."""
    engine = get_engine()
    seen = request.form.get("version", type=int)
    try:
        if action == "claim":
            engine.claim_task(task_id, g.user.actor, seen)
            flash("已认领")
        else:
            engine.release_task(task_id, g.user.actor, seen)
            flash("已退回部门待办")
    except Conflict as exc:
        flash(exc.message)
    return redirect(url_for("agent.inbox"))


@bp.route("/tasks/<task_id>", methods=["GET", "POST"])
@requires("agent", "leader", "office", "admin", "auditor")
def task(task_id: str) -> Any:
    """A task's form with its instructions; completing it."""
    engine = get_engine()
    detail = engine.get_task(task_id, g.user.actor)
    values: dict[str, Any] = dict(detail.draft or {})
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = data_from_form(detail.form_schema, request.form)
        seen = request.form.get("version", type=int)
        try:
            if request.form.get("action") == "draft":
                engine.save_draft(task_id, values, g.user.actor)
                flash("草稿已保存")
                return redirect(url_for("agent.task", task_id=task_id))
            engine.complete_task(task_id, values, g.user.actor, seen)
        except InvalidData as exc:
            errors = {e.field.split(".")[0]: e.message for e in exc.errors}
            status = 422
        except Conflict as exc:
            flash(exc.message)
            return redirect(url_for("agent.inbox"))
        else:
            flash(f"已完成：{detail.task.title}")
            return redirect(url_for("agent.inbox"))
    fields = fields_for(detail.form_schema, values, errors)
    return render_template("agent/task.html", detail=detail, fields=fields,
                           errors=errors), status


@bp.route("/cases/<int:case_id>")
@requires("agent", "leader", "office", "admin", "auditor")
def case(case_id: int) -> Any:
    """A case: status, open tasks and who holds them, the live diagram, the timeline."""
    engine = get_engine()
    view = engine.get_case(case_id)
    if g.user.role in ("agent", "leader") and \
            g.user.department not in engine.case_departments(case_id):
        abort(403)
    tasks = engine.list_tasks(case_id=case_id, states=("ready", "completed", "cancelled"),
                              limit=500)
    return render_template("agent/case.html", case=view, tasks=tasks,
                           events=engine.case_events(case_id),
                           diagrams=engine.case_diagrams(case_id),
                           states=engine.element_states(case_id))
