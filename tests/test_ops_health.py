"""Liveness and readiness for the data centre's monitoring: JSON, no login, no secrets."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from engine import health
from engine.cases import Engine
from engine.config import Config
from engine.store.db import Database
from tests.conftest import FIXTURES
from webapp import create_app


@pytest.fixture
def engine(make_engine, db_url):
    return make_engine(db_url, FIXTURES / "mini")


def _app(engine, url, tmp_path):
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": url, "instance_dir": tmp_path}})


def test_healthz_answers_without_a_login(engine, db_url, tmp_path):
    response = _app(engine, db_url, tmp_path).test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_waits_for_the_timer_worker_and_notices_when_it_stops(engine, db_url,
                                                                     tmp_path, clock):
    client = _app(engine, db_url, tmp_path).test_client()
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "not ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    assert body["checks"]["process_pack"]["ok"]
    assert body["checks"]["worker"] == {"ok": False, "detail": "no timer worker has run yet"}

    health.beat(engine, "host-a", clock())
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json()["status"] == "ready"

    clock.advance(seconds=engine.config.worker_stale_seconds + 1)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "last heartbeat 121 s ago" in response.get_json()["checks"]["worker"]["detail"]
    # no secret (database URL, password, path) in the answer
    assert "sqlite:///" not in response.get_data(as_text=True)
    assert str(tmp_path) not in response.get_data(as_text=True)


def test_readyz_fails_on_a_database_not_migrated(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    config = Config.from_env(database_url=url, processes_dir=FIXTURES / "mini",
                             instance_dir=tmp_path)
    engine = Engine(config, database=Database(url), clock_source=clock, functions={})
    response = _app(engine, url, tmp_path).test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["checks"]["database"]["ok"] and not body["checks"]["migrations"]["ok"]
    [head] = health._script_heads(engine)  # the newest revision the code ships
    assert f"code expects {head}" in body["checks"]["migrations"]["detail"]
    engine.db.dispose()


def test_readyz_fails_without_a_process_pack(make_engine, sqlite_url, tmp_path, clock):
    engine = make_engine(sqlite_url, FIXTURES / "mini", load=False)
    health.beat(engine, "host-a", clock())
    response = _app(engine, sqlite_url, tmp_path).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["process_pack"] == {
        "ok": False, "detail": "0 published process(es)"}


def test_the_worker_records_its_heartbeat_each_loop(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ZERORUN_PROCESSES", str(FIXTURES / "mini"))
    monkeypatch.setenv("ZERORUN_INSTANCE", str(tmp_path))
    from webapp.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["init-db"]).exit_code == 0
    for _ in range(2):
        result = runner.invoke(main, ["worker", "--once"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    engine = Engine(Config.from_env(), functions={})
    beats = health.heartbeats(engine)
    assert [(b.worker, b.loops, b.failures) for b in beats] == [(health.worker_name(), 2, 0)]
    engine.db.dispose()
