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


def task_title(task: Any) -> str:
    """A task's name in the user's language (the pack's Chinese when no English is known)."""
    title = str(getattr(task, "title", "") or "")
    if not _english():
        return title
    entry = catalogue().get("processes", {}).get(getattr(task, "process_id", ""), {})
    return str(entry.get("tasks", {}).get(getattr(task, "spec_name", ""), title)) \
        if isinstance(entry, dict) else title


def item_name(code: Any, name: Any) -> str:
    """An approval item's name in the user's language (from the reference data)."""
    shown = str(name or code or "")
    if not _english() or not code:
        return shown
    from agency.reference import reference_of
    from webapp import get_engine

    entry = reference_of(get_engine()).items.get(str(code), {})
    return str(entry.get("name_en") or shown)


TEXT_KEYS = ("title", "description", "x-errorMessage")


def localised(schema: Any) -> Any:
    """A form's schema with its titles, descriptions, option labels and messages in the
    user's language; the server still validates against the pack's own schema."""
    if not _english() or not schema:
        return schema
    texts: dict[str, str] = catalogue().get("forms", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: texts.get(value, value) if key in TEXT_KEYS and isinstance(value, str)
                    else walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node
    return walk(schema)


def form_texts(schema: Any) -> list[str]:
    """The texts of a form people read (to check the catalogue covers them)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in TEXT_KEYS and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return list(dict.fromkeys(found))


def task_instructions(task: Any, instructions: str | None) -> str:
    """A task's instructions (the diagram's text for end users) in the user's language."""
    shown = str(instructions or "")
    if not _english() or not shown:
        return shown
    entry = catalogue().get("processes", {}).get(getattr(task, "process_id", ""), {})
    return str(entry.get("instructions", {}).get(getattr(task, "spec_name", ""), shown)) \
        if isinstance(entry, dict) else shown
