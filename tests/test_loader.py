"""Loading process packs: validation with file, line and element; immutable versions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import InvalidProcess
from engine.pack.loader import SourceFile, read_pack_dir
from tests.conftest import FIXTURES

MINI = FIXTURES / "mini"


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    target = tmp_path / "pack"
    shutil.copytree(MINI, target)
    return target


def edit(pack: Path, old: str, new: str) -> None:
    path = pack / "mini.bpmn"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems_of(engine, pack: Path) -> list:
    with pytest.raises(InvalidProcess) as info:
        engine.parse_pack(read_pack_dir(pack))
    return info.value.problems


def test_loading_the_same_files_twice_creates_nothing(make_engine, sqlite_url, pack):
    engine = make_engine(sqlite_url, pack, load=False)
    first = engine.load_processes(pack)
    assert first.created == [("mini", 1)]
    again = engine.load_processes(pack)
    assert (again.created, again.unchanged) == ([], [("mini", 1)])


def test_changing_a_form_makes_a_new_version(make_engine, sqlite_url, pack):
    engine = make_engine(sqlite_url, pack)
    form = pack / "forms" / "review.schema.json"
    form.write_text(form.read_text().replace('"同意"', '"批准"'), encoding="utf-8")
    assert engine.load_processes(pack).created == [("mini", 2)]


def test_malformed_xml_names_file_and_line(make_engine, sqlite_url, pack):
    engine = make_engine(sqlite_url, pack, load=False)
    edit(pack, '<bpmn:endEvent id="end"/>', '<bpmn:endEvent id="end">')
    [problem] = problems_of(engine, pack)
    assert problem.file == "mini.bpmn" and problem.line is not None
    assert "not well-formed" in problem.message


def test_schema_errors_name_the_element(make_engine, sqlite_url, pack):
    engine = make_engine(sqlite_url, pack, load=False)
    edit(pack, '<bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="compute"/>',
         '<bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="compute" bogus="1"/>')
    problems = problems_of(engine, pack)
    assert problems[0].file == "mini.bpmn"
    assert problems[0].element == "f2"
    assert "bogus" in problems[0].message


@pytest.mark.parametrize("old, new, element, words", [
    ("share = total // divisor", "share = __import__('os').getcwd()", "compute", "_"),
    ('value="due"', 'value="open(\'/etc/passwd\').read()"', "fill", "open"),
    ('"P3D"', '"P3 days"', "review_late", "ISO 8601"),
    ('<spiffworkflow:property name="formJsonSchemaFilename" value="review.schema.json"/>',
     "", "review", "no form"),
    ('value="review.schema.json"', 'value="missing.schema.json"', "review", "does not exist"),
    ('<bpmn:flowNodeRef>review</bpmn:flowNodeRef>', "", "review", "no owner"),
    ('value="review.schema.json"/>', 'value="review.schema.json"/>'
     '<spiffworkflow:property name="notify" value="leader,mayor"/>', "review", "'mayor'"),
])
def test_refusals_name_the_element_and_the_reason(make_engine, sqlite_url, pack, old, new,
                                                  element, words):
    engine = make_engine(sqlite_url, pack, load=False)
    edit(pack, old, new)
    problems = problems_of(engine, pack)
    assert any(p.element == element and words in p.message and p.file == "mini.bpmn"
               and p.line for p in problems), problems


def test_an_invalid_pack_stores_nothing(make_engine, sqlite_url, pack):
    engine = make_engine(sqlite_url, pack, load=False)
    edit(pack, "share = total // divisor", "share = ().__class__")
    with pytest.raises(InvalidProcess):
        engine.load_processes(pack)
    assert engine.load_processes(MINI).created == [("mini", 1)]


@pytest.mark.parametrize("payload, words", [
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
     '"&lol;&lol;&lol;&lol;">]><bpmn:definitions xmlns:bpmn='
     '"http://www.omg.org/spec/BPMN/20100524/MODEL">&lol2;</bpmn:definitions>', "DOCTYPE"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&xxe;'
     "</bpmn:definitions>", "DOCTYPE"),
    ("<a>" * 10 + "x" * (6 * 1024 * 1024) + "</a>" * 10, "at most"),
])
def test_xml_attacks_are_refused(make_engine, sqlite_url, payload, words):
    engine = make_engine(sqlite_url, MINI, load=False)
    with pytest.raises(InvalidProcess) as info:
        engine.parse_pack([SourceFile("evil.bpmn", payload.encode())])
    assert words in info.value.message
    assert "root:" not in info.value.message


def test_engine_imports_without_flask():
    # Importing every engine module at run time, beside the static walk of test_architecture.
    code = ("import sys, pkgutil, importlib, engine; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(engine.__path__, "
            "'engine.') if '.migrations' not in m.name]; "
            "assert 'flask' not in sys.modules, 'engine imported flask'; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('agency', 'webapp')], "
            "'engine imported the service or the web app'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_start_event_leading_nowhere_is_refused(make_engine, sqlite_url, pack):
    # A start event without its outgoing flow used to load and then stall every case.
    engine = make_engine(sqlite_url, pack, load=False)
    edit(pack, '<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill"/>', "")
    found = {(p.element, p.message.split(" has ")[0]) for p in problems_of(engine, pack)}
    assert ("start", "startEvent") in found
    assert ("fill", "userTask") in found  # and the task it fed can no longer be reached


def test_an_unreachable_task_is_named(make_engine, sqlite_url, pack):
    engine = make_engine(sqlite_url, pack, load=False)
    edit(pack, '<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="review"/>',
         '<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="end"/>')
    [problem] = problems_of(engine, pack)
    assert problem.element == "review" and problem.element_name == "审核"
    assert "can never reach it" in problem.message and problem.line is not None
