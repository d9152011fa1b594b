"""Reference functions answer live commands and are served from the event on re-execution."""

from __future__ import annotations

import pytest

from engine.errors import WorkflowError
from engine.runtime import recorded


def functions(state: dict[str, int]):
    def limit(code: str) -> int:
        state["asked"] += 1
        return {"eia": 30}.get(code, 5) + state["shift"]

    return recorded.wrap({"limit": limit})


def test_a_command_records_answers_and_a_replay_is_served_them():
    state = {"asked": 0, "shift": 0}
    fns = functions(state)
    with recorded.record() as calls:
        assert fns["limit"]("eia") == 30
    assert calls == [{"function": "limit", "args": ["eia"], "kwargs": {}, "result": 30}]
    state["shift"] = 10  # the reference data changed since
    with recorded.served(calls):
        assert fns["limit"]("eia") == 30
    assert state["asked"] == 1  # the data was not asked again
    assert fns["limit"]("eia") == 40  # outside any command: today's data


def test_a_replay_asking_something_else_is_refused_with_both_questions():
    fns = functions({"asked": 0, "shift": 0})
    with recorded.record() as calls:
        fns["limit"]("eia")
    with pytest.raises(WorkflowError, match=r"called limit\('water',\).*answered limit\('eia',\)"):
        with recorded.served(calls):
            fns["limit"]("water")
    with pytest.raises(WorkflowError, match="answered 1 calls but the process asked only 0"):
        with recorded.served(calls):
            pass
    with pytest.raises(WorkflowError, match="never answered"):
        with recorded.served([]):
            fns["limit"]("eia")
