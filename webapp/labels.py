"""Names of codes (roles, phases, stages, states, events) in the user's language."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

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
          "task_reassigned": _l("Task handed to a substitute")}


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
