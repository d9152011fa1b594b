"""The command that moves a scope's deadline (see engine/cases/deadlines.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import select

from engine.actors import Actor
from engine.audit.chain import NewEvent
from engine.cases.deadlines import DEADLINES_MOVED, move_deadlines
from engine.cases.instrument import command
from engine.cases.store import CaseStore
from engine.cases.views import CaseView, parse_due, plain_data
from engine.errors import Conflict, TaskNotFound
from engine.runtime import clock, expressions, recorded
from engine.runtime.spiff import task_ids
from engine.store.models import HumanTask

# Given an open task's data, the deadline's names and new values (None: no deadline there).
DeadlineRule = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


class DeadlineCommands(CaseStore):
    """Moving the deadline an open task's scope keeps, as one recorded case event."""

    @command()
    def move_deadlines(self, case_id: int, task_ids_: Sequence[str], rule: DeadlineRule,
                       actor: Actor, note: Mapping[str, Any]) -> CaseView | None:
        """Move the deadline of the first given open task whose data `rule` finds one in
        (None: no given task keeps one, or it is already where the rule puts it: nothing is
        recorded). The open tasks whose due date read the moved names get their new due date
        in the same transaction; `note` (why it moved) is recorded with the event."""
        now = self.clock()
        with self._unit() as s:
            case = self._lock_case(s, case_id)
            if case.status != "running":
                raise Conflict("the case has ended; its deadlines no longer move")
            version = self._version(s, case.process_version_id)
            live = self._live(s, case, version)
            self._derive(case, live)
            open_rows = {row.id: row for row in s.scalars(select(HumanTask).where(
                HumanTask.case_id == case.id, HumanTask.state == "ready"))}
            chosen: tuple[str, dict[str, Any]] | None = None
            for task_id in task_ids_:
                task = live.workflow.get_task_from_id(UUID(task_id)) \
                    if task_id in open_rows else None
                if task is None:
                    continue
                values = rule(plain_data(task.data))
                if values is None:
                    continue
                values = plain_data(values)
                if all(task.data.get(k) == v for k, v in values.items()):
                    self._remember(case.id, live)
                    return None
                chosen = (task_id, values)
                break
            if chosen is None:
                self._remember(case.id, live)
                if not task_ids_:
                    raise TaskNotFound("no open task keeps this deadline")
                return None
            payload = {"task_id": chosen[0], "data": chosen[1], **plain_data(note)}
            try:
                with clock.pinned(now), task_ids(live.ids), expressions.time_budget():
                    with recorded.record() as calls:
                        changed = move_deadlines(live.workflow, payload, case.id)
                        self._redue(version, changed, open_rows)
                    still_open = self._after_change(s, case, live, version, now, None,
                                                    open_rows)
                if calls:
                    payload = {**payload, "calls": calls}
                self._record(s, case, live, NewEvent(DEADLINES_MOVED, actor.username, now,
                                                     payload))
                self._snapshot(s, case, live)
                s.flush()
            except BaseException:
                self._forget(case.id)
                raise
            self._pending.append((case.id, live))
            return self._answer(s, case, live, still_open)

    def _redue(self, version: Any, changed: list[Any], open_rows: dict[str, HumanTask]) -> None:
        """The moved tasks' index rows take the due date their rule now gives."""
        for task in changed:
            row = open_rows.get(str(task.id))
            if row is None:
                continue
            meta = version.task_specs.get(f"{row.process_id}:{row.spec_name}", {})
            if not meta.get("due_expression"):
                continue
            due = parse_due(self._evaluate(task, meta["due_expression"], {}, "due date"))
            if due != row.due_at:
                row.due_at = due
                row.version += 1
                for indexed in self.hooks.task_indexed:
                    indexed(row)
