"""Auditors' pages: case search, history and step-through replay, verification, exports,
process heatmaps and the operations log. Every page only reads."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from agency.reports import CaseQuery, ops_log, process_heatmap, process_versions, search_cases
from agency.reports import search_choices as choices_for_search
from engine.audit.export import SEAL_PROOFS, export_case
from engine.audit.history import case_history
from engine.audit.sealcheck import case_seal_checks
from engine.audit.seals import get_seal, list_seals, seals_covering
from webapp import get_engine
from webapp.auth import requires

bp = Blueprint("audit", __name__, url_prefix="/audit")
READERS = ("auditor", "office", "admin")
PAGE_SIZE = 20

EVENT_LABELS = {
    "case_started": _l("立案启动"), "task_completed": _l("完成任务"),
    "task_claimed": _l("认领任务"), "task_released": _l("释放任务（放回部门待办）"),
    "task_reassigned": _l("转交替岗代办员"), "task_draft_saved": _l("保存草稿"),
    "comment_added": _l("评论"), "timer_fired": _l("定时器触发"),
    "deadlines_moved": _l("办理期限调整"),
    "case_terminated": _l("终止办理"), "process_version_saved": _l("保存流程版本"),
    "process_published": _l("发布流程版本"), "account_created": _l("创建账号"),
    "password_reset": _l("重置密码"), "api_token_issued": _l("签发 API 令牌"),
    "api_tokens_revoked": _l("吊销 API 令牌"), "schema_migrated": _l("数据库结构迁移"),
}
STATUS_LABELS = {"running": _l("办理中"), "completed": _l("已办结"), "terminated": _l("已终止")}
STATE_LABELS = {"completed": _l("已完成"), "active": _l("办理中"), "waiting": _l("等待")}


def _date(name: str) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, _("日期格式应为 YYYY-MM-DD：%(value)s", value=value))


@bp.route("/")
@requires(*READERS)
def index() -> Any:
    """Search cases by project, enterprise, department, agent, item, state, dates, overdue."""
    args = request.args
    query = CaseQuery(
        project=args.get("project", "").strip(), enterprise=args.get("enterprise", "").strip(),
        department=args.get("department", ""), agent=args.get("agent", "").strip(),
        item=args.get("item", ""), status=args.get("status", ""),
        started_from=_date("from"), started_to=_date("to"), overdue=bool(args.get("overdue")))
    page = max(args.get("page", 1, type=int) or 1, 1)
    found = search_cases(get_engine(), query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max((found.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return render_template("audit/index.html", query=query, found=found, page=page,
                           pages=pages, choices=choices_for_search(get_engine()),
                           args={k: v for k, v in args.items() if k != "page"})


@bp.route("/cases/<int:case_id>")
@requires(*READERS)
def case(case_id: int) -> Any:
    """A case's timeline and the case as it was after step `?step=N`, rebuilt by replay."""
    engine = get_engine()
    step = request.args.get("step", type=int)
    history = case_history(engine, case_id, step)
    current = history.moment.seq if history.moment else (step or history.last_seq)
    event = next((s for s in history.steps if s.seq == current), None)
    verification = engine.verify_case(case_id) if request.args.get("verify") else None
    # The seals covering the case; when verifying, each checked against today's events.
    seal_checks = case_seal_checks(engine, case_id) if verification else None
    coverage = seals_covering(engine, f"case:{case_id}")
    return render_template(
        "audit/case.html", history=history, case=history.case, step=current, event=event,
        diagrams=engine.case_diagrams(case_id), verification=verification,
        coverage=coverage, seal_checks=seal_checks)


@bp.route("/cases/<int:case_id>/export.json")
@requires(*READERS)
def export_json(case_id: int) -> Any:
    """The case's history as a self-contained JSON file (checked by `zerorun verify-export`)."""
    document = export_case(get_engine(), case_id)
    body = json.dumps(document, ensure_ascii=False, indent=1)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="case-{case_id}.json"'})


def report_html(case_id: int, seal_proofs: int | None = SEAL_PROOFS) -> str:
    """The printable report: timeline, final diagrams and the embedded export, in one file."""
    engine = get_engine()
    history = case_history(engine, case_id)
    from webapp.report import inline_assets

    return render_template("audit/report.html", history=history, case=history.case,
                           diagrams=engine.case_diagrams(case_id),
                           document=export_case(engine, case_id, seal_proofs),
                           verification=engine.verify_case(case_id), assets=inline_assets())


@bp.route("/cases/<int:case_id>/report.html")
@requires(*READERS)
def report(case_id: int) -> Any:
    """The printable HTML report, to open in a browser or save."""
    download = bool(request.args.get("download"))
    headers = {"Content-Disposition": f'attachment; filename="case-{case_id}.html"'} \
        if download else {}
    return Response(report_html(case_id), mimetype="text/html", headers=headers)


@bp.route("/cases/<int:case_id>/report.pdf")
@requires(*READERS)
def report_pdf(case_id: int) -> Any:
    """The report printed to PDF by headless Chromium."""
    from webapp.report import html_to_pdf

    pdf = html_to_pdf(report_html(case_id), get_engine().config.chromium)
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="case-{case_id}.pdf"'})


@bp.route("/processes")
@requires(*READERS)
def processes() -> Any:
    """Every process version with the number of cases started on it."""
    return render_template("audit/processes.html", versions=process_versions(get_engine()))


@bp.route("/processes/<process_id>/<int:version>")
@requires(*READERS)
def heatmap(process_id: str, version: int) -> Any:
    """A version's diagrams coloured by cases passed and median time spent per element."""
    heat = process_heatmap(get_engine(), process_id, version)
    elements = {pid: {eid: {"cases": h.cases, "done": h.tasks_done, "open": h.tasks_open,
                            "median": h.median_hours, "max": h.max_hours}
                      for eid, h in by_id.items()} for pid, by_id in heat.elements.items()}
    return render_template("audit/heatmap.html", heat=heat, elements=elements)


@bp.route("/seals")
@requires(*READERS)
def seals() -> Any:
    """The audit seals, newest first, each downloadable as the small JSON file to keep."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    found = list_seals(get_engine(), limit=page * 100 + 1)
    shown = found[(page - 1) * 100:page * 100]
    return render_template("audit/seals.html", seals=shown, page=page,
                           more=len(found) > page * 100)


@bp.route("/seals/<int:number>.json")
@requires(*READERS)
def seal_json(number: int) -> Any:
    """One seal as the JSON file auditors keep outside the system (`zerorun verify-seal`)."""
    document = get_seal(get_engine(), number).document()
    return Response(json.dumps(document, indent=1) + "\n", mimetype="application/json",
                    headers={"Content-Disposition":
                             f'attachment; filename="zerorun-seal-{number}.json"'})


@bp.route("/ops")
@requires(*READERS)
def ops() -> Any:
    """Administrators' operations: versions saved, migrations, account changes."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    log = ops_log(get_engine(), limit=50, offset=(page - 1) * 50)
    pages = max((log.total + 49) // 50, 1)
    return render_template("audit/ops.html", log=log, page=page, pages=pages)


@bp.app_template_filter("json_pretty")
def json_pretty(value: Any) -> str:
    """Data as indented JSON, Chinese kept readable."""
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True)


@bp.app_context_processor
def audit_links() -> dict[str, Any]:
    """Helpers the audit templates share."""

    def step_url(case_id: int, seq: int) -> str:
        return url_for("audit.case", case_id=case_id, step=seq, _anchor="step")

    return {"step_url": step_url, "EVENT_LABELS": EVENT_LABELS, "STATUS_LABELS": STATUS_LABELS,
            "STATE_LABELS": STATE_LABELS}
