"""Shared fixtures: engines over a temporary SQLite file or a fresh PostgreSQL database."""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from agency import service_engine
from engine import accounts
from engine.cases import Engine
from engine.cases.commands import Commands
from engine.config import Config
from engine.pack.loader import Pack, SourceFile
from engine.runtime.clock import MovableClock
from engine.runtime.spiff import SERIALIZER, load_state
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Case, Department

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_ENV = "ZERORUN_TEST_PG"  # e.g. postgresql+psycopg://user@127.0.0.1:5432/postgres

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Zhongwei


# Argon2 at its defaults (64 MiB, three passes, four lanes) spends about 0.2 s of CPU on
# every hash and every check, and the tests create and log in thousands of accounts. In
# the test process it runs with the smallest cost: the same algorithm and code paths (a
# wrong password still fails), only the work factor is lower; hashes carry their
# parameters, so servers the tests start in other processes verify them too.
accounts.HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


# Parsing and validating a pack is a pure function of its files, the department names,
# the function names and the instance bound; most tests parse the same pack, so each
# process (xdist worker) parses it once and hands every engine a deep copy of its own.
# Packs that fail to parse are not cached: the parse runs (and raises) every time.
_parsed_packs: dict[tuple[object, ...], Pack] = {}
_parse_pack = Commands.parse_pack


def _cached_parse_pack(self: Commands, files: list[SourceFile]) -> Pack:
    key = (tuple((f.name, f.data) for f in files), tuple(self.department_names().items()),
           tuple(self.functions), self.config.max_instances)
    parsed = _parsed_packs.get(key)
    if parsed is None:
        parsed = _parsed_packs[key] = _parse_pack(self, files)
    return copy.deepcopy(parsed)


Commands.parse_pack = _cached_parse_pack  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(PG_ENV):
        return
    if os.environ.get("CI") == "true":
        # CI starts a PostgreSQL server; a missing one is a failure, not a skip.
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(pytest.mark.xfail(
                    reason=f"CI=true but {PG_ENV} is not set", strict=True, run=False))
        return
    skip = pytest.mark.skip(reason=f"set {PG_ENV} to run the PostgreSQL tests")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    yield from _postgres_database()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (mark the test `postgres`)."""
    yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def _postgres_database() -> Iterator[str]:
    server = os.environ[PG_ENV]
    name = f"zr_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + "/" + name
    _fresh_pg.add(url)
    try:
        yield url
    finally:
        _fresh_pg.discard(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Migrating an empty database runs every Alembic revision (on PostgreSQL, many round trips
# and catalogue writes). Each test process migrates one template per backend and copies
# it where an engine would migrate a still untouched fresh database: the same schema and
# the same `schema_migrated` operations event, as `schema.upgrade` would have left.
_fresh_pg: set[str] = set()  # fixture databases nobody may have touched yet
_templates: dict[str, str] = {}


def _sqlite_template() -> str:
    path = _templates.get("sqlite")
    if path is None:
        folder = Path(tempfile.mkdtemp(prefix="zerorun-schema."))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = str(folder / "migrated.db")
        db = Database(f"sqlite:///{path}")
        schema.upgrade(db)
        db.dispose()  # the last connection checkpoints the WAL into the file
        assert not Path(f"{path}-wal").exists()
        _templates["sqlite"] = path
    return path


def _pg_template(server: str) -> str:
    name = _templates.get(server)
    if name is None:
        name = f"zr_schema_{os.getpid()}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        db = Database(server.rsplit("/", 1)[0] + "/" + name)
        schema.upgrade(db)
        db.dispose()
        atexit.register(_drop_pg, server, name)
        _templates[server] = name
    return name


def _drop_pg(server: str, name: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_empty(url: str) -> bool:
    """Whether a PostgreSQL database holds no table, sequence, type or function of its own."""
    probe = create_engine(url, poolclass=NullPool)
    try:
        with probe.connect() as conn:
            owned = conn.execute(text(
                "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg\\_%'"
                " AND n.nspname <> 'information_schema')"
                " + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'public')"
                " + (SELECT count(*) FROM pg_type t JOIN pg_namespace n"
                " ON n.oid = t.typnamespace WHERE n.nspname = 'public')")).scalar()
    finally:
        probe.dispose()
    return owned == 0


def _copy_migrated(url: str) -> bool:
    """Put the migrated template where `url` names a database no one has opened yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = Path(parsed.database or "")
        if not parsed.database or parsed.database == ":memory:" or target.exists() \
                or any(Path(f"{target}{end}").exists() for end in ("-wal", "-shm")):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_template(), target)
        return True
    if url not in _fresh_pg:
        return False
    _fresh_pg.discard(url)
    server = os.environ[PG_ENV]
    name = parsed.database
    template = _pg_template(server)
    if not _pg_empty(url):
        return False
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            opened = conn.execute(text("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE datname = :name"), {"name": name}).scalar()
            if opened:
                return False
            # Without FORCE: if anyone connected meanwhile, this fails and nothing changes.
            conn.execute(text(f'DROP DATABASE "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        return True
    finally:
        admin.dispose()


@pytest.fixture
def clock() -> MovableClock:
    """A clock the test moves by hand."""
    return MovableClock(START)


EngineFactory = Callable[..., Engine]


def check_round_trips(engine: Engine) -> None:
    """After every committed command, saving and restoring the case must change nothing."""
    remember = engine._remember

    def checked(case_id: int, live) -> None:  # type: ignore[no-untyped-def]
        version = engine._versions[live_version_id(engine, case_id)]
        # The JSON text of the state is what `dump_state` compresses and what `state_dict`
        # parses: equal texts are equal states, so the (costly) parsed comparison runs only
        # when the texts differ, and the live state is serialized once, not twice.
        saved = _state_text(live.workflow)
        restored = load_state(zlib.compress(saved.encode(), 1), version.specs,
                              engine.script_engine)
        again = _state_text(restored)
        if again != saved:
            assert json.loads(again) == json.loads(saved), "state changed on restore"
        remember(case_id, live)

    engine._remember = checked  # type: ignore[method-assign]


def _state_text(workflow) -> str:  # type: ignore[no-untyped-def]
    """A workflow's running state as the JSON text `dump_state` stores (compressed)."""
    return json.dumps(SERIALIZER.to_dict(workflow), separators=(",", ":"),
                      cls=SERIALIZER._encoder_cls)


def live_version_id(engine: Engine, case_id: int) -> int:
    with engine.db.reading() as s:
        case = s.get(Case, case_id)
        assert case is not None
        return case.process_version_id


@pytest.fixture
def make_engine(tmp_path: Path, clock: MovableClock) -> Iterator[EngineFactory]:
    """Build engines over a database URL and a pack folder, migrated and with departments."""
    made: list[Engine] = []

    def factory(url: str, pack: Path, *, migrate: bool = True, load: bool = True,
                **settings: object) -> Engine:
        copied = migrate and _copy_migrated(url)
        config = Config.from_env(database_url=url, processes_dir=pack,
                                 data_dir=ROOT / "data", instance_dir=tmp_path, **settings)
        engine = Engine(config, database=Database(url), clock_source=clock, functions={})
        check_round_trips(engine)
        made.append(engine)
        if migrate:
            if not copied:
                schema.upgrade(engine.db)
            with engine.db.transaction() as s:
                for code in ("dept_a", "dept_b"):
                    if s.get(Department, code) is None:
                        s.add(Department(code=code, name=f"部门{code[-1].upper()}", name_en="",
                                         leader="", agent="", position=0))
        if load:
            engine.load_processes(pack)
        return engine

    yield factory
    for engine in made:
        engine.db.dispose()


PACK = ROOT / "processes"


@pytest.fixture
def make_pack_engine(tmp_path: Path, clock: MovableClock) -> Iterator[Callable[[str], Engine]]:
    """Engines running the real process pack with the real reference data and functions."""
    from agency import bootstrap

    made: list[Engine] = []

    def factory(url: str) -> Engine:
        copied = _copy_migrated(url)
        config = Config.from_env(database_url=url, processes_dir=PACK, data_dir=ROOT / "data",
                                 instance_dir=tmp_path)
        engine = service_engine(config, database=Database(url), clock_source=clock)
        check_round_trips(engine)
        made.append(engine)
        if not copied:
            schema.upgrade(engine.db)
        bootstrap.sync_departments(engine)
        engine.load_processes()
        return engine

    yield factory
    for engine in made:
        engine.db.dispose()


@pytest.fixture
def twenty_day_soil_water(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The office's committed limit for the soil and water conservation plan set at 20
    working days (committed limits are reference data the office edits; the catalogue now
    compresses this one to 10): engines made after this read a copy of data/ with it."""
    import json
    import shutil

    import tests.conftest as here

    root = tmp_path_factory.mktemp("office_data")
    shutil.copytree(ROOT / "data", root / "data")
    path = root / "data" / "items.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    for entry in (items.values() if isinstance(items, dict) else items):
        if isinstance(entry, dict) and entry.get("code") == "soil_water_conservation":
            entry["committed_days"] = 20
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    monkeypatch.setattr(here, "ROOT", root)
