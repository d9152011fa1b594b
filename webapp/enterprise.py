"""The project unit's progress page with the tasks of its own lane, and the links the office
hands out for it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from agency.enterprise import PHASES, STAGES, EnterpriseLinks, ProxiedStep, may_manage
from engine.errors import Conflict, InvalidData, NotFound, TaskNotReady
from engine.store.files import AttachmentRefused
from engine.store.models import HumanTask
from webapp import get_engine
from webapp.auth import requires
from webapp.forms import data_from_form, error_paths, fields_for
from webapp.i18n import engine_message
from webapp.labels import local_time, person
from webapp.pack_i18n import localised, task_title

bp = Blueprint("enterprise", __name__)
# The unit's pages are private to the link: not cached, not indexed, no referrer.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Robots-Tag": "noindex, nofollow"}


def _links() -> EnterpriseLinks:
    return EnterpriseLinks(get_engine())


def _manager_only() -> None:
    if not may_manage(g.user.actor):
        abort(403)


def _page(token: str, values: dict[str, dict[str, Any]] | None = None,
          errors: dict[str, dict[str, str]] | None = None, message: str | None = None,
          status: int = 200) -> Any:
    links = _links()
    try:
        view = links.progress(token)
        tasks = links.tasks(token)
    except NotFound:
        abort(404)  # the same answer as any unknown address: no hint that the link existed
    engine = get_engine()
    forms = []
    for detail in tasks:
        declared = (detail.form_schema or {}).get("properties", {})
        mine = (values or {}).get(detail.task.id)
        shown = mine if mine is not None else {k: v for k, v in detail.data.items()
                                               if k in declared}
        task_errors = (errors or {}).get(detail.task.id, {})
        forms.append({"detail": detail, "errors": task_errors,
                      "fields": fields_for(localised(detail.form_schema), shown, task_errors),
                      "attachments": engine.list_attachments(case_id=view.case_id,
                                                             task_id=detail.task.id)})
    response = render_template("enterprise/progress.html", view=view, stages=STAGES,
                               phases=PHASES, token=token, forms=forms, message=message)
    return response, status, PRIVATE


@bp.route("/p/<token>")
def progress(token: str) -> Any:
    """What the enterprise sees: its project, and the tasks in its own lane to do here."""
    return _page(token)


@bp.route("/p/<token>/tasks/<task_id>", methods=["POST"])
def task(token: str, task_id: str) -> Any:
    """The project unit uploads a file to, or completes, one of its own tasks."""
    links = _links()
    try:
        detail = next((d for d in links.tasks(token) if d.task.id == task_id), None)
        if detail is None:  # done already (by the unit or by an agent for it), or no such task
            return _page(token, message=_closed_message(*links.closed_task(token, task_id)),
                         status=409)
    except NotFound:
        abort(404)
    values = data_from_form(detail.form_schema, request.form)
    action = request.form.get("action", "complete")
    upload = request.files.get("attachment")
    back = url_for("enterprise.progress", token=token) + f"#task-{task_id}"
    try:
        if upload is not None and upload.filename:
            try:
                links.attach(token, task_id, upload.filename, upload.read(),
                             request.form.get("material") or None)
            except AttachmentRefused as exc:
                return _page(token, {task_id: values},
                             {task_id: {"__attachment__": engine_message(exc.message)}},
                             status=422)
            if action == "upload":
                flash(_("File attached: %(name)s", name=upload.filename))
                return redirect(back)
        elif action == "upload":
            return _page(token, {task_id: values},
                         {task_id: {"__attachment__": _("Choose a file first.")}}, status=422)
        links.complete(token, task_id, values, request.form.get("version", type=int))
    except InvalidData as exc:
        found = {path: engine_message(msg) for path, msg in error_paths(exc.errors).items()}
        return _page(token, {task_id: values}, {task_id: found}, status=422)
    except (Conflict, TaskNotReady) as exc:
        return _page(token, message=engine_message(exc.message), status=409)
    flash(_("Submitted: %(title)s", title=task_title(detail.task)))
    return redirect(url_for("enterprise.progress", token=token))


def _closed_message(row: HumanTask, step: ProxiedStep | None) -> str:
    """Why a task of the unit cannot be submitted any more, as the unit reads it."""
    title = task_title(row)
    if step is not None:
        return _("“%(title)s”已由代办员 %(agent)s 于 %(when)s 代贵单位办理（代为办理），"
                 "无需再提交；本次提交未做任何更改。", title=title, agent=person(step.agent),
                 when=local_time(step.at))
    if row.state == "completed" and row.completed_at is not None:
        return _("“%(title)s”已于 %(when)s 提交，无需再提交；本次提交未做任何更改。",
                 title=title, when=local_time(row.completed_at))
    return _("“%(title)s”已撤回，无需再提交；本次提交未做任何更改。", title=title)


@bp.route("/p/<token>/documents/<int:document_id>.pdf")
def document(token: str, document_id: int) -> Any:
    """A document addressed to the project unit (notice, commitment letter, handover...)."""
    try:
        title, pdf = _links().document_pdf(token, document_id)
    except NotFound:
        abort(404)
    response = Response(pdf, mimetype="application/pdf", headers=PRIVATE)
    # ASCII name for old clients, the document's own title for the others (RFC 6266).
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"document-{document_id}.pdf\"; "
        f"filename*=UTF-8''{quote(title + '.pdf')}")
    return response


@bp.route("/enterprise-links")
@requires("office", "agent")
def projects() -> Any:
    """Projects whose unit may be given a progress link."""
    _manager_only()
    text = request.args.get("q", "")
    return render_template("enterprise/projects.html", projects=_links().projects(text), q=text)


@bp.route("/cases/<int:case_id>/enterprise-links", methods=["GET", "POST"])
@requires("office", "agent")
def links(case_id: int) -> Any:
    """A case's links; creating one shows its address once."""
    _manager_only()
    engine = get_engine()
    case = engine.get_case(case_id)
    new_url = None
    if request.method == "POST":
        token, _link = _links().create(case_id, g.user.actor, request.form.get("recipient", ""))
        new_url = url_for("enterprise.progress", token=token, _external=True)
    return render_template("enterprise/links.html", case=case, links=_links().links(case_id),
                           new_url=new_url), 201 if new_url else 200


@bp.route("/enterprise-links/<int:link_id>/revoke", methods=["POST"])
@requires("office", "agent")
def revoke(link_id: int) -> Any:
    """Stop a link from working."""
    _manager_only()
    link = _links().revoke(link_id, g.user.actor)
    flash(_("链接已撤销，企业再打开将显示“页面不存在”"))
    return redirect(url_for("enterprise.links", case_id=link.case_id))
