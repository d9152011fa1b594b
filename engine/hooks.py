"""Where the engine calls out to the services built on it, instead of importing them.

A service registers callables on an engine's `Hooks`; the engine calls them inside the
command's transaction, so whatever a hook writes commits or rolls back with the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.store.models import Case, HumanTask


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


@dataclass(frozen=True)
class CaseChanged:
    """A case whose workflow a command has just advanced (task index and timers in line)."""

    case_id: int
    case_title: str
    now: datetime


CaseChangedHook = Callable[["Session", CaseChanged], None]


@dataclass(frozen=True)
class DataSubmitted:
    """Data that passed its form: the start data of a new case (`spec_name` None) or a
    task's submission. A hook may refuse it (raise InvalidData) or record it in the case."""

    case: Case
    spec_name: str | None
    data: dict[str, Any]


DataSubmittedHook = Callable[["Session", DataSubmitted], None]


@dataclass
class Hooks:
    """Callables the engine invokes at fixed points of a command."""

    task_raised: list[TaskRaisedHook] = field(default_factory=list)
    case_changed: list[CaseChangedHook] = field(default_factory=list)
    data_submitted: list[DataSubmittedHook] = field(default_factory=list)
