"""Follow-up records: searchable lists of visits, meetings, symposiums, policies, opinions."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from agency.records import KINDS, NOTE_FIELDS, NOTE_ROLES, Query, record_note, search
from engine.errors import N_, InvalidData
from webapp import get_engine
from webapp.auth import requires
from webapp.i18n import engine_message

bp = Blueprint("records", __name__, url_prefix="/records")
# The form that describes a kind's context (the meeting's convening data).
CONTEXT_FORMS = {"meetings": ("joint_meeting", "meeting_convene.schema.json")}
STATUSES = {"open": N_("办理中"), "overdue": N_("已逾期"), "done": N_("已办结"),
            "cancelled": N_("已取消")}


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@bp.route("/")
@bp.route("/<kind>")
@requires("office", "leader", "admin", "auditor")
def index(kind: str = "visits") -> Any:
    """One kind of record, filtered by text, project, department, dates and status."""
    if kind not in KINDS:
        abort(404)
    engine = get_engine()
    args = request.args
    problems = [_("日期“%(value)s”无法识别，请用 年-月-日 格式", value=args[name])
                for name in ("since", "until") if args.get(name) and _day(args[name]) is None]
    department = args.get("department", "")
    if g.user.role == "leader":
        department = g.user.department or ""  # leaders see their own department's records
    query = Query(text=args.get("q", "").strip(), project=args.get("project", "").strip(),
                  department=department, since=_day(args.get("since")),
                  until=_day(args.get("until")), status=args.get("status", ""))
    records = search(engine, kind, query)
    names = {code: name for name, code in engine.department_names().items() if name != code}
    return render_template("records/index.html", kinds=KINDS, kind=KINDS[kind],
                           records=records, query=query, departments=names,
                           statuses=STATUSES, problems=problems,
                           fields=_labeller(engine), describe=_describe,
                           leader=g.user.role == "leader",
                           context_form=CONTEXT_FORMS.get(kind, ("", None)))


def _labeller(engine: Any) -> Any:
    """A function giving (label, text) pairs of a record's data, from its form's schema."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    names = {code: name for name, code in engine.department_names().items() if name != code}

    def fields(process_id: str, form: str | None, data: dict[str, Any]
               ) -> list[tuple[str, str]]:
        key = (process_id, form or "")
        if key not in cache:
            cache[key] = (engine.process_form(process_id, form) if form else None) or {
                "properties": {f.name: {"title": _(f.title)} for fields in NOTE_FIELDS.values()
                               for f in fields}}
        props = cache[key].get("properties", {})
        return [(props.get(name, {}).get("title", name), _text(props.get(name, {}), value, names))
                for name, value in data.items() if value not in (None, "", [])]

    return fields


@bp.route("/cases/<int:case_id>/<kind>", methods=["POST"])
@requires(*NOTE_ROLES)
def note(case_id: int, kind: str) -> Any:
    """An agent records a policy consultation or an after-service follow-up on a case."""
    from webapp import agent

    if kind not in NOTE_FIELDS:
        abort(404)
    values = {f.name: request.form.get(f.name, "") for f in NOTE_FIELDS[kind]}
    try:
        record_note(get_engine(), case_id, kind, values, g.user.actor)
    except InvalidData as exc:
        titles = {f.name: _(f.title) for f in NOTE_FIELDS[kind]}
        g.note_form = {"kind": kind, "entered": values, "message": engine_message(exc.message),
                       "errors": {e.field: f"{titles.get(e.field, e.field)}："
                                  f"{engine_message(e.message)}" for e in exc.errors}}
        return agent.case(case_id), 422
    flash(_("已记录：%(title)s", title=_(KINDS[kind].title)))
    return redirect(url_for("agent.case", case_id=case_id) + "#notes")


def _text(prop: dict[str, Any], value: Any, departments: dict[str, str]) -> str:
    if isinstance(value, bool):
        return _("是") if value else _("否")
    titles = {str(o["const"]): str(o.get("title", o["const"])) for o in prop.get("oneOf", [])
              if isinstance(o, dict) and "const" in o}
    if isinstance(prop.get("items"), dict):
        titles.update({str(o["const"]): str(o.get("title", o["const"]))
                       for o in prop["items"].get("oneOf", []) if "const" in o})
    if isinstance(value, list):
        return "；".join(_describe(v, departments) if isinstance(v, dict)
                        else titles.get(str(v), departments.get(str(v), str(v))) for v in value)
    return titles.get(str(value), str(value))


def _describe(subject: Any, departments: dict[str, str]) -> str:
    """A raised item's subject (a follow-up action, an opinion, a policy) in one line."""
    if isinstance(subject, dict):
        main = subject.get("task") or subject.get("issue") or subject.get("name") or ""
        extra = [departments.get(str(subject.get("department")), "")] \
            if subject.get("department") else []
        if subject.get("due_date"):
            extra.append(str(subject["due_date"]))
        return f"{main}（{'，'.join(e for e in extra if e)}）" if extra else str(main)
    return "" if subject is None else departments.get(str(subject), str(subject))
