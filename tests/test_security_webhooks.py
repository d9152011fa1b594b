"""Webhook receivers are never this server, its neighbours or their metadata (issue 28,
row 2): every URL an administrator can give is refused when its host resolves to a
loopback, private, link-local, unspecified or reserved address, checked again on the
address actually connected to; redirects are not followed; an intranet receiver needs the
operator's ZERORUN_WEBHOOK_ALLOW; the delivery log never shows what the receiver said."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from agency import webhooks
from engine.actors import Actor
from engine.config import ConfigError
from engine.errors import EngineError
from tests.conftest import FIXTURES

ADMIN = Actor("admin", "admin")
OFFICE = Actor("office", "office", "leading_group_office")
LOOPBACK = ("127.0.0.1/32",)

# Addresses of this machine, its networks and the cloud metadata service, in the
# notations a URL parser and the resolver accept.
INTERNAL_URLS = [
    "http://127.0.0.1:5101/hook", "http://127.0.0.1:55501/", "http://[::1]/hook",
    "http://localhost/hook", "http://LOCALHOST.:8080/", "http://0.0.0.0/", "http://[::]/",
    "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/",
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/",
    "http://10.0.0.8/", "http://172.16.5.4/", "http://192.168.1.1/", "http://[fd00::1]/",
    "http://100.64.0.1/", "http://224.0.0.1/", "http://240.0.0.1/", "http://255.255.255.255/",
    "https://127.0.0.1:443/", "http://127.0.0.1#@example.org/",
]


class Receiver:
    """A real HTTP server on 127.0.0.1 answering with a status, a reason and a body."""

    def __init__(self, status: int = 204, reason: str = "", body: bytes = b"",
                 location: str = "") -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                self.send_response(status, reason or None)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine(make_engine, sqlite_url):
    built = make_engine(sqlite_url, FIXTURES / "interact")
    built.hooks.case_event.append(webhooks.record)
    return built


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_receivers_are_refused_at_subscription(engine, url):
    with pytest.raises(EngineError) as refused:
        webhooks.subscribe(engine, url, ["case_started"], ADMIN)
    assert "ZERORUN_WEBHOOK_ALLOW" in refused.value.message or "主机名" in refused.value.message
    assert webhooks.subscriptions(engine) == []


def test_a_name_that_does_not_resolve_is_refused(engine):
    with pytest.raises(EngineError, match="无法解析"):
        webhooks.subscribe(engine, "http://receiver.invalid/hook", ["case_started"], ADMIN)


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_receivers_are_refused_when_sending(url):
    # A subscription made before this check existed, or a name that resolves elsewhere
    # by the time of sending: the address connected to is checked, nothing is sent.
    status, error = webhooks.post(url, b"{}", {"Content-Type": "application/json"})
    assert status is None and error is not None
    assert "refused" in error or error.startswith("URLError")


def test_an_allowed_intranet_receiver_gets_deliveries_others_do_not(make_engine, sqlite_url):
    receiver = Receiver()
    try:
        allowed = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="127.0.0.1/32")
        allowed.hooks.case_event.append(webhooks.record)
        webhooks.subscribe(allowed, receiver.url, ["case_started"], ADMIN)
        allowed.start_case("interact", {}, OFFICE)
        assert webhooks.deliver(allowed) == (1, 0) and receiver.hits == 1
        # the loopback address is refused to an engine whose operator did not allow it
        status, error = webhooks.post(receiver.url, b"{}", {})
        assert status is None and error is not None and "127.0.0.1" in error
        assert receiver.hits == 1
    finally:
        receiver.close()


def test_a_redirect_is_not_followed(make_engine, sqlite_url):
    target = Receiver()
    redirecting = Receiver(status=307, location=target.url)
    try:
        status, error = webhooks.post(redirecting.url, b"{}", {}, allowed=(
            webhooks.allowed_networks(make_engine(sqlite_url, FIXTURES / "interact",
                                                  webhook_allow="127.0.0.1/32").config)))
        assert status == 307 and error is not None and "not followed" in error
        assert (redirecting.hits, target.hits) == (1, 0)
    finally:
        target.close()
        redirecting.close()


def test_the_log_never_shows_what_the_receiver_answered(make_engine, sqlite_url):
    receiver = Receiver(status=500, reason="root:x:0:0 LEAK",
                        body=b"internal-admin-panel secret=hunter2")
    try:
        engine = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="127.0.0.1/32")
        engine.hooks.case_event.append(webhooks.record)
        sub, _ = webhooks.subscribe(engine, receiver.url, ["case_started"], ADMIN)
        engine.start_case("interact", {}, OFFICE)
        assert webhooks.deliver(engine) == (0, 1)
        [line] = webhooks.delivery_log(engine, sub.id)[1]
        assert (line.last_status, line.last_error) == (500, "HTTP 500")
    finally:
        receiver.close()


def test_a_malformed_allow_list_stops_with_a_clear_message(make_engine, sqlite_url):
    engine = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="intranet")
    with pytest.raises(ConfigError, match="ZERORUN_WEBHOOK_ALLOW"):
        webhooks.subscribe(engine, "http://example.org/hook", ["case_started"], ADMIN)


def test_the_admin_page_refuses_an_internal_receiver(engine, sqlite_url, tmp_path):
    from engine import accounts
    from tests.webhelpers import PASSWORD, csrf_of, logged_in, text_of
    from webapp import create_app

    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    with engine.db.transaction() as s:
        accounts.create_user(s, "admin", PASSWORD, "admin", now=engine.clock())
    admin = logged_in(app, "admin")
    page = admin.get("/admin/integrations/").get_data(as_text=True)
    for url in ("http://127.0.0.1:5101/", "http://169.254.169.254/", "http://2130706433/"):
        shown = text_of(admin.post("/admin/integrations/webhooks", data={
            "url": url, "event_types": ["case_started"], "csrf_token": csrf_of(page)},
            follow_redirects=True).get_data(as_text=True))
        assert "不能订阅" in shown
    assert webhooks.subscriptions(engine) == []


# Row 4: the signing secrets -----------------------------------------------------------


def _stored_secret(engine, subscription_id: int) -> str:
    from agency.models import WebhookSubscription

    with engine.db.reading() as s:
        return s.get(WebhookSubscription, subscription_id).secret


def test_secrets_are_kept_encrypted_under_a_key_outside_the_database(make_engine, sqlite_url,
                                                                       tmp_path):
    import hashlib
    import hmac

    receiver_hits: list[tuple[dict, bytes]] = []

    def send(url, body, headers):
        receiver_hits.append((headers, body))
        return 204, None

    engine = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="127.0.0.1/32")
    engine.hooks.case_event.append(webhooks.record)
    sub, secret = webhooks.subscribe(engine, "http://127.0.0.1:9/hook", ["case_started"],
                                     ADMIN)
    stored = _stored_secret(engine, sub.id)
    assert stored.startswith("fernet:") and secret not in stored
    key = tmp_path / "webhook.key"
    assert key.exists() and key.stat().st_mode & 0o077 == 0
    engine.start_case("interact", {}, OFFICE)
    assert webhooks.deliver(engine, send=send) == (1, 0)
    [(headers, body)] = receiver_hits
    expected = hmac.new(secret.encode(), headers["X-Zerorun-Timestamp"].encode() + b"."
                        + body, hashlib.sha256).hexdigest()
    assert headers["X-Zerorun-Signature"] == "sha256=" + expected
    # Another key (a copy of the database elsewhere) cannot read it: a clear refusal.
    other = make_engine(sqlite_url, FIXTURES / "interact", load=False,
                        webhook_key="ZmFrZS1rZXktZmFrZS1rZXktZmFrZS1rZXktZmFrZS0=")
    with pytest.raises(ConfigError, match="decrypted"):
        webhooks.open_secret(other.config, stored)


def test_a_secret_stored_in_plain_text_before_is_encrypted_and_still_signs(make_engine,
                                                                           sqlite_url):
    from agency.models import WebhookSubscription

    engine = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="127.0.0.1/32")
    engine.hooks.case_event.append(webhooks.record)
    sub, _ = webhooks.subscribe(engine, "http://127.0.0.1:9/hook", ["case_started"], ADMIN)
    with engine.db.transaction() as s:
        s.get(WebhookSubscription, sub.id).secret = "old-plain-secret"
    engine.start_case("interact", {}, OFFICE)
    seen: list[str] = []
    webhooks.deliver(engine, send=lambda url, body, headers: (
        seen.append(headers["X-Zerorun-Signature"]) or (204, None)))
    stored = _stored_secret(engine, sub.id)
    assert stored.startswith("fernet:")
    assert webhooks.open_secret(engine.config, stored) == "old-plain-secret"
    assert len(seen) == 1


def test_the_once_shown_secret_never_travels_in_a_cookie(make_engine, sqlite_url, tmp_path):
    from engine import accounts
    from tests.webhelpers import PASSWORD, csrf_of, logged_in, text_of
    from webapp import create_app

    engine = make_engine(sqlite_url, FIXTURES / "interact", webhook_allow="127.0.0.1/32")
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    with engine.db.transaction() as s:
        accounts.create_user(s, "admin", PASSWORD, "admin", now=engine.clock())
    admin = logged_in(app, "admin")
    page = admin.get("/admin/integrations/").get_data(as_text=True)
    response = admin.post("/admin/integrations/webhooks", data={
        "url": "http://127.0.0.1:9/hook", "event_types": ["case_started"],
        "csrf_token": csrf_of(page)})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    shown = text_of(response.get_data(as_text=True))
    [sub] = webhooks.subscriptions(engine)
    secret = webhooks.open_secret(engine.config, _stored_secret(engine, sub.id))
    assert secret in shown and "只显示这一次" in shown
    serializer = app.session_interface.get_signing_serializer(app)
    cookie = admin.get_cookie("session")
    assert cookie is not None
    assert secret not in repr(serializer.loads(cookie.value))
    for header in response.headers.getlist("Set-Cookie"):
        assert secret not in header
    # shown once: the next page does not show it again
    assert secret not in admin.get("/admin/integrations/").get_data(as_text=True)
