"""A throw-away PostgreSQL server of the test's own, to stop and restart under a running app.

The shared test server (ZERORUN_TEST_PG) serves other tests at the same time and must
never be stopped; outage tests start their own, as the CI script starts its server:
initdb and pg_ctl in a temporary folder on a free loopback port, run as the ordinary
user `zerorun_ci` when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_USER = "zerorun_ci"


def _bin_dir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
    found = [p for p in candidates if (p / "initdb").exists()]
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary folder."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="zerorun-pg-test."))
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            if subprocess.run(["id", PG_USER], capture_output=True).returncode != 0:  # noqa: S607
                subprocess.run(["useradd", "--system", "--no-create-home", PG_USER],  # noqa: S607
                               check=True)
            shutil.chown(self.dir, PG_USER)
        self.run(f"{self.bin / 'initdb'} -D {self.dir / 'data'} -U postgres -A trust")

    @property
    def url(self) -> str:
        """The URL of its `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, command: str) -> None:
        """Run a server command as the server's user."""
        argv = ["su", "-s", "/bin/sh", PG_USER, "-c", command] if self.as_root \
            else ["sh", "-c", command]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)  # noqa: S603

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        options = shlex.quote(f"-k {self.dir} -h 127.0.0.1 -p {self.port} -c fsync=off")
        self.run(f"{self.bin / 'pg_ctl'} -D {self.dir / 'data'} -o {options} "
                 f"-l {self.dir / 'log'} -w start")

    def kill(self) -> None:
        """Stop at once, as a crash would (open connections are cut)."""
        self.run(f"{self.bin / 'pg_ctl'} -D {self.dir / 'data'} -m immediate -w stop")

    def remove(self) -> None:
        """Stop if running and delete everything."""
        try:
            self.run(f"{self.bin / 'pg_ctl'} -D {self.dir / 'data'} -m immediate -w stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


def own_postgres() -> Iterator[PgServer]:
    """A started server of the test's own; skipped only outside CI without PostgreSQL."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but PostgreSQL's initdb is not installed")
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    server = PgServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.remove()
