"""Progress reports at the leading-group office: per case and as a weekly digest, exportable."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, Response, abort, g, render_template, request
from flask_babel import gettext as _

from agency import progress
from webapp import get_engine
from webapp.auth import requires

bp = Blueprint("progress", __name__)
READERS = ("office", "leader", "auditor")


def _scope() -> str | None:
    return g.user.department if g.user.role == "leader" else None


def _week() -> date:
    raw = request.args.get("week", "")
    try:
        return progress.week_of(date.fromisoformat(raw)) if raw else \
            progress.week_of(get_engine().clock().astimezone(progress.SERVICE_TZ).date())
    except ValueError:
        abort(400)  # not a date


@bp.route("/progress-reports")
@requires(*READERS)
def digest() -> Any:
    """The weekly digest: reports submitted, reports missing, items stalled."""
    week = _week()
    view = progress.weekly_digest(get_engine(), week, _scope())
    return render_template("progress/digest.html", digest=view,
                           previous=(week - timedelta(days=7)).isoformat(),
                           following=(week + timedelta(days=7)).isoformat())


@bp.route("/progress-reports.<any(csv, xlsx):kind>")
@requires(*READERS)
def export(kind: str) -> Any:
    """The digest as CSV (one table) or as an Excel workbook (a sheet per table)."""
    week = _week()
    tables = progress.weekly_digest(get_engine(), week, _scope()).table_rows()
    name = f"progress-{week.isoformat()}"
    if kind == "csv":
        table = request.args.get("table", "reports")
        if table not in tables:
            return Response(_("Unknown table: %(table)s; one of: %(tables)s", table=table,
                              tables=", ".join(tables)), status=400, mimetype="text/plain")
        buffer = io.StringIO()
        csv.writer(buffer).writerows(tables[table])
        response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}-{table}.csv"'
        return response
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in tables.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    response = Response(buffer.getvalue(), mimetype="application/vnd.openxmlformats-"
                        "officedocument.spreadsheetml.sheet")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.xlsx"'
    return response


@bp.route("/cases/<int:case_id>/progress-reports")
@requires("agent", *READERS, "admin")
def case_reports(case_id: int) -> Any:
    """A case's progress reports, newest first (for whoever may read the case)."""
    engine = get_engine()
    case = engine.check_case_visible(case_id, g.user.actor)
    return render_template("progress/case.html", case=case,
                           reports=progress.case_reports(engine, case_id))
