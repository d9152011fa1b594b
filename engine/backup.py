"""Backups that prove themselves: the database (SQLite online backup API, or pg_dump's
custom format) and the attachment files, with a manifest of SHA-256 checksums; a restore
goes into an empty database and verifies every chain and every case before it succeeds.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess  # noqa: S404 - pg_dump and pg_restore, with argument lists
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url

from engine.audit import chain as audit
from engine.errors import EngineError
from engine.store import schema
from engine.store.models import Attachment, Case, Event

if TYPE_CHECKING:
    from engine.cases import Engine

FORMAT = "zerorun-backup/1"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.pgdump"
FILES = "files"


class BackupRefused(EngineError):
    """A backup is incomplete or corrupted, or cannot be restored where asked."""

    title = "Backup refused"
    status = 422


@dataclass
class BackupReport:
    """What a backup holds."""

    folder: Path
    database: str
    files: int
    cases: int
    events: int


@dataclass
class RestoreReport:
    """What a restore brought back and what its verification found."""

    cases: int = 0
    events: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(engine: Engine, folder: Path) -> BackupReport:
    """Write a consistent backup of the engine's database and files into a new folder."""
    if folder.exists() and any(folder.iterdir()):
        raise BackupRefused(f"{folder} is not empty; give a new folder for the backup")
    folder.mkdir(parents=True, exist_ok=True)
    with engine.db.reading() as s:
        cases = s.scalar(select(func.count()).select_from(Case)) or 0
        events = s.scalar(select(func.count()).select_from(Event)) or 0
    if engine.db.postgres:
        name = PG_FILE
        _pg(engine, "pg_dump", ["--format=custom", "--no-owner", "--no-privileges",
                                "--file", str(folder / name), "{url}"], engine.db.url)
    else:
        name = SQLITE_FILE
        _sqlite_copy(_sqlite_path(engine.db.url), folder / name)
    # After the database: every attachment it names was written before its row committed.
    source = engine.files.root
    copied = 0
    if source.exists():
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                target = folder / FILES / "attachments" / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied += 1
    files = {str(p.relative_to(folder)): {"sha256": sha256_of(p), "size": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {"format": FORMAT, "created_at": audit.format_time(engine.clock()),
                "database": {"kind": engine.db.engine.dialect.name, "file": name},
                "cases": cases, "events": events, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n",
                                   encoding="utf-8")
    return BackupReport(folder, name, copied, cases, events)


def check_backup(folder: Path) -> dict[str, Any]:
    """Read a backup's manifest and check every file against it (raises BackupRefused)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BackupRefused(f"{folder} is not a zerorun backup: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupRefused(f"the backup's {MANIFEST} is damaged ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupRefused(f"the backup's {MANIFEST} is not of the format {FORMAT}")
    files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    database = str(manifest.get("database", {}).get("file", ""))
    if database not in files:
        raise BackupRefused("the backup's manifest names no database file")
    for name, expected in sorted(files.items()):
        target = folder / name
        if ".." in Path(name).parts or not target.is_file():
            raise BackupRefused(f"the backup is incomplete: {name} is missing; "
                                "nothing was restored")
        if target.stat().st_size != expected.get("size") or \
                sha256_of(target) != expected.get("sha256"):
            raise BackupRefused(f"the backup file {name} is corrupted (its SHA-256 does not "
                                "match the manifest); nothing was restored")
    return manifest


def restore(engine: Engine, folder: Path) -> RestoreReport:
    """Restore a checked backup into the engine's EMPTY database and files, then verify it."""
    manifest = check_backup(folder)
    kind = manifest["database"]["kind"]
    if kind != engine.db.engine.dialect.name:
        raise BackupRefused(f"the backup holds a {kind} database; the target is "
                            f"{engine.db.engine.dialect.name}")
    with engine.db.engine.connect() as connection:
        tables = inspect(connection).get_table_names()
    if tables:
        raise BackupRefused("the target database is not empty (it has tables); restore "
                            "into a new, empty database")
    database = folder / manifest["database"]["file"]
    if kind == "postgresql":
        _pg(engine, "pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error",
                                   "--single-transaction", "--dbname", "{url}",
                                   str(database)], engine.db.url)
    else:
        engine.db.dispose()
        _sqlite_copy(database, _sqlite_path(engine.db.url))
    engine.db.dispose()
    report = RestoreReport()
    attachments = folder / FILES / "attachments"
    for name in manifest["files"]:
        path = folder / name
        if path.is_relative_to(attachments):
            target = engine.files.root / path.relative_to(attachments)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            report.files += 1
    schema.upgrade(engine.db, actor="restore")  # a backup of an older release catches up
    verify_all(engine, report)
    return report


def verify_all(engine: Engine, report: RestoreReport) -> None:
    """Every hash chain, every case re-executed, every attachment's content."""
    with engine.db.reading() as s:
        ops = list(s.scalars(select(Event).where(Event.stream == "ops").order_by(Event.seq)))
        attachments = [(a.id, a.sha256) for a in s.scalars(select(Attachment))]
        report.events = s.scalar(select(func.count()).select_from(Event)) or 0
    broken = audit.verify_events(ops)
    if broken is not None:
        report.problems.append(f"operations log: event {broken.seq}: {broken.reason}")
    for case_id in engine.case_ids():
        result = engine.verify_case(case_id)
        report.cases += 1
        if not result.ok:
            report.problems.append(f"case {case_id}: event {result.first_bad_seq}: "
                                   f"{result.reason}")
    for attachment_id, digest in attachments:
        path = engine.files.path(digest)
        if not path.is_file() or sha256_of(path) != digest:
            report.problems.append(f"attachment {attachment_id}: file missing or altered")


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupRefused("an in-memory database cannot be backed up or restored")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy a live SQLite database page by page (the online backup API)."""
    if not source.is_file():
        raise BackupRefused(f"the database file {source} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _pg(engine: Engine, tool: str, arguments: list[str], url: str) -> None:
    """Run pg_dump or pg_restore against the database (the password through the env)."""
    parsed = make_url(url).set(drivername="postgresql")
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    target = parsed.set(password=None).render_as_string(hide_password=False)
    arguments = [target if a == "{url}" else a for a in arguments]
    done = subprocess.run([_pg_tool(engine, tool), *arguments], env=env,  # noqa: S603
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupRefused(f"{tool} failed: {done.stderr.strip()[:2000]}")


def _pg_tool(engine: Engine, tool: str) -> str:
    if engine.config.pg_bindir:
        return str(Path(engine.config.pg_bindir) / tool)
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    if not candidates:
        raise BackupRefused(f"{tool} was not found; install the PostgreSQL client or set "
                            "ZERORUN_PG_BINDIR")
    return candidates[-1]
