"""What the data centre's monitoring reads: liveness, readiness (no login, no secrets)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from engine import health
from webapp import get_engine

bp = Blueprint("ops", __name__)


@bp.route("/healthz")
def healthz() -> Any:
    """The process is up and answering."""
    return jsonify({"status": "ok"})


@bp.route("/readyz")
def readyz() -> Any:
    """Database reachable, schema current, process pack loaded, timer worker beating."""
    result = health.readiness(get_engine())
    body = {"status": "ready" if result.ok else "not ready", "checks": result.checks}
    return jsonify(body), 200 if result.ok else 503
