"""Single sign-on through the identity platform by OpenID Connect (Authlib): authorization
code flow with PKCE, state and nonce checked; the person is mapped to a zerorun account by
a configured claim, and roles and departments stay in zerorun."""

from __future__ import annotations

import logging
from typing import Any

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, abort, current_app, redirect, render_template, session, url_for
from flask_babel import gettext as _
from joserfc.errors import JoseError

from engine import accounts
from engine.config import Config
from webapp import get_engine

bp = Blueprint("sso", __name__)
log = logging.getLogger(__name__)


def init_app(app: Flask, config: Config) -> None:
    """Register the identity platform as an OpenID Connect client, when configured."""
    app.jinja_env.globals.update(sso_enabled=config.sso_enabled,
                                 sso_label=config.oidc_label,
                                 password_login=config.password_login_enabled)
    app.register_blueprint(bp)
    if not config.sso_enabled:
        return
    oauth = OAuth(app)
    oauth.register(
        "idp", client_id=config.oidc_client_id,
        client_secret=config.oidc_client_secret or None,
        server_metadata_url=(config.oidc_issuer.rstrip("/")
                             + "/.well-known/openid-configuration"),
        client_kwargs={"scope": config.oidc_scope, "code_challenge_method": "S256",
                       "token_endpoint_auth_method": ("client_secret_basic"
                                                      if config.oidc_client_secret
                                                      else "none")})
    app.extensions["zerorun_oauth"] = oauth


def _client() -> Any:
    oauth = current_app.extensions.get("zerorun_oauth")
    if oauth is None:
        abort(404)
    return oauth.idp


@bp.route("/login/sso")
def start() -> Any:
    """Send the browser to the identity platform (state, nonce and PKCE challenge kept)."""
    public = get_engine().config.public_url.rstrip("/")
    back = (public + url_for("sso.callback")) if public else url_for("sso.callback",
                                                                     _external=True)
    return _client().authorize_redirect(back)


@bp.route("/login/sso/callback")
def callback() -> Any:
    """Back from the identity platform: check state and ID token, then log the account in."""
    client = _client()
    engine = get_engine()
    try:
        token = client.authorize_access_token()
    except (AuthlibBaseError, JoseError) as exc:
        why = str(getattr(exc, "error", "") or type(exc).__name__)
        log.warning("single sign-on refused: %s", why)
        return _refused(_("The identity platform's answer could not be verified (%(why)s). "
                          "Start the login again.", why=why)), 401
    claims = token.get("userinfo") or {}
    username = str(claims.get(engine.config.oidc_user_claim) or "")
    with engine.db.reading() as s:
        user = accounts.get_user_by_name(s, username) if username else None
    if user is None or not user.active:
        log.warning("single sign-on: no active account for %r", username)
        return _refused(_("You were identified as %(name)s, but zerorun has no active "
                          "account of that name. Ask an administrator to create it.",
                          name=username or "?")), 403
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session["user_id"] = user.id
    return redirect(url_for("agent.inbox"))


def _refused(message: str) -> str:
    return render_template("error.html", title=_("Single sign-on failed"), message=message)
