"""The engine's errors: one small hierarchy, each carrying a message, a title and a status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def N_(message: str) -> str:
    """Mark a message for extraction into the web app's catalogues (`make translations`);
    the web app translates it where it shows it."""
    return message


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    title = "Error"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Describe the error as JSON-ready data."""
        return {"error": type(self).__name__, "title": self.title, "message": self.message,
                **self.details}


class NotFound(EngineError):
    """A referenced case, task, process or user does not exist."""

    title = "Not found"
    status = 404


class CaseNotFound(NotFound):
    """The case does not exist."""


class TaskNotFound(NotFound):
    """The task does not exist."""


class ProcessNotFound(NotFound):
    """No process (or no published version of it) has that id."""


class Unavailable(EngineError):
    """A part of the product needs a system component this machine lacks."""

    title = "Not available here"
    status = 503


class Forbidden(EngineError):
    """The actor may not do this (wrong role or wrong department)."""

    title = "Forbidden"
    status = 403


class Conflict(EngineError):
    """The command lost a race or was based on a stale view; nothing was changed."""

    title = "Conflict"
    status = 409


class TaskNotReady(Conflict):
    """The task is no longer ready (completed, cancelled, or claimed by someone else)."""


class CaseNotRunning(Conflict):
    """The case has already finished or been terminated."""


@dataclass(frozen=True)
class FieldError:
    """A problem with one field of submitted data."""

    field: str
    message: str


class InvalidData(EngineError):
    """Submitted data does not satisfy the task's form."""

    title = "Invalid data"
    status = 422

    def __init__(self, message: str, errors: list[FieldError]) -> None:
        super().__init__(message, errors=[{"field": e.field, "message": e.message} for e in errors])
        self.errors = errors


@dataclass(frozen=True)
class Problem:
    """One reason a process definition was refused."""

    message: str
    file: str | None = None
    line: int | None = None
    element: str | None = None
    element_name: str | None = None

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        element = f" [{self.element}{' ' + self.element_name if self.element_name else ''}]" \
            if self.element else ""
        return f"{where}{element}: {self.message}" if where or element else self.message


class InvalidProcess(EngineError):
    """A process definition cannot be loaded; every problem names file, line and element."""

    title = "Invalid process definition"
    status = 422

    def __init__(self, problems: list[Problem]) -> None:
        message = "; ".join(str(p) for p in problems[:5])
        if len(problems) > 5:
            message += f"; and {len(problems) - 5} more"
        super().__init__(message, problems=[p.__dict__ for p in problems])
        self.problems = problems

    @property
    def file(self) -> str | None:
        return self.problems[0].file if self.problems else None

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None

    @property
    def element(self) -> str | None:
        return self.problems[0].element if self.problems else None


class WorkflowError(EngineError):
    """Running the process failed (a script or condition raised); the command was rolled back."""

    title = "Process error"
    status = 422


@dataclass
class ChainBreak:
    """Where a case's audit chain stops verifying."""

    seq: int
    reason: str
    event_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
