"""Language: Chinese by default, English on request; engine messages in the user's language."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Blueprint, Flask, redirect, request, session, url_for
from flask_babel import Babel, get_locale, lazy_gettext
from flask_babel import gettext as _

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DEFAULT_LOCALE = "zh_Hans_CN"
LANGUAGES = {"zh": DEFAULT_LOCALE, "en": "en"}
babel = Babel()
bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    """The language chosen in the session, or Chinese."""
    chosen = session.get("lang")
    return LANGUAGES.get(chosen, DEFAULT_LOCALE) if isinstance(chosen, str) else DEFAULT_LOCALE


def current_language() -> str:
    """"zh" or "en": the language of the page being rendered."""
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh"


def init_app(app: Flask) -> None:
    """Compile the catalogues if needed, select the locale per request, add the switch."""
    compile_catalogues()
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
    app.register_blueprint(bp)
    app.jinja_env.globals.update(current_language=current_language,
                                 engine_message=engine_message)


@bp.route("/lang/<any(zh, en):code>")
def switch(code: str) -> Any:
    """Remember the chosen language and go back to the page the user was on."""
    session["lang"] = code
    target = request.args.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("agent.inbox")
    return redirect(target)


def compile_catalogues(directory: Path = TRANSLATIONS) -> None:
    """Write each catalogue's .mo file when it is missing or older than its .po file
    (`make setup` compiles them with pybabel; this keeps a fresh checkout working)."""
    for po_path in directory.glob("*/LC_MESSAGES/messages.po"):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as handle:
            catalog = read_po(handle, locale=po_path.parent.parent.name)
        temp = mo_path.with_suffix(f".{os.getpid()}.tmp")
        with temp.open("wb") as handle:
            write_mo(handle, catalog)
        temp.replace(mo_path)


def _person(username: str) -> str:
    """A username in an engine message as the person's name."""
    from webapp.labels import person

    return person(username)


# Messages the engine raises (English), with their translations. Each pattern matches a
# whole message; its named groups fill the translated text.
_Translate = Callable[[dict[str, str]], str]
_ENGINE_MESSAGES: list[tuple[re.Pattern[str], _Translate]] = [(re.compile(p), f) for p, f in [
    (r"this task was already completed by (?P<who>.+) at (?P<when>.+) \((?P<zone>[^()]+)\); "
     r"nothing was changed",
     lambda m: _("This task was already completed by %(who)s at %(when)s; nothing was "
                 "changed.", who=_person(m["who"]), when=m["when"])),
    (r"this task is no longer open \((?P<state>\w+)\); nothing was changed",
     lambda m: _("This task is no longer open (%(state)s); nothing was changed.", **m)),
    (r"this task belongs to another department(; only its agents may claim or complete it)?",
     lambda m: _("This task belongs to another department; only its agents may open, "
                 "claim or complete it.")),
    (r"this task changed since you opened it.*",
     lambda m: _("This task changed since you opened it (claimed, released or saved by "
                 "someone else); reload it and try again.")),
    (r"this task is (already )?claimed by (?P<who>.+)",
     lambda m: _("This task is claimed by %(who)s.", who=_person(m["who"]))),
    (r"this task is not claimed", lambda m: _("This task is not claimed.")),
    (r"only (?P<who>.+) or the department's leader may release this task",
     lambda m: _("Only %(who)s or the department's leader may release this task.",
                 who=_person(m["who"]))),
    (r"wrong user name or password", lambda m: _("Wrong user name or password.")),
    (r"wrong user name or password \(after repeated failures an account is locked for a few "
     r"minutes\)", lambda m: _("Wrong user name or password (after repeated failures an "
                               "account is locked for a few minutes).")),
    (r"this account has been deactivated; ask an administrator",
     lambda m: _("This account has been deactivated; ask an administrator to activate it.")),
    (r"too many failed logins; try again in a few minutes",
     lambda m: _("Too many failed logins; try again in a few minutes.")),
    (r"too many failed logins from your address; try again in a few minutes",
     lambda m: _("Too many failed logins from your address; try again in a few minutes.")),
    (r"this field is required", lambda m: _("This field is required.")),
    (r"this field is not part of the form", lambda m: _("This field is not part of the form.")),
    (r"(?P<n>\d+) field\(s\) need attention",
     lambda m: _("%(n)s field(s) need attention.", **m)),
    (r"you may not start cases of this process",
     lambda m: _("You may not start cases of this process.")),
    (r"case (?P<id>\d+) does not exist", lambda m: _("Case %(id)s does not exist.", **m)),
    (r"case (?P<id>\d+) is (already )?(?P<status>\w+)",
     lambda m: _("Case %(id)s is %(status)s.", id=m["id"], status=m["status"])),
    (r"task (?P<id>\S+) does not exist", lambda m: _("Task %(id)s does not exist.", **m)),
    (r"attachment (?P<id>\d+) does not exist",
     lambda m: _("Attachment %(id)s does not exist.", **m)),
    (r"this case does not involve your department",
     lambda m: _("This case does not involve your department.")),
    (r"only PDF, JPG, PNG, DOCX and XLSX files may be attached",
     lambda m: _("Only PDF, JPG, PNG, DOCX and XLSX files may be attached.")),
    (r"the file is empty", lambda m: _("The file is empty.")),
    (r"write the comment first; nothing was saved",
     lambda m: _("Write the comment first; nothing was saved.")),
    (r"a comment has at most (?P<n>\d+) characters; nothing was saved",
     lambda m: _("A comment has at most %(n)s characters; nothing was saved.", **m)),
    (r"only agents, leaders and the office may comment on cases",
     lambda m: _("Only agents, leaders and the office may comment on cases.")),
    (r"the file has no name", lambda m: _("The file has no name.")),
    (r"the file is larger than 10 MB", lambda m: _("The file is larger than 10 MB.")),
    (r"the file's content does not match its type",
     lambda m: _("The file's content does not match its type.")),
    # JSON Schema validation messages (jsonschema's wording)
    (r".* is less than the minimum of (?P<n>.+)",
     lambda m: _("Must be at least %(n)s.", **m)),
    (r".* is less than or equal to the minimum of (?P<n>.+)",
     lambda m: _("Must be greater than %(n)s.", **m)),
    (r".* is greater than the maximum of (?P<n>.+)",
     lambda m: _("Must be at most %(n)s.", **m)),
    (r".* is greater than or equal to the maximum of (?P<n>.+)",
     lambda m: _("Must be less than %(n)s.", **m)),
    (r"(\[\] should be non-empty|\[\] is too short)",
     lambda m: _("Choose or add at least one entry.")),
    (r".* is too short", lambda m: _("Too short.")),
    (r".* is too long", lambda m: _("Too long.")),
    (r".* does not match .*", lambda m: _("The format is not valid.")),
    (r".* is not valid under any of the given schemas|.* is not one of .*",
     lambda m: _("Choose one of the listed options.")),
    (r".* is not of type '(number|integer)'", lambda m: _("Enter a number.")),
    (r".* is not of type .*", lambda m: _("The value has the wrong type.")),
    (r".* is not a '(date|date-time)'", lambda m: _("Enter a valid date.")),
]]

_TITLES = {
    "Error": lazy_gettext("Error"),
    "Not found": lazy_gettext("Not found"),
    "Forbidden": lazy_gettext("Forbidden"),
    "Conflict": lazy_gettext("Conflict"),
    "Invalid data": lazy_gettext("Invalid data"),
    "File refused": lazy_gettext("File refused"),
    "Process error": lazy_gettext("Process error"),
}


def engine_message(message: str) -> str:
    """An engine message in the user's language (unchanged when no translation is known)."""
    for pattern, translate in _ENGINE_MESSAGES:
        match = pattern.fullmatch(message.strip())
        if match is not None:
            return translate({k: v for k, v in match.groupdict().items() if v is not None})
    # Messages the engine marks with N_ are msgids of the catalogues; a form's own message
    # (its x-errorMessage) is in the process pack's catalogue.
    if not message:
        return message
    translated = _(message)
    if translated == message:
        from webapp.pack_i18n import form_message

        return form_message(message)
    return translated


def engine_title(title: str) -> str:
    """An engine error's title in the user's language."""
    return str(_TITLES.get(title, title))
