"""`zerorun backup` and `zerorun restore`: a backup proves itself by restoring into an
empty database and re-executing every case; a damaged one is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from engine.actors import Actor
from engine.backup import sha256_of
from engine.cases import Engine
from engine.config import Config
from tests.conftest import _postgres_database
from tests.service import Service, small_project
from webapp.cli import main

PDF = b"%PDF-1.4\n% a scanned business licence\n%%EOF\n"


@pytest.fixture
def source(make_pack_engine, db_url, clock):
    """A database with a case two tasks in, an attachment, and its instance folder."""
    engine = make_pack_engine(db_url)
    service = Service(engine, clock)
    service.start(small_project())
    service.complete("select_items", selected_items=service.case().data["selected_items"])
    task = service.ready()[0]
    engine.add_attachment(task.id, "licence.pdf", PDF,
                          Actor(f"agent_{task.department}", "agent", task.department))
    return engine


@pytest.fixture
def empty_url(db_url, tmp_path):
    """A second, empty database on the same backend."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'zerorun.db'}"
        return
    yield from _postgres_database()


def zerorun(monkeypatch, url: str, instance: Path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ZERORUN_INSTANCE", str(instance))
    monkeypatch.setenv("ZERORUN_PG_BINDIR", "/usr/lib/postgresql/15/bin")
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return inspect(connection).get_table_names()
    finally:
        engine.dispose()


def test_a_backup_restores_into_an_empty_database_and_verifies(source, db_url, empty_url,
                                                               tmp_path, monkeypatch):
    folder = tmp_path / "backup-1"
    code, out = zerorun(monkeypatch, db_url, tmp_path, "backup", str(folder))
    assert code == 0, out
    assert "1 case(s)" in out and "1 file(s)" in out
    manifest = json.loads((folder / "manifest.json").read_text())
    database = manifest["database"]["file"]
    assert database == ("database.sqlite" if db_url.startswith("sqlite") else "database.pgdump")
    for name, entry in manifest["files"].items():
        assert sha256_of(folder / name) == entry["sha256"]

    restored = tmp_path / "restored-instance"
    code, out = zerorun(monkeypatch, empty_url, restored, "restore", str(folder))
    assert code == 0, out
    assert "restored and verified: 1 case(s) re-executed" in out
    [attachment] = [p for p in (restored / "attachments").rglob("*") if p.is_file()]
    assert attachment.read_bytes() == PDF
    assert open_tasks(empty_url) == open_tasks(db_url) != []


def open_tasks(url: str) -> list[tuple[str, int, str, str | None]]:
    engine = Engine(Config.from_env(database_url=url), functions={})
    try:
        return [(t.id, t.case_id, t.spec_name, t.department) for t in engine.list_tasks()]
    finally:
        engine.db.dispose()


def test_a_corrupted_backup_is_refused_and_nothing_is_restored(source, db_url, empty_url,
                                                               tmp_path, monkeypatch):
    folder = tmp_path / "backup-2"
    assert zerorun(monkeypatch, db_url, tmp_path, "backup", str(folder))[0] == 0
    database = folder / json.loads((folder / "manifest.json").read_text())["database"]["file"]
    content = bytearray(database.read_bytes())
    content[len(content) // 2] ^= 0x01
    database.write_bytes(bytes(content))
    code, out = zerorun(monkeypatch, empty_url, tmp_path / "r", "restore", str(folder))
    assert code == 1
    assert f"the backup file {database.name} is corrupted" in out
    assert "nothing was restored" in out
    assert tables(empty_url) == []


def test_a_missing_file_is_refused(source, db_url, empty_url, tmp_path, monkeypatch):
    folder = tmp_path / "backup-3"
    assert zerorun(monkeypatch, db_url, tmp_path, "backup", str(folder))[0] == 0
    [attachment] = [p for p in (folder / "files").rglob("*") if p.is_file()]
    attachment.unlink()
    code, out = zerorun(monkeypatch, empty_url, tmp_path / "r", "restore", str(folder))
    assert code == 1 and "the backup is incomplete" in out


def test_restore_refuses_a_database_that_is_not_empty(source, db_url, tmp_path, monkeypatch):
    folder = tmp_path / "backup-4"
    assert zerorun(monkeypatch, db_url, tmp_path, "backup", str(folder))[0] == 0
    code, out = zerorun(monkeypatch, db_url, tmp_path, "restore", str(folder))
    assert code == 1 and "the target database is not empty" in out


def test_a_backup_goes_to_a_new_folder(source, db_url, tmp_path, monkeypatch):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    code, out = zerorun(monkeypatch, db_url, tmp_path, "backup", str(tmp_path / "used"))
    assert code == 1 and "is not empty" in out


def test_a_restore_whose_cases_do_not_verify_fails(make_pack_engine, sqlite_url, clock,
                                                   tmp_path, monkeypatch):
    """Checksums pass (the manifest was rewritten) but an event was altered: verification
    catches it and the restore does not report success."""
    engine = make_pack_engine(sqlite_url)
    service = Service(engine, clock)
    service.start(small_project())
    service.complete("select_items", selected_items=service.case().data["selected_items"])
    folder = tmp_path / "backup-5"
    assert zerorun(monkeypatch, sqlite_url, tmp_path, "backup", str(folder))[0] == 0
    database = folder / "database.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER event_no_update")  # as someone tampering would
        connection.execute("UPDATE event SET actor = 'someone_else' WHERE type = "
                           "'task_completed'")
    connection.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["database.sqlite"] = {"sha256": sha256_of(database),
                                            "size": database.stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    url = f"sqlite:///{tmp_path / 'restored.db'}"
    code, out = zerorun(monkeypatch, url, tmp_path / "r", "restore", str(folder))
    assert code == 1
    assert "FAILED verification" in out and "case 1: event 2" in out
