"""Administrators' pages: the process library, the diagram editor, diffs, publishing, migration."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select

from engine.errors import Conflict, InvalidProcess, Problem
from engine.pack.diff import element_names
from engine.pack.dmn_table import DecisionTable, read_table, write_table
from engine.pack.library import Library
from engine.pack.migration import MigrationRefused
from engine.pack.xml import MAX_XML_BYTES
from engine.store.models import Case, Department
from webapp import get_engine, whatif
from webapp.auth import requires
from webapp.labels import joined, process
from webapp.pack_messages import diff_detail, element_kind, migration_reason, problem_message

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _library() -> Library:
    return Library(get_engine())


def _problems(exc: InvalidProcess) -> list[dict[str, Any]]:
    """Each problem in the user's language (`engine_message`: the engine's own wording)."""
    return [{"message": problem_message(p.message), "engine_message": p.message,
             "file": p.file, "line": p.line, "element": p.element,
             "element_name": p.element_name} for p in exc.problems]


@bp.route("/processes")
@requires("admin", "auditor")
def processes() -> Any:
    """Every process with its versions, the published one, and the cases running on each."""
    return render_template("admin/processes.html", entries=_library().processes(),
                           max_bytes=MAX_XML_BYTES)


@bp.route("/processes/<process_id>/edit")
@requires("admin")
def edit(process_id: str) -> Any:
    """The bpmn-js modeler on a version (the published one unless another is chosen)."""
    library = _library()
    entry = library.process(process_id)
    version_id = request.args.get("version", type=int)
    files = library.version(version_id) if version_id else library.current_version(process_id)
    if files.info.process_id != process_id or files.main_file is None:
        abort(404)
    engine = get_engine()
    with engine.db.reading() as s:
        departments = [(d.code, d.name) for d in s.scalars(
            select(Department).order_by(Department.position))]
    editor = {
        "process_id": process_id,
        "file": files.main_file,
        "xml": files.sources[files.main_file],
        "version": {"id": files.info.id, "number": files.info.number,
                    "status": files.info.status},
        "forms": library.forms(),
        "processes": [e.process_id for e in library.processes()],
        "departments": departments,
        "save_url": url_for("admin.save"),
        "library_url": url_for("admin.processes"),
    }
    return render_template("admin/editor.html", entry=entry, files=files, editor=editor)


@bp.route("/processes/save", methods=["POST"])
@requires("admin")
def save() -> Any:
    """Validate an edited file against the whole pack; store drafts, or say what is wrong."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("xml"), str) \
            or not isinstance(body.get("file"), str):
        return jsonify({"message": _("请求格式错误：需要 file 与 xml"), "problems": []}), 400
    forms_raw = body.get("forms") or {}
    if not isinstance(forms_raw, dict) or not all(isinstance(v, str) for v in forms_raw.values()):
        return jsonify({"message": _("请求格式错误：forms 必须是文件名到文本的映射"),
                        "problems": []}), 400
    forms = {str(name): text.encode("utf-8") for name, text in forms_raw.items()}
    if body.get("preview"):
        return _preview(body["file"], body["xml"].encode("utf-8"), forms)
    return _save_and_report(body["file"], body["xml"].encode("utf-8"),
                            str(body.get("comment") or ""), forms)


def _preview(file_name: str, data: bytes, forms: dict[str, bytes]) -> Any:
    """What saving would store, stored nothing: the versions, and the calling processes
    that would get one too (the editor asks before saving those)."""
    try:
        pending = _library().preview_save(file_name, data, g.user.actor, forms)
    except InvalidProcess as exc:
        return jsonify({"message": _("未保存：流程定义有 %(n)d 个问题，未存储任何内容",
                                     n=len(exc.problems)),
                        "problems": _problems(exc)}), 422
    versions = [{"process_id": p.process_id, "name": p.name or p.process_id,
                 "number": p.number, "caller": p.caller} for p in pending]
    callers = [v for v in versions if v["caller"]]
    message = _("保存后以下 %(n)d 个调用此流程的流程也将各生成一个新的草稿版本：",
                n=len(callers)) if callers else ""
    return jsonify({"preview": True, "versions": versions, "callers": callers,
                    "message": message}), 200


def _save_and_report(file_name: str, data: bytes, comment: str,
                     forms: dict[str, bytes] | None = None) -> Any:
    try:
        result = _library().save(file_name, data, g.user.actor, comment, forms)
    except InvalidProcess as exc:
        return jsonify({"message": _("未保存：流程定义有 %(n)d 个问题，未存储任何内容",
                                     n=len(exc.problems)),
                        "problems": _problems(exc)}), 422
    created = [{"process_id": p, "number": n} for p, n in result.created]
    unchanged = [{"process_id": p, "number": n} for p, n in result.unchanged]
    if created:
        message = _("已保存为草稿：%(list)s", list=joined(
            _("%(p)s 第 %(n)d 版", p=process(p), n=n) for p, n in result.created))
    else:
        message = _("内容与已存储的版本相同，未创建新版本")
    return jsonify({"message": message, "created": created, "unchanged": unchanged}), \
        201 if created else 200


@bp.route("/processes/upload", methods=["POST"])
@requires("admin")
def upload() -> Any:
    """Deploy an uploaded .bpmn or .dmn file as a draft after validating the whole pack."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("请选择要上传的文件"))
        return redirect(url_for("admin.processes"))
    try:
        data = upload.stream.read(MAX_XML_BYTES + 1)
    finally:
        upload.close()
    name = upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    try:
        result = _library().save(name, data, g.user.actor,
                                 request.form.get("comment", "") or _("上传 %(f)s", f=name))
    except InvalidProcess as exc:
        return render_template("admin/processes.html", entries=_library().processes(),
                               max_bytes=MAX_XML_BYTES, refused=name,
                               problems=_problems(exc)), 422
    if result.created:
        flash(_("已上传并保存为草稿：%(list)s",
                list=joined(_("%(p)s 第 %(n)d 版", p=process(p), n=n) for p, n in result.created)))
    else:
        flash(_("内容与已存储的版本相同，未创建新版本"))
    return redirect(url_for("admin.processes"))


@bp.route("/versions/<int:version_id>/download")
@requires("admin", "auditor")
def download(version_id: int) -> Any:
    """A version's own diagram file, as stored."""
    files = _library().version(version_id)
    name = request.args.get("file") or files.main_file
    if name is None or name not in files.sources:
        abort(404)
    download_name = f"{files.info.process_id}-v{files.info.number}-{name.rsplit('/', 1)[-1]}"
    return Response(files.sources[name], mimetype="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{download_name}"'})


@bp.route("/versions/<int:version_id>/publish", methods=["POST"])
@requires("admin")
def publish(version_id: int) -> Any:
    """Make a version the one new cases use (asked to confirm first when its latest what-if
    replay found cases that would run differently)."""
    if not request.form.get("confirm"):
        confirmation = whatif.publish_confirmation(version_id)
        if confirmation is not None:
            return confirmation
    done = _library().publish(version_id, g.user.actor)
    if done:
        flash(_("已发布：%(list)s（新案件使用此版本，办理中的案件保持原版本）",
                list=joined(_("%(p)s 第 %(n)d 版", p=process(p), n=n) for p, n in done)))
    else:
        flash(_("此版本已是发布版本"))
    return redirect(url_for("admin.processes"))


@bp.route("/processes/<process_id>/diff")
@requires("admin", "auditor")
def diff(process_id: str) -> Any:
    """Changes between two versions, as a list and marked on both diagrams."""
    library = _library()
    entry = library.process(process_id)
    numbers = {v.number: v for v in entry.versions}
    new_number = request.args.get("to", type=int) or entry.versions[0].number
    old_number = request.args.get("from", type=int) or max(
        [n for n in numbers if n < new_number], default=new_number)
    if old_number not in numbers or new_number not in numbers:
        abort(404)
    old, new = library.version(numbers[old_number].id), library.version(numbers[new_number].id)
    changes = library.diff(old.info.id, new.info.id)
    data = {
        "old": old.sources.get(old.main_file or "", ""),
        "new": new.sources.get(new.main_file or "", ""),
        "changes": [{"element": c.element, "kind": c.kind} for c in changes],
    }
    names = {**element_names(data["old"]), **element_names(data["new"])} \
        if data["old"] and data["new"] else {}
    shown = [{"element": c.element, "kind": c.kind, "type": element_kind(c.type),
              "title": c.name or names.get(c.element) or (
                  c.element if c.type == "file" else element_kind(c.type)),
              "details": [diff_detail(d, names) for d in c.details]} for c in changes]
    return render_template("admin/diff.html", entry=entry, old=old, new=new, changes=shown,
                           data=data)


@bp.route("/processes/<process_id>/migrate", methods=["GET", "POST"])
@requires("admin")
def migrate(process_id: str) -> Any:
    """Running cases on other versions: which can move safely, and moving them."""
    library = _library()
    engine = get_engine()
    entry = library.process(process_id)
    target_id = request.values.get("to", type=int) or (entry.published or entry.versions[0]).id
    target = next((v for v in entry.versions if v.id == target_id), None)
    if target is None:
        abort(404)
    if request.method == "POST":
        moved, refused = [], []
        for case_id in request.form.getlist("case", type=int):
            try:
                engine.migrate_case(case_id, target.id, g.user.actor)
                moved.append(case_id)
            except (MigrationRefused, Conflict) as exc:
                refused.append(f"#{case_id}: " + joined(
                    migration_reason(r) for r in getattr(exc, "reasons", None) or [exc.message]))
        if moved:
            flash(_("已迁移到第 %(n)d 版的案件：%(list)s", n=target.number,
                    list=joined(f"#{c}" for c in moved)))
        for reason in refused:
            flash(_("未迁移 %(reason)s", reason=reason))
        return redirect(url_for("admin.migrate", process_id=process_id, to=target.id))
    numbers = {v.id: v.number for v in entry.versions}
    with engine.db.reading() as s:
        cases = list(s.scalars(select(Case).where(Case.process_id == process_id,
                                                  Case.status == "running")
                               .order_by(Case.id)))
    rows = []
    for case in cases:
        migrated = any(e.type == "case_migrated" for e in engine.case_events(case.id))
        if case.process_version_id == target.id:
            rows.append({"case": case, "version": numbers.get(case.process_version_id),
                         "on_target": True, "safe": False, "reasons": [],
                         "migrated": migrated})
            continue
        verdict = engine.migration_check(case.id, target.id)
        rows.append({"case": case, "version": numbers.get(case.process_version_id),
                     "on_target": False, "safe": verdict.safe, "reasons": verdict.reasons,
                     "migrated": migrated})
    return render_template("admin/migrate.html", entry=entry, target=target, rows=rows,
                           migration_reason=migration_reason)


@bp.route("/cases/<int:case_id>/revert-migration", methods=["POST"])
@requires("admin")
def revert_migration(case_id: int) -> Any:
    """Move a case back to the version it ran before its last migration."""
    engine = get_engine()
    try:
        view = engine.revert_migration(case_id, g.user.actor)
    except (MigrationRefused, Conflict) as exc:
        flash(_("未撤销：%(reason)s", reason=exc.message))
        view = engine.get_case(case_id)
    else:
        flash(_("已撤销案件 #%(id)d 的迁移", id=case_id))
    return redirect(url_for("admin.migrate", process_id=view.process_id))


@bp.route("/decisions/<file_name>", methods=["GET", "POST"])
@requires("admin")
def decision(file_name: str) -> Any:
    """A decision table (DMN) as an editable table; saved like a diagram."""
    files = _library().current_files()
    if not file_name.endswith(".dmn") or file_name not in files:
        abort(404)
    source = files[file_name]
    table = read_table(source.encode("utf-8"))
    problems: list[dict[str, Any]] = []
    status = 200
    if request.method == "POST":
        if request.form.get("rows", type=int) is None:
            abort(400)  # not the table's form: nothing to save
        rules = _rules_from_form(table)
        try:
            if not rules:
                raise InvalidProcess([Problem(
                    _("决策表至少需要一条规则；未保存任何内容"), file=file_name,
                    element=table.decision_id)])
            data = write_table(source.encode("utf-8"), rules)
            result = _library().save(file_name, data, g.user.actor,
                                     request.form.get("comment", ""))
        except InvalidProcess as exc:
            problems, status = _problems(exc), 422
            table = DecisionTable(table.decision_id, table.name, table.hit_policy,
                                  table.inputs, table.outputs, rules)
        else:
            if result.created:
                flash(_("已保存为草稿：%(list)s", list=joined(
                    _("%(p)s 第 %(n)d 版", p=process(p), n=n) for p, n in result.created)))
            else:
                flash(_("内容与已存储的版本相同，未创建新版本"))
            return redirect(url_for("admin.decision", file_name=file_name))
    return render_template("admin/decision.html", file_name=file_name, table=table,
                           problems=problems), status


def _rules_from_form(table: DecisionTable) -> list[dict[str, Any]]:
    """The rows of the submitted table, in order, without those marked for deletion."""
    count = request.form.get("rows", type=int) or 0
    rules = []
    for index in range(count):
        if request.form.get(f"r{index}-delete"):
            continue
        cells = [value for key, value in request.form.items()
                 if key.startswith(f"r{index}-") and key != f"r{index}-id"]
        if not any(value.strip() for value in cells):
            continue  # the empty row offered for a new rule
        rules.append({
            "id": request.form.get(f"r{index}-id", ""),
            "description": request.form.get(f"r{index}-description", ""),
            "inputs": [request.form.get(f"r{index}-in{i}", "") for i in range(len(table.inputs))],
            "outputs": [request.form.get(f"r{index}-out{o}", "")
                        for o in range(len(table.outputs))],
        })
    return rules
