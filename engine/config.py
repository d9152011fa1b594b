"""Settings, declared once with their defaults and help, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from engine.errors import EngineError

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(EngineError):
    """A setting is missing or malformed."""


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, default and help text."""

    env: str
    default: str | None
    help: str


SETTINGS: dict[str, Setting] = {
    "database_url": Setting(
        "DATABASE_URL", f"sqlite:///{ROOT / 'instance' / 'zerorun.db'}",
        "SQLAlchemy URL; sqlite:///path (default, embedded) or "
        "postgresql+psycopg://user:pw@host/db"),
    "processes_dir": Setting("ZERORUN_PROCESSES", str(ROOT / "processes"),
                             "folder of the process pack (BPMN, DMN, forms)"),
    "data_dir": Setting("ZERORUN_DATA", str(ROOT / "data"),
                        "folder of the reference data (departments, items, calendar...)"),
    "instance_dir": Setting("ZERORUN_INSTANCE", str(ROOT / "instance"),
                            "folder for the embedded database, uploads and the secret key"),
    "snapshot_every": Setting("ZERORUN_SNAPSHOT_EVERY", "50",
                              "events between two stored snapshots of a running case"),
    "cache_size": Setting("ZERORUN_CACHE_SIZE", "512",
                          "running cases kept in memory per process"),
    "timer_poll_seconds": Setting("ZERORUN_TIMER_POLL", "5",
                                  "seconds between two polls of the timer worker"),
    "token_cache_seconds": Setting(
        "ZERORUN_TOKEN_CACHE_SECONDS", "5",
        "seconds an app process remembers whose an API token is (a token revoked by another "
        "process stops working within this time; 0: look it up on every call)"),
    "chromium": Setting("ZERORUN_CHROMIUM", "/usr/bin/chromium",
                        "headless Chromium that prints case reports to PDF"),
    "smtp_host": Setting("ZERORUN_SMTP_HOST", "",
                         "SMTP server for warning e-mails; empty: notify in the app only"),
    "smtp_port": Setting("ZERORUN_SMTP_PORT", "25", "port of the SMTP server"),
    "smtp_user": Setting("ZERORUN_SMTP_USER", "", "SMTP login (empty: no login)"),
    "smtp_password": Setting("ZERORUN_SMTP_PASSWORD", "", "SMTP password"),
    "smtp_from": Setting("ZERORUN_SMTP_FROM", "zerorun@localhost",
                         "sender address of the e-mails"),
    "smtp_starttls": Setting("ZERORUN_SMTP_STARTTLS", "0",
                             "1: upgrade the SMTP connection with STARTTLS before logging in"),
    "max_instances": Setting("ZERORUN_MAX_INSTANCES", "500",
                             "most instances one multi-instance activity may create in a case "
                             "(a literal loop cardinality above it is refused at load, a "
                             "collection or expression above it when the case reaches it)"),
    "seal_key_file": Setting("ZERORUN_SEAL_KEY_FILE", "",
                             "Ed25519 private key (PEM) that signs audit seals; empty: "
                             "seal_ed25519.pem in the instance folder, created when first "
                             "needed. Keep it off the database server in production"),
    "seal_key": Setting("ZERORUN_SEAL_KEY", "",
                        "the seal signing key itself (PEM text); overrides the key file"),
    "seal_interval_hours": Setting("ZERORUN_SEAL_INTERVAL_HOURS", "24",
                                   "hours between two audit seals made by the worker "
                                   "(0: the worker does not seal)"),
    "seal_mail_to": Setting("ZERORUN_SEAL_MAIL_TO", "",
                            "comma-separated addresses every new audit seal is mailed to"),
    "webhook_allow": Setting(
        "ZERORUN_WEBHOOK_ALLOW", "",
        "comma-separated networks (CIDR, e.g. 10.20.0.0/16) where webhook receivers may be "
        "although the addresses are loopback, private or link-local (an intranet receiver); "
        "empty: webhooks go to public addresses only"),
    "webhook_key_file": Setting(
        "ZERORUN_WEBHOOK_KEY_FILE", "",
        "key (Fernet, base64) encrypting the webhook signing secrets stored in the "
        "database; empty: webhook.key in the instance folder, created when first needed. "
        "Keep it off the database server in production"),
    "webhook_key": Setting("ZERORUN_WEBHOOK_KEY", "",
                           "the webhook secrets' key itself; overrides the key file"),
    # Operations (health, metrics, backups, single sign-on) --------------------------------
    "worker_stale_seconds": Setting(
        "ZERORUN_WORKER_STALE", "120",
        "seconds without a timer-worker heartbeat after which /readyz answers 503"),
    "metrics_allow": Setting(
        "ZERORUN_METRICS_ALLOW", "127.0.0.1,::1",
        "comma-separated addresses or networks (CIDR) that may read /metrics without a token"),
    "metrics_token": Setting(
        "ZERORUN_METRICS_TOKEN", "",
        "bearer token that lets any address read /metrics (empty: addresses only)"),
    "pg_bindir": Setting(
        "ZERORUN_PG_BINDIR", "",
        "folder of pg_dump and pg_restore for backups (empty: PATH, then the newest "
        "/usr/lib/postgresql/*/bin)"),
    "public_url": Setting(
        "ZERORUN_PUBLIC_URL", "",
        "address users reach zerorun at through the reverse proxy, e.g. "
        "https://zerorun.example.gov.cn (the single sign-on return address is built on it; "
        "empty: the address of the request)"),
    "oidc_issuer": Setting(
        "ZERORUN_OIDC_ISSUER", "",
        "OpenID Connect issuer URL of the identity platform (empty: no single sign-on)"),
    "oidc_client_id": Setting("ZERORUN_OIDC_CLIENT_ID", "",
                              "client id zerorun is registered under at the identity platform"),
    "oidc_client_secret": Setting("ZERORUN_OIDC_CLIENT_SECRET", "",
                                  "client secret (empty: a public client, PKCE only)"),
    "oidc_user_claim": Setting(
        "ZERORUN_OIDC_USER_CLAIM", "preferred_username",
        "ID-token claim whose value is the zerorun username of the person logging in"),
    "oidc_scope": Setting("ZERORUN_OIDC_SCOPE", "openid profile",
                          "scopes asked of the identity platform"),
    "oidc_label": Setting("ZERORUN_OIDC_LABEL", "",
                          "name of the identity platform on the login button (empty: a "
                          "generic label)"),
    "form_login": Setting(
        "ZERORUN_PASSWORD_LOGIN", "1",
        "0: the login form is switched off (single sign-on only; API tokens still work)"),
}

# Read by the web app and by prometheus-client themselves rather than through Config.
ENVIRONMENT_ONLY: dict[str, Setting] = {
    "secret_key": Setting(
        "ZERORUN_SECRET_KEY", None,
        "key signing session cookies (unset: generated once into <instance>/secret_key)"),
    "secure_cookies": Setting(
        "ZERORUN_SECURE_COOKIES", "0",
        "1: session cookies only over HTTPS (set it behind a TLS reverse proxy)"),
    "prometheus_multiproc_dir": Setting(
        "PROMETHEUS_MULTIPROC_DIR", None,
        "where web workers add up their metrics; zerorun serve sets <instance>/metrics "
        "(unset: single-process metrics)"),
}


@dataclass(frozen=True)
class Config:
    """The engine's settings."""

    database_url: str
    processes_dir: Path
    data_dir: Path
    instance_dir: Path
    snapshot_every: int
    cache_size: int
    timer_poll_seconds: float
    chromium: str
    token_cache_seconds: float = 5.0
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "zerorun@localhost"
    smtp_starttls: str = "0"
    max_instances: int = 500
    seal_key_file: str = ""
    seal_key: str = ""
    seal_interval_hours: float = 24.0
    seal_mail_to: str = ""
    webhook_allow: str = ""
    webhook_key_file: str = ""
    webhook_key: str = ""

    @property
    def seal_key_path(self) -> Path:
        """Where the seal signing key is kept (outside the database)."""
        return Path(self.seal_key_file) if self.seal_key_file \
            else self.instance_dir / "seal_ed25519.pem"

    @property
    def webhook_key_path(self) -> Path:
        """Where the key encrypting webhook secrets is kept (outside the database)."""
        return Path(self.webhook_key_file) if self.webhook_key_file \
            else self.instance_dir / "webhook.key"
    worker_stale_seconds: int = 120
    metrics_allow: str = "127.0.0.1,::1"
    metrics_token: str = ""
    pg_bindir: str = ""
    public_url: str = ""
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_user_claim: str = "preferred_username"
    oidc_scope: str = "openid profile"
    oidc_label: str = ""
    form_login: str = "1"

    @property
    def mail_enabled(self) -> bool:
        """Whether warnings are also sent by e-mail."""
        return bool(self.smtp_host)

    @property
    def sso_enabled(self) -> bool:
        """Whether staff may log in through the OpenID Connect identity platform."""
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def password_login_enabled(self) -> bool:
        """Whether the login form with username and password is offered."""
        return self.form_login != "0"

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """Read every setting from the environment, then apply explicit overrides."""
        values: dict[str, object] = {}
        for f in fields(cls):
            setting = SETTINGS[f.name]
            raw = overrides.get(f.name, os.environ.get(setting.env, setting.default))
            if raw is None:
                raise ConfigError(f"setting {setting.env} is required: {setting.help}")
            values[f.name] = _convert(f.name, setting, raw)
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, setting: Setting, raw: object) -> object:
    kind = Config.__dataclass_fields__[name].type
    try:
        if kind == "Path":
            return Path(str(raw))
        if kind == "int":
            value = int(str(raw))
            if value < 1:
                raise ValueError("must be at least 1")
            return value
        if kind == "float":
            return float(str(raw))
    except ValueError as exc:
        raise ConfigError(f"setting {setting.env}={raw!r} is not valid: {exc}") from exc
    return str(raw)


def settings_table() -> str:
    """Every setting as the Markdown table the README carries (kept in step by a test)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for setting in [*SETTINGS.values(), *ENVIRONMENT_ONLY.values()]:
        default = setting.default
        if default is None:
            shown = "(unset)"
        elif default == "":
            shown = "(empty)"
        else:
            shown = f"`{default.replace(str(ROOT) + '/', '').replace(str(ROOT), '.')}`"
        meaning = setting.help.replace("|", "\\|")
        rows.append(f"| `{setting.env}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")  # noqa: T201
