"""Checking the database against seals an auditor holds: signatures, the chain of seals, and
that every sealed stream's events today still hash to the head the seal recorded.

What a seal protects: the events of every stream up to the head the seal recorded. A change
to those events afterwards — even with every hash recomputed and the case row and snapshot
made to match — no longer leads to the sealed head and is reported, at the first event
that differs when the hashes recorded at seal time are intact. Events recorded after the
last seal, and anything rewritten before a stream was first sealed, are not protected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.audit import merkle
from engine.audit.chain import GENESIS, event_hash, format_time
from engine.audit.seals import (
    FORMAT,
    Head,
    SealView,
    _view,
    events_root,
    public_key_hex,
    seal_hash,
    seal_leaves,
    seals_covering,
    signature_problem,
    stream_hashes,
)
from engine.config import Config, ConfigError
from engine.store.models import Event, Seal, SealedEvent

if TYPE_CHECKING:
    from engine.cases import Engine

_CHUNK = 200


def trusted_key(config: Config) -> str:
    """The public key of this installation's seal key (hex), without creating a key."""
    from engine.audit.seals import signing_key

    if not config.seal_key and not config.seal_key_path.exists():
        raise ConfigError("this installation has no seal key yet: pass the public key the "
                          "auditors recorded (`zerorun seal-key` prints it)")
    return public_key_hex(signing_key(config))


@dataclass(frozen=True)
class Mismatch:
    """A stream whose events today no longer lead to the head a seal recorded."""

    stream: str
    seal_number: int
    sealed_seq: int
    first_bad_seq: int | None
    reason: str

    @property
    def case_id(self) -> int | None:
        kind, _, number = self.stream.partition(":")
        return int(number) if kind == "case" and number.isdigit() else None


@dataclass
class SealReport:
    """The outcome of `verify_seals`."""

    seals: int = 0
    streams: int = 0
    problems: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.mismatches


EventFields = tuple[int, str, str, str, datetime, dict[str, Any]]  # seq, stream, type, actor


def recompute(events: Sequence[EventFields]) -> list[str]:
    """The chain's hashes recomputed from the events' content, up to the first missing one."""
    hashes: list[str] = []
    prev = GENESIS
    for expected, (seq, stream, type_, actor, at, data) in enumerate(events, start=1):
        if seq != expected:
            break
        prev = event_hash(prev, stream, seq, type_, actor, at, data)
        hashes.append(prev)
    return hashes


def against(head: Head, seal_number: int, recomputed: Sequence[str], recorded: Sequence[str]
            ) -> Mismatch | None:
    """Whether the recomputed chain still reaches the sealed head; where it departs if not.

    `recorded` are the event hashes kept at seal time: trusted to locate the first differing
    event only when their Merkle root is the one the seal signed.
    """
    if len(recomputed) >= head.seq and recomputed[head.seq - 1] == head.hash:
        return None
    sealed = list(recorded[:head.seq])
    if len(sealed) == head.seq and events_root(sealed) == head.events_root:
        for index in range(min(len(recomputed), head.seq)):
            if recomputed[index] != sealed[index]:
                return Mismatch(head.stream, seal_number, head.seq, index + 1,
                                f"event {index + 1} is not the event seal {seal_number} "
                                "covered (rewritten after it was sealed)")
        return Mismatch(head.stream, seal_number, head.seq, len(recomputed) + 1,
                        f"event {len(recomputed) + 1}, sealed by seal {seal_number}, is "
                        "missing")
    if len(recomputed) < head.seq:
        return Mismatch(head.stream, seal_number, head.seq, len(recomputed) + 1,
                        f"event {len(recomputed) + 1}, sealed by seal {seal_number}, is "
                        "missing")
    return Mismatch(head.stream, seal_number, head.seq, None,
                    f"events 1 to {head.seq} no longer lead to the head seal {seal_number} "
                    "recorded; the hashes recorded at seal time were altered too, so the "
                    "first differing event cannot be named")


def _events(s: Session, streams: Sequence[str]) -> dict[str, list[EventFields]]:
    found: dict[str, list[EventFields]] = {stream: [] for stream in streams}
    for start in range(0, len(streams), _CHUNK):
        for seq, stream, type_, actor, at, data in s.execute(
                select(Event.seq, Event.stream, Event.type, Event.actor, Event.at, Event.data)
                .where(Event.stream.in_(streams[start:start + _CHUNK]))
                .order_by(Event.stream, Event.seq)):
            found[stream].append((seq, stream, type_, actor, at, data))
    return found


def verify_seals(engine: Engine, held: Sequence[dict[str, Any]], public_key: str
                 ) -> SealReport:
    """Check held seal documents, the database's chain of seals, and every sealed stream."""
    report = SealReport()
    with engine.db.reading() as s:
        rows = [_view(row) for row in s.scalars(select(Seal).order_by(Seal.number))]
        report.seals = len(rows)
        _check_chain(rows, public_key, report)
        by_number = {row.number: row for row in rows}
        for document in held:
            number = document.get("number")
            if document.get("format") != FORMAT:
                report.problems.append(f"the file is not a {FORMAT} seal")
                continue
            problem = signature_problem(document, public_key)
            if problem:
                report.problems.append(f"seal {number} you hold: {problem}")
                continue
            stored = by_number.get(int(number)) if isinstance(number, int) else None
            if stored is None:
                report.problems.append(f"seal {number} you hold is not in the database "
                                       "(removed)")
                continue
            if stored.document() != document:
                report.problems.append(f"the database's seal {number} differs from the one "
                                       f"you hold (root {stored.root[:16]}…, held "
                                       f"{str(document.get('root'))[:16]}…)")
                continue
            _check_streams(s, stored, report)
    return report


def _check_chain(rows: list[SealView], public_key: str, report: SealReport) -> None:
    expected, prev_root, prev_seal, prev_at, prev_number = 1, GENESIS, GENESIS, None, 0
    for row in rows:
        if row.number != expected:
            missing = (f"seal {expected}" if row.number == expected + 1
                       else f"seals {expected} to {row.number - 1}")
            report.problems.append(f"{missing} missing from the database (removed): seal "
                                   f"{row.number} follows seal {prev_number}")
        if row.prev_root != prev_root or row.prev_seal != prev_seal:
            report.problems.append(
                f"seal {row.number} does not follow seal {prev_number}: it names "
                f"{row.prev_seal[:16]}… (root {row.prev_root[:16]}…) as the previous seal, "
                f"not {prev_seal[:16]}… (root {prev_root[:16]}…) (seals removed, inserted "
                "or reordered)")
        if prev_at is not None and row.sealed_at < prev_at:
            report.problems.append(f"seal {row.number} is dated {format_time(row.sealed_at)}, "
                                   f"before the seal it follows (reordered)")
        problem = signature_problem(row.document(), public_key)
        if problem:
            report.problems.append(f"the database's seal {row.number}: {problem}")
        expected, prev_root, prev_at = row.number + 1, row.root, row.sealed_at
        prev_seal, prev_number = seal_hash(row.document()), row.number


def _check_streams(s: Session, seal: SealView, report: SealReport) -> None:
    leaves = seal_leaves(s, seal.number)
    root = merkle.root_of([head.leaf_hash() for head in leaves]).hex()
    if len(leaves) != seal.tree_size or root != seal.root:
        report.problems.append(f"the database's record of the heads seal {seal.number} "
                               "covers was altered: they no longer give its signed root")
        return
    streams = [head.stream for head in leaves]
    report.streams += len(streams)
    for start in range(0, len(leaves), _CHUNK):
        chunk = leaves[start:start + _CHUNK]
        names = [head.stream for head in chunk]
        events = _events(s, names)
        recorded = stream_hashes(s, SealedEvent, names)
        for head in chunk:
            mismatch = against(head, seal.number, recompute(events[head.stream]),
                               [digest for _, digest in recorded[head.stream]])
            if mismatch is not None:
                report.mismatches.append(mismatch)


@dataclass(frozen=True)
class CaseSealCheck:
    """One seal covering a case, and whether the case's events today still match it."""

    seal: SealView
    sealed_seq: int
    mismatch: Mismatch | None


def case_seal_checks(engine: Engine, case_id: int) -> list[CaseSealCheck]:
    """Every seal covering the case (newest first), each checked against today's events."""
    stream = f"case:{case_id}"
    coverage = seals_covering(engine, stream)
    if not coverage:
        return []
    with engine.db.reading() as s:
        recomputed = recompute(_events(s, [stream])[stream])
        recorded = [digest for _, digest in stream_hashes(s, SealedEvent, [stream])[stream]]
    return [CaseSealCheck(item.seal, item.seq, against(item.head, item.seal.number, recomputed,
                                                      recorded)) for item in coverage]
