"""Documents the service issues, produced from a case's data as printable HTML and PDF,
stored with the case as issued and recorded as case events."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import Document, DocumentCounter
from agency.oversight import PHASE_NAMES, STAGE_NAMES, Figures, warning_levels
from agency.reference import reference_of
from engine.actors import Actor
from engine.audit.chain import NewEvent
from engine.audit.seals import list_seals
from engine.errors import CaseNotFound, EngineError, Forbidden, NotFound, Unavailable
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Event, HumanTask, User

if TYPE_CHECKING:
    from engine.cases import Engine

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates" / "documents"
KINDS = {
    "one_time_notice": "一次性告知书",
    "dispatch": "项目审批任务派遣单",
    "rejection": "不予受理告知书",
    "refusal": "不予许可决定告知书",
    "commitment": "告知承诺书",
    "commitment_decision": "告知承诺核查处理决定书",
    "handover": "审批结果移交记录",
    "termination": "终止代办服务记录",
    "progress": "项目代办进展报告",
    "periodic_report": "零跑路代办服务进展情况报告",
    "public_summary": "零跑路代办服务成效公示",
}
# Completed tasks each task-based document is produced from.
TASK_KINDS = {"check_materials": "rejection", "track_approval": "refusal",
              "record_commitment": "commitment",
              "commitment_decision": "commitment_decision",
              "handover_results": "handover", "termination_record": "termination",
              "hand_back_materials": "termination"}
SEAL_DAYS = 31  # the periodic report lists the audit seals made in this many last days
WRITERS = ("agent", "leader", "office")
READERS = ("agent", "leader", "office", "admin", "auditor")

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Choice:
    """A document that can be produced for a case now."""

    kind: str
    source: str
    label: str
    department: str | None = None


@dataclass(frozen=True)
class DocumentView:
    """A stored document without its content."""

    id: int
    case_id: int | None
    kind: str
    source: str
    title: str
    department: str | None
    sha256: str
    created_by: str
    created_at: datetime
    size: int
    number: str | None = None


def _view(row: Document) -> DocumentView:
    return DocumentView(row.id, row.case_id, row.kind, row.source, row.title, row.department,
                        row.sha256, row.created_by, row.created_at, len(row.pdf), row.number)


def _check_reader(engine: Engine, case_id: int | None, actor: Actor) -> None:
    if case_id is None:
        if not (actor.is_system or actor.role in ("office", "leader", "admin", "auditor")):
            raise Forbidden("the service's progress reports are for the leading group")
    elif not engine.may_see_case(case_id, actor):
        raise CaseNotFound(f"case {case_id} does not exist")


def list_documents(engine: Engine, case_id: int | None, actor: Actor) -> list[DocumentView]:
    """The documents issued for a case (or the service's reports when case_id is None)."""
    _check_reader(engine, case_id, actor)
    query = select(Document).where(Document.case_id.is_(None) if case_id is None
                                   else Document.case_id == case_id)
    with engine.db.reading() as s:
        return [_view(row) for row in s.scalars(query.order_by(Document.id.desc()))]


def get_document(engine: Engine, document_id: int, actor: Actor) -> tuple[DocumentView, str,
                                                                          bytes]:
    """A stored document with its HTML and PDF, if the actor may see its case."""
    with engine.db.reading() as s:
        row = s.get(Document, document_id)
        if row is None:
            raise NotFound(f"document {document_id} does not exist")
        view, html, pdf = _view(row), row.html, row.pdf
    _check_reader(engine, view.case_id, actor)
    return view, html, pdf


def choices(engine: Engine, case_id: int) -> list[Choice]:
    """The documents the case's data allows now."""
    case = engine.get_case(case_id)
    data = case.data
    found: list[Choice] = []
    if data.get("items"):
        found.append(Choice("one_time_notice", "", KINDS["one_time_notice"]))
        names = _department_names(engine)
        for code in sorted({str(i.get("department")) for i in data["items"]}):
            found.append(Choice("dispatch", code, f"{KINDS['dispatch']}（{names.get(code, code)}）",
                                code))
    for row, submitted in _completed(engine, case_id):
        kind = TASK_KINDS[row.spec_name]
        if kind == "rejection" and submitted.get("decision") != "reject":
            continue
        if kind == "refusal" and submitted.get("progress") != "not_approved":
            continue
        label = KINDS[kind] + (f"（{row.item_name}）" if row.item_name else "")
        if row.completed_at is not None:
            label += f" · {row.completed_at.astimezone(SERVICE_TZ):%Y-%m-%d %H:%M}"
        found.append(Choice(kind, row.id, label, row.department))
    found.append(Choice("progress", "", KINDS["progress"]))
    return found


def generate(engine: Engine, case_id: int, kind: str, source: str, actor: Actor
             ) -> DocumentView:
    """Produce a case document from the case's current data, store it and record the event."""
    if not (actor.is_system or actor.role in WRITERS):
        raise Forbidden("only agents, leaders and the office issue documents")
    _check_reader(engine, case_id, actor)
    wanted = next((c for c in choices(engine, case_id) if c.kind == kind and
                   c.source == (source or "")), None)
    if wanted is None:
        if kind not in KINDS:
            raise EngineError(f"unknown document kind {kind!r}; choose one of "
                              f"{', '.join(KINDS)}")
        raise EngineError(f"case {case_id} has no {KINDS[kind]} to issue for {source!r} "
                          "(the task is not completed or does not call for it)")
    context = _case_context(engine, case_id, wanted)
    title = f"{KINDS[kind]}：{context['case'].title}" + (
        f" · {context['item']['name']}" if context.get("item") else "") + (
        f" · {context['department_name']}" if kind == "dispatch" else "")
    return _store(engine, case_id, kind, wanted.source, title, wanted.department, context,
                  actor)


def generate_periodic_report(engine: Engine, figures: Figures, charts: dict[str, str],
                             actor: Actor) -> DocumentView:
    """The periodic progress report to the leading group, from the dashboard's figures."""
    if not (actor.is_system or actor.role in ("office", "leader")):
        raise Forbidden("only the office and leaders issue progress reports")
    names = _department_names(engine)
    scope = names.get(figures.department or "", "全市") if figures.department else "全市"
    # A line per audit seal of the last 31 days: printed copies of the roots auditors keep.
    seals = list_seals(engine, since=engine.clock() - timedelta(days=SEAL_DAYS))
    context = {"title": KINDS["periodic_report"], "figures": figures, "charts": charts,
               "scope": scope, "issued": engine.clock(), "actor": actor, "seals": seals,
               "seal_days": SEAL_DAYS}
    title = f"{KINDS['periodic_report']}（{scope} · {figures.today:%Y-%m-%d}）"
    return _store(engine, None, "periodic_report", figures.department or "", title,
                  figures.department, context, actor)


def render(kind: str, context: dict[str, Any]) -> str:
    """The document's printable HTML."""
    return _env.get_template(f"{kind}.html").render(
        kinds=KINDS, phase_names=PHASE_NAMES, stage_names=STAGE_NAMES, tz=SERVICE_TZ,
        **context)


def to_pdf(html: str) -> bytes:
    """Lay the HTML out as an A4 PDF (the Noto CJK fonts are embedded)."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # WeasyPrint loads Pango when imported
        raise Unavailable("PDF documents need WeasyPrint with Pango and a Chinese font "
                          "(Debian: libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk); "
                          f"nothing was stored ({exc})") from exc
    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    return pdf


def store(engine: Engine, case_id: int | None, kind: str, source: str, title: str,
          department: str | None, html: str, actor: Actor) -> DocumentView:
    """Lay out and keep a document produced elsewhere in the service (e.g. the summary)."""
    return _store(engine, case_id, kind, source, title, department, html, actor)


def _store(engine: Engine, case_id: int | None, kind: str, source: str, title: str,
           department: str | None, context: dict[str, Any] | str, actor: Actor
           ) -> DocumentView:
    """Number, lay out and keep a document: `context` is rendered with the document's
    template, or is the finished HTML of a document produced elsewhere."""
    now = engine.clock()
    with engine.db.transaction() as s:
        # numbered in the document's transaction: a failure leaves the counter untouched
        number = allocate_number(s, reference_of(engine).settings.document_number, now)
        html = context if isinstance(context, str) else render(
            kind, {**context, "doc_no": number, "person": _people(s)})
        pdf = to_pdf(html)
        digest = hashlib.sha256(pdf).hexdigest()
        row = Document(case_id=case_id, kind=kind, source=source, title=title,
                       department=department, html=html, pdf=pdf, sha256=digest,
                       created_by=actor.username, created_at=now, number=number)
        s.add(row)
        s.flush()
        if case_id is not None:
            engine.append_case_event(s, case_id, NewEvent(
                "document_generated", actor.username, now,
                {"document_id": row.id, "kind": kind, "source": source, "title": title,
                 "sha256": digest, "number": number}))
        view = _view(row)
    log.info("document %s (%s) issued by %s", view.id, kind, actor.username)
    return view


def allocate_number(s: Session, scheme: str, now: datetime) -> str:
    """The next document number of the service's year, taken in the caller's transaction
    (the counter row is locked until it commits, so two documents never share a number)."""
    year = now.astimezone(SERVICE_TZ).year
    counter = s.get(DocumentCounter, year, with_for_update=True)
    if counter is None:
        counter = DocumentCounter(year=year, last=0)
        s.add(counter)
    counter.last += 1
    s.flush()
    return scheme.format(year=year, n=counter.last)


def _people(s: Session) -> Callable[[str | None], str]:
    names = {u: n or u for u, n in s.execute(select(User.username, User.display_name))}

    def person(username: str | None) -> str:
        return names.get(username or "", username or "")
    return person


def _department_names(engine: Engine) -> dict[str, str]:
    return {code: str(d.get("name", code)) for code, d in reference_of(engine).departments.items()}


def _completed(engine: Engine, case_id: int) -> list[tuple[HumanTask, dict[str, Any]]]:
    """Completed tasks that documents are made from, with the data submitted."""
    with engine.db.reading() as s:
        rows = list(s.scalars(select(HumanTask).where(
            HumanTask.case_id == case_id, HumanTask.state == "completed",
            HumanTask.spec_name.in_(tuple(TASK_KINDS))).order_by(HumanTask.completed_at)))
        events = s.scalars(select(Event).where(Event.stream == f"case:{case_id}",
                                               Event.type == "task_completed"))
        submitted = {e.data.get("task_id"): e.data.get("data") or {} for e in events}
    return [(row, submitted.get(row.id, {})) for row in rows]


def _case_context(engine: Engine, case_id: int, wanted: Choice) -> dict[str, Any]:
    case = engine.get_case(case_id)
    data = case.data
    ref = reference_of(engine)
    departments = ref.departments
    items = [dict(i) for i in data.get("items") or [] if isinstance(i, dict)]
    materials_by_code = {m.get("code"): m for m in data.get("materials") or []}
    item_names = {i.get("code"): i.get("name") for i in items}
    for item in items:
        owner = departments.get(str(item.get("department")), {})
        item["department_name"] = owner.get("name", item.get("department"))
        item["agent"] = owner.get("agent", "")
        days = int(item.get("committed_days") or item.get("time_limit_days") or 0)
        item["committed_days"] = max(1, (days + 1) // 2) if item.get("green_channel") else days
        project = data.get("project") or {}
        item["part_names"] = [str(p.get("name")) for p in item.get("parts") or []
                              if isinstance(p, dict) and (not p.get("when")
                                                          or project.get(p["when"]))]
        item["material_names"] = [materials_by_code.get(code, {}).get("name", code)
                                  for code in item.get("materials", [])]
        # parallel approval: an item may run beside later phases, or wait for another's result
        due = str(item.get("due_phase") or item.get("phase"))
        item["due_phase_name"] = PHASE_NAMES.get(due) if due != str(item.get("phase")) else None
    for item in items:
        item["requires_names"] = [item_names.get(code) or code
                                  for code in item.get("requires") or [] if code in item_names]
    phases = [(str(p), PHASE_NAMES[str(p)], [i for i in items if str(i.get("phase")) == str(p)])
              for p in range(1, 5)]
    materials = [{**m, "item_names": [item_names.get(c, c) for c in m.get("items", [])]}
                 for m in data.get("materials") or []]
    bureau = departments.get("approval_bureau", {})
    context: dict[str, Any] = {
        "title": KINDS[wanted.kind], "case": case, "data": data,
        "project": data.get("project") or {}, "phases": [p for p in phases if p[2]],
        "items": items, "materials": materials, "bureau": bureau,
        "issued": engine.clock(), "departments": departments,
    }
    if wanted.kind == "dispatch":
        code = wanted.source
        context["department_name"] = departments.get(code, {}).get("name", code)
        context["department"] = departments.get(code, {})
        context["dept_items"] = [i for i in items if i.get("department") == code]
    elif wanted.kind == "progress":
        context["progress"] = _progress(engine, case_id, items)
    elif wanted.kind in ("rejection", "refusal", "commitment", "commitment_decision",
                         "handover", "termination"):
        row, submitted = next((r, d) for r, d in _completed(engine, case_id)
                              if r.id == wanted.source)
        context.update(task=row, submitted=submitted, item=next(
            (i for i in items if i.get("code") == row.item_code), None))
        if wanted.kind == "rejection":
            earlier = [r for r, d in _completed(engine, case_id)
                       if r.spec_name == "check_materials" and r.item_code == row.item_code
                       and d.get("decision") == "reject" and r.completed_at is not None
                       and row.completed_at is not None and r.completed_at <= row.completed_at]
            context["attempt"] = len(earlier)
    return context


def _progress(engine: Engine, case_id: int, items: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """Each item's state for the case progress report."""
    results = {r.get("code"): r for r in engine.get_case(case_id).data.get("item_results") or []}
    tasks = engine.list_tasks(case_id=case_id, states=("ready", "completed"), limit=2000)
    open_tasks = [t for t in tasks if t.state == "ready"]
    levels = warning_levels(engine, open_tasks)
    level_names: dict[str, str] = {"none": "正常", "yellow": "黄色预警", "red": "红色预警"}
    rows = []
    for item in items:
        code = item.get("code")
        mine = [t for t in open_tasks if t.item_code == code]
        due = next((t.due_at for t in tasks if t.item_code == code and t.due_at is not None
                    and t.spec_name == "track_approval"), None)
        worst = "none"
        for t in mine:
            if levels[t.id] == "red" or (levels[t.id] == "yellow" and worst == "none"):
                worst = levels[t.id]
        if code in results:
            status = {"approved": "已办结", "terminated": "已终止"}.get(
                str(results[code].get("outcome")), str(results[code].get("outcome")))
        elif mine:
            status = "、".join(sorted({STAGE_NAMES.get(t.stage or "", t.stage or "") or t.title
                                      for t in mine}))
        else:
            status = "未开始"
        rows.append({"item": item, "status": status, "warning": level_names[worst],
                     "level": worst, "due": due.astimezone(SERVICE_TZ).date() if due else None,
                     "approval_no": (results.get(code) or {}).get("approval_no") or ""})
    return rows
