"""The MIWG reference diagrams: each loads, or is refused with a message naming file and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidProcess
from engine.pack.loader import PackParser, SourceFile

# The interchange corpus, kept with the tests (see its README for origin and licence).
MIWG = Path(__file__).resolve().parent / "fixtures" / "miwg"
FILES = sorted(MIWG.glob("*.bpmn"))


def test_the_whole_corpus_is_there():
    assert len(FILES) == 21


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_reference_diagrams_load_or_are_refused_clearly(path):
    parser = PackParser({"dept_a": "dept_a"}, [])
    try:
        parser.parse([SourceFile(path.name, path.read_bytes())])
    except InvalidProcess as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == path.name
            assert problem.message
            assert problem.element or problem.line or "Data Store" in problem.message


def test_a_diagram_with_foreign_expressions_is_refused_naming_the_file():
    path = MIWG / "C.1.0.bpmn"
    with pytest.raises(InvalidProcess) as info:
        PackParser({}, []).parse([SourceFile(path.name, path.read_bytes())])
    assert any("C.1.0.bpmn" in str(p) for p in info.value.problems)
