"""Append-only audit events, hash-chained per stream over canonical JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import ChainBreak
from engine.store.models import Event

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    """Serialize deterministically: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def format_time(moment: datetime) -> str:
    """The canonical text of an event time (UTC, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(prev_hash: str, stream: str, seq: int, type_: str, actor: str, at: datetime,
               data: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the event's canonical JSON."""
    body = canonical_json({"stream": stream, "seq": seq, "type": type_, "actor": actor,
                           "at": format_time(at), "data": data})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended."""

    type: str
    actor: str
    at: datetime
    data: dict[str, Any]


def append(session: Session, stream: str, case_id: int | None, seq: int, prev_hash: str,
           new: NewEvent) -> Event:
    """Add one event after `seq - 1` whose hash was `prev_hash`; return it."""
    digest = event_hash(prev_hash, stream, seq, new.type, new.actor, new.at, new.data)
    event = Event(stream=stream, case_id=case_id, seq=seq, type=new.type, actor=new.actor,
                  at=new.at, data=new.data, prev_hash=prev_hash, hash=digest)
    session.add(event)
    return event


def append_ops(session: Session, new: NewEvent) -> Event:
    """Append an operations event (administrators' actions) to the `ops` stream."""
    last = session.execute(
        select(Event.seq, Event.hash).where(Event.stream == "ops")
        .order_by(Event.seq.desc()).limit(1).with_for_update()
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    return append(session, "ops", None, seq, prev, new)


def verify_events(events: list[Event]) -> ChainBreak | None:
    """Check sequence numbers and the hash chain; return the first break, or None."""
    prev_hash = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return ChainBreak(expected_seq, f"event {expected_seq} is missing "
                              f"(found event {event.seq} in its place)", event.id)
        if event.prev_hash != prev_hash:
            return ChainBreak(event.seq, "the event does not link to the previous event's hash",
                              event.id)
        digest = event_hash(prev_hash, event.stream, event.seq, event.type, event.actor,
                            event.at, event.data)
        if digest != event.hash:
            return ChainBreak(event.seq, "the event's content does not match its hash "
                              "(it was altered after it was recorded)", event.id)
        prev_hash = event.hash
    return None
