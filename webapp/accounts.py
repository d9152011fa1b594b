"""Administrators' accounts page: list, create, deactivate and activate, reset a password,
change role and department. Every change is an operation in the `ops` audit stream."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import accounts
from engine.actors import ROLES
from engine.errors import EngineError
from engine.store.models import Department
from webapp import get_engine
from webapp.agent import department_name
from webapp.auth import requires
from webapp.i18n import engine_message

bp = Blueprint("accounts", __name__, url_prefix="/admin/accounts")


@bp.route("")
@requires("admin")
def index(error: str | None = None, status: int = 200) -> Any:
    """Every account with its role, department, state and lock."""
    engine = get_engine()
    with engine.db.reading() as s:
        every = accounts.list_users(s)
        departments = [(d.code, department_name(d.code) or d.name) for d in s.scalars(
            select(Department).order_by(Department.position, Department.code))]
    query = {k: (request.args.get(k) or "").strip() for k in ("q", "role", "department",
                                                              "state")}
    users = [u for u in every if _matches(u, query)]
    return render_template("admin/accounts.html", users=users, total=len(every),
                           departments=departments, query=query,
                           roles=[r for r in ROLES if r != "system"], now=engine.clock(),
                           error=error), status


def _matches(user: accounts.UserView, query: dict[str, str]) -> bool:
    """Whether an account is one the list's search and filters ask for."""
    words = query["q"].casefold()
    if words and words not in user.username.casefold() \
            and words not in (user.display_name or "").casefold():
        return False
    if query["role"] and user.role != query["role"]:
        return False
    if query["department"] and user.department != query["department"]:
        return False
    if query["state"] == "active" and not user.active:
        return False
    return not (query["state"] == "inactive" and user.active)


def _change(action: Any, done: str) -> Any:
    """Run one change in its own transaction; say what happened, or show why not."""
    try:
        with get_engine().db.transaction() as s:
            action(s)
    except EngineError as exc:
        return index(engine_message(exc.message), exc.status)
    flash(done)
    back = request.form.get("next", "")
    return redirect(back if back.startswith("/admin/accounts") else url_for("accounts.index"))


@bp.route("", methods=["POST"])
@requires("admin")
def create() -> Any:
    """Add an account."""
    form = request.form
    username = form.get("username", "").strip()
    return _change(lambda s: accounts.create_user(
        s, username, form.get("password", ""), form.get("role", ""),
        display_name=form.get("display_name", "").strip(),
        department=form.get("department") or None, now=get_engine().clock(),
        actor=g.user.username), _("账户 %(u)s 已创建", u=username))


@bp.route("/<username>/<any(deactivate, activate):action>", methods=["POST"])
@requires("admin")
def set_active(username: str, action: str) -> Any:
    """Deactivate an account (its sessions and API token end at once) or activate it."""
    if action == "deactivate" and username == g.user.username:
        return index(_("不能停用自己的账户"), 400)
    active = action == "activate"
    return _change(lambda s: accounts.set_active(s, username, active, actor=g.user.username),
                   _("账户 %(u)s 已启用", u=username) if active
                   else _("账户 %(u)s 已停用，其会话与 API 令牌已失效", u=username))


@bp.route("/<username>/password", methods=["POST"])
@requires("admin")
def reset_password(username: str) -> Any:
    """Set a new password (the account is unlocked; its open sessions end)."""
    password = request.form.get("password", "")
    return _change(lambda s: accounts.set_password(s, username, password,
                                                   actor=g.user.username),
                   _("账户 %(u)s 的密码已重置", u=username))


@bp.route("/<username>/role", methods=["POST"])
@requires("admin")
def set_role(username: str) -> Any:
    """Change an account's role and department."""
    role, department = request.form.get("role", ""), request.form.get("department") or None
    return _change(lambda s: accounts.set_role(s, username, role, department,
                                               actor=g.user.username),
                   _("账户 %(u)s 的角色已更改", u=username))
