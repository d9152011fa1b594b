"""Turning a task's JSON Schema into form fields, and submitted form values into data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict


@dataclass
class Field:
    """One input of a task form."""

    name: str
    title: str
    widget: str  # text, textarea, number, integer, date, select, multiselect, checkbox
    required: bool
    help: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    value: Any = None
    error: str | None = None


def fields_for(schema: dict[str, Any] | None, values: dict[str, Any],
               errors: dict[str, str]) -> list[Field]:
    """The inputs a schema asks for, filled with values and errors."""
    if not schema:
        return []
    required = set(schema.get("required", []))
    result = []
    for name, prop in schema.get("properties", {}).items():
        result.append(Field(name=name, title=prop.get("title", name), widget=_widget(prop),
                            required=name in required, help=prop.get("description", ""),
                            options=_options(prop), value=values.get(name),
                            error=errors.get(name)))
    return result


def _widget(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind == "array" and isinstance(prop.get("items"), dict) and _options(prop["items"]):
        return "multiselect"
    if _options(prop):
        return "select"
    if kind in ("number", "integer"):
        return kind
    if prop.get("format") == "date":
        return "date"
    if kind == "string" and (prop.get("maxLength", 0) > 200 or prop.get("x-widget") == "textarea"):
        return "textarea"
    return "text"


def _options(prop: dict[str, Any]) -> list[tuple[str, str]]:
    if "enum" in prop:
        labels = prop.get("x-enumNames") or prop["enum"]
        return [(str(v), str(label)) for v, label in zip(prop["enum"], labels, strict=False)]
    if "oneOf" in prop and all("const" in o for o in prop["oneOf"]):
        return [(str(o["const"]), str(o.get("title", o["const"]))) for o in prop["oneOf"]]
    return []


def data_from_form(schema: dict[str, Any] | None, form: MultiDict[str, str]) -> dict[str, Any]:
    """Typed data from submitted form values; unparsable numbers stay text for the validator."""
    if not schema:
        return {}
    data: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        if kind == "boolean":
            data[name] = form.get(name) in ("on", "true", "1", "yes")
        elif kind == "array":
            values = form.getlist(name)
            if values:
                data[name] = values
        else:
            raw = form.get(name, "").strip()
            if raw == "":
                continue
            data[name] = _convert(raw, kind)
    return data


def _convert(raw: str, kind: Any) -> Any:
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    return raw
