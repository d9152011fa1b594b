"""The `zerorun` command drives a case headless."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import FIXTURES
from webapp.cli import main


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ZERORUN_PROCESSES", str(FIXTURES / "mini"))
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init-db")
    from engine.cases import Engine
    from engine.config import Config
    from engine.store.models import Department

    engine = Engine(Config.from_env(), functions={})
    with engine.db.transaction() as s:
        s.add(Department(code="dept_a", name="部门A", name_en="", leader="", agent="",
                         position=1))
        s.add(Department(code="dept_b", name="部门B", name_en="", leader="", agent="",
                         position=2))
    engine.db.dispose()
    return run


def test_a_case_is_driven_from_the_command_line(cli):
    assert "1 new, 0 unchanged" in cli("load-processes")
    assert "0 new, 1 unchanged" in cli("load-processes")
    started = json.loads(cli("start-case", "mini", "--data", '{"due": null}'))
    assert started["status"] == "running"
    [line] = cli("tasks", "--department", "dept_a", "--json").splitlines()
    task = json.loads(line)
    assert (task["task"], task["department"]) == ("fill", "dept_a")
    out = cli("complete-task", task["id"], "--data", '{"total": "x"}', "--as", "a",
              "--department", "dept_a", code=1)
    assert "field" in out or "need attention" in out
    cli("complete-task", task["id"], "--data", '{"total": 4, "divisor": 2}', "--as", "a",
        "--department", "dept_a")
    out = cli("complete-task", task["id"], "--data", '{"total": 4, "divisor": 2}', "--as",
              "a", "--department", "dept_a", code=1)
    assert "already completed" in out
    assert "1 case(s) checked, 0 failed" in cli("verify-audit")


def test_bad_json_is_a_clear_error(cli):
    runner = CliRunner()
    result = runner.invoke(main, ["start-case", "mini", "--data", "{nope"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_an_exported_case_verifies_offline_and_tampering_is_caught(cli, tmp_path):
    cli("load-processes")
    case = json.loads(cli("start-case", "mini", "--data", '{"due": null}'))["case"]
    [line] = cli("tasks", "--json").splitlines()
    cli("complete-task", json.loads(line)["id"], "--data", '{"total": 9, "divisor": 3}')
    target = tmp_path / "case.json"
    cli("export-case", str(case), "-o", str(target))
    assert "ok: 2 events verified" in cli("verify-export", str(target))
    document = json.loads(target.read_text(encoding="utf-8"))
    document["events"][1]["data"]["data"]["total"] = 90
    target.write_text(json.dumps(document), encoding="utf-8")
    assert "FAILED at event 2" in cli("verify-export", str(target), code=1)


def test_the_printable_report_is_written_and_verifies_offline(cli, tmp_path):
    cli("load-processes")
    case = json.loads(cli("start-case", "mini", "--data", '{"due": null}'))["case"]
    target = tmp_path / "case.html"
    assert "1 events written" in cli("export-case", str(case), "--format", "html",
                                    "-o", str(target))
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "小流程" in page
    assert "ok: 1 events verified" in cli("verify-export", str(target))
