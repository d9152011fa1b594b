"""Pausing and resuming an item's clock (rule R12) and the markers pages show for it: a
paused item, a provisional due date (rule R13)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Blueprint, flash, g, redirect, request, url_for
from flask_babel import gettext as _

from agency import calendar, clocks
from agency.reference import reference_of
from engine.cases import TaskView
from engine.runtime.clock import SERVICE_TZ
from webapp import get_engine
from webapp.auth import requires

bp = Blueprint("clocks", __name__)


@bp.route("/cases/<int:case_id>/items/<item_code>/pause", methods=["POST"])
@requires(*clocks.PAUSERS)
def pause(case_id: int, item_code: str) -> Any:
    """Stop an item's clock for a reason of the catalogue; back to the case."""
    engine = get_engine()
    engine.check_case_visible(case_id, g.user.actor)
    form = request.form
    clocks.pause(engine, case_id, item_code, form.get("reason", ""), form.get("days", ""),
                 form.get("note", ""), g.user.actor)
    flash(_("已暂停计时，办理期限相应顺延。"))
    return redirect(url_for("agent.case", case_id=case_id) + "#clocks")


@bp.route("/cases/<int:case_id>/items/<item_code>/resume", methods=["POST"])
@requires(*clocks.PAUSERS)
def resume(case_id: int, item_code: str) -> Any:
    """Start an item's clock again; back to the case."""
    engine = get_engine()
    engine.check_case_visible(case_id, g.user.actor)
    clocks.resume(engine, case_id, item_code, g.user.actor)
    flash(_("已恢复计时，办理期限已按实际暂停的工作日重新计算。"))
    return redirect(url_for("agent.case", case_id=case_id) + "#clocks")


@bp.route("/calendar/year", methods=["POST"])
@requires(*calendar.WRITERS)
def declare_year() -> Any:
    """The office declares a year's holidays and make-up days from the State Council's
    notice at once; the provisional due dates of that year are computed again."""
    engine = get_engine()
    form = request.form
    try:
        year = int(form.get("year", ""))
        holidays = _dates(form.get("holidays", ""))
        workdays = _dates(form.get("workdays", ""))
    except ValueError:
        flash(_("日期格式应为 YYYY-MM-DD：%(value)s", value=form.get("holidays", "")[:40]),
              "warning")
        return redirect(url_for("oversight.calendar_page")), 422
    calendar.declare_year(engine, year, holidays, workdays, form.get("note", ""), g.user.actor)
    flash(_("已登记 %(day)s", day=str(year)), "success")
    return redirect(url_for("oversight.calendar_page", year=year))


def _dates(text: str) -> list[date]:
    return [date.fromisoformat(part) for part in text.replace(",", " ").replace("，", " ").split()]


@bp.app_template_global()
def clock_mark(task: TaskView) -> dict[str, Any]:
    """What a task's due date is beside its date: its item paused (with why and until when),
    or a provisional date past the declared calendar."""
    if task.state != "ready":
        return {"paused": None, "provisional": False}
    return item_mark(task.case_id, task.item_code, task.due_at)


@bp.app_template_global()
def item_mark(case_id: int, item_code: str | None, due_at: datetime | None
              ) -> dict[str, Any]:
    """An item's marks beside its due date (one read of the open pauses a page)."""
    engine = get_engine()
    ref = reference_of(engine)
    paused = g.get("_open_pauses")
    if paused is None:
        with engine.db.reading() as s:
            paused = g._open_pauses = clocks.paused_items(s, ref, None, engine.clock())
    return {"paused": paused.get((case_id, item_code or "")),
            "provisional": clocks.is_provisional(ref.calendar, due_at)}


@bp.app_template_global()
def case_clocks(case_id: int) -> dict[str, Any]:
    """The case page's item clocks: times, pauses and what the user may do."""
    engine = get_engine()
    times = clocks.item_times(engine, {case_id})
    user = g.user
    return {"times": times, "reasons": reference_of(engine).pause_reasons,
            "may_pause": lambda t: t.ended_on is None and user.role in clocks.PAUSERS and (
                user.role == "office" or user.department == t.department),
            "today": engine.clock().astimezone(SERVICE_TZ).date()}

