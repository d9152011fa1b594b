"""Prometheus metrics at /metrics: what the data centre's monitoring scrapes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import accounts, health
from engine.actors import Actor
from tests.conftest import FIXTURES, ROOT
from webapp import create_app

OFFICE = Actor("office", "office", "leading_group_office")
AGENT_A = Actor("agent_a", "agent", "dept_a")


@pytest.fixture
def engine(make_engine, sqlite_url):
    return make_engine(sqlite_url, FIXTURES / "mini")


def _app(engine, url, tmp_path):
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": url, "instance_dir": tmp_path}})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def test_requests_commands_tasks_timers_and_the_worker_are_counted(engine, sqlite_url,
                                                                   tmp_path, clock):
    app = _app(engine, sqlite_url, tmp_path)
    client = app.test_client()
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.get("/no-such-page")
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {"total": 9, "divisor": 3}, AGENT_A)
    engine._cache.clear()  # the next command rebuilds the case from the store
    clock.advance(days=3, hours=1)
    health.beat(engine, "host-a", clock(), fired=engine.fire_due_timers())
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("zerorun_http_requests_total", route="/healthz", method="GET",
                 status="200") == 3
    assert delta("zerorun_http_requests_total", route="(unmatched)", method="GET",
                 status="404") == 1
    assert delta("zerorun_http_request_duration_seconds_count", route="/healthz",
                 method="GET") == 3
    assert delta("zerorun_commands_total", command="start_case", outcome="ok") == 1
    assert delta("zerorun_commands_total", command="complete_task", outcome="ok") == 1
    assert delta("zerorun_commands_total", command="fire_timers", outcome="ok") == 1
    assert delta("zerorun_command_duration_seconds_count", command="complete_task") == 1
    assert delta("zerorun_case_cache_total", result="hit") >= 1
    assert delta("zerorun_case_cache_total", result="rebuild") == 1
    assert after[("zerorun_worker_loops_total", (("worker", "host-a"),))] == 1
    assert after[("zerorun_timers_fired_total", (("worker", "host-a"),))] == 1
    assert after[("zerorun_worker_failures_total", (("worker", "host-a"),))] == 0
    assert after[("zerorun_worker_heartbeat_age_seconds", (("worker", "host-a"),))] == 0
    assert after[("zerorun_outbox_backlog", (("kind", "mail"),))] == 0


def test_open_tasks_by_department_and_level_and_timers_due(engine, sqlite_url, tmp_path,
                                                          clock):
    client = _app(engine, sqlite_url, tmp_path).test_client()
    case = engine.start_case("mini", {"due": None}, OFFICE)
    found = scrape(client)
    assert found[("zerorun_open_tasks", (("department", "dept_a"), ("level", "none")))] == 1
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {"total": 9, "divisor": 3}, AGENT_A)
    found = scrape(client)
    assert ("zerorun_open_tasks", (("department", "dept_a"), ("level", "none"))) not in found
    assert found[("zerorun_timers_waiting", ())] == 1
    assert found[("zerorun_timers_due", ())] == 0
    clock.advance(days=4)
    assert scrape(client)[("zerorun_timers_due", ())] == 1


def test_failed_commands_are_counted_by_error(engine, sqlite_url, tmp_path):
    client = _app(engine, sqlite_url, tmp_path).test_client()
    before = scrape(client)
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    with pytest.raises(Exception, match="field"):
        engine.complete_task(task.id, {"total": "nine"}, AGENT_A)
    after = scrape(client)
    key = ("zerorun_commands_total", (("command", "complete_task"), ("outcome", "InvalidData")))
    assert after[key] - before.get(key, 0) == 1


def test_metrics_are_refused_to_other_addresses_without_the_token(make_engine, sqlite_url,
                                                                  tmp_path):
    engine = make_engine(sqlite_url, FIXTURES / "mini", metrics_token="s3cret-scrape",
                         metrics_allow="127.0.0.1, 10.9.0.0/16")
    app = _app(engine, sqlite_url, tmp_path)
    client = app.test_client()
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    response = client.get("/metrics", environ_base=remote)
    assert response.status_code == 403 and "token" in response.get_data(as_text=True)
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer wrong"}).status_code == 403
    scrape(client, environ_base=remote, headers={"Authorization": "Bearer s3cret-scrape"})
    scrape(client, environ_base={"REMOTE_ADDR": "10.9.3.4"})
    # Through a reverse proxy on the same host the address is the proxy's: token only.
    proxied = {"X-Forwarded-For": "198.51.100.20"}
    assert client.get("/metrics", headers=proxied).status_code == 403
    scrape(client, headers={**proxied, "Authorization": "Bearer s3cret-scrape"})


def test_accounts_and_tokens_do_not_open_metrics(engine, sqlite_url, tmp_path):
    with engine.db.transaction() as s:
        accounts.create_user(s, "admin", "password-123", "admin", now=engine.clock())
        token = accounts.issue_token(s, "admin")
    client = _app(engine, sqlite_url, tmp_path).test_client()
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gunicorn_workers_add_up_their_metrics(tmp_path):
    """`zerorun serve` with two workers: one scrape counts the requests both answered."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
           "ZERORUN_PROCESSES": str(FIXTURES / "mini"), "ZERORUN_INSTANCE": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    zerorun = [sys.executable, "-m", "webapp.cli"]
    subprocess.run([*zerorun, "init-db"], env=env, check=True, cwd=ROOT, capture_output=True)
    port = _free_port()
    server = subprocess.Popen([*zerorun, "serve", "--workers", "2", "--port", str(port)],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=5)  # noqa: S310
                break
            except OSError:
                assert time.monotonic() < deadline, "zerorun serve did not start"
                time.sleep(0.3)
        # A half-sent request keeps one worker waiting, so the other answers the rest;
        # then the first finishes its request: both workers have counted.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as held:
            held.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            time.sleep(0.5)
            for _ in range(38):
                urllib.request.urlopen(f"{base}/healthz", timeout=10).read()  # noqa: S310
            held.sendall(b"Connection: close\r\n\r\n")
            assert b" 200 " in held.recv(1000)
        # Each worker answers on its own; a scrape must add up both workers' counts.
        text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()  # noqa: S310
        found = samples(text)
        assert found[("zerorun_http_requests_total",
                      (("method", "GET"), ("route", "/healthz"), ("status", "200")))] == 40
        files = list((tmp_path / "metrics").glob("*.db"))
        assert len({f.stem.rsplit("_", 1)[-1] for f in files}) == 2, files
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    lines = [line for line in stderr.decode().splitlines() if line.startswith("{")]
    assert sum('"route": "/healthz"' in line for line in lines) == 40
