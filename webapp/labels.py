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
# The same phases in a word, for narrow columns (the inbox, a phone); the full name is its title.
PHASES_SHORT = {"1": _l("Phase 1 (land use and planning)"), "2": _l("Phase 2 (engineering permit)"),
                "3": _l("Phase 3 (construction permit)"), "4": _l("Phase 4 (completion)")}
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
          "task_reassigned": _l("Task handed to a substitute"),
          "comment_added": _l("Comment"), "deadlines_moved": _l("Deadline moved"),
          # the project unit's link, the office's records, the case moved to a new version
          "enterprise_link_created": _l("Enterprise link created"),
          "enterprise_link_revoked": _l("Enterprise link revoked"),
          "follow_up_recorded": _l("Follow-up recorded"),
          "consultation_recorded": _l("Consultation recorded"),
          "warning_sent": _l("Warning sent"), "case_migrated": _l("Moved to a new version"),
          "case_completed": _l("Case closed"), "message_received": _l("Message received"),
          "job_retried": _l("External job retried"),
          # the operations log
          "account_created": _l("Account created"),
          "account_activated": _l("Account activated"),
          "account_deactivated": _l("Account deactivated"),
          "account_locked": _l("Account locked after failed logins"),
          "account_role_changed": _l("Role changed"), "password_reset": _l("Password reset"),
          "api_token_issued": _l("API token issued"),
          "api_tokens_revoked": _l("API tokens revoked"),
          "process_version_saved": _l("Process version saved"),
          "process_version_published": _l("Process version published"),
          "process_published": _l("Process version published"),
          "schema_migrated": _l("Database schema migrated"),
          "calendar_changed": _l("Service calendar changed"),
          "project_list_uploaded": _l("Project list uploaded"),
          "project_list_discarded": _l("Project list discarded"),
          "project_list_imported": _l("Project list imported"),
          "webhook_subscribed": _l("Webhook subscribed"),
          "webhook_unsubscribed": _l("Webhook unsubscribed")}


def label(table: dict[str, Any], code: Any) -> str:
    """The label of a code, or the code itself."""
    if code is None:
        return ""
    return str(table.get(str(code), code))


def template_globals() -> dict[str, Any]:
    """The tables and the lookup, for templates."""
    return {"label": label, "ROLES": ROLES, "PHASES": PHASES, "PHASES_SHORT": PHASES_SHORT,
            "STAGES": STAGES,
            "TASK_STATES": TASK_STATES, "CASE_STATES": CASE_STATES, "DUE_STATES": DUE_STATES,
            "EVENTS": EVENTS, "ops_field": ops_field, "service_today": service_today,
            "joined": joined,
            "element_names": element_names}


def service_today() -> str:
    """Today in the service's calendar (ISO), by the engine's clock."""
    from webapp import get_engine

    return get_engine().clock().astimezone(SERVICE_TZ).date().isoformat()


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


def _names(kind: str) -> dict[str, str]:
    """Code -> name of people, departments or processes, read once per request."""
    from flask import g
    from sqlalchemy import select

    from agency.reference import reference_of
    from engine.store.models import ProcessVersion, User
    from webapp import get_engine

    cache: dict[str, dict[str, str]] = g.setdefault("_i17_names", {})
    if kind not in cache:
        engine = get_engine()
        with engine.db.reading() as s:
            if kind == "person":
                cache[kind] = {u: n or u for u, n in s.execute(
                    select(User.username, User.display_name)).all()}
            elif kind == "process":
                cache[kind] = {p: n or p for p, n in s.execute(
                    select(ProcessVersion.process_id, ProcessVersion.name)
                    .order_by(ProcessVersion.number)).all()}
            else:
                english = _english()
                cache[kind] = {code: str(d.get("name_en") if english and d.get("name_en")
                                         else d.get("name", code))
                               for code, d in reference_of(engine).departments.items()}
    return cache[kind]


def _english() -> bool:
    from flask_babel import get_locale

    locale = get_locale()
    return locale is not None and locale.language == "en"


def person(username: Any) -> str:
    """A person's display name instead of the username ("system" is the service itself)."""
    if not username:
        return ""
    if username == "system":
        return str(_l("the system"))
    if str(username).startswith("enterprise:"):  # the project unit, acting on its own page
        return str(_l("the project unit"))
    return _names("person").get(str(username), str(username))


def joined(items: Any) -> str:
    """Items listed as the user's language lists them (、 in Chinese, a comma in English)."""
    return (", " if _english() else "、").join(str(i) for i in items)


def department(code: Any) -> str:
    """A department's name in the user's language instead of its code."""
    if not code:
        return ""
    return _names("department").get(str(code), str(code))


def process(process_id: Any) -> str:
    """A process's name instead of its id."""
    if not process_id:
        return ""
    if _english():
        from webapp.pack_i18n import process_title

        translated = process_title(str(process_id))
        if translated:
            return translated
    return _names("process").get(str(process_id), str(process_id))


OPS_KEYS = {"username": _l("Person"), "role": _l("Role"), "department": _l("Department"),
            "process_id": _l("Process"), "version": _l("Version"), "actor": _l("By"),
            "had_token": _l("Had a token"), "display_name": _l("Name"),
            "case_ids": _l("Cases"), "project_codes": _l("Project codes"),
            "source": _l("Source"), "filename": _l("File"), "import_id": _l("Import"),
            "imported": _l("Imported"), "dropped": _l("Dropped"), "rows": _l("Rows"),
            "rows_with_errors": _l("Rows with errors"), "status": _l("Status"),
            "comment": _l("Comment"), "with": _l("Published with"), "from": _l("From"),
            "to": _l("To"), "day": _l("Day"), "before": _l("Before"), "after": _l("After"),
            "note": _l("Note"), "until": _l("Until"), "address": _l("Address"),
            "subscription_id": _l("Subscription"), "url": _l("Address"),
            "event_types": _l("Events"), "link_id": _l("Link"),
            "recipient": _l("Recipient")}
# Values of the operations log that are codes of a closed set.
OPS_VALUES = {"status": {"draft": _l("Draft"), "published": _l("Published"),
                         "retired": _l("Retired")},
              "after": {"workday": _l("Working day"), "holiday": _l("Holiday"),
                        "normal": _l("As the calendar says")},
              "before": {"workday": _l("Working day"), "holiday": _l("Holiday"),
                         "normal": _l("As the calendar says")}}


def ops_field(key: str, value: Any) -> tuple[str, str]:
    """An operations log entry's field as people read it: a label and a named value."""
    shown = "—" if value is None else value
    if key in ("username", "actor", "created_by", "author"):
        shown = person(value)
    elif key == "department" or key.endswith("_department"):
        shown = department(value)
    elif key in ("process_id", "called_process"):
        shown = process(value)
    elif key == "role":
        shown = label(ROLES, value)
    elif key == "source":
        from flask_babel import gettext

        from agency.intake import SOURCES

        shown = gettext(SOURCES[value]) if value in SOURCES else value
    elif key in OPS_VALUES and isinstance(value, str):
        shown = label(OPS_VALUES[key], value)
    elif key == "case_ids" and isinstance(value, list):
        shown = (", " if _english() else "、").join(f"#{v}" for v in value)
    elif key == "with" and value:
        shown = process(value)
    elif isinstance(value, list):
        shown = (", " if _english() else "、").join(process(v) if str(v) in _names("process") else
                         department(v) if str(v) in _names("department") else str(v)
                         for v in value)
    elif isinstance(value, bool):
        shown = str(_l("yes") if value else _l("no"))
    return str(OPS_KEYS.get(key, key)), str(shown)


def element_names(diagrams: dict[str, str]) -> dict[str, str]:
    """Element id -> name over BPMN diagrams, to name elements instead of showing ids."""
    from engine.errors import EngineError
    from engine.pack.xml import parse_xml

    names: dict[str, str] = {}
    for pid, xml in diagrams.items():
        try:
            root = parse_xml(xml.encode("utf-8"), f"{pid}.bpmn")
        except EngineError:
            continue
        for element in root.iter():
            if element.get("id") and element.get("name"):
                names.setdefault(str(element.get("id")), " ".join(str(element.get("name"))
                                                                  .split()))
    return names
