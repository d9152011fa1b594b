"""Progress links for a project unit: tokens, revocation, what the page shows, and the
unit's own tasks (its lane) done there."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agency.models import Document, EnterpriseLink
from agency.reference import reference_of
from engine.actors import Actor, OnBehalf
from engine.audit.chain import NewEvent
from engine.cases import CaseView, Engine, TaskDetail
from engine.errors import (
    N_,
    CaseNotFound,
    Conflict,
    EngineError,
    FieldError,
    Forbidden,
    InvalidData,
    NotFound,
    TaskNotFound,
)
from engine.pack.forms import FormCatalogue
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, Department, HumanTask

PROJECT_UNIT = "project_unit"  # the lane (department code) of the project unit's own tasks
TOKEN_BYTES = 32  # 256 bits: guessing is hopeless, so no hint is ever given on failure
PHASES = {"1": N_("立项用地规划许可阶段"), "2": N_("工程建设许可阶段"), "3": N_("施工许可阶段"),
          "4": N_("竣工验收阶段")}
STAGES = {"preparation": N_("材料准备"), "handling": N_("业务办理"),
          "acceleration": N_("审批办理中"), "closing": N_("办结移交")}


def token_digest(token: str) -> str:
    """What is stored of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def may_manage(actor: Actor) -> bool:
    """The office and the Approval Service Bureau's agents hand out and revoke links."""
    return actor.is_system or actor.role == "office" or (
        actor.role == "agent" and actor.department == "approval_bureau")


@dataclass(frozen=True)
class LinkView:
    """A link as its managers see it (never the token)."""

    id: int
    case_id: int
    recipient: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class ItemProgress:
    """One approval item as the enterprise sees it."""

    code: str
    name: str
    department: str
    time_limit_days: int | None
    state: str  # not_started, in_progress, done, returned
    stage: str | None
    due_at: datetime | None


@dataclass(frozen=True)
class Waiting:
    """Something the project unit has to provide."""

    kind: str  # prepare, supply
    item_name: str
    materials: list[str]
    due_at: datetime | None


@dataclass(frozen=True)
class Progress:
    """Everything the enterprise page shows about one project."""

    case_id: int
    title: str
    status: str
    project: dict[str, Any]
    responsible_unit: str
    started_at: datetime
    phases: list[tuple[str, str, list[ItemProgress]]]
    waiting: list[Waiting]
    materials: list[dict[str, Any]] = field(default_factory=list)
    # Documents addressed to the project unit: (id, title, issued at).
    documents: list[tuple[int, str, datetime]] = field(default_factory=list)
    # The one-time notices among them, shown with the task that asks to acknowledge one.
    notices: list[tuple[int, str, datetime]] = field(default_factory=list)
    # The unit's steps an agent recorded for it (代为办理): (task title, item name, step).
    on_behalf: list[tuple[str, str | None, ProxiedStep]] = field(default_factory=list)


# The documents the service sends the project unit (the others are internal).
ADDRESSED_KINDS = ("one_time_notice", "rejection", "commitment", "commitment_decision",
                   "handover", "termination", "authorisation")


def _link_view(row: EnterpriseLink) -> LinkView:
    return LinkView(row.id, row.case_id, row.recipient, row.created_by, row.created_at,
                    row.revoked_at, row.revoked_by)


class EnterpriseLinks:
    """Creating, revoking and resolving the project unit's progress links."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, case_id: int, actor: Actor, recipient: str = "") -> tuple[str, LinkView]:
        """A new link for a project's case; the token is returned once and never stored."""
        if not may_manage(actor):
            raise Forbidden(N_("只有领导小组办公室或市审批服务管理局代办员可以生成企业查询链接"))
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.engine.clock()
        with self.engine.db.transaction() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            if not isinstance(case.data.get("project"), dict):
                raise EngineError(N_("只有代办项目的案件可以生成企业查询链接"))
            recipient = recipient.strip()[:200] or str(case.data["project"].get("lead", ""))
            row = EnterpriseLink(case_id=case_id, token_digest=token_digest(token),
                                 recipient=recipient, created_by=actor.username,
                                 created_at=now)
            s.add(row)
            s.flush()
            self.engine.append_case_event(s, case_id, NewEvent(
                "enterprise_link_created", actor.username, now,
                {"link_id": row.id, "recipient": recipient}))
            return token, _link_view(row)

    def revoke(self, link_id: int, actor: Actor) -> LinkView:
        """Stop a link from working; the page behind it is then not found."""
        if not may_manage(actor):
            raise Forbidden(N_("只有领导小组办公室或市审批服务管理局代办员可以撤销企业查询链接"))
        now = self.engine.clock()
        with self.engine.db.transaction() as s:
            row = s.get(EnterpriseLink, link_id, populate_existing=True)
            if row is None:
                raise NotFound(f"link {link_id} does not exist")
            if row.revoked_at is None:
                row.revoked_at, row.revoked_by = now, actor.username
                self.engine.append_case_event(s, row.case_id, NewEvent(
                    "enterprise_link_revoked", actor.username, now,
                    {"link_id": row.id, "recipient": row.recipient}))
            return _link_view(row)

    def links(self, case_id: int) -> list[LinkView]:
        """A case's links, newest first."""
        with self.engine.db.reading() as s:
            return [_link_view(r) for r in s.scalars(select(EnterpriseLink).where(
                EnterpriseLink.case_id == case_id).order_by(EnterpriseLink.id.desc()))]

    def projects(self, text: str = "", limit: int = 100) -> list[tuple[int, str, str, int]]:
        """Project cases (id, title, code, live links) matching a name or code, newest first."""
        query = select(Case.id, Case.title, Case.project_code).where(
            Case.project_code.is_not(None)).order_by(Case.id.desc()).limit(limit)
        if text.strip():
            like = f"%{text.strip()}%"
            query = query.where(Case.title.like(like) | Case.project_code.like(like))
        with self.engine.db.reading() as s:
            rows = [(r[0], r[1], r[2]) for r in s.execute(query)]
            live = {case_id: count for case_id, count in s.execute(
                select(EnterpriseLink.case_id, func.count()).where(
                    EnterpriseLink.revoked_at.is_(None),
                    EnterpriseLink.case_id.in_([r[0] for r in rows]))
                .group_by(EnterpriseLink.case_id))}
        return [(case_id, title, code or "", live.get(case_id, 0))
                for case_id, title, code in rows]

    def _case_of(self, s: Session, token: str) -> Case:
        if not token or len(token) > 100:
            raise NotFound("not found")
        link = s.scalar(select(EnterpriseLink).where(
            EnterpriseLink.token_digest == token_digest(token)))
        if link is None or link.revoked_at is not None:
            raise NotFound("not found")
        case = s.get(Case, link.case_id)
        if case is None:
            raise NotFound("not found")
        return case

    def progress(self, token: str) -> Progress:
        """The project behind a live token; NotFound for any unknown or revoked token."""
        with self.engine.db.reading() as s:
            case = self._case_of(s, token)
            tasks = list(s.scalars(select(HumanTask).where(HumanTask.case_id == case.id)
                                   .order_by(HumanTask.created_at, HumanTask.id)))
            departments = {code: name for code, name in s.execute(
                select(Department.code, Department.name))}
            documents = [(row.id, row.title, row.created_at, row.kind) for row in s.execute(
                select(Document.id, Document.title, Document.created_at, Document.kind).where(
                    Document.case_id == case.id, Document.kind.in_(ADDRESSED_KINDS))
                .order_by(Document.id))]
        view = _progress(case, tasks, departments)
        titles = {t.id: (t.title, t.item_name) for t in tasks}
        view.on_behalf.extend((*titles.get(step.task_id, (step.task_spec, None)), step)
                              for step in proxied_steps(self.engine, case.id).values())
        view.documents.extend((id_, title, at) for id_, title, at, _kind in documents)
        view.notices.extend((id_, title, at) for id_, title, at, kind in documents
                            if kind == "one_time_notice")
        return view

    # The project unit's own tasks (its lane, 项目单位), done on its page -----------------

    def actor(self, token: str) -> Actor:
        """Who acts through a live token: `enterprise:<case>`, bound to the unit's lane."""
        with self.engine.db.reading() as s:
            case = self._case_of(s, token)
        return Actor(f"enterprise:{case.id}", "external", PROJECT_UNIT)

    def tasks(self, token: str) -> list[TaskDetail]:
        """The case's open tasks in the project unit's lane, with their forms."""
        actor = self.actor(token)
        with self.engine.db.reading() as s:
            ids = list(s.scalars(select(HumanTask.id).where(
                HumanTask.case_id == _case_id(actor), HumanTask.state == "ready",
                HumanTask.department == PROJECT_UNIT).order_by(HumanTask.created_at,
                                                               HumanTask.id)))
        return [self.engine.get_task(task_id, actor) for task_id in ids]

    def closed_task(self, token: str, task_id: str) -> tuple[HumanTask, ProxiedStep | None]:
        """A task of the token's case in the unit's lane that is no longer open, with the
        agent's record if one did it for the unit; NotFound for any other task."""
        actor = self.actor(token)
        with self.engine.db.reading() as s:
            row = s.get(HumanTask, task_id) if len(task_id) <= 36 else None
            if (row is None or row.case_id != _case_id(actor) or row.department != PROJECT_UNIT
                    or row.state == "ready"):
                raise NotFound("not found")
            s.expunge(row)
        return row, proxied_steps(self.engine, row.case_id).get(task_id)

    def _own_task(self, token: str, task_id: str) -> tuple[Actor, TaskDetail]:
        """A task of the token's case in the unit's lane; NotFound for any other."""
        actor = self.actor(token)
        with self.engine.db.reading() as s:
            row = s.get(HumanTask, task_id) if len(task_id) <= 36 else None
            if row is None or row.case_id != _case_id(actor) or row.department != PROJECT_UNIT:
                raise NotFound("not found")
        return actor, self.engine.get_task(task_id, actor)

    def complete(self, token: str, task_id: str, data: dict[str, Any],
                 seen_version: int | None) -> TaskDetail:
        """Complete one of the unit's tasks with its form's data (an audited case event)."""
        actor, detail = self._own_task(token, task_id)
        self.engine.complete_task(task_id, data, actor, seen_version)
        return detail

    def attach(self, token: str, task_id: str, filename: str, content: bytes,
               material: str | None) -> None:
        """Upload a file to one of the unit's open tasks (checked as every upload)."""
        actor, _detail = self._own_task(token, task_id)
        self.engine.add_attachment(task_id, filename, content, actor, material=material)

    def document_pdf(self, token: str, document_id: int) -> tuple[str, bytes]:
        """A document addressed to the unit behind a live token (title, PDF); NotFound for
        any other document, as for an unknown token."""
        with self.engine.db.reading() as s:
            case = self._case_of(s, token)
            row = s.get(Document, document_id)
            if row is None or row.case_id != case.id or row.kind not in ADDRESSED_KINDS:
                raise NotFound("not found")
            return row.title, row.pdf


def _case_id(actor: Actor) -> int:
    return int(actor.username.split(":", 1)[1])


def _progress(case: Case, tasks: list[HumanTask], departments: dict[str, str]) -> Progress:
    data = case.data
    project: dict[str, Any] = dict(data.get("project") or {})
    materials = [m for m in data.get("materials", []) if isinstance(m, dict)]
    names = {str(m.get("code")): str(m.get("name") or m.get("code")) for m in materials}
    by_item: dict[str, list[HumanTask]] = {}
    for task in tasks:
        if task.item_code:
            by_item.setdefault(task.item_code, []).append(task)
    phases: dict[str, list[ItemProgress]] = {key: [] for key in PHASES}
    waiting: list[Waiting] = []
    for item in data.get("items", []):
        if not isinstance(item, dict):
            continue
        code = str(item.get("code"))
        item_tasks = by_item.get(code, [])
        progress = _item_progress(item, item_tasks, departments)
        phases.setdefault(str(item.get("phase")), []).append(progress)
        for task in item_tasks:
            if task.state != "ready":
                continue
            if task.spec_name == "prepare_materials":
                needed = [names.get(str(m), str(m)) for m in item.get("materials", [])]
                waiting.append(Waiting("prepare", progress.name, needed, task.due_at))
            elif task.spec_name == "supply_material":
                missing = _missing_materials(item_tasks)
                waiting.append(Waiting("supply", progress.name,
                                       [names.get(m, m) for m in missing], task.due_at))
    return Progress(
        case_id=case.id, title=case.title, status=case.status, project=project,
        responsible_unit=departments.get(str(project.get("responsible_unit")),
                                         str(project.get("responsible_unit") or "")),
        started_at=case.started_at,
        phases=[(key, PHASES.get(key, key), items) for key, items in phases.items() if items],
        waiting=waiting, materials=materials)


def _item_progress(item: dict[str, Any], tasks: list[HumanTask],
                   departments: dict[str, str]) -> ItemProgress:
    done = {t.spec_name for t in tasks if t.state == "completed"}
    ready = [t for t in tasks if t.state == "ready"]
    if "handover_results" in done:
        state, stage = "done", None
    elif "hand_back_materials" in done:
        state, stage = "returned", None
    elif ready:
        state, stage = "in_progress", ready[-1].stage
    else:
        state, stage = "not_started", None
    dues = [t.due_at for t in tasks if t.due_at is not None and t.stage == "acceleration"]
    limit = item.get("time_limit_days")
    return ItemProgress(
        code=str(item.get("code")), name=str(item.get("name") or item.get("code")),
        department=departments.get(str(item.get("department")), str(item.get("department"))),
        time_limit_days=int(limit) if isinstance(limit, (int, float)) else None,
        state=state, stage=stage, due_at=max(dues) if dues else None)


def _missing_materials(tasks: list[HumanTask]) -> list[str]:
    """The materials the latest deficiency acceptance left to be supplied."""
    for task in reversed(tasks):
        result = task.result or {}
        if task.spec_name == "check_materials" and result.get("decision") == "deficiency":
            return [str(m) for m in result.get("missing_materials", [])]
    return []


# Acting for the unit (代为办理) ------------------------------------------------------------
# Under the agency authorisation (代办委托书) the unit signs at the start, the Bureau's agents
# may record each of the unit's steps for it, with how the unit confirmed the step and the
# evidence; the unit's own page stays open to it all the same.

CONFIRMATION_FORM = "on_behalf.schema.json"
AUTHORISATION_FORM = "agency_authorisation.schema.json"
AUTHORISATION_EVENT = "agency_authorisation_recorded"
ON_BEHALF = N_("代为办理")
EVIDENCE_FILES = 5  # evidence files at most per step


@dataclass(frozen=True)
class ProxiedStep:
    """One of the unit's steps recorded for it by an agent, as every page shows it."""

    task_id: str
    task_spec: str
    agent: str
    at: datetime
    on_behalf_of: str
    method: str
    method_title: str
    confirmed_by: str
    confirmed_on: str
    note: str
    evidence: list[dict[str, Any]]


@dataclass(frozen=True)
class Authorisation:
    """The unit's agency authorisation as recorded (the latest one counts)."""

    principal: str
    signatory: str
    signed_on: str
    signing_method: str
    scope: str
    recorded_by: str
    recorded_at: datetime
    document_id: int | None


def service_form(engine: Engine, name: str) -> dict[str, Any] | None:
    """One of the service's own forms (not a task's): a JSON Schema of the pack's folder."""
    path = engine.config.processes_dir / "forms" / name
    if not path.is_file():
        return None
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def form_titles(engine: Engine, form: str, field_name: str) -> dict[str, str]:
    """The catalogue of a choice field of one of the service's forms: code -> title."""
    schema = service_form(engine, form) or {}
    prop = schema.get("properties", {}).get(field_name, {})
    return {str(o.get("const")): str(o.get("title")) for o in prop.get("oneOf", [])}


def proxied_steps(engine: Engine, case_id: int) -> dict[str, ProxiedStep]:
    """The case's unit steps recorded by agents on its behalf, by task id."""
    methods = form_titles(engine, CONFIRMATION_FORM, "confirmation_method")
    found: dict[str, ProxiedStep] = {}
    for event in engine.case_events(case_id, types=("task_completed",)):
        if not event.data.get("on_behalf_of"):
            continue
        confirmation = dict(event.data.get("confirmation") or {})
        method = str(confirmation.get("confirmation_method", ""))
        found[str(event.data["task_id"])] = ProxiedStep(
            task_id=str(event.data["task_id"]), task_spec=str(event.data.get("task_spec")),
            agent=event.actor, at=event.at, on_behalf_of=str(event.data["on_behalf_of"]),
            method=method, method_title=methods.get(method, method),
            confirmed_by=str(confirmation.get("confirmed_by", "")),
            confirmed_on=str(confirmation.get("confirmed_on", "")),
            note=str(confirmation.get("confirmation_note", "")),
            evidence=list(confirmation.get("evidence") or []))
    return found


class UnitTasks:
    """The project unit's open tasks as the Bureau's agents see them, and their completion
    on the unit's behalf (代为办理) under its agency authorisation."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def may_act(self, actor: Actor) -> bool:
        """Whether the actor may act for the project unit (the engine's proxy decides)."""
        return self.engine.acts_for(PROJECT_UNIT, actor)

    def check(self, case_id: int, actor: Actor) -> None:
        """CaseNotFound for a case the actor may not read; Forbidden for one it reads but
        whose unit it may not act for."""
        self.engine.check_case_visible(case_id, actor)
        if not self.may_act(actor):
            raise Forbidden(N_("只有市审批服务管理局的代办员可以代项目单位办理；"
                               "项目单位也可在其进度页面自行办理"))

    def open_tasks(self, case_id: int, actor: Actor) -> list[TaskDetail]:
        """The case's ready tasks in the unit's lane, with their forms."""
        self.check(case_id, actor)
        with self.engine.db.reading() as s:
            ids = list(s.scalars(select(HumanTask.id).where(
                HumanTask.case_id == case_id, HumanTask.state == "ready",
                HumanTask.department == PROJECT_UNIT).order_by(HumanTask.created_at,
                                                               HumanTask.id)))
        return [self.engine.get_task(task_id, actor) for task_id in ids]

    def task(self, case_id: int, task_id: str, actor: Actor) -> TaskDetail:
        """One task of the case in the unit's lane (any state); TaskNotFound for any other,
        and for a task of a case the actor may not read (an id tells an outsider nothing)."""
        try:
            self.check(case_id, actor)
        except CaseNotFound as exc:
            raise TaskNotFound(f"task {task_id} does not exist") from exc
        with self.engine.db.reading() as s:
            row = s.get(HumanTask, task_id) if len(task_id) <= 36 else None
            if row is None or row.case_id != case_id or row.department != PROJECT_UNIT:
                raise TaskNotFound(f"task {task_id} does not exist")
        return self.engine.get_task(task_id, actor)

    def complete(self, case_id: int, task_id: str, data: dict[str, Any],
                 confirmation: dict[str, Any], evidence: list[tuple[str, bytes]],
                 actor: Actor, seen_version: int | None = None) -> CaseView:
        """Record one of the unit's steps for it: the task's own form, how the unit confirmed
        it (the confirmation form) and at least one evidence file, in one command."""
        self.task(case_id, task_id, actor)
        if self.authorisation(case_id) is None:
            raise Conflict(N_("项目单位尚未签署代办委托书：请先在案件页登记代办委托书，再代为办理"))
        self.check_confirmation(confirmation, evidence)
        return self.engine.complete_for(task_id, data, actor,
                                        OnBehalf(confirmation, tuple(evidence)), seen_version)

    def check_confirmation(self, confirmation: dict[str, Any],
                           evidence: list[tuple[str, bytes]]) -> None:
        """InvalidData naming every problem of the confirmation and its evidence."""
        errors: list[FieldError] = []
        try:
            self._forms(CONFIRMATION_FORM).validate(CONFIRMATION_FORM, confirmation)
        except InvalidData as exc:
            errors.extend(exc.errors)
        today = self.engine.clock().astimezone(SERVICE_TZ).date().isoformat()
        confirmed_on = confirmation.get("confirmed_on")
        if isinstance(confirmed_on, str) and len(confirmed_on) == 10 and confirmed_on > today:
            errors.append(FieldError("confirmed_on", N_("确认日期不能晚于今天")))
        if not evidence:
            errors.append(FieldError("evidence", N_(
                "请上传项目单位确认的凭证（通话记录、上门记录或签字的纸质材料）")))
        elif len(evidence) > EVIDENCE_FILES:
            errors.append(FieldError("evidence", N_("每次最多上传5个凭证文件")))
        if errors:
            raise InvalidData(N_("代为办理的确认信息需要补充，未做任何更改"), errors)

    def _forms(self, name: str) -> FormCatalogue:
        schema = service_form(self.engine, name)
        if schema is None:
            raise EngineError(f"the form {name} is missing from the process pack")
        return FormCatalogue({name: schema})

    # The agency authorisation (代办委托书) --------------------------------------------

    def authorisation(self, case_id: int) -> Authorisation | None:
        """The unit's latest recorded agency authorisation, if any."""
        events = self.engine.case_events(case_id, types=(AUTHORISATION_EVENT,))
        if not events:
            return None
        event = events[-1]
        data = dict(event.data.get("data") or {})
        document = event.data.get("document_id")
        return Authorisation(
            principal=str(data.get("principal", "")), signatory=str(data.get("signatory", "")),
            signed_on=str(data.get("signed_on", "")),
            signing_method=str(data.get("signing_method", "")),
            scope=str(data.get("authorisation_scope", "")), recorded_by=event.actor,
            recorded_at=event.at, document_id=int(document) if document else None)

    def record_authorisation(self, case_id: int, data: dict[str, Any], actor: Actor
                             ) -> Authorisation:
        """Record the authorisation the unit signed and issue the 代办委托书 document."""
        from agency import documents

        self.check(case_id, actor)
        self._forms(AUTHORISATION_FORM).validate(AUTHORISATION_FORM, data)
        today = self.engine.clock().astimezone(SERVICE_TZ).date().isoformat()
        if str(data.get("signed_on", ""))[:10] > today:
            raise InvalidData(N_("代办委托书的信息需要补充，未做任何更改"),
                              [FieldError("signed_on", N_("签署日期不能晚于今天"))])
        case = self.engine.get_case(case_id)
        methods = form_titles(self.engine, AUTHORISATION_FORM, "signing_method")
        bureau = reference_of(self.engine).departments.get("approval_bureau", {})
        html = documents.render("authorisation", {
            "title": AUTHORISATION_TITLE, "case": case, "project": case.data.get("project") or {},
            "submitted": data, "methods": methods, "bureau": bureau,
            "issued": self.engine.clock(), "recorded_by": actor.username})
        view = documents.store(self.engine, case_id, "authorisation", "",
                               f"{AUTHORISATION_TITLE}：{case.title}", None, html, actor)
        self.engine.record_case_event(case_id, AUTHORISATION_EVENT,
                                      {"data": data, "document_id": view.id}, actor)
        found = self.authorisation(case_id)
        if found is None:
            raise EngineError(f"the authorisation of case {case_id} was not recorded")
        return found


AUTHORISATION_TITLE = "代办委托书"
