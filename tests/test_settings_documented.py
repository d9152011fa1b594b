"""Every setting is declared once in engine/config.py and listed in the README from there."""

from __future__ import annotations

import re

from engine.config import ENVIRONMENT_ONLY, SETTINGS, settings_table
from tests.conftest import ROOT


def test_the_readme_lists_every_setting_as_declared():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert found, "README.md has no generated settings table"
    assert found.group(1) == settings_table(), (
        "the README's settings table is stale: paste `python -m engine.config` into it")
    for setting in [*SETTINGS.values(), *ENVIRONMENT_ONLY.values()]:
        assert f"`{setting.env}`" in found.group(1)


def test_the_code_reads_no_setting_that_is_not_declared():
    declared = {s.env for s in [*SETTINGS.values(), *ENVIRONMENT_ONLY.values()]}
    used: set[str] = set()
    for package in ("engine", "agency", "webapp"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            used |= set(re.findall(r"environ(?:\.get\(|\[)\"((?:ZERORUN|PROMETHEUS)_[A-Z_]+)\"",
                                   text))
    assert used <= declared, f"read but not declared in engine/config.py: {used - declared}"
    assert used, "the scan found nothing; the pattern is wrong"
