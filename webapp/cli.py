"""The `zerorun` command: set up, load processes, serve, run the timer worker, drive cases."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from agency import alerts, notify, service_engine, team
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
def export_case_command(case_id: int, output: str | None, form: str) -> None:
    """Write a case's history as one self-contained file, verifiable with verify-export."""
    from engine.audit.export import export_case

    try:
        document = export_case(_engine(), case_id)
        text = (json.dumps(document, ensure_ascii=False, indent=1) if form == "json"
                else _report_html(case_id))
    except EngineError as exc:
        _fail(exc)
        return
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"case {case_id}: {len(document['events'])} events written to {output}")
    else:
        click.echo(text)


def _report_html(case_id: int) -> str:
    """The auditors' printable report, rendered outside any request (in Chinese)."""
    from webapp import create_app
    from webapp.audit import report_html

    app = create_app()
    with app.test_request_context("/"):
        return report_html(case_id)


@main.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def verify_export_command(file: str) -> None:
    """Verify an exported case offline (JSON export or HTML report): chain, files, re-execution."""
    from engine.audit.export import read_export, verify_export

    try:
        document = read_export(Path(file).read_text(encoding="utf-8"))
    except EngineError as exc:
        _fail(exc)
        return
    result = verify_export(document, _engine().script_engine)
    if result.ok:
        click.echo(f"ok: {result.events} events verified")
        return
    click.echo(f"FAILED at event {result.first_bad_seq}: {result.reason}")
    sys.exit(1)


@main.command("worker")
@click.option("--once", is_flag=True, help="Fire what is due and exit.")
def worker(once: bool) -> None:
    """Fire due timers, send overdue warnings and mail; poll every ZERORUN_TIMER_POLL seconds."""
    engine = _engine()
    while True:
        fired = engine.fire_due_timers()
        if fired:
            click.echo(f"fired timers in {fired} case(s)")
        team.hand_over(engine)  # absences that began: their tasks to the substitutes
        warned = alerts.sweep(engine)
        if warned:
            click.echo(f"overdue warnings: {warned} sent")
        sent, failed = notify.deliver_outbox(engine)
        if sent or failed:
            click.echo(f"mail: {sent} sent, {failed} to retry")
        if once:
            return
        time.sleep(engine.config.timer_poll_seconds)


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


@main.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--workers", default=2, type=int, help="gunicorn worker processes")
@click.option("--with-worker", is_flag=True, help="Also run the timer worker beside the app.")
def serve(host: str, port: int, workers: int, with_worker: bool) -> None:
    """Serve the web app with gunicorn (several workers share one database)."""
    import atexit
    import subprocess

    from gunicorn.app.base import BaseApplication

    if with_worker:
        timer_worker = subprocess.Popen([sys.executable, "-m", "webapp.cli", "worker"])  # noqa: S603
        atexit.register(timer_worker.terminate)

    from webapp import create_app

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")

        def load(self) -> Any:
            return create_app()

    click.echo(f"zerorun is serving at http://{host}:{port}/")
    click.echo(f"demo logins (password {DEMO_PASSWORD}): admin, auditor, office, "
               "agent_approval_bureau, leader_approval_bureau, agent_<department>, "
               "leader_<department> (list: zerorun users)")
    _Server().run()


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
