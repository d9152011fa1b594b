"""The benchmark's own processes start as the office starts them (`make bench` must run)."""

from __future__ import annotations

from pathlib import Path

from bench import messages


def test_the_message_bench_starts_its_cases_and_correlates(tmp_path: Path) -> None:
    figures = messages.measure(tmp_path, cases=5)
    assert figures["per_s"] > 0 and figures["ms"] > 0
