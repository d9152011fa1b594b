"""What operations ask of a running engine: is it ready, and is the timer worker alive."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from engine.store.models import ProcessVersion, WorkerHeartbeat
from engine.store.schema import alembic_config

if TYPE_CHECKING:
    from engine.cases import Engine

_HEADS: list[str] = []


def worker_name() -> str:
    """How a timer worker is named in the heartbeat table: its host."""
    return socket.gethostname()[:200]


def beat(engine: Engine, worker: str, started_at: datetime, *, fired: int = 0,
         failed: int = 0, error: str | None = None) -> None:
    """Record that a worker's loop ran (with what it fired and how many steps failed)."""
    now = engine.clock()
    with engine.db.transaction() as s:
        row = s.get(WorkerHeartbeat, worker)
        if row is None:
            row = WorkerHeartbeat(worker=worker, beat_at=now, started_at=started_at, loops=0,
                                  timers_fired=0, failures=0)
            s.add(row)
        if row.started_at != started_at:
            row.started_at = started_at
        row.beat_at = now
        row.loops += 1
        row.timers_fired += fired
        row.failures += failed
        if error is not None:
            row.last_error = error[:2000]


def heartbeats(engine: Engine) -> list[WorkerHeartbeat]:
    """Every worker's last heartbeat, newest first."""
    with engine.db.reading() as s:
        return list(s.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.beat_at.desc())))


@dataclass
class Readiness:
    """The answer of /readyz: each check with ok and a short public detail."""

    checks: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(bool(check["ok"]) for check in self.checks.values())

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = {"ok": ok, "detail": detail}


def readiness(engine: Engine) -> Readiness:
    """Database reachable, schema at the newest migration, pack loaded, worker beating."""
    result = Readiness()
    try:
        with engine.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(connection).get_current_heads())
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database is "not ready"
        result.add("database", False, f"unreachable ({type(exc).__name__})")
        for name in ("migrations", "process_pack", "worker"):
            result.add(name, False, "database unreachable")
        return result
    result.add("database", True, engine.db.engine.dialect.name)
    heads = set(_script_heads(engine))
    result.add("migrations", current == heads,
               "current" if current == heads else
               f"database at {', '.join(sorted(current)) or 'nothing'}, code expects "
               f"{', '.join(sorted(heads))}")
    if current != heads:
        result.add("process_pack", False, "schema not current")
        result.add("worker", False, "schema not current")
        return result
    with engine.db.reading() as s:
        published = s.scalar(select(func.count()).select_from(ProcessVersion)
                             .where(ProcessVersion.status == "published")) or 0
    result.add("process_pack", published > 0, f"{published} published process(es)")
    beats = heartbeats(engine)
    if not beats:
        result.add("worker", False, "no timer worker has run yet")
    else:
        age = (engine.clock() - beats[0].beat_at).total_seconds()
        fresh = age <= engine.config.worker_stale_seconds
        result.add("worker", fresh, f"last heartbeat {int(age)} s ago")
    return result


def _script_heads(engine: Engine) -> list[str]:
    if not _HEADS:
        script = ScriptDirectory.from_config(alembic_config(engine.db.url))
        _HEADS.extend(script.get_heads())
    return _HEADS
