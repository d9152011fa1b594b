"""Accounts: password hashing (Argon2), API tokens, lockout after failed logins."""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from engine.actors import ROLES, Actor
from engine.audit import chain as audit
from engine.errors import EngineError, Forbidden, NotFound
from engine.runtime import clock
from engine.store.db import Database
from engine.store.models import Department, LoginThrottle, MessageGrant, User

HASHER = PasswordHasher()
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=5)
MIN_PASSWORD_LENGTH = 8
# Failed logins from one client address, whatever the accounts tried, before it must wait.
MAX_ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=10)
# Unknown API tokens from one client address per minute before it must wait (the API).
MAX_BAD_TOKENS = 20


ACCOUNT_DEACTIVATED = "this account has been deactivated; ask an administrator"
LOGIN_REFUSED = ("wrong user name or password (after repeated failures an account is "
                 "locked for a few minutes)")


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
        # Unknown, locked or a wrong password: one answer, after the same work (a hash), so
        # that no answer tells which accounts exist or are locked. Only the right password
        # learns that its account was deactivated.
        if user is None:
            HASHER.hash(password)
        elif not user.active:
            if _password_matches(user, password):
                raise LoginFailed(ACCOUNT_DEACTIVATED)
        elif user.locked_until is not None and user.locked_until > now:
            HASHER.hash(password)
        elif _password_matches(user, password):
            user.failed_logins, user.locked_until = 0, None
            if HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = HASHER.hash(password)
            return _view(user)
    with db.transaction() as s:
        _count_failure(s, username, address, now)
    raise LoginFailed(LOGIN_REFUSED)


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


def grant_message(s: Session, username: str, message: str, *, now: datetime,
                  actor: str = "system") -> bool:
    """Let an account (another system's) deliver `message` to every element waiting for
    it, whatever department the element names; False when it already may."""
    message = message.strip()
    if not message or len(message) > 200:
        raise EngineError("a message name of 1 to 200 characters is required")
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    if user.role == "auditor":
        raise Forbidden("auditors change nothing; they cannot be granted a message")
    if s.get(MessageGrant, (username, message)) is not None:
        return False
    s.add(MessageGrant(username=username, message=message, granted_by=actor, granted_at=now))
    _record(s, "message_granted", actor, {"username": username, "message": message}, now)
    return True


def revoke_message(s: Session, username: str, message: str, *, actor: str = "system") -> bool:
    """Take a message grant back; False when the account had none."""
    grant = s.get(MessageGrant, (username, message))
    if grant is None:
        return False
    s.delete(grant)
    _record(s, "message_grant_revoked", actor, {"username": username, "message": message})
    return True


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
def _account_changed(_mapper: object, _connection: object, target: User) -> None:
    _generation[0] = next(_account_changes) + 1
    session = object_session(target)
    if session is not None:
        session.info["accounts_changed"] = True


# Processes on one host (web workers, the CLI, the worker) share the instance folder: an
# account change committed in any of them replaces the epoch file, and every token cache
# checks the file (a stat, no database round trip) before trusting what it remembers.
_EPOCH_FILES: dict[Path, None] = {}  # a process serves one installation (tests: a few)


def watch_epoch(path: Path) -> None:
    """Replace `path` after every committed account change made in this process."""
    _EPOCH_FILES.pop(path, None)
    _EPOCH_FILES[path] = None
    while len(_EPOCH_FILES) > 8:
        _EPOCH_FILES.pop(next(iter(_EPOCH_FILES)))


def epoch_stamp(path: Path | None) -> tuple[int, int] | None:
    """What identifies the epoch file's current version (None: none written yet)."""
    if path is None:
        return None
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns


def bump_epoch(path: Path) -> None:
    """Write a new version of the epoch file (a new file moved in place: a new inode)."""
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fresh.write_text(secrets.token_hex(16))
    os.replace(fresh, path)


@event.listens_for(Session, "after_commit")
def _accounts_committed(session: Session) -> None:
    if session.info.pop("accounts_changed", False):
        for path in list(_EPOCH_FILES):
            if path.parent.is_dir():
                bump_epoch(path)
            else:  # an instance folder that is gone (a finished test's)
                _EPOCH_FILES.pop(path, None)


@event.listens_for(Session, "after_rollback")
def _accounts_rolled_back(session: Session) -> None:
    session.info.pop("accounts_changed", None)


class TokenCache:
    """Who an API token belongs to, remembered for a few seconds per process.

    Looking the token up costs a database round trip on every API call; the answer is
    kept for `ttl` seconds. A change to any account made in this process forgets every
    entry at once; so does one made by another process on this host (`zerorun
    deactivate-user`, another app worker): it replaces the `epoch_file` every cache checks.
    A process on another host without the shared instance folder takes effect here within
    `ttl` seconds. A `ttl` of 0 turns caching off.
    """

    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic,
                 size: int = 1024, epoch_file: Path | None = None) -> None:
        self.ttl, self.monotonic, self.size = ttl, monotonic, size
        self.epoch_file = epoch_file
        self._entries: dict[str, tuple[UserView, float, int, tuple[int, int] | None]] = {}
        self._lock = threading.Lock()

    def user(self, open_session: Callable[[], AbstractContextManager[Session]], token: str
             ) -> UserView | None:
        """The active user of a token (None: unknown, revoked or deactivated)."""
        digest = token_digest(token)
        now, generation = self.monotonic(), _generation[0]
        cached = self._entries.get(digest)
        if cached is not None and cached[2] == generation and now - cached[1] < self.ttl \
                and cached[3] == epoch_stamp(self.epoch_file):
            return cached[0]
        stamp = epoch_stamp(self.epoch_file)  # before the lookup: a change after it counts
        with open_session() as s:
            user = user_by_token(s, token)
        if user is not None and self.ttl > 0:
            with self._lock:
                if len(self._entries) >= self.size:
                    self._entries.clear()
                self._entries[digest] = (user, now, generation, stamp)
        return user
