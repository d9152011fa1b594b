"""The `zerorun` command: set up, load processes, serve, run the timer worker, drive cases."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from agency import service_engine
from agency.bootstrap import DEMO_PASSWORD, setup
from engine.actors import SYSTEM, Actor
from engine.cases import Engine
from engine.config import Config
from engine.errors import EngineError
from engine.store import schema


def _engine() -> Engine:
    return service_engine(Config.from_env())


def _fail(exc: EngineError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    for problem in getattr(exc, "problems", [])[1:]:
        click.echo(f"  {problem}", err=True)
    for field_error in getattr(exc, "errors", []):
        click.echo(f"  field {field_error.field}: {field_error.message}", err=True)
    sys.exit(1)


def _operator() -> str:
    """Who runs an operation from the command line, as the operations log names them."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _actor(username: str | None, role: str, department: str | None) -> Actor:
    return Actor(username, role, department) if username else SYSTEM


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
def main(verbose: bool) -> None:
    """zerorun: the zero-run agency service's workflow engine."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command("init-db")
def init_db() -> None:
    """Create or migrate the database schema."""
    engine = _engine()
    schema.upgrade(engine.db)
    click.echo(f"database ready: {engine.db.engine.url.render_as_string(hide_password=True)}")


@main.command("setup")
@click.option("--no-demo", is_flag=True, help="Skip demo accounts and the demo case.")
def setup_command(no_demo: bool) -> None:
    """Migrate, load reference data and processes, create demo accounts (keeps existing data)."""
    engine = _engine()
    try:
        report = setup(engine, demo=not no_demo)
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"departments: {report.departments}; new process versions: "
               f"{len(report.versions_created)}; new accounts: {report.users_created}")
    if report.demo_case:
        click.echo(f"demo case started: #{report.demo_case}")
    if report.calendar_case:
        click.echo(f"service calendar started: #{report.calendar_case}")


@main.command("load-processes")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
def load_processes(directory: str | None) -> None:
    """Validate and load the process pack; unchanged processes create nothing."""
    engine = _engine()
    try:
        result = engine.load_processes(Path(directory) if directory else None)
    except EngineError as exc:
        _fail(exc)
        return
    for process_id, number in result.created:
        click.echo(f"new version: {process_id} v{number}")
    click.echo(f"{len(result.created)} new, {len(result.unchanged)} unchanged")


@main.command("start-case")
@click.argument("process_id")
@click.option("--data", "data_json", default="{}", help="Initial data as JSON.")
@click.option("--data-file", type=click.Path(exists=True, dir_okay=False),
              help="Initial data from a JSON file.")
@click.option("--as", "username", help="Acting user (default: system).")
@click.option("--role", default="office")
@click.option("--department", default="leading_group_office")
def start_case(process_id: str, data_json: str, data_file: str | None, username: str | None,
               role: str, department: str | None) -> None:
    """Start a case of the published version of a process."""
    data = _load_json(Path(data_file).read_text(encoding="utf-8") if data_file else data_json)
    try:
        case = _engine().start_case(process_id, data, _actor(username, role, department))
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(json.dumps({"case": case.id, "status": case.status}, ensure_ascii=False))


@main.command("tasks")
@click.option("--department")
@click.option("--assignee")
@click.option("--case", "case_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def tasks(department: str | None, assignee: str | None, case_id: int | None,
          as_json: bool) -> None:
    """List ready human tasks."""
    found = _engine().list_tasks(department=department, assignee=assignee, case_id=case_id,
                                 limit=1000)
    for task in found:
        if as_json:
            click.echo(json.dumps({"id": task.id, "case": task.case_id, "task": task.spec_name,
                                   "title": task.title, "department": task.department,
                                   "assignee": task.assignee, "version": task.version,
                                   "item": task.item_code}, ensure_ascii=False))
        else:
            click.echo(f"{task.id}  case {task.case_id}  {task.department:<22} "
                       f"{task.spec_name:<28} {task.title}")


@main.command("complete-task")
@click.argument("task_id")
@click.option("--data", "data_json", default="{}", help="Form data as JSON.")
@click.option("--as", "username", help="Acting user (default: system).")
@click.option("--role", default="agent")
@click.option("--department")
@click.option("--version", "seen_version", type=int, help="Task version you saw.")
def complete_task(task_id: str, data_json: str, username: str | None, role: str,
                  department: str | None, seen_version: int | None) -> None:
    """Complete a ready task with form data."""
    try:
        case = _engine().complete_task(task_id, _load_json(data_json),
                                       _actor(username, role, department), seen_version)
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(json.dumps({"case": case.id, "status": case.status}, ensure_ascii=False))


@main.command("terminate-case")
@click.argument("case_id", type=int)
@click.option("--reason", required=True)
def terminate_case(case_id: int, reason: str) -> None:
    """Terminate a running case with a reason."""
    try:
        case = _engine().terminate_case(case_id, reason, SYSTEM)
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"case {case.id} {case.status}")


@main.command("verify-audit")
@click.argument("case_id", type=int, required=False)
def verify_audit(case_id: int | None) -> None:
    """Verify the hash chain and re-execute one case (or all); exit 1 on any failure."""
    engine = _engine()
    ids = [case_id] if case_id is not None else engine.case_ids()
    failed = 0
    for cid in ids:
        result = engine.verify_case(cid)
        if result.ok:
            click.echo(f"case {cid}: ok ({result.events} events)")
        else:
            failed += 1
            click.echo(f"case {cid}: FAILED at event {result.first_bad_seq}: {result.reason}")
    click.echo(f"{len(ids)} case(s) checked, {failed} failed")
    sys.exit(1 if failed else 0)


@main.command("export-case")
@click.argument("case_id", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File (default stdout).")
@click.option("--format", "form", type=click.Choice(["json", "html"]), default="json",
              show_default=True,
              help="json: events, hashes and process files; html: the printable report "
                   "(timeline, diagrams) with the same export embedded.")
@click.option("--seal-proofs", default=31, show_default=True, type=click.IntRange(min=0),
              help="Inclusion proofs for this many latest seals covering the case (0: all).")
def export_case_command(case_id: int, output: str | None, form: str, seal_proofs: int) -> None:
    """Write a case's history as one self-contained file, verifiable with verify-export."""
    from engine.audit.export import export_case

    try:
        document = export_case(_engine(), case_id, seal_proofs or None)
        text = (json.dumps(document, ensure_ascii=False, indent=1) if form == "json"
                else _report_html(case_id, seal_proofs or None))
    except EngineError as exc:
        _fail(exc)
        return
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"case {case_id}: {len(document['events'])} events written to {output}")
    else:
        click.echo(text)


def _report_html(case_id: int, seal_proofs: int | None) -> str:
    """The auditors' printable report, rendered outside any request (in Chinese)."""
    from webapp import create_app
    from webapp.audit import report_html

    app = create_app()
    with app.test_request_context("/"):
        return report_html(case_id, seal_proofs)


@main.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--seal", "seal_file", type=click.Path(exists=True, dir_okay=False),
              help="A seal you hold (JSON): also check the case against it.")
@click.option("--public-key", help="The seal key's public part (hex) you recorded; default: "
                                   "the key the seal file names.")
def verify_export_command(file: str, seal_file: str | None, public_key: str | None) -> None:
    """Verify an exported case offline (JSON export or HTML report): chain, files, re-execution,
    and with --seal the case's inclusion in a seal you hold."""
    from engine.audit.export import read_export, verify_export, verify_export_seal

    try:
        document = read_export(Path(file).read_text(encoding="utf-8"))
    except EngineError as exc:
        _fail(exc)
        return
    result = verify_export(document, _engine().script_engine)
    if not result.ok:
        click.echo(f"FAILED at event {result.first_bad_seq}: {result.reason}")
        sys.exit(1)
    click.echo(f"ok: {result.events} events verified")
    if seal_file is None:
        return
    held = _read_seal(seal_file)
    if public_key is None:
        public_key = str(held.get("public_key", ""))
        click.echo(f"checking the signature with the key the seal names: {public_key} "
                   "(compare it with the key you recorded)")
    checked = verify_export_seal(document, held, public_key)
    if checked.ok:
        click.echo(f"ok: the case is in seal {held.get('number')} and its events up to the "
                   "sealed head are unchanged")
        return
    where = f" at event {checked.first_bad_seq}" if checked.first_bad_seq else ""
    click.echo(f"FAILED against seal {held.get('number')}{where}: {checked.reason}")
    sys.exit(1)


def _read_seal(file: str) -> dict[str, Any]:
    try:
        held = json.loads(Path(file).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise click.BadParameter(f"{file} is not a seal file (JSON): {exc}") from exc
    if not isinstance(held, dict):
        raise click.BadParameter(f"{file} is not a seal file")
    return held


@main.command("seal-key")
def seal_key() -> None:
    """Print the public key that verifies audit seals (creates the key if there is none)."""
    from engine.audit.seals import public_key_hex, signing_key

    try:
        key = signing_key(Config.from_env())
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(public_key_hex(key))


@main.command("seal")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also write the seal's JSON to this file.")
def seal_command(output: str | None) -> None:
    """Seal the head of every case stream and of the operations log now."""
    from engine.audit.seals import seal

    try:
        made = seal(_engine())
    except EngineError as exc:
        _fail(exc)
        return
    text = json.dumps(made.document(), indent=1)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    click.echo(f"seal {made.number}: {made.tree_size} streams, root {made.root}")
    if not output:
        click.echo(text)


@main.command("verify-seal")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", help="The seal key's public part (hex) you recorded; default: "
                                   "this installation's key.")
def verify_seal_command(files: tuple[str, ...], public_key: str | None) -> None:
    """Check seals you hold: signature, the chain of seals, and every sealed case's events."""
    from engine.audit.sealcheck import trusted_key, verify_seals

    engine = _engine()
    try:
        key = public_key or trusted_key(engine.config)
    except EngineError as exc:
        _fail(exc)
        return
    report = verify_seals(engine, [_read_seal(f) for f in files], key)
    for problem in report.problems:
        click.echo(f"FAILED: {problem}")
    for mismatch in report.mismatches:
        who = f"case {mismatch.case_id}" if mismatch.case_id is not None else mismatch.stream
        where = f" at event {mismatch.first_bad_seq}" if mismatch.first_bad_seq else ""
        click.echo(f"{who}: FAILED{where}: {mismatch.reason}")
    click.echo(f"{report.seals} seal(s) in the chain, {report.streams} sealed stream(s) "
               f"checked, {len(report.problems)} seal problem(s), {len(report.mismatches)} "
               "stream(s) rewritten")
    sys.exit(0 if report.ok else 1)


@main.command("worker")
@click.option("--once", is_flag=True, help="Fire what is due and exit.")
def worker(once: bool) -> None:
    """Fire due timers, seal the audit trail when due and send queued mail, polling every
    ZERORUN_TIMER_POLL seconds; a heartbeat per round tells /readyz and /metrics it runs."""
    from webapp.observability import configure_logging, log_command
    from webapp.worker import run_worker

    engine = _engine()
    configure_logging()  # one JSON line per fired timer, as the web app logs its commands
    engine.hooks.command_done.append(log_command)
    run_worker(engine, once=once, report=click.echo)


@main.command("backup")
@click.argument("folder", type=click.Path(file_okay=False))
def backup_command(folder: str) -> None:
    """Write a backup (database, attachments, manifest of SHA-256 checksums) to a new folder."""
    from engine.backup import backup

    engine = _engine()
    try:
        report = backup(engine, Path(folder))
    except EngineError as exc:
        _fail(exc)
        return
    finally:
        engine.db.dispose()
    click.echo(f"backup written to {report.folder}: {report.database}, {report.cases} "
               f"case(s), {report.events} event(s), {report.files} file(s)")


@main.command("restore")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
def restore_command(folder: str) -> None:
    """Restore a backup into an EMPTY database, then verify every chain and case."""
    from engine.backup import restore

    engine = _engine()
    try:
        report = restore(engine, Path(folder))
    except EngineError as exc:
        _fail(exc)
        return
    finally:
        engine.db.dispose()
    for problem in report.problems:
        click.echo(f"  {problem}", err=True)
    if not report.ok:
        click.echo(f"error: the restored data FAILED verification ({len(report.problems)} "
                   "problem(s)); do not put it into service", err=True)
        sys.exit(1)
    click.echo(f"restored and verified: {report.cases} case(s) re-executed, "
               f"{report.events} event(s) in intact chains, {report.files} file(s)")


@main.command("add-user")
@click.argument("username")
@click.option("--role", required=True,
              type=click.Choice(["agent", "leader", "office", "admin", "auditor"]))
@click.option("--department")
@click.option("--name", "display_name", default="")
@click.password_option()
def add_user(username: str, role: str, department: str | None, display_name: str,
             password: str) -> None:
    """Create an account."""
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            accounts.create_user(s, username, password, role, display_name=display_name,
                                 department=department, now=engine.clock(),
                                 actor=_operator())
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"user {username} created")


@main.command("set-email")
@click.argument("username")
@click.argument("email", default="")
def set_email(username: str, email: str) -> None:
    """Set (or with no address, clear) where a user's warnings are mailed."""
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            accounts.set_email(s, username, email or None)
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"e-mail of {username} {'set to ' + email if email else 'cleared'}")


@main.command("reset-password")
@click.argument("username")
@click.password_option()
def reset_password(username: str, password: str) -> None:
    """Set a new password for an account (and unlock it)."""
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            accounts.set_password(s, username, password, actor=_operator())
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"password of {username} changed")


@main.command("issue-token")
@click.argument("username")
def issue_token(username: str) -> None:
    """Print a new API token for a user (replaces the user's previous token)."""
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            token = accounts.issue_token(s, username, actor=_operator())
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"API token of {username} (shown once; any earlier token no longer works):",
               err=True)
    click.echo(token)


@main.command("revoke-tokens")
@click.argument("username")
def revoke_tokens(username: str) -> None:
    """Make a user's API token stop working."""
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            had_token = accounts.revoke_tokens(s, username, actor=_operator())
    except EngineError as exc:
        _fail(exc)
        return
    click.echo(f"API token of {username} revoked" if had_token
               else f"{username} had no API token; nothing to revoke")


@main.command("grant-message")
@click.argument("username")
@click.argument("message")
@click.option("--revoke", is_flag=True, help="take the grant back")
def grant_message(username: str, message: str, revoke: bool) -> None:
    """Let an account (another system's) deliver a BPMN message to every case waiting for it."""
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            if revoke:
                changed = accounts.revoke_message(s, username, message, actor=_operator())
            else:
                changed = accounts.grant_message(s, username, message, now=engine.clock(),
                                                 actor=_operator())
    except EngineError as exc:
        _fail(exc)
        return
    verb = "may no longer" if revoke else "may"
    click.echo(f"{username} {verb} deliver message {message}" if changed
               else f"nothing changed: {username} {verb} already deliver message {message}"
               if not revoke else f"{username} had no grant for message {message}")


@main.command("deactivate-user")
@click.argument("username")
def deactivate_user(username: str) -> None:
    """Deactivate an account: its sessions and API token stop working at once."""
    _set_active(username, False)


@main.command("activate-user")
@click.argument("username")
def activate_user(username: str) -> None:
    """Activate a deactivated account again (unlocked; issue a new API token if needed)."""
    _set_active(username, True)


def _set_active(username: str, active: bool) -> None:
    from engine import accounts

    engine = _engine()
    try:
        with engine.db.transaction() as s:
            changed = accounts.set_active(s, username, active, actor=_operator())
    except EngineError as exc:
        _fail(exc)
        return
    state = "active" if active else "deactivated"
    click.echo(f"{username} is {state}" if changed else f"{username} was already {state}")


@main.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--workers", default=2, type=int, help="gunicorn worker processes")
@click.option("--threads", default=1, type=int, show_default=True,
              help="threads per worker; above 1, threaded workers that keep connections open")
@click.option("--with-worker", is_flag=True, help="Also run the timer worker beside the app.")
def serve(host: str, port: int, workers: int, threads: int, with_worker: bool) -> None:
    """Serve the web app with gunicorn (several workers share one database).

    By default each worker answers one request at a time and closes the connection after
    it, so every request goes to whichever worker is free. With `--threads` above 1 the
    workers are threaded (gunicorn's gthread) and keep connections open between requests
    (HTTP keep-alive): fewer connections, but a client's connection stays with one worker
    however busy it is, and threads share their worker's interpreter, so on a busy server
    the slowest answers get slower (measured with the bench's 20 agents: p95 of a
    completion 160-180 ms with 2 threads, 95-120 ms with single-threaded workers).
    """
    import atexit
    import subprocess

    from gunicorn.app.base import BaseApplication

    _metrics_dir()  # before anything imports prometheus-client: workers add up their metrics
    _check_port_free(host, port)
    if with_worker:
        timer_worker = subprocess.Popen([sys.executable, "-m", "webapp.cli", "worker"])  # noqa: S603
        atexit.register(timer_worker.terminate)

    from webapp import create_app

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            if threads > 1:
                self.cfg.set("worker_class", "gthread")
                self.cfg.set("threads", threads)
                self.cfg.set("keepalive", KEEPALIVE_SECONDS)
            # one JSON line per request comes from the app (webapp/observability.py)
            self.cfg.set("child_exit", _worker_exited)

        def load(self) -> Any:
            # In each worker, after it forked: the app, its engine and the pack's specs
            # live as long as the worker, so the collector stops scanning them (a full
            # collection would otherwise walk every object of the loaded app).
            import gc

            app = create_app()
            gc.collect()
            gc.freeze()
            # Cached cases are long-lived object trees: collect the young generation
            # less often and the whole heap rarely (about 5 % of a worker's CPU under the
            # bench's load went to the collector with the defaults, 700/10/10).
            gc.set_threshold(*GC_THRESHOLDS)
            return app

    click.echo(f"zerorun is serving at http://{host}:{port}/")
    click.echo(f"demo logins (password {DEMO_PASSWORD}): admin, auditor, office, "
               "agent_approval_bureau, leader_approval_bureau, agent_<department>, "
               "leader_<department> (list: zerorun users)")
    _Server().run()


# The workers' garbage-collector thresholds (generation 0 allocations, then collections of
# the younger generation before an older one is collected).
GC_THRESHOLDS = (10_000, 20, 20)

# Seconds an idle client connection stays open for its next request (gunicorn's default
# is 2; agents' systems and reverse proxies calling again within a few seconds reuse it).
KEEPALIVE_SECONDS = 5


def _metrics_dir() -> None:
    """Point prometheus-client at <instance>/metrics (emptied: a new server starts at zero)."""
    import os

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Config.from_env().instance_dir / "metrics")
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def _worker_exited(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
def _check_port_free(host: str, port: int) -> None:
    """Stop with a clear message when the address cannot be listened on."""
    import errno
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = (f"port {port} is already in use by another process (an earlier "
                      "`zerorun serve`, or its workers left running after their master was "
                      f"killed?). Find it with: ss -ltnp 'sport = :{port}'; under systemd "
                      "(deploy/zerorun-serve.service) stopping the unit ends the whole group")
        elif exc.errno == errno.EACCES:
            reason = f"permission denied: port {port} needs privileges; use a port above 1023"
        else:
            reason = exc.strerror or str(exc)
        click.echo(f"error: zerorun cannot listen on {host}:{port}: {reason}", err=True)
        sys.exit(1)


@main.command("users")
def users() -> None:
    """List the accounts."""
    from sqlalchemy import select

    from engine.store.models import User

    engine = _engine()
    with engine.db.reading() as s:
        for user in s.scalars(select(User).order_by(User.role, User.username)):
            click.echo(f"{user.username:<32} {user.role:<8} {user.department or '':<24} "
                       f"{user.display_name}")


def _load_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise click.BadParameter("the data must be a JSON object")
    return value


if __name__ == "__main__":
    main()
