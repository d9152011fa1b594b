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
