"""Logging in and out; the current user; access decided by one decorator."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from engine import accounts
from webapp import get_engine
from webapp.i18n import engine_message

bp = Blueprint("auth", __name__)


@bp.before_app_request
def load_user() -> None:
    """Put the logged-in user (or None) on `g.user`."""
    g.user = None
    user_id = session.get("user_id")
    if user_id is not None:
        with get_engine().db.reading() as s:
            user = accounts.get_user(s, int(user_id))
        # A deactivation or a password reset moves the account's epoch on: the session ends.
        if user is not None and user.active \
                and session.get("epoch", 0) == user.session_epoch:
            g.user = user
        elif user is not None and not user.active:
            # Say why the session ended, once, rather than a bare login page.
            session.pop("user_id", None)
            flash(_("This account has been deactivated; ask an administrator to activate it."),
                  "warning")


def requires(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let only logged-in users with one of `roles` (any role when empty) through."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if g.user is None:
                return redirect(url_for("auth.login", next=request.path))
            if roles and g.user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


# Where each role starts: auditors read histories, administrators keep the diagrams.
HOMES = {"auditor": "audit.index", "admin": "admin.processes"}


def home_of(role: str) -> str:
    """The first page of a role (the inbox for those who do tasks)."""
    return url_for(HOMES.get(role, "agent.inbox"))


# Where a login lands: the office's work starts from the dashboard (cases, warnings, the
# digest), though it keeps an inbox for its own few tasks.
LANDINGS = {**HOMES, "office": "oversight.dashboard"}


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the login form; check the password."""
    error, status = None, 200
    if request.method == "POST" and not get_engine().config.password_login_enabled:
        abort(403)  # single sign-on only (ZERORUN_PASSWORD_LOGIN=0)
    if request.method == "POST":
        engine = get_engine()
        try:
            user = accounts.login(engine.db, request.form.get("username", ""),
                                  request.form.get("password", ""),
                                  request.remote_addr or "unknown", engine.clock())
        except accounts.LoginFailed as exc:
            time.sleep(0.5)  # slows down guessing; the account locks after repeated failures
            error, status = engine_message(exc.message), exc.status
        else:
            lang = session.get("lang")
            session.clear()
            if lang:
                session["lang"] = lang
            session["user_id"] = user.id
            session["epoch"] = user.session_epoch
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/") and not target.startswith("//")
                            else url_for(LANDINGS.get(user.role, "agent.inbox")))
    return render_template("auth/login.html", error=error), status


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """End the session."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You are logged out."))
    return redirect(url_for("auth.login"))
