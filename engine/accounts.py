"""Accounts: password hashing (Argon2), API tokens, lockout after failed logins."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.actors import ROLES, Actor
from engine.audit import chain as audit
from engine.errors import EngineError, Forbidden, NotFound
from engine.runtime import clock
from engine.store.db import Database
from engine.store.models import Department, LoginThrottle, User

HASHER = PasswordHasher()
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=5)
MIN_PASSWORD_LENGTH = 8
# Failed logins from one client address, whatever the accounts tried, before it must wait.
MAX_ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=10)


class LoginFailed(Forbidden):
    """Wrong user name or password, or the account is locked for a while."""

    status = 401


class LoginThrottled(LoginFailed):
    """Too many failed logins from one client address: it waits, whatever the account."""

    status = 429


@dataclass(frozen=True)
class UserView:
    """An account as pages show it."""

    id: int
    username: str
    display_name: str
    role: str
    department: str | None
    active: bool
    locked_until: datetime | None = None
    email: str | None = None
    session_epoch: int = 0

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role, self.department)


def _view(user: User) -> UserView:
    return UserView(user.id, user.username, user.display_name, user.role, user.department,
                    user.active, user.locked_until, user.email, user.session_epoch or 0)


def _record(s: Session, event_type: str, actor: str, data: dict[str, object],
            now: datetime | None = None) -> None:
    """Account changes are operations: they go to the hash-chained `ops` stream."""
    audit.append_ops(s, audit.NewEvent(event_type, actor, now or clock.now(), dict(data)))


def create_user(s: Session, username: str, password: str, role: str, *, display_name: str = "",
                department: str | None = None, now: datetime, actor: str = "system"
                ) -> UserView:
    """Add an account; the role and department are checked."""
    username = username.strip()
    if not username:
        raise EngineError("a user name is required")
    if len(username) > 100 or any(c.isspace() or not c.isprintable() for c in username):
        raise EngineError("a user name has at most 100 characters, without spaces")
    department = _check_role(s, role, department or None)
    if s.scalar(select(User).where(User.username == username)) is not None:
        raise EngineError(f"user {username!r} already exists")
    _check_password(password)
    user = User(username=username, display_name=display_name or username,
                password_hash=HASHER.hash(password), role=role, department=department,
                active=True, failed_logins=0, created_at=now, session_epoch=0)
    s.add(user)
    s.flush()
    _record(s, "account_created", actor, {"username": username, "role": role,
                                          "department": department}, now)
    return _view(user)


def _check_role(s: Session, role: str, department: str | None) -> str | None:
    """The department an account of `role` keeps (None for roles above departments)."""
    if role not in ROLES or role == "system":
        raise EngineError(f"unknown role {role!r}; choose one of "
                          f"{', '.join(r for r in ROLES if r != 'system')}")
    if role in ("agent", "leader", "office") and not department:
        raise EngineError(f"a {role} belongs to a department")
    if department is not None and s.get(Department, department) is None:
        raise NotFound(f"department {department!r} does not exist")
    return department


def _user(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username).with_for_update())
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def list_users(s: Session) -> list[UserView]:
    """Every account, by user name."""
    return [_view(u) for u in s.scalars(select(User).order_by(User.username))]


def set_active(s: Session, username: str, active: bool, *, actor: str = "system") -> bool:
    """Deactivate an account (its sessions and API token stop working at once) or activate
    it again (unlocked, without a token: a new one must be issued); False when unchanged."""
    user = _user(s, username)
    if user.active == active:
        return False
    user.active = active
    if active:
        user.failed_logins, user.locked_until = 0, None
    else:
        user.api_token_hash = None
        user.session_epoch = (user.session_epoch or 0) + 1
    _record(s, "account_activated" if active else "account_deactivated", actor,
            {"username": username})
    return True


def set_role(s: Session, username: str, role: str, department: str | None, *,
             actor: str = "system") -> UserView:
    """Change an account's role and department (checked as when it is created)."""
    user = _user(s, username)
    department = _check_role(s, role, department or None)
    before = {"role": user.role, "department": user.department}
    user.role, user.department = role, department
    _record(s, "account_role_changed", actor, {"username": username, "before": before,
                                               "role": role, "department": department})
    return _view(user)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise EngineError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def set_password(s: Session, username: str, password: str, *, actor: str = "system") -> None:
    """Replace a user's password and unlock the account."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    _check_password(password)
    user.password_hash = HASHER.hash(password)
    user.failed_logins, user.locked_until = 0, None
    user.session_epoch = (user.session_epoch or 0) + 1  # sessions opened before end now
    _record(s, "password_reset", actor, {"username": username})


def set_email(s: Session, username: str, email: str | None) -> None:
    """Set or clear the address a user's notifications are mailed to."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    if email is not None:
        email = email.strip()
        local, _, domain = email.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in email):
            raise EngineError(f"{email!r} is not an e-mail address (name@example.org)")
    user.email = email or None


def login(db: Database, username: str, password: str, address: str, now: datetime
          ) -> UserView:
    """Check a login. A failure is written in a transaction of its own (the check's own
    transaction changes nothing then), so failures add up: five in a row lock the account
    for a few minutes whatever the password, and too many from one address make it wait."""
    username = username.strip()
    with db.transaction() as s:
        throttle = s.get(LoginThrottle, address)
        if throttle is not None and throttle.window_start + ADDRESS_WINDOW > now \
                and throttle.failures >= MAX_ADDRESS_FAILURES:
            raise LoginThrottled("too many failed logins from your address; "
                                 "try again in a few minutes")
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            HASHER.hash(password)  # spend the same time as a real check
            refusal = "wrong user name or password"
        elif not user.active:
            # Only the right password learns that the account exists and was deactivated.
            refusal = ("this account has been deactivated; ask an administrator"
                       if _password_matches(user, password) else "wrong user name or password")
        elif user.locked_until is not None and user.locked_until > now:
            refusal = "too many failed logins; try again in a few minutes"
        elif _password_matches(user, password):
            user.failed_logins, user.locked_until = 0, None
            if HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = HASHER.hash(password)
            return _view(user)
        else:
            refusal = "wrong user name or password"
    with db.transaction() as s:
        _count_failure(s, username, address, now)
    raise LoginFailed(refusal)


def _password_matches(user: User, password: str) -> bool:
    try:
        return HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _count_failure(s: Session, username: str, address: str, now: datetime) -> None:
    """One more failed login for the account (locking it at the limit) and the address."""
    user = s.scalar(select(User).where(User.username == username).with_for_update())
    if user is not None and user.active and not (
            user.locked_until is not None and user.locked_until > now):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until, user.failed_logins = now + LOCKOUT, 0
            _record(s, "account_locked", "system", {
                "username": username, "until": user.locked_until.isoformat(),
                "address": address}, now)
    throttle = s.get(LoginThrottle, address, with_for_update=True)
    if throttle is None:
        try:
            with s.begin_nested():
                s.add(LoginThrottle(address=address, window_start=now, failures=1))
            return
        except IntegrityError:  # another worker counted this address's first failure
            throttle = s.get(LoginThrottle, address, with_for_update=True,
                             populate_existing=True)
            if throttle is None:
                raise
    if throttle.window_start + ADDRESS_WINDOW <= now:
        throttle.window_start, throttle.failures = now, 1
    else:
        throttle.failures += 1


def issue_token(s: Session, username: str, *, actor: str = "system") -> str:
    """Create (or replace) a user's API token; only its hash is stored."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    if not user.active:
        raise Forbidden(f"user {username!r} is deactivated; an API token would not work")
    token = secrets.token_urlsafe(32)
    user.api_token_hash = token_digest(token)
    _record(s, "api_token_issued", actor, {"username": username})
    return token


def revoke_tokens(s: Session, username: str, *, actor: str = "system") -> bool:
    """Make a user's API token stop working; False when the user had none."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    had_token = user.api_token_hash is not None
    user.api_token_hash = None
    _record(s, "api_tokens_revoked", actor, {"username": username, "had_token": had_token})
    return had_token


def token_digest(token: str) -> str:
    """The stored form of an API token."""
    return hashlib.sha256(token.encode()).hexdigest()


def user_by_token(s: Session, token: str) -> UserView | None:
    """The active user an API token belongs to."""
    user = s.scalar(select(User).where(User.api_token_hash == token_digest(token)))
    return _view(user) if user is not None and user.active else None


def get_user(s: Session, user_id: int) -> UserView | None:
    """An account by id."""
    user = s.get(User, user_id)
    return _view(user) if user is not None else None


def get_user_by_name(s: Session, username: str) -> UserView | None:
    """An account by user name (single sign-on maps the identity platform's claim to it)."""
    user = s.scalar(select(User).where(User.username == username))
    return _view(user) if user is not None else None
# Every change to an account made in this process (revoked token, deactivation, new
# password...) moves this counter on, so tokens cached here are looked up again at once.
_account_changes = itertools.count()
_generation = [0]


@event.listens_for(User, "after_update")
@event.listens_for(User, "after_delete")
def _account_changed(*_args: object) -> None:
    _generation[0] = next(_account_changes) + 1


class TokenCache:
    """Who an API token belongs to, remembered for a few seconds per process.

    Looking the token up costs a database round trip on every API call; the answer is
    kept for `ttl` seconds. A change to any account made in this process forgets every
    entry at once; one made by another process (`zerorun revoke-tokens`, another app
    worker) takes effect here within `ttl` seconds. A `ttl` of 0 turns caching off.
    """

    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic,
                 size: int = 1024) -> None:
        self.ttl, self.monotonic, self.size = ttl, monotonic, size
        self._entries: dict[str, tuple[UserView, float, int]] = {}
        self._lock = threading.Lock()

    def user(self, open_session: Callable[[], AbstractContextManager[Session]], token: str
             ) -> UserView | None:
        """The active user of a token (None: unknown, revoked or deactivated)."""
        digest = token_digest(token)
        now, generation = self.monotonic(), _generation[0]
        cached = self._entries.get(digest)
        if cached is not None and cached[2] == generation and now - cached[1] < self.ttl:
            return cached[0]
        with open_session() as s:
            user = user_by_token(s, token)
        if user is not None and self.ttl > 0:
            with self._lock:
                if len(self._entries) >= self.size:
                    self._entries.clear()
                self._entries[digest] = (user, now, generation)
        return user
