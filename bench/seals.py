"""Sealing 10,000 case streams and verifying the seal, timed on SQLite.

The event table is filled directly with hash-chained events (ten per case) so that only the
seal is measured: reading every stream's head and event hashes, the Merkle tree, the
signature and the stored leaves; then `verify_seals`, which recomputes every sealed chain.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from engine.audit.chain import GENESIS, event_hash
from engine.audit.sealcheck import trusted_key, verify_seals
from engine.audit.seals import seal
from engine.cases import Engine
from engine.config import Config
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Event

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)


def fill(engine: Engine, cases: int, events: int) -> None:
    """Insert `cases` streams of `events` chained events each."""
    rows: list[dict[str, Any]] = []
    for n in range(1, cases + 1):
        stream, prev = f"case:{n}", GENESIS
        for seq in range(1, events + 1):
            at = NOW + timedelta(minutes=seq)
            data = {"task_id": f"{n:08d}-{seq:04d}", "data": {"decision": "accept"}}
            digest = event_hash(prev, stream, seq, "task_completed", "agent", at, data)
            rows.append({"stream": stream, "case_id": None, "seq": seq,
                         "type": "task_completed", "actor": "agent", "at": at, "data": data,
                         "prev_hash": prev, "hash": digest})
            prev = digest
        if len(rows) >= 20_000:
            _flush(engine, rows)
    _flush(engine, rows)


def _flush(engine: Engine, rows: list[dict[str, Any]]) -> None:
    if rows:
        with engine.db.transaction() as s:
            s.execute(insert(Event), rows)
        rows.clear()


def measure(directory: Path, cases: int = 10_000, events: int = 10) -> dict[str, float]:
    url = f"sqlite:///{directory / 'seals.db'}"
    config = Config.from_env(database_url=url, instance_dir=directory,
                             processes_dir=ROOT / "processes", data_dir=ROOT / "data")
    engine = Engine(config, database=Database(url), clock_source=lambda: NOW, functions={})
    schema.upgrade(engine.db)
    fill(engine, cases, events)
    began = time.perf_counter()
    made = seal(engine)
    sealed = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    report = verify_seals(engine, [made.document()], trusted_key(config))
    verified = (time.perf_counter() - began) * 1000
    assert report.ok and report.streams == cases + 1, report
    engine.db.dispose()
    return {"seal_ms": sealed, "verify_ms": verified, "streams": made.tree_size,
            "events": cases * events}
