"""A minimal OpenID Connect provider for tests: discovery, authorize (a login form), token
(authorization code with PKCE S256 enforced) and JWKS, signing ID tokens with its own key."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

CLIENT_ID = "zerorun-test"
CLIENT_SECRET = "client-secret-for-tests"


@dataclass
class Provider:
    """The provider's state; tests change `tamper_nonce` or read what it saw."""

    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tamper_nonce: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Flask:
        app = Flask("oidc_provider")

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify({
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"]})

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify({"keys": [{**self.key.as_dict(private=False), "kid": "k1",
                                      "use": "sig", "alg": "RS256"}]})

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            params = request.values.to_dict()
            if request.method == "GET":
                self.requests.append(params)
                hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" '
                                 f'value="{html.escape(v)}">' for k, v in params.items()
                                 if k != "username")
                return (f'<html><body><h1>Unified identity platform</h1><form method="post">'
                        f'{hidden}<input name="username" id="idp-username">'
                        f'<button type="submit" id="idp-submit">Sign in</button>'
                        f'</form></body></html>')
            if params.get("client_id") != CLIENT_ID or params.get("response_type") != "code":
                return "bad client or response type", 400
            if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
                return "PKCE is required", 400
            code = secrets.token_urlsafe(16)
            self.codes[code] = params
            query = urlencode({"code": code, "state": params.get("state", "")})
            return redirect(f"{params['redirect_uri']}?{query}")

        @app.post("/token")
        def token() -> Any:
            auth = request.authorization
            if auth is None or (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
                return jsonify({"error": "invalid_client"}), 401
            granted = self.codes.pop(request.form.get("code", ""), None)
            if granted is None or request.form.get("redirect_uri") != granted["redirect_uri"]:
                return jsonify({"error": "invalid_grant"}), 400
            verifier = request.form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != granted["code_challenge"]:
                return jsonify({"error": "invalid_grant", "error_description": "PKCE"}), 400
            now = int(time.time())
            nonce = "not-the-nonce-sent" if self.tamper_nonce else granted.get("nonce", "")
            claims = {"iss": self.issuer, "sub": f"person-{granted['username']}",
                      "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": nonce,
                      "preferred_username": granted["username"]}
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
            return jsonify({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                            "expires_in": 300, "id_token": id_token})

        return app


@contextmanager
def running_provider() -> Iterator[Provider]:
    """A provider served on a free local port for the duration of a test."""
    provider = Provider()
    server = make_server("127.0.0.1", 0, provider.app(), threaded=True)
    provider.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(timeout=5)
