"""Agents' pages: the department inbox, task forms with the case's context, the case page."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _

from agency import records, team
from agency.enterprise import (
    AUTHORISATION_FORM,
    CONFIRMATION_FORM,
    PROJECT_UNIT,
    UnitTasks,
    form_titles,
    proxied_steps,
    service_form,
)
from agency.reference import ReferenceData
from engine.cases import CaseView, TaskDetail, TaskView
from engine.cases.views import COMMENT_ROLES
from engine.errors import Conflict, InvalidData, TaskNotReady
from engine.store.files import AttachmentRefused
from webapp import get_engine
from webapp.auth import HOMES, home_of, requires
from webapp.deadlines import age_text
from webapp.forms import Field, data_from_form, error_paths, fields_for
from webapp.i18n import engine_message
from webapp.oversight import warning_levels
from webapp.pack_i18n import item_name, localised, task_title

bp = Blueprint("agent", __name__)
PAGE_SIZE = 25
WORKERS = ("agent", "leader", "office")
READERS = ("agent", "leader", "office", "admin", "auditor")


def reference() -> ReferenceData:
    """The reference data (items with their time limits, departments, materials)."""
    data: ReferenceData | None = current_app.extensions.get("zerorun_reference")
    if data is None:
        data = ReferenceData.load(get_engine().config.data_dir)
        current_app.extensions["zerorun_reference"] = data
    return data


def department_name(code: str | None) -> str:
    """A department's name in the user's language."""
    if not code:
        return ""
    entry = reference().departments.get(code, {})
    from webapp.i18n import current_language

    if current_language() == "en" and entry.get("name_en"):
        return str(entry["name_en"])
    return str(entry.get("name", code))


def time_limit(item_code: str | None) -> int | None:
    """An item's committed time limit in working days."""
    item = reference().items.get(item_code or "", {})
    limit = item.get("time_limit_days")
    return int(limit) if isinstance(limit, int | float) else None


def task_row(task: TaskView, now: datetime, warning: str | None = None) -> dict[str, Any]:
    """What an inbox or case page shows of a task beside the task itself.

    `warning` is the task's overdue level (`agency.oversight`: the one rule the dashboard
    and the warnings sent use); computed here when not given.
    """
    days, hours = age_text(task.created_at, now)
    if warning is None:
        warning = warning_levels([task]).get(task.id, "none")
    state = None if task.due_at is None and warning == "none" else \
        ("ok" if warning == "none" else warning)
    return {"task": task, "due_state": state, "age_days": days, "age_hours": hours}


def inbox_scope() -> tuple[str | None, str | None]:
    """(department, open_to) of the user's inbox: agents see their department's unclaimed
    tasks and their own; leaders and the office all of their department's; administrators
    and auditors every open task."""
    user = g.user
    if user.role in WORKERS:
        return user.department, user.username if user.role == "agent" else None
    return None, None


@bp.route("/")
@requires()
def inbox() -> Any:
    """The ready tasks of the user's department and the ones they claimed."""
    if g.user.role in HOMES:  # roles without an inbox start on their own area
        return redirect(home_of(g.user.role))
    engine = get_engine()
    now = engine.clock()
    department, open_to = inbox_scope()
    args = request.args
    mine = args.get("mine") == "1"
    overdue = args.get("overdue") == "1"
    green = args.get("green") == "1"
    sort = args.get("sort") if args.get("sort") in ("due", "age") else "due"
    phase = args.get("phase") or None
    item = args.get("item") or None
    page = max(1, args.get("page", 1, type=int) or 1)
    filters: dict[str, Any] = {
        "department": department, "phase": phase, "item_code": item,
        "due_before": now if overdue else None,
        "assignee": g.user.username if mine else None,
        "open_to": None if mine else open_to, "green_only": green}
    total = engine.count_tasks(**filters)
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    page = min(page, pages)
    tasks = engine.list_tasks(**filters, order=sort, limit=PAGE_SIZE,
                              offset=(page - 1) * PAGE_SIZE)
    levels = warning_levels(tasks)
    counts = engine.task_counts(g.user.username, department=department, open_to=open_to)
    phases, items = engine.task_phases_and_items(department)
    query = {k: v for k, v in {"phase": phase, "item": item, "overdue": "1" if overdue else None,
                               "mine": "1" if mine else None, "green": "1" if green else None,
                               "sort": sort}.items() if v}
    # The project unit's open tasks, for the agents who may record them on its behalf (R05).
    unit_tasks = (engine.list_tasks(department=PROJECT_UNIT, limit=PAGE_SIZE)
                  if engine.acts_for(PROJECT_UNIT, g.user.actor) else [])
    return render_template(
        "agent/inbox.html", rows=[task_row(t, now, levels.get(t.id)) for t in tasks],
        unit_rows=[task_row(t, now) for t in unit_tasks],
        counts=counts, handed_over=team.handed_over(engine, tasks),
        total=total, page=page, pages=pages, query=query, phases=phases, items=items,
        page_url=lambda n: url_for("agent.inbox") + "?" + urlencode({**query, "page": n}),
        filter_url=lambda **change: url_for("agent.inbox") + "?" + urlencode(
            {k: v for k, v in {**query, **change}.items() if v}),
        back=request.full_path.rstrip("?"))


@bp.route("/tasks/<task_id>/<any(claim, release):action>", methods=["POST"])
@requires(*WORKERS)
def assign(task_id: str, action: str) -> Any:
    """Claim a task for oneself, or give it back to the department."""
    engine = get_engine()
    seen = request.form.get("version", type=int)
    try:
        if action == "claim":
            engine.claim_task(task_id, g.user.actor, seen)
            flash(_("Claimed: the task is now yours."))
        else:
            engine.release_task(task_id, g.user.actor, seen)
            flash(_("Released: the task is back in the department's inbox."))
    except Conflict as exc:
        flash(engine_message(exc.message), "warning")
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("agent.inbox")
    return redirect(target)


def task_context(detail: TaskDetail) -> dict[str, Any]:
    """The case around a task: project, item, materials checklist, earlier decisions, files."""
    engine = get_engine()
    task = detail.task
    case = engine.get_case(task.case_id)
    item = dict(reference().items.get(task.item_code or "", {}))
    if not item and isinstance(detail.data.get("item"), dict):
        item = dict(detail.data["item"])
    attachments = engine.list_attachments(case_id=case.id)
    attached = {a.material for a in attachments if a.material}
    materials = []
    for entry in case.data.get("materials") or []:
        if not isinstance(entry, dict):
            continue
        if task.item_code and task.item_code not in (entry.get("items") or []):
            continue
        materials.append({**entry, "attached": entry.get("code") in attached})
    done = engine.list_tasks(case_id=case.id, states=("completed",), limit=500)
    done.sort(key=lambda t: (t.completed_at or t.created_at, t.id))
    # The reasons of a refusal matter until the item is accepted (the handling decision
    # sets `outcome`); an accepted item's later tasks carry the old reasons but show none.
    reasons = detail.data.get("rejection_reasons") \
        if task.state == "ready" and detail.data.get("outcome") == "rejected" else None
    return {"case": case, "project": case.data.get("project") or {}, "item": item,
            "materials": materials, "decisions": done, "attachments": attachments,
            "reasons": [str(r) for r in reasons] if isinstance(reasons, list) else []}


def own_materials(fields: list[Field], materials: list[dict[str, Any]]) -> None:
    """A checklist of materials offers the item's own materials, not the whole catalogue.

    A multiple choice whose every option is a material of the reference data is such a
    checklist; it keeps the item's materials (and whatever was ticked already, so nothing
    saved disappears). A task of no item, or an item with no listed material, keeps them all.
    """
    own = {str(m.get("code")) for m in materials if m.get("code")}
    if not own:
        return
    catalogue = set(reference().materials)
    for f in fields:
        values = {value for value, _text in f.options}
        if f.widget != "multiselect" or not values or not values <= catalogue:
            continue
        ticked = {str(v) for v in f.value or []}
        f.options = [(value, text) for value, text in f.options
                     if value in own or value in ticked]


def render_task(task_id: str, values: dict[str, Any] | None = None,
                errors: dict[str, str] | None = None, message: str | None = None,
                status: int = 200, detail: TaskDetail | None = None) -> Any:
    """The task page: form (with values and errors) beside the case's context."""
    engine = get_engine()
    detail = detail or engine.get_task(task_id, g.user.actor)
    if values is None:
        # what the process already knows for the form's fields, then the saved draft
        declared = (detail.form_schema or {}).get("properties", {})
        values = {k: v for k, v in detail.data.items() if k in declared}
        values.update(detail.draft or {})
    errors = errors or {}
    fields = fields_for(localised(detail.form_schema), values, errors)
    context = task_context(detail)
    own_materials(fields, context["materials"])
    known = {f.name for f in fields} | {"__attachment__"}
    other_errors = [msg for path, msg in errors.items()
                    if path.split(".")[0].split("-")[0] not in known]
    may_work = detail.task.state == "ready" and g.user.actor.may_work_on(detail.task.department)
    may_act_for = detail.task.state == "ready" and engine.acts_for(detail.task.department,
                                                                    g.user.actor)
    proxied = (proxied_steps(engine, detail.task.case_id).get(detail.task.id)
               if detail.task.department == PROJECT_UNIT else None)
    now = engine.clock()
    return render_template("agent/task.html", detail=detail, fields=fields, errors=errors,
                           other_errors=other_errors, message=message, may_work=may_work,
                           may_act_for=may_act_for, proxied=proxied,
                           row=task_row(detail.task, now), department_name=department_name,
                           time_limit=time_limit(detail.task.item_code),
                           comments=get_engine().list_comments(detail.task.case_id,
                                                               task_id=detail.task.id),
                           may_comment=g.user.role in COMMENT_ROLES, task_titles={},
                           **context), status


@bp.route("/tasks/<task_id>", methods=["GET", "POST"])
@requires(*READERS)
def task(task_id: str) -> Any:
    """A task's form with its instructions; completing it, saving a draft, attaching files."""
    engine = get_engine()
    detail = engine.get_task(task_id, g.user.actor)
    if request.method == "GET":
        return render_task(task_id, detail=detail)
    values = data_from_form(detail.form_schema, request.form)
    action = request.form.get("action", "complete")
    seen = request.form.get("version", type=int)
    upload = request.files.get("attachment")
    try:
        if upload is not None and upload.filename:
            try:
                engine.add_attachment(task_id, upload.filename, upload.read(), g.user.actor,
                                      material=request.form.get("material") or None)
            except AttachmentRefused as exc:
                return render_task(task_id, values, {"__attachment__": engine_message(
                    exc.message)}, status=422)
            flash(_("File attached: %(name)s", name=upload.filename))
        elif action == "upload":
            return render_task(task_id, values, {"__attachment__": _("Choose a file first.")},
                               status=422)
        if action in ("draft", "upload"):
            engine.save_draft(task_id, values, g.user.actor)
            if action == "draft":
                flash(_("Draft saved."))
            return redirect(url_for("agent.task", task_id=task_id))
        engine.complete_task(task_id, values, g.user.actor, seen)
    except InvalidData as exc:
        errors = {path: engine_message(msg) for path, msg in error_paths(exc.errors).items()}
        return render_task(task_id, values, errors, status=422)
    except Conflict as exc:
        return render_task(task_id, values, message=engine_message(exc.message), status=409)
    flash(_("Completed: %(title)s", title=task_title(detail.task)))
    return redirect(url_for("agent.inbox"))


@bp.route("/attachments/<int:attachment_id>")
@requires(*READERS)
def attachment(attachment_id: int) -> Any:
    """Download an attached file (only for users who may read its case)."""
    view, path = get_engine().get_attachment(attachment_id, g.user.actor)
    return send_file(path, mimetype=view.content_type, as_attachment=True,
                     download_name=view.filename)


def item_states(case: CaseView, tasks: list[TaskView],
                waiting: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The case's approval items by phase, each with its open task or its progress, its
    prerequisites and (while it waits) the ones it still waits for."""
    selected = case.data.get("items")
    requires = {i.get("code"): i.get("requires") or [] for i in selected
                if isinstance(i, dict)} if isinstance(selected, list) else {}
    codes = [i.get("code") for i in selected if isinstance(i, dict)] if isinstance(
        selected, list) else []
    if not codes:
        codes = list(dict.fromkeys(t.item_code for t in tasks if t.item_code))
    result = []
    for code in codes:
        entry = reference().items.get(code or "", {})
        mine = [t for t in tasks if t.item_code == code]
        open_tasks = [t for t in mine if t.state == "ready"]
        result.append({"requires": [_item_name(c) for c in requires.get(code, [])],
                       "waiting_for": [_item_name(c) for c in (waiting or {}).get(code or "", [])],
                       "code": code, "name": entry.get("name", code),
                       "phase": str(entry.get("phase", "")),
                       "department": entry.get("department"),
                       "time_limit": entry.get("time_limit_days"),
                       "open": open_tasks,
                       "completed": sum(1 for t in mine if t.state == "completed")})
    # by phase, and within a phase in the order the case's item list has them
    order = {code: n for n, code in enumerate(codes)}
    result.sort(key=lambda r: (r["phase"], order.get(r["code"], len(order))))
    return result


def _item_name(code: str) -> str:
    if code == "project_code":
        return str(_("Project code"))
    return item_name(code, reference().items.get(code, {}).get("name", code))


def waiting_items(case_id: int) -> dict[str, list[str]]:
    """Items waiting for their prerequisites -> the codes they still wait for."""
    found = get_engine().waiting_data(case_id, "wait_prerequisites", ["item", "waiting_for"])
    return {str((entry["item"] or {}).get("code")): list(entry["waiting_for"] or [])
            for entry in found if isinstance(entry["item"], dict)}


@bp.route("/cases/<int:case_id>")
@requires(*READERS)
def case(case_id: int) -> Any:
    """A case: project, items, open tasks and who holds them, the live diagram, timeline."""
    engine = get_engine()
    engine.check_case_visible(case_id, g.user.actor)
    view = engine.get_case(case_id)
    tasks = engine.list_tasks(case_id=case_id, states=("ready", "completed", "cancelled"),
                              limit=2000)
    now = engine.clock()
    levels = warning_levels([t for t in tasks if t.state == "ready"])
    return render_template("agent/case.html", case=view,
                           rows=[task_row(t, now, levels.get(t.id)) for t in tasks],
                           items=item_states(view, tasks, waiting_items(case_id)),
                           project=view.data.get("project") or {},
                           events=engine.case_events(case_id),
                           task_titles={t.id: (task_title(t), item_name(t.item_code,
                                                                        t.item_name))
                                        for t in tasks},
                           attachments=engine.list_attachments(case_id=case_id),
                           diagrams=engine.case_diagrams(case_id),
                           states=engine.element_states(case_id),
                           instances=engine.case_instances(case_id),
                           comments=engine.list_comments(case_id),
                           may_comment=g.user.role in COMMENT_ROLES,
                           department_name=department_name,
                           unit_tasks=[t for t in tasks if t.department == PROJECT_UNIT],
                           proxied=proxied_steps(engine, case_id),
                           may_act_for=UnitTasks(engine).may_act(g.user.actor),
                           authorisation=UnitTasks(engine).authorisation(case_id),
                           confirmation_methods=form_titles(engine, CONFIRMATION_FORM,
                                                            "confirmation_method"),
                           notes=records.case_notes(engine, case_id),
                           note_kinds={k: records.KINDS[k] for k in records.NOTE_FIELDS},
                           note_fields=records.NOTE_FIELDS,
                           may_note=g.user.role in records.NOTE_ROLES,
                           note_form=g.get("note_form"))


@bp.route("/cases/<int:case_id>/comments", methods=["POST"])
@requires(*COMMENT_ROLES)
def comment(case_id: int) -> Any:
    """Leave a comment on a case or one of its tasks; back to where it was written."""
    engine = get_engine()
    task_id = request.form.get("task_id") or None
    back = (url_for("agent.task", task_id=task_id) if task_id
            else url_for("agent.case", case_id=case_id)) + "#comments"
    try:
        engine.add_comment(case_id, request.form.get("text", ""), g.user.actor, task_id=task_id)
    except InvalidData as exc:
        flash(engine_message(exc.message), "error")
        return redirect(back)
    flash(_("Comment added."))
    return redirect(back)


# Acting for the project unit (代为办理, rule R05) ------------------------------------------


def _confirmation_schema() -> dict[str, Any]:
    return service_form(get_engine(), CONFIRMATION_FORM) or {}


def render_unit_task(case_id: int, task_id: str, values: dict[str, Any] | None = None,
                     errors: dict[str, str] | None = None, message: str | None = None,
                     status: int = 200) -> Any:
    """The form to record one of the unit's steps for it: the task's own form, how the unit
    confirmed it and the evidence."""
    unit = UnitTasks(get_engine())
    detail = unit.task(case_id, task_id, g.user.actor)
    errors = errors or {}
    if values is None:
        declared = (detail.form_schema or {}).get("properties", {})
        values = {k: v for k, v in detail.data.items() if k in declared}
    case_view = get_engine().get_case(case_id)
    return render_template(
        "agent/unit_task.html", detail=detail, case=case_view, message=message,
        errors=errors, fields=fields_for(localised(detail.form_schema), values, errors),
        confirmation=fields_for(localised(_confirmation_schema()), values, errors),
        authorisation=unit.authorisation(case_id),
        proxied=proxied_steps(get_engine(), case_id).get(task_id),
        kept=request.method == "POST", department_name=department_name), status


@bp.route("/cases/<int:case_id>/unit-tasks/<task_id>", methods=["GET", "POST"])
@requires("agent")
def unit_task(case_id: int, task_id: str) -> Any:
    """Record one of the project unit's steps on its behalf (代为办理)."""
    if request.method == "GET":
        return render_unit_task(case_id, task_id)
    unit = UnitTasks(get_engine())
    detail = unit.task(case_id, task_id, g.user.actor)
    data = data_from_form(detail.form_schema, request.form)
    confirmation = data_from_form(_confirmation_schema(), request.form)
    evidence = [(f.filename or "", f.read()) for f in request.files.getlist("evidence")
                if f.filename]
    values = {**data, **confirmation}
    try:
        unit.complete(case_id, task_id, data, confirmation, evidence, g.user.actor,
                      request.form.get("version", type=int))
    except InvalidData as exc:
        found = {path: engine_message(msg) for path, msg in error_paths(exc.errors).items()}
        return render_unit_task(case_id, task_id, values, found, status=422)
    except AttachmentRefused as exc:
        return render_unit_task(case_id, task_id, values,
                                {"evidence": engine_message(exc.message)}, status=422)
    except (Conflict, TaskNotReady) as exc:
        return render_unit_task(case_id, task_id, values, message=engine_message(exc.message),
                                status=409)
    flash(_("已代项目单位办理：%(title)s", title=task_title(detail.task)))
    return redirect(url_for("agent.case", case_id=case_id) + "#project-unit")


@bp.route("/cases/<int:case_id>/authorisation", methods=["GET", "POST"])
@requires("agent")
def authorisation(case_id: int) -> Any:
    """Record the agency authorisation (代办委托书) the project unit signed."""
    engine = get_engine()
    unit = UnitTasks(engine)
    unit.check(case_id, g.user.actor)
    schema = service_form(engine, AUTHORISATION_FORM) or {}
    project = engine.get_case(case_id).data.get("project") or {}
    values: dict[str, Any] = {"principal": project.get("enterprise", ""),
                              "signatory": project.get("lead", "")}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = data_from_form(schema, request.form)
        try:
            unit.record_authorisation(case_id, values, g.user.actor)
        except InvalidData as exc:
            errors = {path: engine_message(msg) for path, msg in error_paths(exc.errors).items()}
            status = 422
        else:
            flash(_("代办委托书已登记，代办员可代项目单位办理其事项"))
            return redirect(url_for("agent.case", case_id=case_id) + "#project-unit")
    return render_template("agent/authorisation.html", case=engine.get_case(case_id),
                           fields=fields_for(localised(schema), values, errors),
                           errors=errors, current=unit.authorisation(case_id)), status
