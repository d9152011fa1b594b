"""Turning a JSON Schema into form fields, and submitted form values into data.

Field names are the data paths: `name` for a top-level property, `project.name` inside an
object (with `prefix`), `follow_ups-0-task` for a cell of a list of entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict


@dataclass
class Field:
    """One input of a form (or, for a list of entries, the list with its rows)."""

    name: str  # the form input's name
    key: str  # the property name
    title: str
    widget: str  # text, textarea, number, integer, date, select, multiselect, checkbox, rows
    required: bool
    help: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    value: Any = None
    error: str | None = None
    columns: list[Field] = field(default_factory=list)  # rows: the empty template row
    rows: list[list[Field]] = field(default_factory=list)  # rows: one list of cells per entry
    # Shown only when another input has one of these values (None: any value), from the
    # schema's if/then and dependentSchemas; the server enforces the same rules.
    show_when: dict[str, list[str] | None] = field(default_factory=dict)
    # Required whenever it is shown (every rule that shows it requires it): marked with *.
    required_when_shown: bool = False


def conditions(schema: dict[str, Any], prefix: str = "") -> dict[str, dict[str, list[str] | None]]:
    """Property -> {controlling input: values that show it} from if/then and dependentSchemas."""
    found: dict[str, dict[str, list[str] | None]] = {}

    def named(then: dict[str, Any]) -> list[str]:
        return [*then.get("required", []), *then.get("properties", {})]

    def add(key: str, controller: str, values: list[str] | None) -> None:
        wanted = found.setdefault(key, {})
        if controller in wanted and wanted[controller] is not None and values is not None:
            wanted[controller] = sorted({*(wanted[controller] or []), *values})
        else:
            wanted[controller] = values if controller not in wanted else None

    rules = [schema, *[r for r in schema.get("allOf", []) if isinstance(r, dict)]]
    for rule in rules:
        test, then = rule.get("if"), rule.get("then")
        if isinstance(test, dict) and isinstance(then, dict):
            tested = test.get("properties", {})
            if len(tested) != 1:
                continue
            [(controller, check)] = tested.items()
            if "const" in check:
                values = [_text(check["const"])]
            elif isinstance(check.get("enum"), list):
                values = [_text(v) for v in check["enum"]]
            else:
                continue
            for key in named(then):
                if key != controller:
                    add(key, f"{prefix}{controller}", values)
    for controller, then in (schema.get("dependentSchemas") or {}).items():
        if isinstance(then, dict):
            for key in named(then):
                if key != controller:
                    add(key, f"{prefix}{controller}", None)
    return found


def required_when_shown(schema: dict[str, Any]) -> set[str]:
    """Properties that every if/then or dependentSchemas rule naming them also requires."""
    rules = [schema, *[r for r in schema.get("allOf", []) if isinstance(r, dict)]]
    thens = [r["then"] for r in rules if isinstance(r.get("if"), dict)
             and isinstance(r.get("then"), dict)]
    thens += [t for t in (schema.get("dependentSchemas") or {}).values() if isinstance(t, dict)]
    named: dict[str, bool] = {}
    for then in thens:
        wanted = set(then.get("required", []))
        for key in {*wanted, *then.get("properties", {})}:
            named[key] = named.get(key, True) and key in wanted
    return {key for key, always in named.items() if always}


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def fields_for(schema: dict[str, Any] | None, values: dict[str, Any] | None,
               errors: dict[str, str], prefix: str = "") -> list[Field]:
    """The inputs a schema asks for, filled with values and with the errors at their paths.

    `errors` maps data paths (`total`, `follow_ups.0.task`) to messages; with `prefix`
    (`project.`), paths and input names start with it.
    """
    if not schema:
        return []
    values = values or {}
    required = set(schema.get("required", []))
    shown_when = conditions(schema, prefix)
    required_if_shown = required_when_shown(schema)
    result = []
    for key, prop in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        widget = _widget(prop)
        item = Field(name=path, key=key, title=prop.get("title", key), widget=widget,
                     required=key in required, help=prop.get("description", ""),
                     options=_options(prop["items"] if widget == "multiselect" else prop),
                     value=values.get(key), error=errors.get(path),
                     show_when=shown_when.get(key, {}),
                     required_when_shown=key in required_if_shown and key in shown_when)
        if widget == "object":
            inner = values.get(key) if isinstance(values.get(key), dict) else {}
            item.columns = fields_for(prop, inner, errors, prefix=f"{path}.")
        elif widget == "rows":
            columns_schema = prop["items"]
            item.columns = fields_for(columns_schema, {}, {}, prefix=f"{path}-__index__-")
            entries = values.get(key) if isinstance(values.get(key), list) else []
            for index, entry in enumerate(entries):
                cells = fields_for(columns_schema, entry if isinstance(entry, dict) else {},
                                   {}, prefix=f"{path}-{index}-")
                for cell in cells:
                    cell.error = errors.get(f"{path}.{index}.{cell.key}")
                item.rows.append(cells)
            row_errors = [message for p, message in errors.items()
                          if p.startswith(f"{path}.") and p.count(".") == 1]
            if row_errors and not item.error:
                item.error = row_errors[0]
        result.append(item)
    return result


def _widget(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind == "object" and isinstance(prop.get("properties"), dict):
        return "object"
    if kind == "array" and isinstance(prop.get("items"), dict):
        if prop["items"].get("type") == "object":
            return "rows"
        if _options(prop["items"]):
            return "multiselect"
        return "lines"
    if _options(prop):
        return "select"
    if kind in ("number", "integer"):
        return str(kind)
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


def data_from_form(schema: dict[str, Any] | None, form: MultiDict[str, str],
                   prefix: str = "") -> dict[str, Any]:
    """Typed data from submitted form values; unparsable numbers stay text for the validator."""
    if not schema:
        return {}
    data: dict[str, Any] = {}
    for key, prop in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        kind = prop.get("type")
        widget = _widget(prop)
        if kind == "boolean":
            data[key] = form.get(name) in ("on", "true", "1", "yes")
        elif widget == "object":
            data[key] = data_from_form(prop, form, prefix=f"{name}.")
        elif widget == "rows":
            rows = _rows_from_form(prop["items"], form, name)
            if rows:
                data[key] = rows
        elif widget == "lines":
            lines = [line.strip() for line in form.get(name, "").splitlines() if line.strip()]
            if lines:
                data[key] = [_convert(line, prop["items"].get("type")) for line in lines]
        elif kind == "array":
            values = [v for v in form.getlist(name) if v != ""]
            if values:
                data[key] = [_convert(v, prop["items"].get("type")) for v in values]
        else:
            raw = form.get(name, "").strip()
            if raw == "":
                continue
            data[key] = _convert(raw, kind)
    return data


def _rows_from_form(schema: dict[str, Any], form: MultiDict[str, str], name: str
                    ) -> list[dict[str, Any]]:
    """The entries of a list: inputs named `<name>-<index>-<column>`, in index order;
    entries left wholly empty are dropped."""
    pattern = re.compile(re.escape(name) + r"-(\d+)-")
    indexes = sorted({int(m.group(1)) for key in form for m in [pattern.match(key)] if m})
    rows = []
    for index in indexes:
        prefix = f"{name}-{index}-"
        typed = {k: v for k, v in form.items(multi=True) if k.startswith(prefix)}
        if not any(str(v).strip() for v in typed.values()):
            continue
        row = data_from_form(schema, form, prefix)
        # a checkbox left unticked is False; that alone does not make an entry
        if any(v not in (False, None, "", []) for v in row.values()):
            rows.append(row)
    return rows


def _convert(raw: str, kind: Any) -> Any:
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    return raw


def error_paths(errors: list[Any], strip: str = "") -> dict[str, str]:
    """Field errors by data path (optionally without a leading object, e.g. `project.`),
    the first message of each path kept."""
    result: dict[str, str] = {}
    for error in errors:
        path = error.field.removeprefix(strip) if strip else error.field
        result.setdefault(path, error.message)
    return result
