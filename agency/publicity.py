"""The publishable summary of the service (宣传推广): cases served, items handled, working days
against the committed limits, satisfaction. Figures only, with department and item names:
no project, enterprise or person is named, so the office can release it as it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from agency import documents, oversight, team
from agency.reference import reference_of
from engine.errors import Forbidden
from engine.store.models import Case

if TYPE_CHECKING:
    from datetime import date

    from agency.documents import DocumentView
    from engine.actors import Actor
    from engine.cases import Engine

KIND = "public_summary"
TITLE = "零跑路代办服务成效公示"
RELEASERS = ("office",)


@dataclass(frozen=True)
class ItemLine:
    """One approval item: how many were finished, in how many working days of government
    time on average (行政许可法 §45: the applicant's and the excluded procedures' time not
    counted; the whole handling time for items finished without a clock), against its
    committed limit."""

    name: str
    department: str
    finished: int
    average_days: float
    committed_days: int | None


@dataclass(frozen=True)
class PublicSummary:
    """What the public may read of the service."""

    today: date
    cases_served: int
    cases_closed: int  # completed (办结) only
    cases_terminated: int
    items_handled: int
    average_days: float | None
    average_committed: float | None
    within_limit_share: float | None
    items: list[ItemLine]
    satisfaction: team.Satisfaction


def public_summary(engine: Engine) -> PublicSummary:
    """The service's figures since it began, without any name but departments' and items'."""
    ref = reference_of(engine)
    figures = oversight.figures(engine)
    with engine.db.reading() as s:
        served = s.scalar(select(func.count()).select_from(Case).where(
            Case.process_id == "case_flow")) or 0
        ended = oversight.ended_case_counts(s)
    names = {c: str(d.get("name", c)) for c, d in ref.departments.items()}
    lines: list[ItemLine] = []
    code_of = {str(i.get("name")): code for code, i in ref.items.items()}
    government: dict[str, list[int]] = {}
    for c in figures.clock_times:
        sums = government.setdefault(c.item_code, [0, 0])
        sums[0] += c.finished_government_days
        sums[1] += c.finished
    for t in figures.item_times:
        entry = ref.items.get(t.code) or ref.items.get(code_of.get(t.name, ""), {})
        limit = entry.get("time_limit_days")
        days, finished = government.get(str(entry.get("code", t.code)), [0, 0])
        lines.append(ItemLine(t.name, names.get(str(entry.get("department", "")), ""),
                              t.count, round(days / finished, 1) if finished else t.average_days,
                              int(limit) if isinstance(limit, int | float) else None))
    handled = sum(line.finished for line in lines)
    weighted = [line for line in lines if line.committed_days]
    total = sum(line.finished for line in weighted)
    return PublicSummary(
        figures.today, served, ended["completed"], ended["terminated"], handled,
        round(sum(x.average_days * x.finished for x in lines) / handled, 1) if handled else None,
        round(sum((x.committed_days or 0) * x.finished for x in weighted) / total, 1)
        if total else None,
        round(sum(x.finished for x in weighted if x.average_days <= (x.committed_days or 0))
              / total, 3) if total else None,
        lines, team.satisfaction(engine))


def release(engine: Engine, actor: Actor) -> DocumentView:
    """The office issues the summary as a document (HTML and PDF) it can publish."""
    if not (actor.is_system or actor.role in RELEASERS):
        raise Forbidden("only the leading-group office releases the public summary")
    summary = public_summary(engine)
    html = documents.render(KIND, {"title": TITLE, "summary": summary, "issued": engine.clock()})
    return documents.store(engine, None, KIND, "", f"{TITLE}（{summary.today:%Y-%m-%d}）",
                           None, html, actor)
