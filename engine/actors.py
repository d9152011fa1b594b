"""Who acts: every engine command takes an explicit actor."""

from __future__ import annotations

from dataclasses import dataclass

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


SYSTEM = Actor("system", "system")
