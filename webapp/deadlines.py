"""The overdue state of a task: one rule for inboxes, task and case pages."""

from __future__ import annotations

from datetime import datetime, timedelta

WARNING_SHARE = 0.2  # yellow within the last 20% of an item's committed time limit
DEFAULT_WARNING = timedelta(days=2)  # ...or within 2 days when the task has no time limit


def warning_window(time_limit_days: int | float | None) -> timedelta:
    """How long before its due date a task turns yellow."""
    if time_limit_days:
        return timedelta(days=float(time_limit_days) * WARNING_SHARE)
    return DEFAULT_WARNING


def due_state(due_at: datetime | None, now: datetime,
              time_limit_days: int | float | None = None) -> str | None:
    """"red" past due, "yellow" within the warning window, "ok" otherwise; None if no due date."""
    if due_at is None:
        return None
    if now > due_at:
        return "red"
    if due_at - now <= warning_window(time_limit_days):
        return "yellow"
    return "ok"


def age_text(created_at: datetime, now: datetime) -> tuple[int, int]:
    """(days, hours) since a task was created."""
    seconds = max(0, int((now - created_at).total_seconds()))
    return seconds // 86400, (seconds % 86400) // 3600
