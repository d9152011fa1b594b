"""Injectable time for the engine, SpiffWorkflow's timers included."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import SpiffWorkflow.task as _spiff_task
from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer

Clock = Callable[[], datetime]

# Local time of the service: "today", working days and date-only due dates are counted in
# Beijing time (UTC+8, no daylight saving); everything is stored in UTC.
SERVICE_TZ = timezone(timedelta(hours=8))

_current: contextvars.ContextVar[Clock | None] = contextvars.ContextVar(
    "zerorun_clock", default=None
)


def system_clock() -> datetime:
    """Return the real current time in UTC."""
    return datetime.now(UTC)


def now() -> datetime:
    """Return the time of the clock in force (the system clock unless one is pinned)."""
    clock = _current.get()
    return clock() if clock is not None else system_clock()


@contextlib.contextmanager
def pinned(clock: Clock | datetime) -> Iterator[None]:
    """Run a block with `now()` (and SpiffWorkflow's timers) reading the given clock."""
    if isinstance(clock, datetime):
        fixed = clock if clock.tzinfo else clock.replace(tzinfo=UTC)
        token = _current.set(lambda: fixed)
    else:
        token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)


class MovableClock:
    """A clock that tests and the benchmark move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or system_clock()

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by a timedelta given as keyword arguments."""
        self.current = self.current + timedelta(**delta)
        return self.current

    def set(self, moment: datetime) -> None:
        """Move the clock to a moment."""
        self.current = moment


class _ClockedDatetime(datetime):
    """`datetime` whose `now()` reads the clock in force.

    SpiffWorkflow's timer events call `datetime.now(timezone.utc)` directly; the
    engine needs the time of the command (and, in a replay, the time recorded in
    the event), so that module's `datetime` name is rebound to this subclass.
    """

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _ClockedDatetime:
        moment = now()
        if tz is not None:
            moment = moment.astimezone(tz)
        return cls.fromtimestamp(moment.timestamp(), tz=moment.tzinfo)


_spiff_timer.datetime = _ClockedDatetime


class _ClockedTime:
    """Stands in for the `time` module inside SpiffWorkflow's task module.

    Tasks stamp `last_state_change` with `time.time()`; reading the clock in force
    makes a replayed case carry the same stamps as the live one.
    """

    @staticmethod
    def time() -> float:
        return now().timestamp()


_spiff_task.time = _ClockedTime
