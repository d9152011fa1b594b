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
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "zerorun@localhost"
    smtp_starttls: str = "0"
    max_instances: int = 500

    @property
    def mail_enabled(self) -> bool:
        """Whether warnings are also sent by e-mail."""
        return bool(self.smtp_host)

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
