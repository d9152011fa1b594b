"""The leading group's oversight: case documents, notifications, the dashboard and its exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from markupsafe import Markup

from agency import calendar, documents, notify, oversight, team
from agency.charts import bar_chart
from engine.cases import TaskView
from engine.errors import EngineError, Forbidden
from engine.runtime.clock import SERVICE_TZ
from webapp import get_engine
from webapp.auth import requires
from webapp.i18n import engine_message

bp = Blueprint("oversight", __name__)

ALL_ROLES = ("agent", "leader", "office", "admin", "auditor")
# Auditors change nothing, not even the read marks of notifications (they receive none).
MARKERS = ("agent", "leader", "office", "admin")
EXPORT_TABLES = ("open_cases_by_phase_stage", "overdue_by_department", "handling_times",
                 "government_time",
                 "closed_this_month")


# Helpers the lead wires into other pages ------------------------------------------------

def warning_levels(tasks: Iterable[TaskView]) -> dict[str, str]:
    """Overdue level ("none", "yellow", "red") of each open task, by task id (for inboxes)."""
    return oversight.warning_levels(get_engine(), tasks)


def case_documents_context(case_id: int) -> dict[str, Any]:
    """What the case page's documents partial shows: issued documents and what can be issued."""
    engine = get_engine()
    actor = g.user.actor
    return {"case_id": case_id,
            "documents": documents.list_documents(engine, case_id, actor),
            "choices": documents.choices(engine, case_id)
            if actor.role in documents.WRITERS else []}


@bp.app_context_processor
def oversight_globals() -> dict[str, Any]:
    """Unread count for the header; helpers for the case page and inboxes."""
    unread = 0
    if getattr(g, "user", None) is not None:
        unread = notify.unread_count(get_engine(), g.user.username)
    return {"unread_notifications": unread, "case_documents_context": case_documents_context,
            "warning_levels": warning_levels}


def _back(default: str) -> Any:
    target = request.form.get("next", "")
    return redirect(target if target.startswith("/") and not target.startswith("//")
                    else default)


# Documents ------------------------------------------------------------------------------

@bp.route("/cases/<int:case_id>/documents")
@requires(*ALL_ROLES)
def case_documents(case_id: int) -> Any:
    """A case's documents: those issued, and the ones its data allows now."""
    case = get_engine().check_case_visible(case_id, g.user.actor)
    return render_template("oversight/documents.html", case=case)


@bp.route("/cases/<int:case_id>/documents", methods=["POST"])
@requires("agent", "leader", "office")
def issue_document(case_id: int) -> Any:
    """Produce a document from the case's data."""
    engine = get_engine()
    engine.check_case_visible(case_id, g.user.actor)  # 404 for a case the user may not see
    default = url_for("oversight.case_documents", case_id=case_id)
    kind = request.form.get("kind", "").strip()
    source = request.form.get("source", "").strip()
    try:
        doc = documents.generate(engine, case_id, kind, source, g.user.actor)
    except Forbidden:
        raise
    except EngineError as exc:
        flash(_("未能生成文书：%(reason)s", reason=exc.message))
        return _back(default)
    flash(_("已生成：%(title)s", title=doc.title))
    return _back(default)


@bp.route("/documents/<int:document_id>")
@requires(*ALL_ROLES)
def document_html(document_id: int) -> Any:
    """The printable HTML of an issued document."""
    _view, html, _pdf = documents.get_document(get_engine(), document_id, g.user.actor)
    return Response(html, mimetype="text/html")


@bp.route("/documents/<int:document_id>.pdf")
@requires(*ALL_ROLES)
def document_pdf(document_id: int) -> Any:
    """The PDF of an issued document, as a download."""
    view, _html, pdf = documents.get_document(get_engine(), document_id, g.user.actor)
    response = Response(pdf, mimetype="application/pdf")
    name = f"{view.kind}-{view.case_id or 'service'}-{view.id}.pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-SHA256"] = view.sha256
    return response


# Notifications --------------------------------------------------------------------------

@bp.route("/notifications")
@requires(*ALL_ROLES)
def notifications() -> Any:
    """The user's notifications, newest first; unread ones marked."""
    items = notify.list_notifications(get_engine(), g.user.username,
                                      unread_only=request.args.get("unread") == "1")
    return render_template("oversight/notifications.html", items=items)


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@requires(*MARKERS)
def read_notification(notification_id: int) -> Any:
    """Mark one notification read."""
    notify.mark_read(get_engine(), g.user.username, notification_id)
    return _back(url_for("oversight.notifications"))


@bp.route("/notifications/read-all", methods=["POST"])
@requires(*MARKERS)
def read_all_notifications() -> Any:
    """Mark every notification of the user read."""
    count = notify.mark_read(get_engine(), g.user.username)
    flash(_("%(count)s 条通知已标为已读", count=count))
    return _back(url_for("oversight.notifications"))


# Dashboard ------------------------------------------------------------------------------

def _scope() -> str | None:
    """Leaders see their department; the office (and auditors) the whole service."""
    return g.user.department if g.user.role == "leader" else None


def _charts(figures: oversight.Figures) -> dict[str, str]:
    phase_rows = [(f"{phase}·{stage}", {"count": n})
                  for (phase, stage), n in figures.by_phase_stage.items()]
    overdue_rows = [(d["name"], {"yellow": d["yellow"], "red": d["red"]})
                    for d in figures.overdue.values()]
    return {
        "phase_stage": bar_chart(_("在办案件所处阶段"), phase_rows, ["count"],
                                 {"count": _("案件数")}),
        "overdue": bar_chart(_("超期预警事项（按部门）"), overdue_rows, ["yellow", "red"],
                             {"yellow": _("黄色预警"), "red": _("红色预警")}),
    }


@bp.route("/dashboard")
@requires("office", "leader", "auditor")
def dashboard() -> Any:
    """Open cases by phase and stage, overdue items, handling times, cases closed this month."""
    engine = get_engine()
    figures = oversight.figures(engine, _scope())
    charts = {k: Markup(v) for k, v in _charts(figures).items()}  # noqa: S704 - built escaped
    reports = documents.list_documents(engine, None, g.user.actor)
    if g.user.role == "leader":
        reports = [r for r in reports if r.department == g.user.department]
    year = figures.today.year
    calendar_until = (calendar.coverage_warning(engine, engine.clock())
                      if g.user.role == "office" else None)
    return render_template("oversight/dashboard.html", figures=figures, charts=charts,
                           reports=reports, calendar_until=calendar_until, year=year,
                           assessment=team.assessment(engine, year, _scope()),
                           satisfaction=team.satisfaction(engine, None, _scope()))


@bp.route("/calendar", methods=["GET", "POST"])
@requires(*calendar.WRITERS)
def calendar_page() -> Any:
    """The working-day calendar: the published holidays and make-up days of a year, and the
    office's declarations over them (each an audited operation)."""
    engine = get_engine()
    now = engine.clock()
    year = request.args.get("year", type=int) or now.astimezone(SERVICE_TZ).year
    status, values = 200, {}
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in ("day", "kind", "note")}
        try:
            day = date.fromisoformat(values["day"])
        except ValueError:
            flash(_("日期格式不对：%(value)s", value=values["day"]), "warning")
            status = 422
        else:
            try:
                calendar.declare(engine, day, values["kind"], values["note"], g.user.actor)
            except EngineError as exc:
                flash(engine_message(exc.message), "warning")
                status = 422
            else:
                flash(_("已登记 %(day)s", day=day.isoformat()), "success")
                return redirect(url_for("oversight.calendar_page", year=day.year))
    until = calendar.covered_until(calendar.refresh(engine))
    return render_template("oversight/calendar.html", year=year, until=until, values=values,
                           entries=calendar.entries(engine, year),
                           can_change=True), status


@bp.route("/dashboard.csv")
@requires("office", "leader", "auditor")
def dashboard_csv() -> Any:
    """One table of the dashboard as CSV (UTF-8 with BOM, so spreadsheet programs read it)."""
    table = request.args.get("table", "overdue_by_department")
    if table not in EXPORT_TABLES:
        return Response(_("未知的表：%(table)s；可选：%(tables)s", table=table,
                          tables=", ".join(EXPORT_TABLES)), status=400, mimetype="text/plain")
    rows = oversight.figures(get_engine(), _scope()).table_rows()[table]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{table}.csv"'
    return response


@bp.route("/dashboard.xlsx")
@requires("office", "leader", "auditor")
def dashboard_xlsx() -> Any:
    """Every table of the dashboard as one Excel workbook, a sheet per table."""
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in oversight.figures(get_engine(), _scope()).table_rows().items():
        sheet = workbook.create_sheet(name[:31])
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    response = Response(buffer.getvalue(), mimetype="application/vnd.openxmlformats-"
                        "officedocument.spreadsheetml.sheet")
    response.headers["Content-Disposition"] = 'attachment; filename="dashboard.xlsx"'
    return response


@bp.route("/dashboard/report", methods=["POST"])
@requires("office", "leader")
def issue_report() -> Any:
    """The periodic progress report to the leading group, from the dashboard's figures."""
    engine = get_engine()
    figures = oversight.figures(engine, _scope())
    doc = documents.generate_periodic_report(engine, figures, _charts(figures), g.user.actor)
    flash(_("已生成：%(title)s", title=doc.title))
    return redirect(url_for("oversight.dashboard"))
