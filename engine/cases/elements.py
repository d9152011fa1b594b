"""The elements each case reached, kept as rows by every command (the heatmap's data).

`case_element` holds one row per (case, process, BPMN element) that the case's workflow has
completed, has under way or waits in: exactly what `states_by_element` shows for the case
now. Each command writes only the difference from the rows it knows (none, usually, or the
one element the case moved to), so a version's heatmap is a GROUP BY over this table instead
of a rebuild of every case.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from engine.cases.views import LiveCase
from engine.cases.workflow import reached_elements
from engine.store.models import Case, CaseElement


def stored_elements(s: Session, case_id: int) -> dict[tuple[str, str], int]:
    """The element rows a case has in the database, with the version each names."""
    return {(p, b): v for p, b, v in s.execute(
        select(CaseElement.process_id, CaseElement.bpmn_id, CaseElement.process_version_id)
        .where(CaseElement.case_id == case_id))}


def sync_elements(s: Session, case: Case, live: LiveCase) -> None:
    """Bring the case's element rows in line with its workflow, in the command's transaction."""
    wanted = reached_elements(live.workflow)
    known = live.elements
    stale = live.elements_version != case.process_version_id  # e.g. migrated
    if known is None:  # not written by this process (cache miss, or another worker moved it)
        rows = stored_elements(s, case.id)
        known = set(rows)
        stale = any(v != case.process_version_id for v in rows.values())
    if stale and known:
        s.execute(update(CaseElement).where(CaseElement.case_id == case.id)
                  .values(process_version_id=case.process_version_id))
    gone: dict[str, list[str]] = defaultdict(list)
    for process_id, bpmn_id in known - wanted:
        gone[process_id].append(bpmn_id)
    for process_id, bpmn_ids in gone.items():
        s.execute(delete(CaseElement).where(CaseElement.case_id == case.id,
                                            CaseElement.process_id == process_id,
                                            CaseElement.bpmn_id.in_(sorted(bpmn_ids))))
    s.add_all(CaseElement(case_id=case.id, process_id=process_id, bpmn_id=bpmn_id,
                          process_version_id=case.process_version_id)
              for process_id, bpmn_id in sorted(wanted - known))
    live.elements, live.elements_version = wanted, case.process_version_id
