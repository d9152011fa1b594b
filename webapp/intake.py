"""The office's bulk intake: upload a project list, fix or drop rows in a preview, import."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from agency import intake
from agency.intake import COLUMNS, MAX_BYTES, SOURCES, IntakeError, ProjectImports
from engine.errors import Conflict, EngineError
from webapp import get_engine
from webapp.auth import requires

bp = Blueprint("intake", __name__, url_prefix="/intake")
TRANSLATED_PARAMS = {"column", "coded", "declared"}


def problem_text(problem: dict[str, Any]) -> str:
    """An engine message id with its parameters, in the user's language (column names and
    approval types among the parameters too)."""
    params = {key: _(value) if key in TRANSLATED_PARAMS and isinstance(value, str) and value
              else value for key, value in problem.get("params", {}).items()}
    message = problem["message"]  # (a variable: extraction must not take "message" for a msgid)
    return _(message, **params)


def error_text(exc: EngineError) -> str:
    """An intake error's message in the user's language."""
    return _(exc.message, **exc.details.get("params", {})) if "params" in exc.details \
        else exc.message


@bp.app_template_filter("problem")
def _problem_filter(problem: dict[str, Any]) -> str:
    return problem_text(problem)


def _imports() -> ProjectImports:
    return ProjectImports(get_engine())


@bp.route("/", methods=["GET", "POST"])
@requires("office", "admin")
def index() -> Any:
    """Upload a list; the imports waiting in preview."""
    error = None
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = _("请选择要上传的项目清单文件（.xlsx 或 .csv）")
        else:
            content = upload.stream.read(MAX_BYTES + 1)
            try:
                view = _imports().upload(upload.filename, content,
                                         request.form.get("source", ""), g.user.actor)
            except IntakeError as exc:
                error = error_text(exc)
            else:
                flash(_("已读取 %(rows)s 行，其中 %(bad)s 行需要修改", rows=len(view.rows),
                        bad=len(view.bad_lines)))
                return redirect(url_for("intake.preview", import_id=view.id))
    return render_template("intake/index.html", pending=_imports().pending(), sources=SOURCES,
                           error=error, limit_mb=f"{MAX_BYTES / (1024 * 1024):g}",
                           limit_rows=intake.MAX_ROWS), 422 if error else 200


@bp.route("/template.<any(xlsx, csv):kind>")
@requires("office", "admin")
def template(kind: str) -> Response:
    """The template of a project list, as Excel or CSV."""
    if kind == "csv":
        body, mimetype = intake.template_csv(), "text/csv"
    else:
        schema = get_engine().process_form(intake.PROCESS_ID, intake.START_FORM) or {}
        body = intake.template_xlsx(schema)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = (
        f"attachment; filename=project-list-template.{kind}; "
        f"filename*=UTF-8''%E9%A1%B9%E7%9B%AE%E6%B8%85%E5%8D%95%E6%A8%A1%E6%9D%BF.{kind}")
    return response


@bp.route("/<int:import_id>", methods=["GET", "POST"])
@requires("office", "admin")
def preview(import_id: int) -> Any:
    """Each row with its problems; the office corrects, drops, re-checks and imports."""
    imports = _imports()
    if request.method == "POST":
        action = request.form.get("action", "check")
        try:
            if action == "discard":
                imports.discard(import_id, g.user.actor)
                flash(_("已放弃该导入，没有登记任何项目"))
                return redirect(url_for("intake.index"))
            view = imports.revise(import_id, *_edits(imports.get(import_id).rows),
                                  actor=g.user.actor)
            if action == "import":
                cases = imports.commit(import_id, g.user.actor)
                flash(_("已导入 %(count)s 个项目，每个项目的代办流程已启动", count=len(cases)))
            elif view.bad_lines:
                flash(_("重新检查完毕：还有 %(count)s 行需要修改", count=len(view.bad_lines)))
            else:
                flash(_("重新检查完毕：所有行均无错误，可以导入"))
        except IntakeError as exc:
            flash(error_text(exc))
        except Conflict as exc:
            flash(exc.message)
        return redirect(url_for("intake.preview", import_id=import_id))
    view = imports.get(import_id)
    return render_template("intake/preview.html", view=view, columns=COLUMNS,
                           source_name=SOURCES.get(view.source, view.source))


def _edits(rows: list[dict[str, Any]]) -> tuple[dict[int, dict[str, str]], set[int]]:
    """Corrected cells and dropped lines from the preview form."""
    edits: dict[int, dict[str, str]] = {}
    dropped: set[int] = set()
    for row in rows:
        line = int(row["line"])
        if request.form.get(f"drop-{line}"):
            dropped.add(line)
        for column in COLUMNS:
            value = request.form.get(f"c-{line}-{column.field}")
            if value is not None:
                edits.setdefault(line, {})[column.field] = value
    return edits, dropped
