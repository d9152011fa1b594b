"""Accounts from outside (issue 28, rows 7 and 8): bad API tokens are throttled with 429;
a locked account and an unknown one answer a login alike; a deactivation stops every
worker's cached token at once."""

from __future__ import annotations

import re
import secrets

import pytest

from engine import accounts
from tests.test_hardening import PASSWORD, Site
from tests.test_hardening import sqlite_site as sqlite_site  # noqa: PLC0414 - the fixture
from webapp.api import MAX_BAD_TOKENS, BadTokens


class Ticks:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture(autouse=True)
def no_login_delay(monkeypatch):
    monkeypatch.setattr("webapp.auth.time.sleep", lambda seconds: None)


def _get(site: Site, token: str, address: str = "198.51.100.7"):
    return site.app.test_client().get("/api/v1/tasks", headers={
        "Authorization": f"Bearer {token}"}, environ_base={"REMOTE_ADDR": address})


def test_bad_api_tokens_from_one_address_are_throttled(sqlite_site: Site):
    site = sqlite_site
    ticks = Ticks()
    site.engine.extensions["api_bad_tokens"] = BadTokens(monotonic=ticks)
    with site.engine.db.transaction() as s:
        good = accounts.issue_token(s, "agent_ab")
    statuses = [_get(site, secrets.token_urlsafe(32)).status_code
                for _ in range(MAX_BAD_TOKENS + 5)]
    assert statuses[:MAX_BAD_TOKENS] == [401] * MAX_BAD_TOKENS
    assert set(statuses[MAX_BAD_TOKENS:]) == {429}
    waited = _get(site, secrets.token_urlsafe(32))
    assert waited.get_json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(waited.headers["Retry-After"]) <= 60
    # a token guessed right from that address is not even looked up meanwhile
    assert _get(site, good).status_code == 429
    # other addresses are not affected
    assert _get(site, good, address="203.0.113.9").status_code == 200
    ticks.value += 61
    assert _get(site, good).status_code == 200


def test_a_locked_account_and_an_unknown_one_answer_alike(sqlite_site: Site):
    site = sqlite_site
    for attempt in range(accounts.MAX_FAILED_LOGINS):
        site.login("agent_ab", f"wrong-{attempt}", address=f"10.0.1.{attempt}")
    assert site.user("agent_ab").locked_until is not None

    def answer(username: str, password: str, address: str) -> tuple[int, str]:
        response = site.login(username, password, address=address)
        page = response.get_data(as_text=True)
        # the page without what differs from one request to the next (the CSRF token)
        return response.status_code, re.sub(r'value="[^"]{20,}"', "", page)

    locked = answer("agent_ab", PASSWORD, "10.0.2.1")
    unknown = answer("nobody_here", PASSWORD, "10.0.2.2")
    wrong = answer("agent_drc", "wrong-password", "10.0.2.3")
    assert locked[0] == unknown[0] == wrong[0] == 401
    assert locked[1].replace("agent_ab", "X") == unknown[1].replace("nobody_here", "X")
    assert "用户名或密码错误" in locked[1]
    assert wrong[1].replace("agent_drc", "X") == unknown[1].replace("nobody_here", "X")


def test_a_deactivation_elsewhere_stops_every_cached_token_at_once(sqlite_site: Site,
                                                                     tmp_path):
    site = sqlite_site
    epoch = tmp_path / "accounts.epoch"
    with site.engine.db.transaction() as s:
        token = accounts.issue_token(s, "agent_ab")
    # Two web workers' caches, each remembering the token for a minute.
    workers = [accounts.TokenCache(60, epoch_file=epoch) for _ in range(2)]
    for cache in workers:
        assert cache.user(site.engine.db.reading, token).username == "agent_ab"
    # `zerorun deactivate-user` in another process: this process's own counter of
    # account changes does not move (as if the change were made elsewhere); only the
    # epoch file that process replaces after its commit tells the caches.
    before = accounts._generation[0]
    with site.engine.db.transaction() as s:
        assert accounts.set_active(s, "agent_ab", False)
    accounts._generation[0] = before
    assert epoch.exists()
    for cache in workers:
        assert cache.user(site.engine.db.reading, token) is None
    # and through the API of this app at once, too
    assert _get(site, token).status_code == 401


def test_a_rolled_back_change_does_not_move_the_epoch(sqlite_site: Site, tmp_path):
    site = sqlite_site
    epoch = tmp_path / "accounts.epoch"
    with site.engine.db.transaction() as s:
        accounts.issue_token(s, "agent_drc")
    stamp = accounts.epoch_stamp(epoch)
    with pytest.raises(RuntimeError), site.engine.db.transaction() as s:
        accounts.set_active(s, "agent_drc", False)
        s.flush()
        raise RuntimeError("refused later in the same transaction")
    assert accounts.epoch_stamp(epoch) == stamp
    assert site.user("agent_drc").active
