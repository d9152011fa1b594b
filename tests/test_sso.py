"""Single sign-on through a local OpenID Connect provider: code flow with PKCE, state and
nonce checked, accounts mapped by a claim; password login can be switched off."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from engine import accounts
from tests.conftest import FIXTURES
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, running_provider
from webapp import create_app

PASSWORD = "password-for-agent-a"


@pytest.fixture
def provider():
    with running_provider() as running:
        yield running


def make_app(make_engine, sqlite_url, tmp_path, provider, **settings):
    engine = make_engine(sqlite_url, FIXTURES / "mini", oidc_issuer=provider.issuer,
                         oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET,
                         oidc_label="我的宁夏", **settings)
    with engine.db.transaction() as s:
        accounts.create_user(s, "agent_a", PASSWORD, "agent", department="dept_a",
                             display_name="代办员甲", now=engine.clock())
        accounts.create_user(s, "gone", PASSWORD, "agent", department="dept_a",
                             now=engine.clock())
    with engine.db.transaction() as s:
        from engine.store.models import User

        s.query(User).filter_by(username="gone").update({"active": False})
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})


@pytest.fixture
def app(make_engine, sqlite_url, tmp_path, provider):
    return make_app(make_engine, sqlite_url, tmp_path, provider)


def through_provider(client, provider, username: str):
    """Start at zerorun, sign in at the provider; return zerorun's callback URL."""
    response = client.get("/login/sso")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{provider.issuer}/authorize?")
    sent = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert sent["code_challenge_method"] == "S256" and sent["state"] and sent["nonce"]
    answer = requests.post(f"{provider.issuer}/authorize", data={**sent, "username": username},
                           allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/login/sso/callback"
    return f"{back.path}?{back.query}"


def test_staff_log_in_through_the_identity_platform(app, provider):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "我的宁夏" in page and 'name="password"' in page
    response = client.get(through_provider(client, provider, "agent_a"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    inbox = client.get("/")
    assert inbox.status_code == 200 and "代办员甲" in inbox.get_data(as_text=True)


def test_a_wrong_state_is_refused(app, provider):
    client = app.test_client()
    callback = through_provider(client, provider, "agent_a")
    forged = callback.replace("state=", "state=forged")
    response = client.get(forged)
    assert response.status_code == 401
    assert "mismatching_state" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still not logged in


def test_a_wrong_nonce_is_refused(app, provider):
    provider.tamper_nonce = True
    client = app.test_client()
    response = client.get(through_provider(client, provider, "agent_a"))
    assert response.status_code == 401
    assert "invalid_claim" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_a_callback_replayed_in_another_browser_is_refused(app, provider):
    callback = through_provider(app.test_client(), provider, "agent_a")
    response = app.test_client().get(callback)
    assert response.status_code == 401


@pytest.mark.parametrize("username", ["stranger", "gone"])
def test_a_person_without_an_active_account_is_refused(app, provider, username):
    client = app.test_client()
    response = client.get(through_provider(client, provider, username))
    assert response.status_code == 403
    assert username in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_password_login_can_be_switched_off(make_engine, sqlite_url, tmp_path, provider):
    app = make_app(make_engine, sqlite_url, tmp_path, provider, form_login="0")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert 'name="password"' not in page and "sso-login" in page
    app.config["WTF_CSRF_ENABLED"] = False  # what is refused is the password, not the form
    response = client.post("/login", data={"username": "agent_a", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/").status_code == 302
    # single sign-on still works
    assert client.get(through_provider(client, provider, "agent_a")).status_code == 302


def test_without_a_configured_platform_there_is_no_sso(make_engine, sqlite_url, tmp_path):
    engine = make_engine(sqlite_url, FIXTURES / "mini")
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    client = app.test_client()
    assert "sso-login" not in client.get("/login").get_data(as_text=True)
    assert client.get("/login/sso").status_code == 404


def test_behind_the_reverse_proxy_the_return_address_is_the_public_one(
        make_engine, sqlite_url, tmp_path, provider):
    app = make_app(make_engine, sqlite_url, tmp_path, provider,
                   public_url="https://zerorun.example.gov.cn/")
    location = app.test_client().get("/login/sso").headers["Location"]
    sent = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert sent["redirect_uri"] == "https://zerorun.example.gov.cn/login/sso/callback"
