"""The agency team and publicity: units, absences and substitutes, training with attendance,
and the publishable summary of the service."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from agency import documents, publicity, team
from engine import accounts
from engine.errors import FieldError, InvalidData
from webapp import get_engine
from webapp.agent import department_name
from webapp.auth import requires
from webapp.i18n import engine_message
from webapp.labels import person

bp = Blueprint("team", __name__)
READERS = ("office", "admin", "leader", "auditor")
KEEPERS = ("office", "admin")


def _date(name: str) -> date:
    try:
        return date.fromisoformat(request.form.get(name, "").strip())
    except ValueError:
        raise InvalidData("the form has errors", [FieldError(name, "enter a valid date")]) \
            from None


def _page(errors: dict[str, str] | None = None, status: int = 200) -> Any:
    engine = get_engine()
    year = engine.clock().year
    agents = team.agents(engine)
    # A leader records absences of his own unit's agents only: the pickers offer just them.
    pickable = [a for a in agents if g.user.role != "leader" or a[2] == g.user.department]
    units: dict[str, list[tuple[str, str, str | None]]] = {}
    for entry in pickable:
        units.setdefault(department_name(entry[2]) or "—", []).append(entry)
    with engine.db.reading() as s:
        inactive = {u.username for u in accounts.list_users(s) if not u.active}
    return render_template("team/index.html", units=team.team(engine),
                           absences=team.list_absences(engine),
                           sessions=team.list_training(engine),
                           agents=agents, agent_units=units, inactive=inactive,
                           may_record_absence=g.user.role in (*KEEPERS, "leader"),
                           department_name=department_name, errors=errors or {},
                           form=request.form, year=year), status


@bp.route("/team")
@requires(*READERS)
def index() -> Any:
    """The units with their agents and leaders, who is away and who stands in, training."""
    return _page()


@bp.route("/team/absences", methods=["POST"])
@requires(*KEEPERS, "leader")
def record_absence() -> Any:
    """Record an agent's absence (a leader for his own unit); their open tasks go to the
    substitute, who is told."""
    form = request.form
    try:
        absence = team.record_absence(
            get_engine(), form.get("username", ""), form.get("substitute", ""),
            _date("starts_on"), _date("ends_on"), form.get("reason", ""), g.user.actor)
    except InvalidData as exc:
        return _page({e.field: engine_message(e.message) for e in exc.errors}, 422)
    flash(_("Absence recorded; %(n)s open task(s) went to %(who)s, who has been notified.",
            n=absence.moved, who=person(absence.substitute)))
    return redirect(url_for("team.index"))


@bp.route("/team/training", methods=["POST"])
@requires(*KEEPERS)
def record_training() -> Any:
    """Record a training session with the agents invited and present."""
    form = request.form
    try:
        hours = float(form.get("hours", "") or "nan")
    except ValueError:
        hours = float("nan")
    try:
        if hours != hours:  # NaN: not a number
            raise InvalidData("the form has errors", [FieldError("hours", "enter a number")])
        team.record_training(get_engine(), form.get("title", ""), _date("held_on"), hours,
                             form.get("topics", ""), form.getlist("invited"),
                             form.getlist("attended"), g.user.actor)
    except InvalidData as exc:
        return _page({e.field: engine_message(e.message) for e in exc.errors}, 422)
    flash(_("Training session recorded."))
    return redirect(url_for("team.index"))


@bp.route("/publicity")
@requires("office", "leader", "auditor")
def publicity_page() -> Any:
    """The publishable summary as it stands, and the versions the office released."""
    engine = get_engine()
    released = [d for d in documents.list_documents(engine, None, g.user.actor)
                if d.kind == publicity.KIND]
    return render_template("team/publicity.html", summary=publicity.public_summary(engine),
                           released=released)


@bp.route("/publicity", methods=["POST"])
@requires("office")
def release_summary() -> Any:
    """Issue the summary as a document (page and PDF) to publish."""
    doc = publicity.release(get_engine(), g.user.actor)
    flash(_("Released: %(title)s", title=doc.title))
    return redirect(url_for("team.publicity_page"))


@bp.route("/publicity/<int:document_id>.pdf")
@requires("office", "leader", "auditor")
def summary_pdf(document_id: int) -> Any:
    """A released summary as PDF."""
    view, _html, pdf = documents.get_document(get_engine(), document_id, g.user.actor)
    if view.kind != publicity.KIND:
        abort(404)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="summary-{view.id}.pdf"'
    return response
