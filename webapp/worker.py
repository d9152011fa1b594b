"""The timer worker's loop: fire due timers, seal the audit trail when due, send queued
mail and run queued what-if replays, whatever fails on the way."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from agency import alerts, notify, team, webhooks
from engine import health
from engine.audit.seals import seal_if_due
from engine.cases import Engine
from engine.errors import EngineError
from engine.pack import whatif

log = logging.getLogger(__name__)

OUTAGE_FIRST_SECONDS = 1.0  # wait after a failed round, doubled while it keeps failing
OUTAGE_MAX_SECONDS = 60.0
WHATIF_SLICE_SECONDS = 2.0  # what-if replay per round, so that timers still fire on time
SEAL_RETRY = timedelta(hours=1)  # after a refused seal, the worker tries again this much later


def run_worker(engine: Engine, *, once: bool = False, stop: threading.Event | None = None,
               report: Callable[[str], None] = log.info) -> None:
    """Poll until stopped; a database outage or a failing case never ends the loop.

    One case's failure is handled (logged, retried later) by fire_due_timers; what
    escapes a round is the database itself (gone, restarting, locked): the worker
    drops its connections, waits a growing delay and tries again.
    """
    stop = stop or threading.Event()
    failures = 0
    retry_seal_at: datetime | None = None
    name, started = health.worker_name(), engine.clock()
    while not stop.is_set():
        try:
            fired = engine.fire_due_timers()
            if fired:
                report(f"fired timers in {fired} case(s)")
            team.hand_over(engine)  # absences that began: their tasks to the substitutes
            warned = alerts.sweep(engine)
            if warned:
                report(f"overdue warnings: {warned} sent")
            if retry_seal_at is None or engine.clock() >= retry_seal_at:
                try:
                    sealed, retry_seal_at = seal_if_due(engine), None
                except EngineError as exc:
                    report(f"seal refused: {exc.message}")
                    sealed, retry_seal_at = None, engine.clock() + SEAL_RETRY
                if sealed is not None:
                    report(f"seal {sealed.number}: {sealed.tree_size} streams, "
                           f"root {sealed.root}")
            sent, failed = notify.deliver_outbox(engine)
            if sent or failed:
                report(f"mail: {sent} sent, {failed} to retry")
            hooks_sent, hooks_failed = webhooks.deliver(engine)
            if hooks_sent or hooks_failed:
                report(f"webhooks: {hooks_sent} sent, {hooks_failed} failed")
            replayed, replay_left = whatif.work(engine, name, WHATIF_SLICE_SECONDS)
            if replayed:
                report(f"what-if replay: {replayed} case(s)")
            health.beat(engine, name, started, fired=fired, failed=failed + hooks_failed)
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
        except Exception as exc:
            # A bug outside any one case: log it and keep the other cases' timers running;
            # the heartbeat keeps the failure for /readyz and /metrics.
            failures += 1
            try:
                health.beat(engine, name, started, failed=1,
                            error=f"{type(exc).__name__}: {exc}")
            except SQLAlchemyError:
                log.warning("the worker's heartbeat could not be written either")
            delay = min(OUTAGE_FIRST_SECONDS * 2 ** (failures - 1), OUTAGE_MAX_SECONDS)
            log.exception("the worker's round failed; trying again in %.0f s", delay)
            if once:
                raise
            stop.wait(delay)
            continue
        failures = 0
        if once:
            return
        # A what-if replay not finished goes on at once (in slices, between the timers).
        stop.wait(0 if replay_left else engine.config.timer_poll_seconds)
