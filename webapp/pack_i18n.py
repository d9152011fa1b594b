"""The process pack's own translation catalogue (processes/i18n/<lang>.json): English titles
of processes, tasks, items, stages and form fields beside the Chinese of the pack."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app


def catalogue(language: str = "en") -> dict[str, Any]:
    """The pack's catalogue for a language (empty when there is none), read once per app."""
    key = f"zerorun_pack_i18n_{language}"
    found: dict[str, Any] | None = current_app.extensions.get(key)
    if found is None:
        from webapp import get_engine

        path = get_engine().config.processes_dir / "i18n" / f"{language}.json"
        found = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        current_app.extensions[key] = found
    return found


def process_title(process_id: str) -> str | None:
    """The English name of a process, if the catalogue has it."""
    entry = catalogue().get("processes", {}).get(process_id)
    return str(entry["name"]) if isinstance(entry, dict) and entry.get("name") else None


def _english() -> bool:
    from flask_babel import get_locale

    locale = get_locale()
    return locale is not None and locale.language == "en"


def _process_entry(task: Any, part: str) -> dict[str, Any]:
    """The catalogue entry of a task's process; for a task of an embedded sub-process (run
    as a process of its own, named by the sub-process), the entry of the diagram's process
    that names the task."""
    processes = catalogue().get("processes", {})
    entry = processes.get(getattr(task, "process_id", ""))
    if isinstance(entry, dict):
        return entry
    spec = getattr(task, "spec_name", "")
    return next((e for e in processes.values()
                 if isinstance(e, dict) and spec in e.get(part, {})), {})


def task_title(task: Any) -> str:
    """A task's name in the user's language (the pack's Chinese when no English is known)."""
    title = str(getattr(task, "title", "") or "")
    if not _english():
        return title
    entry = _process_entry(task, "tasks")
    return str(entry.get("tasks", {}).get(getattr(task, "spec_name", ""), title))


def item_name(code: Any, name: Any) -> str:
    """An approval item's name in the user's language (from the reference data)."""
    shown = str(name or code or "")
    if not _english() or not code:
        return shown
    from agency.reference import reference_of
    from webapp import get_engine

    entry = reference_of(get_engine()).items.get(str(code), {})
    return str(entry.get("name_en") or shown)


def material_name(material: Any) -> str:
    """A material's name (a case's material entry) in the user's language, from the entry or
    the reference data; a material a department typed in stays as written."""
    entry = material if isinstance(material, dict) else {}
    shown = str(entry.get("name") or entry.get("code") or "")
    if not _english():
        return shown
    if entry.get("name_en"):
        return str(entry["name_en"])
    from agency.reference import reference_of
    from webapp import get_engine

    known = reference_of(get_engine()).materials.get(str(entry.get("code")), {})
    return str(known.get("name_en") or shown)


# Keys of a form's schema whose text people read; `x-enumNames` holds an enum's option labels.
TEXT_KEYS = ("title", "description", "x-errorMessage")
LABEL_LISTS = ("x-enumNames",)
CHOICES = ("oneOf", "anyOf")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def form_texts(schema: Any) -> list[str]:
    """The texts of a form people read (to check the catalogue covers them): titles,
    descriptions, custom error messages, option labels, and the values an option list shows
    as its own labels (an `enum` without `x-enumNames`, a `oneOf` choice without a title)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in TEXT_KEYS and _is_text(value):
                    found.append(value)
                elif key in LABEL_LISTS and isinstance(value, list):
                    found.extend(v for v in value if _is_text(v))
                elif key == "enum" and isinstance(value, list) and "x-enumNames" not in node:
                    found.extend(v for v in value if _is_text(v))
                elif key in CHOICES and isinstance(value, list):
                    found.extend(o["const"] for o in value if isinstance(o, dict)
                                 and _is_text(o.get("const")) and "title" not in o)
                    walk(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return list(dict.fromkeys(found))


def localised(schema: Any) -> Any:
    """A form's schema with its titles, descriptions, option labels and messages in the
    user's language; the server still validates against the pack's own schema, so the values
    submitted (an enum's, a choice's `const`) stay those of the pack."""
    if not _english() or not schema:
        return schema
    texts: dict[str, str] = catalogue().get("forms", {})

    def text(value: Any) -> Any:
        return texts.get(value, value) if isinstance(value, str) else value

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(value) for value in node]
        if not isinstance(node, dict):
            return node
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in TEXT_KEYS and isinstance(value, str):
                result[key] = text(value)
            elif key in LABEL_LISTS and isinstance(value, list):
                result[key] = [text(v) for v in value]
            elif key in CHOICES and isinstance(value, list):
                result[key] = [{**walk(o), "title": text(o["const"])}
                               if isinstance(o, dict) and "title" not in o
                               and isinstance(o.get("const"), str) and o["const"] in texts
                               else walk(o) for o in value]
            else:
                result[key] = walk(value)
        enum = node.get("enum")
        if isinstance(enum, list) and "x-enumNames" not in node \
                and any(isinstance(v, str) and v in texts for v in enum):
            result["x-enumNames"] = [text(v) for v in enum]
        return result
    return walk(schema)


def form_message(message: str) -> str:
    """A form's own message (its `x-errorMessage`, which the server reports as written in
    the pack) in the user's language."""
    if not message or not _english():
        return message
    return str(catalogue().get("forms", {}).get(message, message))


def task_instructions(task: Any, instructions: str | None) -> str:
    """A task's instructions (the diagram's text for end users) in the user's language."""
    shown = str(instructions or "")
    if not _english() or not shown:
        return shown
    entry = _process_entry(task, "instructions")
    return str(entry.get("instructions", {}).get(getattr(task, "spec_name", ""), shown))
