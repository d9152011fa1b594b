"""Who acts: every engine command takes an explicit actor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("agent", "leader", "office", "admin", "auditor", "system")
# Who may start a case of a process marked startable (auditors only read).
STARTERS = ("agent", "leader", "office", "admin")


@dataclass(frozen=True)
class Actor:
    """A user (or the system) performing a command."""

    username: str
    role: str
    department: str | None = None

    @property
    def is_system(self) -> bool:
        return self.role == "system"

    def may_work_on(self, department: str | None) -> bool:
        """Whether this actor may claim or complete a task owned by `department`."""
        if self.is_system:
            return True
        # "external": a participant outside the service acting through a link (a project
        # unit), bound to the department code its lane names.
        if self.role not in ("agent", "leader", "office", "external"):
            return False
        return department is not None and department == self.department

    def may_see_task(self, department: str | None) -> bool:
        """Whether this actor may open a task owned by `department` (others get "not found",
        so that a task id tells an outsider nothing)."""
        return self.may_work_on(department) or self.role in ("office", "admin", "auditor")


@dataclass(frozen=True)
class Proxy:
    """An external lane whose participant an inside department acts for: that department's
    agents may complete the lane's tasks on the participant's behalf (an agency service's
    mandate). The service built on the engine declares its proxies; the engine checks them."""

    lane: str  # the department code of the external lane, e.g. "project_unit"
    department: str  # the department whose accounts act for the lane's participant
    # How the participant acting by itself is named in a case ({case_id} filled in).
    participant: str = "external:{case_id}"
    roles: tuple[str, ...] = ("agent",)

    def allows(self, actor: Actor) -> bool:
        """Whether this actor may record the participant's steps for it."""
        return actor.role in self.roles and actor.department == self.department

    def participant_of(self, case_id: int) -> str:
        """The participant's actor name in one case (whom a proxied step was done for)."""
        return self.participant.format(case_id=case_id)


@dataclass(frozen=True)
class OnBehalf:
    """What a proxied completion records beside the task's own form: how the participant
    confirmed the step (the service's confirmation form, already validated by it) and the
    evidence files (name, content) stored with the completion in the same transaction."""

    confirmation: Mapping[str, Any]
    evidence: tuple[tuple[str, bytes], ...] = field(default=())


SYSTEM = Actor("system", "system")
