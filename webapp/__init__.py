"""The zerorun web app: a thin Flask layer over the engine."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

from engine.config import Config
from engine.core import Engine
from engine.errors import EngineError

csrf = CSRFProtect()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: one engine per process, CSRF on every form, one error handler."""
    app = Flask(__name__)
    overrides = dict((test_config or {}).pop("ENGINE", {})) if test_config else {}
    config = Config.from_env(**overrides)
    app.config.update(
        SECRET_KEY=_secret_key(config.instance_dir),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("ZERORUN_SECURE_COOKIES", "") == "1",
    )
    if test_config:
        app.config.update(test_config)
    engine = app.config.get("ENGINE_INSTANCE") or Engine(config)
    app.extensions["zerorun"] = engine
    csrf.init_app(app)
    if "babel" not in app.extensions:
        Babel(app, default_locale="zh_Hans_CN")

    from . import agent, api, auth, enterprise, intake, records

    app.register_blueprint(auth.bp)
    app.register_blueprint(agent.bp)
    app.register_blueprint(intake.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(enterprise.bp)
    api.init_app(app)

    @app.errorhandler(EngineError)
    def engine_error(exc: EngineError) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(exc.to_dict()), exc.status
        return render_template("error.html", error=exc), exc.status

    return app


def _secret_key(instance: Path) -> str:
    configured = os.environ.get("ZERORUN_SECRET_KEY")
    if configured:
        return configured
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def get_engine() -> Engine:
    """The engine of the running app."""
    from flask import current_app

    engine: Engine = current_app.extensions["zerorun"]
    return engine
