"""Where the engine calls out to the services built on it, instead of importing them.

A service registers callables on an engine's `Hooks`; the engine calls them inside the
command's transaction, so whatever a hook writes commits or rolls back with the command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.actors import Actor
    from engine.store.models import Case, Event, HumanTask


@dataclass(frozen=True)


class TaskRaised:
    """A new human task whose diagram names people to tell (the `notify` property)."""

    case_id: int
    case_title: str
    task: HumanTask
    item_department: str | None
    targets: tuple[str, ...]
    now: datetime


TaskRaisedHook = Callable[["Session", TaskRaised], None]
# A new task index row before it is written (in the command's transaction, no statement of
# its own): a service may fill what it derives from the row, e.g. its `warn_at` moment.
TaskIndexedHook = Callable[["HumanTask"], None]
# Called with a new audit seal's document (the JSON auditors keep), in the sealing transaction.
SealMadeHook = Callable[["Session", dict[str, Any]], None]


@dataclass(frozen=True)


class CommandDone:
    """A command of the engine's front door ended (after its commit or rollback)."""

    command: str
    seconds: float
    outcome: str  # "ok", or the class name of the error that rolled it back
    case_id: int | None = None
    task_id: str | None = None
    actor: str | None = None


CommandDoneHook = Callable[[CommandDone], None]
# True: a running case came from the in-memory cache; False: it was rebuilt from the store.
CaseCacheHook = Callable[[bool], None]
# Every event appended to a case's chain, with the case as the command left it
# (e.g. webhook deliveries written to an outbox in the same transaction).
CaseEventHook = Callable[["Session", "Case", "Event"], None]


@dataclass(frozen=True)
class CaseChanged:
    """A case whose workflow a command has just advanced (task index and timers in line)."""

    case_id: int
    case_title: str
    now: datetime
    # The case's open (ready) task rows after the command, as the session holds them: a hook
    # reads them here instead of querying (a query would also flush the command half way).
    open_tasks: tuple[HumanTask, ...] = ()


CaseChangedHook = Callable[["Session", CaseChanged], None]


@dataclass(frozen=True)
class DataSubmitted:
    """Data that passed its form: the start data of a new case (`spec_name` None) or a
    task's submission. A hook may refuse it (raise InvalidData) or record it in the case."""

    case: Case
    spec_name: str | None
    data: dict[str, Any]
    # Who submitted it: a refusal tells them only what they may read.
    actor: Actor | None = None


DataSubmittedHook = Callable[["Session", DataSubmitted], None]
# The departments a service says take part in a case besides those holding its tasks (the
# agency: every department with an item in it): their agents and leaders read the case.
CaseDepartmentsHook = Callable[["Case"], "Iterable[str]"]


@dataclass


class Hooks:
    """Callables the engine invokes at fixed points of a command."""

    task_raised: list[TaskRaisedHook] = field(default_factory=list)
    task_indexed: list[TaskIndexedHook] = field(default_factory=list)
    seal_made: list[SealMadeHook] = field(default_factory=list)
    # Instrumentation (metrics, logs): called outside the command's transaction.
    command_done: list[CommandDoneHook] = field(default_factory=list)
    case_cache: list[CaseCacheHook] = field(default_factory=list)
    case_event: list[CaseEventHook] = field(default_factory=list)
    case_changed: list[CaseChangedHook] = field(default_factory=list)
    data_submitted: list[DataSubmittedHook] = field(default_factory=list)
    case_departments: list[CaseDepartmentsHook] = field(default_factory=list)
