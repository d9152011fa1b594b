"""Audit seals: a signed Merkle root over the last event of every stream, chained seal to seal.

A seal commits to the head (stream, last seq, hash) of every case stream and of the
operations log at one moment. Each leaf also carries the Merkle root of every event hash
of its stream up to the head, so that a later rewrite can be located at its first event.
The seal is signed with an Ed25519 key kept outside the database and names the previous
seal's root; copies kept by auditors outside the system then make a consistent rewrite of
an already sealed history detectable (`engine.audit.sealcheck`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.audit import merkle
from engine.audit.chain import GENESIS, canonical_json, format_time
from engine.config import Config, ConfigError
from engine.errors import EngineError, NotFound
from engine.store.models import Event, Seal, SealedEvent, SealLeaf

if TYPE_CHECKING:
    from engine.cases import Engine

FORMAT = "zerorun-seal/1"
SIGNED_FIELDS = ("format", "number", "root", "tree_size", "sealed_at", "prev_root",
                 "prev_seal", "public_key")
_CHUNK = 500


class SealRefused(EngineError):
    """The history a previous seal covers changed: sealing it again would hide the rewrite."""

    title = "Seal refused"
    status = 409


# --- the key -----------------------------------------------------------------------------

def signing_key(config: Config) -> Ed25519PrivateKey:
    """The private key that signs seals: from the setting, the key file, or a new key file.

    A new key is only created at the default place under the instance folder; a key file
    named in the settings must exist.
    """
    if config.seal_key:
        return _private_key(config.seal_key.encode("utf-8"), "ZERORUN_SEAL_KEY")
    path = config.seal_key_path
    if path.exists():
        return _private_key(path.read_bytes(), str(path))
    if config.seal_key_file:
        raise ConfigError(f"the seal key file {path} (ZERORUN_SEAL_KEY_FILE) does not exist")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return key


def _private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the seal key in {where} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the seal key in {where} is not an Ed25519 key")
    return key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key in hex, as seals and `zerorun seal-key` show it."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def signature_problem(document: dict[str, Any], public_key: str) -> str | None:
    """Why a seal document's signature does not hold for `public_key` (hex), or None."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        signature = bytes.fromhex(str(document.get("signature", "")))
    except ValueError as exc:
        return f"the key or signature is malformed ({exc})"
    if document.get("public_key") != public_key:
        return (f"it names the key {document.get('public_key')!r}, not the trusted key "
                f"{public_key}")
    try:
        key.verify(signature, signed_bytes(document))
    except InvalidSignature:
        return "its signature does not verify with the trusted key (forged or altered)"
    return None


def signed_bytes(document: dict[str, Any]) -> bytes:
    """The bytes a seal's signature covers."""
    return canonical_json({name: document.get(name) for name in SIGNED_FIELDS}).encode("utf-8")


def seal_hash(document: dict[str, Any]) -> str:
    """The hash of a whole seal (what it signs and its signature): the next seal names it.

    Two seals over unchanged heads share a root; this hash tells them apart.
    """
    return hashlib.sha256(signed_bytes(document) + str(document.get("signature", ""))
                          .encode("utf-8")).hexdigest()


# --- leaves --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    """A stream's last event at seal time and the root of all its event hashes."""

    stream: str
    seq: int
    hash: str
    events_root: str

    def leaf_hash(self) -> bytes:
        """The leaf's hash in the seal's tree: over "stream LF seq LF hash LF events root"."""
        return merkle.leaf_hash(self.leaf_data())

    def leaf_data(self) -> bytes:
        """The bytes a leaf stands for."""
        return f"{self.stream}\n{self.seq}\n{self.hash}\n{self.events_root}".encode()

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "seq": self.seq, "hash": self.hash,
                "events_root": self.events_root}


def stream_order(stream: str) -> tuple[int, int, str]:
    """Leaves in a fixed order: the operations log, then cases by number."""
    if stream == "ops":
        return (0, 0, stream)
    kind, _, number = stream.partition(":")
    if kind == "case" and number.isdigit():
        return (1, int(number), stream)
    return (2, 0, stream)


def events_root(hashes: Sequence[str]) -> str:
    """The Merkle root over a stream's event hashes in order."""
    return merkle.root_of([merkle.leaf_hash(bytes.fromhex(h)) for h in hashes]).hex()


def case_stream(case_id: int) -> str:
    return f"case:{case_id}"


# --- making a seal ------------------------------------------------------------------------

@dataclass(frozen=True)
class SealView:
    """A stored seal."""

    number: int
    root: str
    tree_size: int
    sealed_at: datetime
    prev_root: str
    prev_seal: str
    public_key: str
    signature: str

    def document(self) -> dict[str, Any]:
        """The seal as the small JSON file auditors keep."""
        return {"format": FORMAT, "number": self.number, "root": self.root,
                "tree_size": self.tree_size, "sealed_at": format_time(self.sealed_at),
                "prev_root": self.prev_root, "prev_seal": self.prev_seal,
                "public_key": self.public_key,
                "signature": self.signature}


def _view(row: Seal) -> SealView:
    return SealView(row.number, row.root, row.tree_size, row.sealed_at, row.prev_root,
                    row.prev_seal, row.public_key, row.signature)


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def stream_hashes(s: Session, model: type[Event] | type[SealedEvent], streams: Sequence[str]
                  ) -> dict[str, list[tuple[int, str]]]:
    """(seq, hash) of every event (or sealed event) of the streams, in order."""
    found: dict[str, list[tuple[int, str]]] = {stream: [] for stream in streams}
    for chunk in _chunks(streams):
        for stream, seq, digest in s.execute(
                select(model.stream, model.seq, model.hash).where(model.stream.in_(chunk))
                .order_by(model.stream, model.seq)):
            found[stream].append((seq, digest))
    return found


def current_heads(s: Session) -> dict[str, tuple[int, str]]:
    """Every stream's last event: seq and hash."""
    last = select(Event.stream, func.max(Event.seq).label("seq")).group_by(Event.stream) \
        .subquery()
    return {stream: (seq, digest) for stream, seq, digest in s.execute(
        select(Event.stream, Event.seq, Event.hash).join(
            last, (Event.stream == last.c.stream) & (Event.seq == last.c.seq)))}


def seal(engine: Engine) -> SealView:
    """Seal the head of every stream now: store the signed seal and call the seal hooks.

    Refuses (SealRefused) when a stream's history that an earlier seal covered no longer
    matches what that seal recorded.
    """
    key = signing_key(engine.config)
    public_key = public_key_hex(key)
    try:
        with engine.db.transaction() as s:
            return _seal(engine, s, key, public_key)
    except IntegrityError as exc:
        raise SealRefused("another seal was made at the same moment; nothing was stored, "
                          "seal again") from exc


def _seal(engine: Engine, s: Session, key: Ed25519PrivateKey, public_key: str) -> SealView:
    """Make and store the next seal in the transaction `s`."""
    now = engine.clock()
    previous = s.scalars(select(Seal).order_by(Seal.number.desc()).limit(1)
                         .with_for_update()).first()
    sealed: dict[str, SealLeaf] = {} if previous is None else {
        leaf.stream: leaf for leaf in s.scalars(
            select(SealLeaf).where(SealLeaf.seal_number == previous.number))}
    number = previous.number + 1 if previous else 1
    heads = current_heads(s)
    gone = sorted(set(sealed) - set(heads), key=stream_order)
    if gone:
        raise SealRefused(f"stream {gone[0]} was sealed by seal {number - 1} but has no "
                          "events any more; run `zerorun verify-seal`", stream=gone[0])
    changed = sorted((stream for stream, (seq, digest) in heads.items()
                      if stream not in sealed or (sealed[stream].seq, sealed[stream].hash)
                      != (seq, digest)), key=stream_order)
    leaves: dict[str, Head] = {stream: Head(stream, leaf.seq, leaf.hash, leaf.events_root)
                               for stream, leaf in sealed.items()}
    new_sealed: list[dict[str, Any]] = []
    current = stream_hashes(s, Event, changed)
    recorded = stream_hashes(s, SealedEvent, changed if previous else [])
    for stream in changed:
        head_seq, head_hash = heads[stream]
        hashes = [(seq, digest) for seq, digest in current[stream] if seq <= head_seq]
        before = recorded.get(stream, [])
        _check_prefix(stream, hashes, before, head_seq, number - 1)
        leaves[stream] = Head(stream, head_seq, head_hash,
                              events_root([digest for _, digest in hashes]))
        new_sealed.extend({"stream": stream, "seq": seq, "hash": digest,
                           "seal_number": number}
                          for seq, digest in hashes[len(before):])
    ordered = [leaves[stream] for stream in sorted(leaves, key=stream_order)]
    root = merkle.root_of([head.leaf_hash() for head in ordered]).hex()
    document = {"format": FORMAT, "number": number, "root": root,
                "tree_size": len(ordered), "sealed_at": format_time(now),
                "prev_root": previous.root if previous else GENESIS,
                "prev_seal": seal_hash(_view(previous).document()) if previous else GENESIS,
                "public_key": public_key}
    signature = key.sign(signed_bytes(document)).hex()
    row = Seal(number=number, root=root, tree_size=len(ordered), sealed_at=now,
               prev_root=document["prev_root"], prev_seal=document["prev_seal"],
               public_key=public_key, signature=signature)
    s.add(row)
    s.flush()
    _insert(s, SealLeaf, [{"seal_number": number, "position": position, **head.to_dict()}
                          for position, head in enumerate(ordered)])
    _insert(s, SealedEvent, new_sealed)
    view = _view(row)
    for hook in engine.hooks.seal_made:
        hook(s, view.document())
    return view


def _check_prefix(stream: str, hashes: list[tuple[int, str]], recorded: list[tuple[int, str]],
                  head_seq: int, last_seal: int) -> None:
    """The stream runs 1..head without gaps and still starts with what earlier seals recorded."""
    for expected, (seq, _) in enumerate(hashes, start=1):
        if seq != expected:
            raise SealRefused(f"stream {stream} has no event {expected}; run `zerorun "
                              "verify-audit`")
    if len(hashes) != head_seq:
        raise SealRefused(f"stream {stream} changed while it was being sealed")
    for (seq, digest), (_, before) in zip(hashes, recorded, strict=False):
        if digest != before:
            raise SealRefused(f"event {seq} of stream {stream} differs from the one seal "
                              f"{last_seal} or an earlier seal recorded; run `zerorun "
                              "verify-seal`", stream=stream, seq=seq)
    if len(recorded) > len(hashes):
        raise SealRefused(f"stream {stream} lost events that seal {last_seal} recorded; run "
                          "`zerorun verify-seal`", stream=stream, seq=len(hashes) + 1)


def _insert(s: Session, model: type[SealLeaf] | type[SealedEvent],
            rows: list[dict[str, Any]]) -> None:
    table = cast(Table, model.__table__)
    for start in range(0, len(rows), 5000):  # Core inserts: no ORM bookkeeping per row
        s.execute(insert(table), rows[start:start + 5000])


def seal_if_due(engine: Engine) -> SealView | None:
    """Seal when the configured interval has passed since the last seal (the worker's call)."""
    hours = engine.config.seal_interval_hours
    if hours <= 0:
        return None
    last = latest_seal(engine)
    if last is not None and engine.clock() - last.sealed_at < timedelta(hours=hours):
        return None
    return seal(engine)


# --- reading seals and proofs -------------------------------------------------------------

def list_seals(engine: Engine, *, since: datetime | None = None, limit: int | None = None
               ) -> list[SealView]:
    """Stored seals, newest first."""
    query = select(Seal).order_by(Seal.number.desc())
    if since is not None:
        query = query.where(Seal.sealed_at >= since)
    if limit is not None:
        query = query.limit(limit)
    with engine.db.reading() as s:
        return [_view(row) for row in s.scalars(query)]


def latest_seal(engine: Engine) -> SealView | None:
    found = list_seals(engine, limit=1)
    return found[0] if found else None


def get_seal(engine: Engine, number: int) -> SealView:
    with engine.db.reading() as s:
        row = s.get(Seal, number)
        if row is None:
            raise NotFound(f"seal {number} does not exist")
        return _view(row)


@dataclass(frozen=True)
class Coverage:
    """A seal that covers a stream, with the stream's head it sealed."""

    seal: SealView
    head: Head
    position: int

    @property
    def seq(self) -> int:
        return self.head.seq


def seals_covering(engine: Engine, stream: str) -> list[Coverage]:
    """Every seal whose tree holds the stream, newest first."""
    with engine.db.reading() as s:
        return [Coverage(_view(row), Head(leaf.stream, leaf.seq, leaf.hash, leaf.events_root),
                         leaf.position)
                for leaf, row in s.execute(
                    select(SealLeaf, Seal).join(Seal, Seal.number == SealLeaf.seal_number)
                    .where(SealLeaf.stream == stream).order_by(Seal.number.desc()))]


def seal_leaves(s: Session, number: int) -> list[Head]:
    """A seal's leaves in tree order."""
    return [Head(*row) for row in s.execute(
        select(SealLeaf.stream, SealLeaf.seq, SealLeaf.hash, SealLeaf.events_root)
        .where(SealLeaf.seal_number == number).order_by(SealLeaf.position))]


def inclusion_proofs(engine: Engine, stream: str, limit: int | None = None
                     ) -> list[dict[str, Any]]:
    """For every seal covering the stream (the `limit` latest ones when given), oldest
    first: the seal, the stream's leaf and its audit path.

    Each proof rebuilds its seal's tree from all its leaves; leaves unchanged from one
    seal to the next are hashed once.
    """
    proofs = []
    hashed: dict[Head, bytes] = {}
    covering = seals_covering(engine, stream)
    with engine.db.reading() as s:
        for coverage in reversed(covering[:limit] if limit is not None else covering):
            leaves = seal_leaves(s, coverage.seal.number)
            tree = merkle.Tree([hashed.get(head) or hashed.setdefault(head, head.leaf_hash())
                                for head in leaves])
            if len(hashed) > 4 * len(leaves):
                hashed.clear()
            proofs.append({"seal": coverage.seal.document(),
                           "leaf": {**leaves[coverage.position].to_dict(),
                                    "index": coverage.position},
                           "path": [node.hex() for node in
                                    tree.inclusion_proof(coverage.position)]})
    return proofs


def sealed_hashes(engine: Engine, stream: str) -> list[str]:
    """The event hashes of a stream as seals recorded them, from event 1 on."""
    with engine.db.reading() as s:
        return [digest for _, digest in stream_hashes(s, SealedEvent, [stream])[stream]]


def inclusion_holds(proof: dict[str, Any]) -> bool:
    """Whether a proof's leaf is in the tree of its seal's root."""
    leaf = proof["leaf"]
    head = Head(leaf["stream"], leaf["seq"], leaf["hash"], leaf["events_root"])
    try:
        path = [bytes.fromhex(node) for node in proof["path"]]
        root = bytes.fromhex(proof["seal"]["root"])
    except (ValueError, TypeError):
        return False
    return merkle.verify_inclusion(head.leaf_hash(), int(leaf["index"]),
                                   int(proof["seal"]["tree_size"]), path, root)

