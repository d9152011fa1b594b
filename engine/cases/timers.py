"""Firing due timers: one command per case, in time order; one case's failure stops no other."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from engine.actors import SYSTEM, Actor
from engine.audit import chain as audit
from engine.cases.instrument import command
from engine.cases.store import CaseStore
from engine.errors import (
    Conflict,
    EngineError,
)
from engine.store.models import (
    Timer,
)

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0  # a case whose timers failed waits this long, doubled each time
RETRY_MAX_SECONDS = 600.0


class TimerCommands(CaseStore):
    """Timer firing, called by the worker."""

    def fire_due_timers(self, limit: int = 100, actor: Actor = SYSTEM) -> int:
        """Fire every timer due by now; return how many cases were advanced.

        A case whose timers fail (a script error, a deadlock, a lock timeout) is logged
        and tried again after a growing delay, and the other cases go on. Only a lost
        database connection stops the round (the worker retries it).
        """
        now = self.clock()
        fired = 0
        with self.db.reading() as s:
            due = s.execute(select(Timer.case_id, func.min(Timer.due_at))
                            .where(Timer.due_at <= now).group_by(Timer.case_id)
                            .order_by(func.min(Timer.due_at)).limit(limit)).all()
        retries = self._timer_retries
        for case_id, _ in due:
            failures, not_before = retries.get(case_id, (0, 0.0))
            if time.monotonic() < not_before:
                continue
            try:
                if self._fire_case_timers(case_id, actor, now):
                    fired += 1
            except Conflict:
                continue  # another worker took it
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise  # the database is gone, not this case: the worker waits for it
                self._timer_failed(case_id, failures, exc)
            except Exception as exc:  # noqa: BLE001 - one case must not stop the others
                self._timer_failed(case_id, failures, exc)
            else:
                retries.pop(case_id, None)
        return fired

    @property
    def _timer_retries(self) -> dict[int, tuple[int, float]]:
        """Cases whose timers failed: failures so far, and when to try again (monotonic)."""
        retries: dict[int, tuple[int, float]] = self.__dict__.setdefault("_retries", {})
        return retries

    def _timer_failed(self, case_id: int, failures: int, exc: Exception) -> None:
        delay = min(RETRY_FIRST_SECONDS * 2 ** failures, RETRY_MAX_SECONDS)
        self._timer_retries[case_id] = (failures + 1, time.monotonic() + delay)
        log.error("timers of case %s failed (%s time(s)); trying again in %.1f s: %s",
                  case_id, failures + 1, delay, getattr(exc, "message", None) or repr(exc),
                  exc_info=not isinstance(exc, EngineError))

    @command("fire_timers")
    def _fire_case_timers(self, case_id: int, actor: Actor, now: datetime) -> bool:
        with self._unit() as s:
            # The case first, then its timers: the order every command takes (a completion
            # locks the case, then changes its timers), so the two never wait on each
            # other in a circle. A case another command holds is skipped until the next poll.
            case = self._lock_case(s, case_id, skip_locked=True)
            if case is None or case.status != "running":
                return False
            timers = list(s.scalars(select(Timer).where(Timer.case_id == case_id,
                                                        Timer.due_at <= now)))
            if not timers:
                return False
            names = sorted(t.spec_name for t in timers)
            self._change(s, case, actor, now, "timer_fired",
                         {"timers": names, "due": audit.format_time(min(t.due_at for t in timers))})
        return True

