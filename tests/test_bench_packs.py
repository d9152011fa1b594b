"""The benchmark's own processes start as the office starts them (`make bench` must run)."""

from __future__ import annotations

from pathlib import Path

from bench import messages


def test_the_message_bench_starts_its_cases_and_correlates(tmp_path: Path) -> None:
    figures = messages.measure(tmp_path, cases=5)
    assert figures["per_s"] > 0 and figures["ms"] > 0


def test_the_inbox_bench_fills_cases_after_those_set_up_started(tmp_path: Path) -> None:
    from bench import inbox

    figures = inbox.measure(tmp_path, cases=20, repeat=1)
    assert figures["plain"] > 0 and figures["dashboard"] > 0 and figures["counts"] > 0
