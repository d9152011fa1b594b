"""Audit seals: Merkle proofs, signed chained seals, the rewrites a seal catches and not."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, text

from engine.actors import Actor
from engine.audit import merkle
from engine.audit.chain import GENESIS, event_hash
from engine.audit.export import export_case, verify_export_seal
from engine.audit.history import case_history
from engine.audit.sealcheck import case_seal_checks, trusted_key, verify_seals
from engine.audit.seals import (
    SealRefused,
    inclusion_holds,
    inclusion_proofs,
    public_key_hex,
    seal,
    seal_if_due,
    signed_bytes,
    signing_key,
)
from engine.runtime.spiff import dump_state
from engine.store.models import Case, CaseSnapshot, Event, HumanTask, Seal
from tests.conftest import FIXTURES

OFFICE = Actor("office", "office", "leading_group_office")
AGENT_A = Actor("agent_a", "agent", "dept_a")
AGENT_B = Actor("agent_b", "agent", "dept_b")


# --- Merkle trees -------------------------------------------------------------------------

def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962's recursive definition, as the reference."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_rfc6962_known_root():
    # The root over the empty tree and the leaf/node prefixes are CT's.
    assert merkle.root_of([]).hex() == \
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    leaf = merkle.leaf_hash(b"")
    assert leaf.hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert merkle.root_of([leaf, leaf]) == hashlib.sha256(b"\x01" + leaf + leaf).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 10_001])
def test_inclusion_and_consistency_proofs(size):
    leaves = [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(size)]
    tree = merkle.Tree(leaves)
    root = tree.root
    assert root == merkle.root_of(leaves)
    if size <= 1000:
        assert root == _mth(leaves)
    for index in range(size):
        path = tree.inclusion_proof(index)
        assert merkle.verify_inclusion(leaves[index], index, size, path, root)
        if index % 997 == 0:
            assert path == merkle.inclusion_proof(leaves, index)
            wrong = merkle.leaf_hash(b"another leaf")
            assert not merkle.verify_inclusion(wrong, index, size, path, root)
            if size > 1:
                assert not merkle.verify_inclusion(leaves[index], (index + 1) % size, size,
                                                   path, root)
    olds = sorted({1, 2, 3, size // 2, size - 1, size, 512, 1000} & set(range(1, size + 1)))
    for old in olds:
        old_root = merkle.root_of(leaves[:old])
        proof = merkle.consistency_proof(leaves, old)
        assert merkle.verify_consistency(old, size, old_root, root, proof)
        if old < size:
            assert not merkle.verify_consistency(old, size, merkle.leaf_hash(b"x"), root, proof)
            assert not merkle.verify_consistency(old, size, old_root, merkle.leaf_hash(b"x"),
                                                 proof)


# --- the engine's seals -------------------------------------------------------------------

@pytest.fixture
def finished_case(make_engine, db_url):
    engine = make_engine(db_url, FIXTURES / "mini")
    case = engine.start_case("mini", {"project": {"name": "测试项目"}, "due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.claim_task(task.id, AGENT_A)
    engine.complete_task(task.id, {"total": 6, "divisor": 3}, AGENT_A)
    [review] = engine.list_tasks(case_id=case.id)
    engine.complete_task(review.id, {"approved": True}, AGENT_B)
    return engine, case.id


def _unlock_events(s, engine, *tables: str) -> None:
    """Drop the append-only guard of the tables, as someone running the database can."""
    for table in tables or ("event",):
        if engine.db.postgres:
            s.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            s.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            s.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))


SEAL_TABLES = ("audit_seal", "audit_seal_leaf", "audit_sealed_event")


def rewrite_case(engine, case_id: int, seq: int, submitted: dict) -> None:
    """What an administrator with write access can do: change what event `seq` submitted,
    recompute every later hash, and make the case row, task index and snapshot match."""
    with engine.db.transaction() as s:
        _unlock_events(s, engine)
        events = list(s.scalars(select(Event).where(Event.stream == f"case:{case_id}")
                                .order_by(Event.seq)))
        prev = GENESIS
        for event in events:
            if event.seq == seq:
                event.data = {**event.data, "data": submitted}
                task = s.get(HumanTask, event.data.get("task_id"))
                if task is not None:
                    task.result = submitted
            event.prev_hash = prev
            event.hash = event_hash(prev, event.stream, event.seq, event.type, event.actor,
                                    event.at, event.data)
            prev = event.hash
        case = s.get(Case, case_id)
        case.last_hash = prev
    engine._cache.clear()
    data = case_history(engine, case_id).steps[-1].case_data
    with engine.db.transaction() as s:
        case, events = engine._case_and_events(s, case_id)
        case.data = data
        version = engine._version(s, case.process_version_id)
        workflow, ids = engine._reexecute(case_id, version, events, None)
        snapshot = s.get(CaseSnapshot, case_id)
        if snapshot is not None:
            snapshot.state, snapshot.id_counter = dump_state(workflow), ids.counter
    engine._cache.clear()


def _held(engine, number: int) -> dict:
    with engine.db.reading() as s:
        row = s.get(Seal, number)
        return {"format": "zerorun-seal/1", "number": row.number, "root": row.root,
                "tree_size": row.tree_size,
                "sealed_at": row.sealed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "prev_root": row.prev_root, "prev_seal": row.prev_seal,
                "public_key": row.public_key,
                "signature": row.signature}


def test_seal_is_signed_chained_and_covers_every_stream(finished_case, clock):
    engine, case_id = finished_case
    key = public_key_hex(signing_key(engine.config))
    assert engine.config.seal_key_path.exists()  # the key lives in a file, not the database
    first = seal(engine)
    clock.advance(hours=1)
    second = seal(engine)
    assert (first.number, second.number, second.prev_root) == (1, 2, first.root)
    assert first.prev_root == GENESIS and first.tree_size == 2  # the ops log and the case
    assert first.document() == _held(engine, 1)
    report = verify_seals(engine, [second.document()], key)
    assert report.ok, report
    assert (report.seals, report.streams) == (2, 2)
    proofs = inclusion_proofs(engine, f"case:{case_id}")
    assert [p["seal"]["number"] for p in proofs] == [1, 2]
    assert all(inclusion_holds(p) for p in proofs)
    assert [c.seal.number for c in case_seal_checks(engine, case_id)] == [2, 1]
    assert all(c.mismatch is None for c in case_seal_checks(engine, case_id))


def test_a_consistent_rewrite_after_a_seal_is_found_at_its_case_and_event(finished_case):
    engine, case_id = finished_case
    other = engine.start_case("mini", {"project": {"name": "另一个"}, "due": None}, OFFICE).id
    held = seal(engine).document()
    rewrite_case(engine, case_id, 3, {"total": 60, "divisor": 3})
    # The rewrite is consistent: the case's own verification sees nothing.
    assert engine.verify_case(case_id).ok
    assert engine.get_case(case_id).data["total"] == 60
    report = verify_seals(engine, [held], trusted_key(engine.config))
    assert not report.problems
    [mismatch] = report.mismatches
    assert (mismatch.case_id, mismatch.first_bad_seq, mismatch.sealed_seq) == (case_id, 3, 4)
    assert other != case_id
    [check] = case_seal_checks(engine, case_id)
    assert check.mismatch is not None and check.mismatch.first_bad_seq == 3
    # A new seal is refused rather than sealing over the rewritten history.
    with pytest.raises(SealRefused, match=f"event 3 of stream case:{case_id}"):
        seal(engine)


def test_a_rewrite_before_any_seal_is_not_detected(finished_case):
    engine, case_id = finished_case
    rewrite_case(engine, case_id, 3, {"total": 60, "divisor": 3})
    held = seal(engine).document()
    # What a seal protects starts when it is made: this earlier rewrite is sealed as history.
    report = verify_seals(engine, [held], trusted_key(engine.config))
    assert report.ok and report.streams == 2


def test_recorded_hashes_altered_too_still_names_the_case(finished_case):
    engine, case_id = finished_case
    held = seal(engine).document()
    rewrite_case(engine, case_id, 3, {"total": 60, "divisor": 3})
    with engine.db.transaction() as s:
        _unlock_events(s, engine, *SEAL_TABLES)
        s.execute(text("UPDATE audit_sealed_event SET hash = :h WHERE stream = :s AND seq = 4"),
                  {"h": "0" * 64, "s": f"case:{case_id}"})
    [mismatch] = verify_seals(engine, [held], trusted_key(engine.config)).mismatches
    assert mismatch.case_id == case_id and mismatch.first_bad_seq is None
    assert "cannot be named" in mismatch.reason


def test_forged_removed_and_reordered_seals_are_reported(finished_case, clock):
    engine, _ = finished_case
    for _ in range(3):
        seal(engine)
        clock.advance(hours=1)
    key = trusted_key(engine.config)
    good = _held(engine, 3)
    # Forged: signed by another key, whether it names that key or the trusted one.
    mallory = Ed25519PrivateKey.generate()
    forged = {**good, "root": "ab" * 32, "public_key": public_key_hex(mallory)}
    forged["signature"] = mallory.sign(signed_bytes(forged)).hex()
    [problem] = verify_seals(engine, [forged], key).problems
    assert "seal 3 you hold" in problem and "not the trusted key" in problem
    posing = {**forged, "public_key": key}
    posing["signature"] = mallory.sign(signed_bytes(posing)).hex()
    [problem] = verify_seals(engine, [posing], key).problems
    assert "does not verify with the trusted key" in problem
    assert verify_seals(engine, [good], key).ok
    # Reordered: seals 2 and 3 swap places in the chain.
    with engine.db.transaction() as s:
        _unlock_events(s, engine, *SEAL_TABLES)
    with engine.db.transaction() as s:
        second, third = s.get(Seal, 2), s.get(Seal, 3)
        columns = ("root", "tree_size", "sealed_at", "prev_root", "prev_seal", "signature")
        values = [tuple(getattr(row, c) for c in columns) for row in (second, third)]
        for row, swapped in ((second, values[1]), (third, values[0])):
            for column, value in zip(columns, swapped, strict=True):
                setattr(row, column, value)
    problems = verify_seals(engine, [], key).problems
    assert any("seal 2 does not follow seal 1" in p for p in problems), problems
    assert any("reordered" in p for p in problems), problems
    assert any("the database's seal 2: its signature" in p for p in problems), problems
    held_problems = verify_seals(engine, [good], key).problems
    assert any("differs from the one you hold" in p for p in held_problems), held_problems
    # Removed: seal 2 disappears from the database; the seal held is also removed.
    with engine.db.transaction() as s:
        for table in ("audit_seal_leaf", "audit_sealed_event"):
            s.execute(text(f"DELETE FROM {table} WHERE seal_number IN (2, 3)"))  # noqa: S608
        s.execute(text("DELETE FROM audit_seal WHERE number IN (2, 3)"))
    seal(engine)  # the next seal takes number 2 and follows seal 1
    problems = verify_seals(engine, [good], key).problems
    assert problems == ["seal 3 you hold is not in the database (removed)"], problems


def test_a_removed_seal_in_the_middle_is_reported(finished_case, clock):
    engine, _ = finished_case
    for _ in range(3):
        seal(engine)
        clock.advance(hours=1)
    with engine.db.transaction() as s:
        _unlock_events(s, engine, *SEAL_TABLES)
        for table in ("audit_seal_leaf", "audit_sealed_event"):
            s.execute(text(f"DELETE FROM {table} WHERE seal_number = 2"))  # noqa: S608
        s.execute(text("DELETE FROM audit_seal WHERE number = 2"))
    problems = verify_seals(engine, [_held(engine, 3)], trusted_key(engine.config)).problems
    assert any("seal 2 missing from the database (removed)" in p for p in problems), problems
    assert any("seal 3 does not follow seal 1" in p for p in problems), problems


def test_the_worker_seals_once_per_interval(finished_case, clock):
    engine, _ = finished_case
    assert seal_if_due(engine).number == 1
    clock.advance(hours=23)
    assert seal_if_due(engine) is None
    clock.advance(hours=1)
    assert seal_if_due(engine).number == 2


def _fill_streams(engine, streams: int, at: datetime) -> list[str]:
    """Add `streams` case streams of two chained events each, straight into the table."""
    rows, names = [], []
    for n in range(1, streams + 1):
        stream, prev = f"case:{n}", GENESIS
        names.append(stream)
        for seq in (1, 2):
            data = {"n": n, "seq": seq}
            digest = event_hash(prev, stream, seq, "note", "bench", at, data)
            rows.append({"stream": stream, "case_id": None, "seq": seq, "type": "note",
                         "actor": "bench", "at": at, "data": data, "prev_hash": prev,
                         "hash": digest})
            prev = digest
    with engine.db.transaction() as s:
        for start in range(0, len(rows), 5000):
            s.execute(insert(Event), rows[start:start + 5000])
    return names


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 10_001])
def test_seal_proofs_for_trees_of_many_streams(make_engine, sqlite_url, clock, size):
    engine = make_engine(sqlite_url, FIXTURES / "mini", load=False)
    names = _fill_streams(engine, size - 1, clock())  # plus the operations log
    made = seal(engine)
    assert made.tree_size == size
    for stream in (["ops"] + names)[:3] + names[-2:]:
        [proof] = inclusion_proofs(engine, stream)
        assert inclusion_holds(proof), stream
        proof["leaf"]["seq"] += 1
        assert not inclusion_holds(proof)
    if names:
        # Consistency: a stream that goes on extends its sealed head ...
        last = names[-1]
        with engine.db.reading() as s:
            head = s.scalars(select(Event).where(Event.stream == last, Event.seq == 2)).one()
        at = clock() + timedelta(minutes=1)
        with engine.db.transaction() as s:
            s.add(Event(stream=last, case_id=None, seq=3, type="note", actor="bench", at=at,
                        data={}, prev_hash=head.hash,
                        hash=event_hash(head.hash, last, 3, "note", "bench", at, {})))
        key = trusted_key(engine.config)
        report = verify_seals(engine, [made.document()], key)
        assert report.ok and report.streams == size
        # ... and one whose first event is rewritten does not.
        with engine.db.transaction() as s:
            _unlock_events(s, engine)
            s.execute(text("UPDATE event SET actor = 'mallory' WHERE stream = :s AND seq = 1"),
                      {"s": names[0]})
        [mismatch] = verify_seals(engine, [made.document()], key).mismatches
        assert (mismatch.stream, mismatch.first_bad_seq) == (names[0], 1)


def test_export_carries_proofs_checked_offline_against_a_held_seal(finished_case, clock):
    engine, case_id = finished_case
    held = seal(engine).document()
    key = held["public_key"]
    document = json.loads(json.dumps(export_case(engine, case_id)))
    assert [p["seal"]["number"] for p in document["seals"]] == [1]
    assert len(document["sealed_hashes"]) == 4
    assert verify_export_seal(document, held, key).ok
    # Another key's seal is refused; a seal the case is not in has no proof.
    mallory = Ed25519PrivateKey.generate()
    assert "not the trusted key" in verify_export_seal(
        document, held, public_key_hex(mallory)).reason
    clock.advance(hours=1)
    later = seal(engine).document()
    assert "no proof for seal 2" in verify_export_seal(document, later, key).reason
    # The case rewritten after the seal: its new export fails against the seal held.
    rewrite_case(engine, case_id, 3, {"total": 60, "divisor": 3})
    rewritten = json.loads(json.dumps(export_case(engine, case_id)))
    result = verify_export_seal(rewritten, held, key)
    assert not result.ok and result.first_bad_seq == 3, result


def test_cli_seal_key_seal_and_verify_seal(finished_case, tmp_path, monkeypatch):
    from webapp import cli

    engine, case_id = finished_case
    monkeypatch.setattr(cli, "_engine", lambda: engine)
    monkeypatch.setenv("ZERORUN_INSTANCE", str(tmp_path))
    runner = CliRunner()
    printed = runner.invoke(cli.main, ["seal-key"])
    assert printed.exit_code == 0
    assert printed.output.strip() == public_key_hex(signing_key(engine.config))
    seal_file = tmp_path / "seal-1.json"
    made = runner.invoke(cli.main, ["seal", "-o", str(seal_file)])
    assert made.exit_code == 0 and "seal 1: 2 streams" in made.output
    ok = runner.invoke(cli.main, ["verify-seal", str(seal_file)])
    assert ok.exit_code == 0, ok.output
    assert "1 seal(s) in the chain, 2 sealed stream(s) checked" in ok.output
    rewrite_case(engine, case_id, 3, {"total": 60, "divisor": 3})
    failed = runner.invoke(cli.main, ["verify-seal", str(seal_file)])
    assert failed.exit_code == 1
    assert f"case {case_id}: FAILED at event 3: event 3 is not the event seal 1 covered" \
        in failed.output
    export = tmp_path / "case.json"
    export.write_text(json.dumps(export_case(engine, case_id)), encoding="utf-8")
    offline = runner.invoke(cli.main, ["verify-export", str(export), "--seal", str(seal_file)])
    assert offline.exit_code == 1
    assert "FAILED against seal 1 at event 3" in offline.output


def test_seals_are_append_only_and_the_key_file_is_private(finished_case):
    from sqlalchemy.exc import DatabaseError

    engine, _ = finished_case
    seal(engine)
    assert engine.config.seal_key_path.stat().st_mode & 0o777 == 0o600
    for sql in ("UPDATE audit_seal SET root = 'x'", "DELETE FROM audit_seal_leaf",
                "DELETE FROM audit_sealed_event"):
        with pytest.raises(DatabaseError, match="append-only"):
            with engine.db.transaction() as s:
                s.execute(text(sql))


def test_a_rewritten_operations_log_is_reported(make_engine, sqlite_url, clock):
    from engine import accounts

    engine = make_engine(sqlite_url, FIXTURES / "mini")
    with engine.db.transaction() as s:
        accounts.create_user(s, "auditor", "password-auditor", "auditor", now=clock(),
                             actor="admin")
    held = seal(engine).document()
    with engine.db.transaction() as s:
        _unlock_events(s, engine)
        ops = list(s.scalars(select(Event).where(Event.stream == "ops").order_by(Event.seq)))
        prev = GENESIS
        for event in ops:  # the account's creator is changed, the chain recomputed
            if event.type == "account_created":
                event.actor = "nobody"
            event.prev_hash, event.hash = prev, event_hash(
                prev, "ops", event.seq, event.type, event.actor, event.at, event.data)
            prev = event.hash
    [mismatch] = verify_seals(engine, [held], trusted_key(engine.config)).mismatches
    created = next(e.seq for e in ops if e.type == "account_created")
    assert (mismatch.stream, mismatch.case_id, mismatch.first_bad_seq) == ("ops", None, created)


def test_the_worker_seals_when_due(finished_case, monkeypatch):
    from webapp import cli

    engine, _ = finished_case
    monkeypatch.setattr(cli, "_engine", lambda: engine)
    result = CliRunner().invoke(cli.main, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "seal 1: 2 streams" in result.output
    again = CliRunner().invoke(cli.main, ["worker", "--once"])
    assert "seal" not in again.output


def test_an_export_carries_the_latest_seals_unless_asked_for_all(finished_case, clock):
    engine, case_id = finished_case
    held = [seal(engine).document()]
    for _ in range(3):
        clock.advance(hours=1)
        held.append(seal(engine).document())
    recent = export_case(engine, case_id, seal_proofs=2)
    assert [p["seal"]["number"] for p in recent["seals"]] == [3, 4]
    assert verify_export_seal(recent, held[3], held[3]["public_key"]).ok
    result = verify_export_seal(recent, held[0], held[0]["public_key"])
    assert "latest 2 seals only, not seal 1" in result.reason
    everything = export_case(engine, case_id, seal_proofs=None)
    assert all(verify_export_seal(everything, h, h["public_key"]).ok for h in held)
