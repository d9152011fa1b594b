"""Webhooks: deliveries written with the event, sent signed by the worker to a real HTTP
receiver, retried with back-off, logged per subscription; a receiver never affects a case."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import func, select

from agency import webhooks
from agency.models import WebhookDelivery
from engine.actors import Actor
from engine.errors import EngineError, Forbidden, InvalidData
from tests.conftest import FIXTURES

OFFICE = Actor("office", "office", "leading_group_office")
ADMIN = Actor("admin", "admin")
AGENT_A = Actor("agent_a", "agent", "dept_a")


class Receiver:
    """A real HTTP server on localhost that records requests and answers given statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def engine(make_engine, sqlite_url):
    # The test receivers listen on the loopback address: allowed like an intranet receiver.
    built = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="127.0.0.1/32")
    built.hooks.case_event.append(webhooks.record)
    return built


def _outbox(engine) -> list[WebhookDelivery]:
    with engine.db.reading() as s:
        rows = list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        s.expunge_all()
    return rows


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "javascript:x",
                                 "http:///nohost", "https://user:pw@example.org/"])
def test_only_http_urls_with_a_host_are_accepted(engine, url):
    with pytest.raises(EngineError):
        webhooks.subscribe(engine, url, ["case_started"], ADMIN)


def test_only_administrators_subscribe(engine, receiver):
    with pytest.raises(Forbidden):
        webhooks.subscribe(engine, receiver.url, ["case_started"], OFFICE)
    with pytest.raises(EngineError):
        webhooks.subscribe(engine, receiver.url, ["case_exploded"], ADMIN)


def test_deliveries_are_signed_retried_and_logged(engine, receiver, clock):
    sub, secret = webhooks.subscribe(engine, receiver.url,
                                     ["case_started", "task_ready", "message_received",
                                      "case_ended"], ADMIN)
    case = engine.start_case("interact", {}, OFFICE)
    assert [d.event_type for d in _outbox(engine)] == ["case_started", "task_ready"]
    # A refused command writes no delivery: the outbox is in the event's transaction.
    [fill] = engine.list_tasks(case_id=case.id)
    with pytest.raises(InvalidData):
        engine.complete_task(fill.id, {"ref": 5}, AGENT_A)
    assert len(_outbox(engine)) == 2

    receiver.statuses = [500]  # the first request fails, the second is taken
    assert webhooks.deliver(engine) == (1, 1)
    headers, body = receiver.requests[0]
    timestamp = headers["X-Zerorun-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    assert headers["X-Zerorun-Signature"] == "sha256=" + expected.hexdigest()
    sent = json.loads(body)
    assert (sent["type"], sent["case"]["id"]) == ("case_started", case.id)
    assert headers["X-Zerorun-Event"] == "case_started"
    assert webhooks.deliver(engine) == (0, 0)  # backing off
    clock.advance(minutes=3)
    assert webhooks.deliver(engine) == (1, 0)
    assert len(receiver.requests) == 3

    engine.correlate_message("withdrawn", {"case_id": case.id}, {}, OFFICE)
    assert webhooks.deliver(engine) == (2, 0)
    kinds = [json.loads(b)["type"] for _, b in receiver.requests[3:]]
    assert kinds == ["message_received", "case_ended"]
    _, log = webhooks.delivery_log(engine, sub.id)
    assert [(d.event_type, d.status) for d in log][-2:] == [("task_ready", "sent"),
                                                           ("case_started", "sent")]
    assert log[-1].attempts == 2 and log[-1].last_status == 204


def test_a_receiver_that_is_down_never_affects_a_case(engine, receiver, clock):
    webhooks.subscribe(engine, receiver.url, ["case_started", "task_ready",
                                              "task_completed"], ADMIN)
    receiver.close()  # nobody listens any more
    case = engine.start_case("interact", {}, OFFICE)
    for _attempt in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver(engine)
        clock.advance(hours=5)
    assert {d.status for d in _outbox(engine)} == {"failed"}
    assert all("Error" in (d.last_error or "") for d in _outbox(engine))
    [fill] = engine.list_tasks(case_id=case.id)
    engine.complete_task(fill.id, {"ref": "R-1"}, AGENT_A)
    assert engine.verify_case(case.id).ok


def test_a_deactivated_subscription_gets_nothing(engine, receiver):
    sub, _ = webhooks.subscribe(engine, receiver.url, ["case_started"], ADMIN)
    webhooks.deactivate(engine, sub.id, ADMIN)
    engine.start_case("interact", {}, OFFICE)
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert webhooks.deliver(engine) == (0, 0)
    assert receiver.requests == []


def test_the_admin_area_shows_incidents_to_retry_and_the_delivery_log(engine, sqlite_url,
                                                                      tmp_path, receiver):
    from engine import accounts
    from tests.webhelpers import PASSWORD, csrf_of, logged_in, text_of
    from webapp import create_app

    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    with engine.db.transaction() as s:
        accounts.create_user(s, "admin", PASSWORD, "admin", now=engine.clock())
    case = engine.start_case("interact", {}, OFFICE)
    [fill] = engine.list_tasks(case_id=case.id)
    engine.complete_task(fill.id, {"ref": "R-1"}, AGENT_A)
    [job] = engine.fetch_and_lock("licence_lookup", "w1", 60, OFFICE)
    engine.fail_job(job.id, "w1", "licence library unreachable", 0, 0, OFFICE)

    admin = logged_in(app, "admin")
    page = admin.get("/admin/integrations/").get_data(as_text=True)
    assert "licence library unreachable" in text_of(page) and "interact:lookup" in page
    response = admin.post(f"/admin/integrations/jobs/{job.id}/retry",
                          data={"retries": "2", "csrf_token": csrf_of(page)})
    assert response.status_code == 302
    assert engine.list_jobs(states=("open",))[0].retries == 2
    assert engine.list_jobs(states=("incident",)) == []

    response = admin.post("/admin/integrations/webhooks", data={
        "url": receiver.url, "event_types": ["case_started", "task_ready"],
        "csrf_token": csrf_of(page)}, follow_redirects=True)
    shown = text_of(response.get_data(as_text=True))
    assert receiver.url in shown and "签名密钥" in shown
    engine.start_case("interact", {}, OFFICE)
    webhooks.deliver(engine)
    [sub] = webhooks.subscriptions(engine)
    log = text_of(admin.get(f"/admin/integrations/webhooks/{sub.id}").get_data(as_text=True))
    assert log.count("已送达") == 2
    refused = admin.post("/admin/integrations/webhooks", data={
        "url": "ftp://example.org/", "event_types": ["case_started"],
        "csrf_token": csrf_of(page)}, follow_redirects=True)
    assert "http" in text_of(refused.get_data(as_text=True))
    assert len(webhooks.subscriptions(engine)) == 1
