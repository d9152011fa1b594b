"""Re-executing a case from its events and comparing it with what is stored."""

from __future__ import annotations

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.audit import chain as audit
from engine.cases.store import CaseStore
from engine.cases.views import Verification
from engine.cases.workflow import DataReplay, ReplayFailed, completions_match, scan_tasks
from engine.errors import (
    ChainBreak,
)
from engine.store.models import (
    Case,
    Event,
    HumanTask,
)


class Verifying(CaseStore):
    """Replay and verification of stored cases."""

    def verify_case(self, case_id: int) -> Verification:
        """Check the hash chain, then re-execute the events and compare with stored state."""
        with self.db.reading() as s:
            case, events = self._case_and_events(s, case_id)
            broken = audit.verify_events(events)
            if broken is None and events and events[-1].hash != case.last_hash:
                broken = ChainBreak(events[-1].seq, "the last event is not the one the case "
                                    "records (events were removed from the end)")
            if broken is not None:
                return Verification(case_id, False, len(events), broken.seq, broken.reason)
            mismatch = self._replay_matches(s, case, events)
            if mismatch is not None:
                return Verification(case_id, False, len(events), mismatch.seq, mismatch.reason)
        return Verification(case_id, True, len(events))

    def replay(self, case_id: int, upto_seq: int | None = None) -> BpmnWorkflow:
        """Rebuild a case's workflow by re-executing its events up to a sequence number."""
        with self.db.reading() as s:
            case, events = self._case_and_events(s, case_id)
            version = self._version(s, case.process_version_id)
        workflow, _ = self._reexecute(case.id, version, events, upto_seq)
        return workflow

    def _replay_matches(self, s: Session, case: Case, events: list[Event]) -> ChainBreak | None:
        """Re-execute the events; report where the stored state disagrees."""
        version = self._version(s, case.process_version_id)
        data = DataReplay()
        try:
            workflow, _ = self._reexecute(case.id, version, events, None, data)
        except ReplayFailed as exc:
            return ChainBreak(exc.seq, f"the event cannot be re-executed: {exc.message}",
                              exc.event_id)
        rows = {row.id: row for row in s.scalars(select(HumanTask).where(
            HumanTask.case_id == case.id))}
        broken = completions_match(events, rows)
        if broken is not None:
            return broken
        scan = scan_tasks(workflow)
        expected = {str(t.id) for t in scan.ready_manual}
        stored = {row.id for row in rows.values() if row.state == "ready"}
        last = events[-1].seq if events else 0
        if expected != stored:
            return ChainBreak(last, "the stored open tasks differ from the re-executed case: "
                              f"missing {sorted(expected - stored)}, unexpected "
                              f"{sorted(stored - expected)}")
        status = "completed" if scan.completed else "running"
        if case.status != "terminated" and case.status != status:
            return ChainBreak(last, f"the stored status {case.status!r} differs from the "
                              f"re-executed status {status!r}")
        if case.data != data.data:
            stored_data = case.data if isinstance(case.data, dict) else {}
            keys = sorted(k for k in set(stored_data) | set(data.data)
                          if stored_data.get(k) != data.data.get(k))
            return ChainBreak(data.seq, "the stored case data differs from the re-executed "
                              f"case in {', '.join(keys) or 'its whole value'}")
        return None

