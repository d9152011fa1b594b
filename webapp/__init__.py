"""The zerorun web app: a thin Flask layer over the engine."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from agency import service_engine
from engine.cases import Engine
from engine.config import Config
from engine.errors import EngineError
from webapp import hardening, limits

csrf = CSRFProtect()

RETRY_AFTER_SECONDS = 10  # told to clients while the database is unavailable
UNAVAILABLE = ("the service is briefly unavailable (its database cannot be reached right "
               "now); nothing was changed, please try again in a moment")


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
        # attachments are at most 10 MB; the rest of a task form is small
        MAX_CONTENT_LENGTH=limits.MAX_BODY_BYTES,
    )
    if test_config:
        app.config.update(test_config)
    engine = app.config.get("ENGINE_INSTANCE") or service_engine(config)
    app.extensions["zerorun"] = engine
    hardening.init_app(app)
    csrf.init_app(app)

    from . import (
        accounts,
        admin,
        agent,
        api,
        api_clocks,  # noqa: F401  (routes on the API's blueprint)
        api_interop,  # noqa: F401
        api_lifecycle,  # noqa: F401
        api_unit_tasks,  # noqa: F401
        audit,
        auth,
        cases,
        clocks,
        enterprise,
        i18n,
        intake,
        integrations,
        labels,
        metrics,
        observability,
        ops,
        oversight,
        pack_i18n,
        progress,
        records,
        sso,
        team,
        whatif,
    )

    i18n.init_app(app)
    app.jinja_env.globals.update(labels.template_globals())
    # One clock: stored in UTC, shown in the service's time zone on every page.
    app.add_template_filter(labels.local_time, "local_time")
    app.add_template_filter(labels.local_date, "local_date")
    # Names, never codes: people, departments and processes by name on every page.
    for name in ("person", "department", "process"):
        app.add_template_filter(getattr(labels, name), name)
    # English that covers the process: the pack's own catalogue (processes/i18n/en.json).
    app.add_template_filter(pack_i18n.task_title, "task_title")
    app.jinja_env.globals["item_name"] = pack_i18n.item_name
    app.jinja_env.globals["task_instructions"] = pack_i18n.task_instructions
    app.jinja_env.globals["material_name"] = pack_i18n.material_name
    app.register_blueprint(auth.bp)
    app.register_blueprint(agent.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(oversight.bp)
    app.register_blueprint(intake.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(enterprise.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(metrics.bp)
    observability.init_app(app, engine)
    sso.init_app(app, engine.config)
    app.register_blueprint(integrations.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(team.bp)
    app.register_blueprint(progress.bp)
    app.register_blueprint(clocks.bp)
    app.register_blueprint(whatif.bp)
    api.init_app(app)

    @app.errorhandler(EngineError)
    def engine_error(exc: EngineError) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(exc.to_dict()), exc.status
        return render_template("error.html", title=i18n.engine_title(exc.title),
                               message=i18n.engine_message(exc.message)), exc.status

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(exc: Exception) -> Any:
        # The database is down, restarting or locked: the command's transaction was rolled
        # back, so nothing changed and trying again shortly is the right advice.
        app.logger.warning("database unavailable: %s", exc)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if request.path.startswith("/api/"):
            return api.error_response(503, "service_unavailable", UNAVAILABLE,
                                      headers=headers)
        from flask import g
        from flask_babel import gettext as _

        g.user = None  # the page must not need the database to be shown
        return render_template(
            "error.html", title=_("Service briefly unavailable"),
            message=_("The service is briefly unavailable (its database cannot be reached "
                      "right now). Nothing was changed; please try again in a moment.")
        ), 503, headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if request.path.startswith("/api/"):
            return jsonify({"error": exc.name, "message": exc.description}), exc.code
        from flask_babel import gettext as _

        status = exc.code or 500
        messages = {
            400: (_("Bad request"), _("The request could not be understood.")),
            403: (_("Forbidden"), _("You may not open this page.")),
            404: (_("Not found"), _("There is no such page.")),
            405: (_("Not allowed"), _("This page does not accept that kind of request.")),
            413: (_("File too large"), _("The upload is larger than 10 MB; nothing was "
                                         "saved. Choose a smaller file.")),
        }
        if isinstance(exc, CSRFError):
            title, message = _("Form expired"), _("The form expired or was not sent from this "
                                                  "site; go back, reload it and try again.")
        else:
            title, message = messages.get(status, (exc.name, exc.description or ""))
        return render_template("error.html", title=title, message=message), status

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
