"""The timer worker's loop: fire due timers and send queued mail, whatever fails on the way."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from agency import notify
from engine.cases import Engine

log = logging.getLogger(__name__)

OUTAGE_FIRST_SECONDS = 1.0  # wait after a failed round, doubled while it keeps failing
OUTAGE_MAX_SECONDS = 60.0


def run_worker(engine: Engine, *, once: bool = False, stop: threading.Event | None = None,
               report: Callable[[str], None] = log.info) -> None:
    """Poll until stopped; a database outage or a failing case never ends the loop.

    One case's failure is handled (logged, retried later) by fire_due_timers; what
    escapes a round is the database itself (gone, restarting, locked): the worker
    drops its connections, waits a growing delay and tries again.
    """
    stop = stop or threading.Event()
    failures = 0
    while not stop.is_set():
        try:
            fired = engine.fire_due_timers()
            if fired:
                report(f"fired timers in {fired} case(s)")
            sent, failed = notify.deliver_outbox(engine)
            if sent or failed:
                report(f"mail: {sent} sent, {failed} to retry")
        except (SQLAlchemyError, OSError) as exc:
            failures += 1
            delay = min(OUTAGE_FIRST_SECONDS * 2 ** (failures - 1), OUTAGE_MAX_SECONDS)
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            log.warning("database unavailable (%s); trying again in %.0f s",
                        str(reason).strip().splitlines()[0] if str(reason).strip() else
                        type(reason).__name__, delay)
            engine.db.dispose()  # reconnect from scratch: pooled connections may be dead
            if once:
                raise
            stop.wait(delay)
            continue
        except Exception:
            # A bug outside any one case: log it and keep the other cases' timers running.
            failures += 1
            delay = min(OUTAGE_FIRST_SECONDS * 2 ** (failures - 1), OUTAGE_MAX_SECONDS)
            log.exception("the worker's round failed; trying again in %.0f s", delay)
            if once:
                raise
            stop.wait(delay)
            continue
        failures = 0
        if once:
            return
        stop.wait(engine.config.timer_poll_seconds)
