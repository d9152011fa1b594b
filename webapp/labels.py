"""Names of codes (roles, phases, stages, states, events) in the user's language."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l

from engine.runtime.clock import SERVICE_TZ

ROLES = {"agent": _l("Agent"), "leader": _l("Responsible leader"),
         "office": _l("Leading group office"), "admin": _l("Administrator"),
         "auditor": _l("Auditor")}
PHASES = {"1": _l("Phase 1: project approval, land use and planning"),
          "2": _l("Phase 2: construction engineering permit"),
          "3": _l("Phase 3: construction permit"),
          "4": _l("Phase 4: completion acceptance")}
STAGES = {"intake": _l("Intake"), "preparation": _l("Material preparation"),
          "handling": _l("Handling"), "acceleration": _l("Acceleration"),
          "closing": _l("Closing"), "phase": _l("Phase"), "policy": _l("Policy"),
          "follow_up": _l("Follow-up"), "meeting": _l("Joint meeting"),
          "safeguard": _l("Safeguards")}
TASK_STATES = {"ready": _l("Open"), "completed": _l("Completed"),
               "cancelled": _l("Withdrawn")}
CASE_STATES = {"running": _l("In progress"), "completed": _l("Closed"),
               "terminated": _l("Terminated")}
DUE_STATES = {"ok": _l("On time"), "yellow": _l("Due soon"), "red": _l("Overdue")}
EVENTS = {"case_started": _l("Case started"), "task_completed": _l("Task completed"),
          "timer_fired": _l("Timer fired"), "case_terminated": _l("Case terminated"),
          "task_claimed": _l("Task claimed"), "task_released": _l("Task released"),
          "task_draft_saved": _l("Draft saved"), "attachment_added": _l("File attached"),
          "comment_added": _l("Comment")}


def label(table: dict[str, Any], code: Any) -> str:
    """The label of a code, or the code itself."""
    if code is None:
        return ""
    return str(table.get(str(code), code))


def template_globals() -> dict[str, Any]:
    """The tables and the lookup, for templates."""
    return {"label": label, "ROLES": ROLES, "PHASES": PHASES, "STAGES": STAGES,
            "TASK_STATES": TASK_STATES, "CASE_STATES": CASE_STATES, "DUE_STATES": DUE_STATES,
            "EVENTS": EVENTS}


def local_time(moment: datetime | None, seconds: bool = False) -> str:
    """A stored (UTC) time as the service reads it: Beijing time, to the minute."""
    if moment is None:
        return ""
    return moment.astimezone(SERVICE_TZ).strftime("%Y-%m-%d %H:%M:%S" if seconds
                                                  else "%Y-%m-%d %H:%M")


def local_date(moment: datetime | date | None) -> str:
    """The service's calendar day of a stored time (a date is shown as it is)."""
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        moment = moment.astimezone(SERVICE_TZ).date()
    return moment.isoformat()
