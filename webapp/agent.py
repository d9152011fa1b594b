"""Agents' pages: the department inbox."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, render_template

from . import get_engine
from .auth import requires

bp = Blueprint("agent", __name__)


@bp.route("/")
@requires()
def inbox() -> Any:
    """The ready tasks of the user's department and the ones they claimed."""
    engine = get_engine()
    department = g.user.department if g.user.role in ("agent", "leader", "office") else None
    tasks = engine.list_tasks(department=department, limit=100) if department else \
        engine.list_tasks(limit=100)
    return render_template("agent/inbox.html", tasks=tasks)
