"""Moving running cases between process versions, and reverting such a move."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.actors import Actor
from engine.audit.chain import NewEvent
from engine.cases.instrument import command
from engine.cases.store import CaseStore
from engine.cases.views import MIGRATION_EVENTS, CaseView, case_view
from engine.errors import (
    CaseNotFound,
    CaseNotRunning,
    Conflict,
    Forbidden,
    ProcessNotFound,
)
from engine.pack import migration
from engine.runtime import clock
from engine.runtime.spiff import (
    task_ids,
)
from engine.store.models import (
    Case,
    Event,
    ProcessVersion,
)


class MigrationCommands(CaseStore):
    """Migration of running cases as audited commands."""

    def migration_check(self, case_id: int, to_version_id: int) -> migration.MigrationCheck:
        """Whether a running case could move to another version of its process, and why not."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            target = self._target_version(s, case, to_version_id)
            specs = self._version(s, target.id).specs
            if case.status != "running":
                return migration.MigrationCheck([f"the case is {case.status}"])
            return self._read(s, case, lambda wf: migration.check(wf, specs))

    @command()
    def migrate_case(self, case_id: int, to_version_id: int, actor: Actor) -> CaseView:
        """Move a running case to another version of its process (one audited event)."""
        return self._migrate(case_id, to_version_id, actor, "case_migrated", {})

    @command()
    def revert_migration(self, case_id: int, actor: Actor) -> CaseView:
        """Move a case back to the version it ran before its last migration."""
        with self.db.reading() as s:
            last = s.scalars(select(Event).where(Event.stream == f"case:{case_id}",
                                                 Event.type.in_(MIGRATION_EVENTS))
                             .order_by(Event.seq.desc()).limit(1)).first()
        if last is None or last.type != "case_migrated":
            raise Conflict(f"case {case_id} has no migration to revert")
        return self._migrate(case_id, int(last.data["from_version_id"]), actor,
                             "case_migration_reverted", {"reverts_seq": last.seq})

    def _target_version(self, s: Session, case: Case, version_id: int) -> ProcessVersion:
        target = s.get(ProcessVersion, version_id)
        if target is None or target.process_id != case.process_id:
            raise ProcessNotFound(f"process {case.process_id!r} has no version id {version_id}")
        return target

    def _migrate(self, case_id: int, to_version_id: int, actor: Actor, event_type: str,
                 extra: dict[str, Any]) -> CaseView:
        if not (actor.is_system or actor.role == "admin"):
            raise Forbidden("only an administrator may migrate cases")
        now = self.clock()
        with self._unit() as s:
            case = self._lock_case(s, case_id)
            if case.status != "running":
                raise CaseNotRunning(f"case {case.id} is {case.status}; only running cases move")
            target = self._target_version(s, case, to_version_id)
            if target.id == case.process_version_id:
                raise Conflict(f"case {case.id} already runs version {target.number}")
            source = s.get(ProcessVersion, case.process_version_id)
            assert source is not None  # noqa: S101 (foreign key)
            old, new = self._version(s, source.id), self._version(s, target.id)
            live = self._live(s, case, old)
            self._derive(case, live)
            payload = {"process_id": case.process_id, "from_version_id": source.id,
                       "from_version": source.number, "to_version_id": target.id,
                       "to_version": target.number, "content_hash": target.content_hash,
                       **extra}
            try:
                with clock.pinned(now), task_ids(live.ids):
                    migration.migrate(live.workflow, new.specs)
                case.process_version_id = target.id
                self._after_change(s, case, live, new, now, None)
                self._record(s, case, live, NewEvent(event_type, actor.username, now, payload))
                self._snapshot(s, case, live, force=True)
                s.flush()
            except BaseException:
                self._forget(case.id)
                raise
            self._pending.append((case.id, live))
            view = case_view(case)
        return view

