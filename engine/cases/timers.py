"""Firing due timers: one command per case, in time order."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from engine.actors import SYSTEM, Actor
from engine.audit import chain as audit
from engine.cases.store import CaseStore
from engine.errors import (
    Conflict,
)
from engine.store.models import (
    Timer,
)


class TimerCommands(CaseStore):
    """Timer firing, called by the worker."""

    def fire_due_timers(self, limit: int = 100, actor: Actor = SYSTEM) -> int:
        """Fire every timer due by now; return how many cases were advanced."""
        now = self.clock()
        fired = 0
        with self.db.reading() as s:
            due = s.execute(select(Timer.case_id, func.min(Timer.due_at))
                            .where(Timer.due_at <= now).group_by(Timer.case_id)
                            .order_by(func.min(Timer.due_at)).limit(limit)).all()
        for case_id, _ in due:
            try:
                if self._fire_case_timers(case_id, actor, now):
                    fired += 1
            except Conflict:
                continue  # another worker took it
        return fired

    def _fire_case_timers(self, case_id: int, actor: Actor, now: datetime) -> bool:
        with self._unit() as s:
            locked = select(Timer).where(Timer.case_id == case_id, Timer.due_at <= now)
            if self.db.postgres:
                # Another worker holding this case's timers skips them instead of waiting.
                locked = locked.with_for_update(skip_locked=True)
            timers = list(s.scalars(locked))
            if not timers:
                return False
            case = self._lock_case(s, case_id)
            if case.status != "running":
                return False
            names = sorted(t.spec_name for t in timers)
            self._change(s, case, actor, now, "timer_fired",
                         {"timers": names, "due": audit.format_time(min(t.due_at for t in timers))})
        return True

