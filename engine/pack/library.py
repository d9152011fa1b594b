"""The process library: stored versions, saving an edited file as a draft, publishing, diffs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.actors import Actor
from engine.audit import chain as audit
from engine.audit.chain import NewEvent
from engine.cases import Engine, LoadResult
from engine.errors import Conflict, Forbidden, InvalidProcess, Problem, ProcessNotFound
from engine.pack.diff import ElementChange, diff_xml
from engine.pack.loader import FORMS_DIR, NS, Pack, SourceFile
from engine.pack.xml import parse_xml
from engine.store.models import Case, ProcessVersion

_FILE_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,120}\.(bpmn|dmn)$")
_FORM_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,120}\.json$")
_PROCESS_ID = re.compile(r'<(?:\w+:)?process\b[^>]*?\bid="([^"]+)"')


@dataclass(frozen=True)
class VersionInfo:
    """One stored version as the library lists it."""

    id: int
    process_id: str
    name: str
    number: int
    content_hash: str
    status: str
    author: str
    comment: str
    created_at: datetime
    published_at: datetime | None
    running_cases: int


@dataclass
class ProcessEntry:
    """A process and all its versions, newest first."""

    process_id: str
    name: str
    versions: list[VersionInfo] = field(default_factory=list)

    @property
    def published(self) -> VersionInfo | None:
        return next((v for v in self.versions if v.status == "published"), None)


@dataclass(frozen=True)
class VersionFiles:
    """A version with its source files and the file that defines the process."""

    info: VersionInfo
    sources: dict[str, str]
    main_file: str | None


@dataclass(frozen=True)
class PendingVersion:
    """A version saving an edited file would create: for the file's own process, or for a
    process that calls it (`caller`)."""

    process_id: str
    name: str
    number: int
    caller: bool


def _info(row: ProcessVersion, running: int) -> VersionInfo:
    return VersionInfo(row.id, row.process_id, row.name, row.number, row.content_hash,
                       row.status, row.author, row.comment, row.created_at, row.published_at,
                       running)


def main_file(process_id: str, sources: dict[str, str]) -> str | None:
    """The BPMN file of a version's sources that defines the process itself."""
    for name, text in sorted(sources.items()):
        if name.endswith(".bpmn") and process_id in _PROCESS_ID.findall(text):
            return name
    return None


def _require_admin(actor: Actor) -> None:
    if not (actor.is_system or actor.role == "admin"):
        raise Forbidden("only an administrator may change process definitions")


class Library:
    """What administrators do with process definitions, over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # Reading -------------------------------------------------------------------------

    def processes(self) -> list[ProcessEntry]:
        """Every process with its versions and how many running cases each has."""
        with self.engine.db.reading() as s:
            running = dict(s.execute(select(Case.process_version_id, func.count())
                                     .where(Case.status == "running")
                                     .group_by(Case.process_version_id)).all())
            rows = s.scalars(select(ProcessVersion).order_by(ProcessVersion.process_id,
                                                             ProcessVersion.number.desc()))
            entries: dict[str, ProcessEntry] = {}
            for row in rows:
                entry = entries.setdefault(row.process_id, ProcessEntry(row.process_id, row.name))
                entry.versions.append(_info(row, running.get(row.id, 0)))
        return list(entries.values())

    def process(self, process_id: str) -> ProcessEntry:
        """One process with its versions."""
        for entry in self.processes():
            if entry.process_id == process_id:
                return entry
        raise ProcessNotFound(f"no process with id {process_id!r}")

    def version(self, version_id: int) -> VersionFiles:
        """A stored version with its files."""
        with self.engine.db.reading() as s:
            row = s.get(ProcessVersion, version_id)
            if row is None:
                raise ProcessNotFound(f"process version {version_id} does not exist")
            running = s.scalar(select(func.count()).select_from(Case).where(
                Case.process_version_id == row.id, Case.status == "running")) or 0
            sources = dict(row.sources)
            return VersionFiles(_info(row, running), sources, main_file(row.process_id, sources))

    def current_version(self, process_id: str) -> VersionFiles:
        """The published version of a process, or its newest one if none is published."""
        entry = self.process(process_id)
        chosen = entry.published or entry.versions[0]
        return self.version(chosen.id)

    def current_files(self) -> dict[str, str]:
        """The pack as new cases see it: every file of the published versions."""
        with self.engine.db.reading() as s:
            rows = s.scalars(select(ProcessVersion).where(ProcessVersion.status == "published")
                             .order_by(ProcessVersion.published_at, ProcessVersion.id))
            files: dict[str, str] = {}
            for row in rows:
                files.update(row.sources)
            # A process's own file comes from its own published version.
            for row in s.scalars(select(ProcessVersion).where(
                    ProcessVersion.status == "published")):
                own = main_file(row.process_id, row.sources)
                if own is not None:
                    files[own] = row.sources[own]
        return files

    def forms(self) -> dict[str, str]:
        """The JSON Schema form files of the current pack, by file name."""
        return {name.removeprefix(f"{FORMS_DIR}/"): text
                for name, text in sorted(self.current_files().items())
                if name.startswith(f"{FORMS_DIR}/") and name.endswith(".schema.json")}

    def diff(self, old_id: int, new_id: int) -> list[ElementChange]:
        """Element-by-element changes of a process's own diagram from one version to another."""
        old, new = self.version(old_id), self.version(new_id)
        if old.info.process_id != new.info.process_id:
            raise Conflict("both versions must be of the same process")
        if old.main_file is None or new.main_file is None:
            return []
        changes = diff_xml(old.sources[old.main_file], new.sources[new.main_file])
        for name in sorted(set(old.sources) | set(new.sources)):
            if name == new.main_file or old.sources.get(name) == new.sources.get(name):
                continue
            kind = ("added" if name not in old.sources else
                    "removed" if name not in new.sources else "changed")
            changes.append(ElementChange(name, kind, "file", None,
                                         [f"file {name} {kind}"]))
        return changes

    # Changing ------------------------------------------------------------------------

    def save(self, file_name: str, data: bytes, actor: Actor, comment: str,
             forms: dict[str, bytes] | None = None) -> LoadResult:
        """Validate the current pack with this file (and forms) replaced; store drafts.

        Nothing is stored when any file of the pack is refused (InvalidProcess).
        """
        pack = self._pack_with(file_name, data, actor, forms)
        return self.engine.store_pack(pack, actor=actor, comment=comment or "", publish=False)

    def preview_save(self, file_name: str, data: bytes, actor: Actor,
                     forms: dict[str, bytes] | None = None) -> list[PendingVersion]:
        """What `save` would store, without storing anything: the new version of each
        process whose content changes, the edited file's own processes first, then the
        processes that call them (they hold the file too, so they get a version as well)."""
        pack = self._pack_with(file_name, data, actor, forms)
        own = set(_PROCESS_ID.findall(data.decode("utf-8", "replace"))) \
            if file_name.endswith(".bpmn") else set()
        pending: list[PendingVersion] = []
        with self.engine.db.reading() as s:
            for parsed in pack.processes.values():
                if s.scalar(select(ProcessVersion.id).where(
                        ProcessVersion.process_id == parsed.process_id,
                        ProcessVersion.content_hash == parsed.content_hash)) is not None:
                    continue
                number = (s.scalar(select(func.max(ProcessVersion.number)).where(
                    ProcessVersion.process_id == parsed.process_id)) or 0) + 1
                pending.append(PendingVersion(parsed.process_id, parsed.name, number,
                                              caller=parsed.process_id not in own))
        return sorted(pending, key=lambda p: (p.caller, p.process_id))

    def _pack_with(self, file_name: str, data: bytes, actor: Actor,
                   forms: dict[str, bytes] | None) -> Pack:
        """The current pack with this file (and forms) replaced, validated as a whole."""
        _require_admin(actor)
        problems = []
        if not _FILE_NAME.match(file_name):
            problems.append(Problem("the file name must end in .bpmn or .dmn and use only "
                                    "letters, digits, '_', '-' and '.'", file=file_name))
        for name in forms or {}:
            if not _FORM_NAME.match(name):
                problems.append(Problem("a form file name must end in .json and use only "
                                        "letters, digits, '_', '-' and '.'",
                                        file=f"{FORMS_DIR}/{name}"))
        if problems:
            raise InvalidProcess(problems)
        tree = parse_xml(data, file_name)  # refuses DTDs, entities and oversized files first
        files = {name: text.encode("utf-8") for name, text in self.current_files().items()}
        files[file_name] = data
        for name, body in (forms or {}).items():
            files[f"{FORMS_DIR}/{name}"] = body
        pack = self.engine.parse_pack([SourceFile(n, b) for n, b in sorted(files.items())])
        if file_name.endswith(".bpmn"):
            processes = tree.getroot().findall(f"{{{NS['bpmn']}}}process")
            if not any(p.get("id") in pack.processes for p in processes):
                raise InvalidProcess([Problem(
                    'process is not executable (isExecutable is not "true"), so no case '
                    "could run it", file=file_name, line=p.sourceline, element=p.get("id"),
                    element_name=p.get("name")) for p in processes]
                    or [Problem("the file defines no process", file=file_name)])
        return pack

    def publish(self, version_id: int, actor: Actor) -> list[tuple[str, int]]:
        """Make a version the one new cases use; drafts saved with it for calling processes too.

        A process that calls the edited one was saved as a draft holding the same file;
        publishing the edited version publishes those drafts, so new cases of the
        calling processes run the new diagram as well. Running cases keep their version.
        """
        _require_admin(actor)
        now = self.engine.clock()
        published: list[tuple[str, int]] = []
        with self.engine.db.transaction() as s:
            row = s.get(ProcessVersion, version_id)
            if row is None:
                raise ProcessNotFound(f"process version {version_id} does not exist")
            own = main_file(row.process_id, row.sources)
            targets = [row]
            if own is not None:
                for other in self._dependent_drafts(s, row, own):
                    targets.append(other)
            for target in targets:
                if target.status == "published":
                    continue
                for current in s.scalars(select(ProcessVersion).where(
                        ProcessVersion.process_id == target.process_id,
                        ProcessVersion.status == "published")):
                    current.status = "retired"
                target.status, target.published_at = "published", now
                s.flush()
                audit.append_ops(s, NewEvent("process_version_published", actor.username, now, {
                    "process_id": target.process_id, "version": target.number,
                    "content_hash": target.content_hash,
                    "with": row.process_id if target is not row else None}))
                published.append((target.process_id, target.number))
        return published

    @staticmethod
    def _dependent_drafts(s: Session, row: ProcessVersion, own: str) -> list[ProcessVersion]:

        found = []
        drafts = s.scalars(select(ProcessVersion).where(
            ProcessVersion.status == "draft", ProcessVersion.process_id != row.process_id)
            .order_by(ProcessVersion.number.desc()))
        seen: set[str] = set()
        for draft in drafts:
            if draft.process_id in seen or own not in draft.sources:
                continue
            seen.add(draft.process_id)
            shared = [n for n in draft.sources if n in row.sources]
            if all(draft.sources[n] == row.sources[n] for n in shared):
                published = s.scalar(select(ProcessVersion).where(
                    ProcessVersion.process_id == draft.process_id,
                    ProcessVersion.status == "published"))
                if published is None or published.sources.get(own) != row.sources[own]:
                    found.append(draft)
        return found
