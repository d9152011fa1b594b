"""The engine's front door: commands (one transaction each) and read queries over cases.

`store` is how a case is kept (live workflows, snapshots, the unit of work, the task index
and timers brought in line after every change); `commands`, `timers` and `migrating` change
cases; `queries` and `verification` only read. `Engine` combines them; callers (the web app,
the CLI, the agency service) use it and the views it returns, never the store directly.
"""

from __future__ import annotations

from engine.cases.commands import Commands
from engine.cases.deadline_commands import DeadlineCommands
from engine.cases.instrument import instrument
from engine.cases.interactions import (
    AmbiguousMessage,
    Delivery,
    InteractionCommands,
    JobView,
    NobodyWaits,
)
from engine.cases.migrating import MigrationCommands
from engine.cases.search import CaseQuery, CaseSearch, TimerView
from engine.cases.timers import TimerCommands
from engine.cases.views import (
    TASK_ORDERS,
    WORKFLOW_EVENTS,
    CaseView,
    LoadResult,
    StartForm,
    TaskCounts,
    TaskDetail,
    TaskView,
    Verification,
    parse_due,
    plain_data,
)
from engine.cases.workflow import apply_event

__all__ = ["AmbiguousMessage", "CaseQuery", "Delivery", "JobView", "NobodyWaits", "TimerView",
           "TASK_ORDERS", "WORKFLOW_EVENTS", "CaseView", "Engine", "LoadResult", "StartForm",
           "TaskCounts", "TaskDetail", "TaskView", "Verification", "apply_event", "parse_due",
           "plain_data"]


@instrument
class Engine(InteractionCommands, Commands, DeadlineCommands, TimerCommands, MigrationCommands,
             CaseSearch):
    """Runs cases of stored process versions; the only writer of cases, tasks and events."""
