"""How long a task has waited. Its overdue level has one rule: `agency.oversight.due_level`."""

from __future__ import annotations

from datetime import datetime


def age_text(created_at: datetime, now: datetime) -> tuple[int, int]:
    """(days, hours) since a task was created."""
    seconds = max(0, int((now - created_at).total_seconds()))
    return seconds // 86400, (seconds % 86400) // 3600
