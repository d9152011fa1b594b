"""API tokens are remembered a few seconds per process; revocation still takes effect."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, select, text

from engine import accounts
from engine.store import schema
from engine.store.db import Database
from engine.store.models import User

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def _database(url: str) -> tuple[Database, str, list[str]]:
    db = Database(url)
    schema.upgrade(db)
    with db.transaction() as s:
        accounts.create_user(s, "clerk", "password-clerk", "auditor", now=NOW)
        token = accounts.issue_token(s, "clerk")
    sent: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda _c, _cu, statement, *_a: sent.append(statement))
    return db, token, sent


def test_a_token_is_looked_up_once_then_remembered(db_url: str) -> None:
    db, token, sent = _database(db_url)
    cache = accounts.TokenCache(5, monotonic=Ticks())
    assert cache.user(db.reading, token).username == "clerk"
    sent.clear()
    assert cache.user(db.reading, token).username == "clerk"
    assert sent == []
    assert cache.user(db.reading, "not-a-token") is None  # unknown tokens are not remembered
    assert cache.user(db.reading, "not-a-token") is None
    assert len([s for s in sent if "app_user" in s]) == 2
    db.dispose()


def test_a_token_revoked_by_another_process_stops_working_within_the_ttl(db_url: str) -> None:
    db, token, _ = _database(db_url)
    ticks = Ticks()
    cache = accounts.TokenCache(5, monotonic=ticks)
    assert cache.user(db.reading, token) is not None
    with db.transaction() as s:  # what `zerorun revoke-tokens` does, seen from here
        s.execute(text("UPDATE app_user SET api_token_hash = NULL WHERE username = 'clerk'"))
    ticks.value += 4.9
    assert cache.user(db.reading, token) is not None  # still remembered
    ticks.value += 0.2
    assert cache.user(db.reading, token) is None
    db.dispose()


def test_a_change_to_an_account_in_this_process_takes_effect_at_once(db_url: str) -> None:
    db, token, _ = _database(db_url)
    cache = accounts.TokenCache(60, monotonic=Ticks())
    assert cache.user(db.reading, token) is not None
    with db.transaction() as s:
        accounts.revoke_tokens(s, "clerk")
    assert cache.user(db.reading, token) is None
    with db.transaction() as s:
        token = accounts.issue_token(s, "clerk")
    assert cache.user(db.reading, token) is not None
    with db.transaction() as s:
        user = s.scalar(select(User).where(User.username == "clerk"))
        user.active = False
    assert cache.user(db.reading, token) is None
    db.dispose()
