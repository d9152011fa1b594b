"""Administrators' what-if replay: recorded cases re-executed against a draft, with progress."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine.errors import CaseNotFound, Conflict
from engine.pack import whatif
from engine.pack.library import Library
from engine.store.models import Case
from webapp import get_engine
from webapp.auth import requires
from webapp.i18n import engine_message

bp = Blueprint("whatif", __name__, url_prefix="/admin")

CLOSED_DEFAULT = 20
CLOSED_MAX = 1000


def _draft_page(version_id: int, status: int = 200, error: str | None = None,
                chosen: list[int] | None = None) -> Any:
    engine = get_engine()
    files = Library(engine).version(version_id)
    entry = Library(engine).process(files.info.process_id)
    replaced = entry.published
    closed = min(max(request.values.get("closed", CLOSED_DEFAULT, type=int) or 0, 0),
                 CLOSED_MAX)
    candidates = whatif.candidates(engine, version_id, closed) if replaced else []
    query = request.values.get("q", "").strip()
    found: list[Case] = []
    if query:
        ids = whatif.search(engine, version_id, query)
        with engine.db.reading() as s:
            found = list(s.scalars(select(Case).where(Case.id.in_(ids))
                                   .order_by(Case.id.desc())))
    with engine.db.reading() as s:
        running = sum(1 for status_ in s.scalars(select(Case.status).where(
            Case.id.in_(candidates))) if status_ == "running")
    return render_template("admin/whatif.html", files=files, entry=entry, replaced=replaced,
                           closed=closed, candidates=candidates, running=running,
                           query=query, found=found, chosen=set(chosen or []),
                           runs=whatif.runs_of(engine, version_id), error=error), status


@bp.route("/versions/<int:version_id>/whatif", methods=["GET"])
@requires("admin")
def choose(version_id: int) -> Any:
    """Which cases to replay against a draft: the version's own, or found by a search."""
    return _draft_page(version_id)


@bp.route("/versions/<int:version_id>/whatif", methods=["POST"])
@requires("admin")
def start(version_id: int) -> Any:
    """Queue a replay of the chosen cases; the worker runs it while the page shows progress."""
    engine = get_engine()
    if request.form.get("mode") == "candidates":
        closed = min(max(request.form.get("closed", CLOSED_DEFAULT, type=int) or 0, 0),
                     CLOSED_MAX)
        case_ids = whatif.candidates(engine, version_id, closed)
    else:
        raw = request.form.getlist("case")
        if not all(value.strip().lstrip("#").isdigit() for value in raw):
            return _draft_page(version_id, 422, _("案件编号必须是数字；未开始试演"))
        case_ids = [int(value.strip().lstrip("#")) for value in raw]
    try:
        run_id = whatif.start_run(engine, version_id, case_ids, g.user.actor)
    except (Conflict, CaseNotFound) as exc:
        return _draft_page(version_id, 422, _refusal(exc), case_ids)
    return redirect(url_for("whatif.run", run_id=run_id))


def _refusal(exc: Conflict | CaseNotFound) -> str:
    """Why a replay was not started, in the user's language."""
    message = exc.message
    if message.startswith("choose at least one case"):
        return _("请至少选择一个案件；未开始试演")
    if " is not a draft " in message:
        return _("只有草稿版本可以试演；未开始试演")
    if message.startswith("these cases are not cases of "):
        cases = "、".join(f"#{c}" for c in exc.details.get("cases", []))
        return _("以下案件不属于本流程，不能用此草稿试演：%(list)s；未开始试演", list=cases)
    if message.startswith("these cases do not exist"):
        return _("所选案件不存在：%(list)s；未开始试演", list=message.split(": ", 1)[-1])
    if message.startswith("a replay takes at most"):
        return _("一次试演最多 %(n)d 个案件；未开始试演", n=whatif.MAX_CASES)
    return engine_message(message)


@bp.route("/whatif/<int:run_id>")
@requires("admin")
def run(run_id: int) -> Any:
    """A replay's progress, then its outcomes: identical, diverging where and how, migratable."""
    engine = get_engine()
    view = whatif.run_view(engine, run_id)  # an unknown run is a 404 page
    files = Library(engine).version(view.version_id)
    return render_template("admin/whatif_run.html", run=view, files=files,
                           field_message=engine_message)


@bp.route("/whatif/<int:run_id>/progress")
@requires("admin")
def progress(run_id: int) -> Any:
    """How far a replay is, for the page's progress bar."""
    view = whatif.run_view(get_engine(), run_id, outcomes=False)
    return jsonify({"state": view.state, "done": view.done, "total": view.total,
                    "finished": view.finished})


def publish_confirmation(version_id: int) -> Any | None:
    """The page asking to confirm publishing a version whose latest what-if replay found
    cases that would run differently; None when there is nothing to confirm."""
    engine = get_engine()
    latest = whatif.latest_finished(engine, version_id)
    if latest is None or not latest.of("diverged"):
        return None
    files = Library(engine).version(version_id)
    return render_template("admin/whatif_confirm.html", run=latest, files=files,
                           field_message=engine_message)
