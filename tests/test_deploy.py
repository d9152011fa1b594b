"""Supervised deployment: the systemd units, and `zerorun serve` on a port already taken."""

from __future__ import annotations

import configparser
import socket
import subprocess
import sys

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name, encoding="utf-8")
    return parser


def test_both_units_run_their_command_and_stop_the_whole_process_group() -> None:
    for name, command in (("zerorun-serve.service", "zerorun serve"),
                          ("zerorun-worker.service", "zerorun worker")):
        service = _unit(name)["Service"]
        assert command in service["ExecStart"], name
        assert service["KillMode"] == "control-group", name
        assert service["Restart"] in ("on-failure", "always"), name
        assert service["EnvironmentFile"] == "/etc/zerorun/zerorun.env", name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "deploy/zerorun-serve.service" in readme and "deploy/zerorun-worker.service" in readme


def test_serve_says_why_it_cannot_listen_when_the_port_is_taken(tmp_path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "ZERORUN_INSTANCE": str(tmp_path),
                 "DATABASE_URL": f"sqlite:///{tmp_path / 'z.db'}"})
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: port {port} is already in use" in result.stderr
    assert "is serving" not in result.stdout  # it said nothing misleading before failing
