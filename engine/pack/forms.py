"""Task forms: JSON Schemas from the process pack, and server-side validation of submissions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from engine.errors import FieldError, InvalidData

FORMS_PREFIX = "forms/"
_FORMAT_CHECKER = FormatChecker()


class FormCatalogue:
    """The forms of one process version, by file name."""

    def __init__(self, schemas: Mapping[str, dict[str, Any]]) -> None:
        self._schemas = dict(schemas)
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def from_sources(cls, sources: Mapping[str, str]) -> FormCatalogue:
        """Collect the JSON files under `forms/` of a version's stored sources."""
        return cls({name.removeprefix(FORMS_PREFIX): json.loads(text)
                    for name, text in sources.items()
                    if name.startswith(FORMS_PREFIX) and name.endswith(".json")})

    def schema(self, name: str | None) -> dict[str, Any] | None:
        """A form's schema (or UI schema) by file name."""
        return self._schemas.get(name) if name else None

    def validate(self, name: str | None, data: Mapping[str, Any],
                 today: str | None = None) -> None:
        """Raise InvalidData listing every field that does not satisfy the form.

        A date field whose schema says `"x-notBefore": "today"` is refused when it lies
        before `today` (ISO date, in the service's time zone), if `today` is given.
        """
        schema = self.schema(name)
        if schema is None:
            if data:
                raise InvalidData("this task has no form, so it takes no data",
                                  [FieldError(key, "unexpected field") for key in data])
            return
        validator = self._validators.get(name or "")
        if validator is None:
            validator = Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)
            self._validators[name or ""] = validator
        errors: list[FieldError] = []
        # Fields outside the form could overwrite routing data (the item, its department),
        # so they are refused whatever the schema says about additional properties.
        declared = set(schema.get("properties", {}))
        errors.extend(FieldError(key, "this field is not part of the form")
                      for key in data if key not in declared)
        for error in sorted(validator.iter_errors(dict(data)), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.absolute_path)
            if error.validator == "required":
                missing = error.message.split("'")[1] if "'" in error.message else ""
                path = ".".join(p for p in (path, missing) if p)
                errors.append(FieldError(path, "this field is required"))
            else:
                errors.append(FieldError(path or "(form)", _message(error)))
        if today is not None:
            errors.extend(_past_dates(schema, data, today))
        if errors:
            raise InvalidData(f"{len(errors)} field(s) need attention", errors)


def _past_dates(schema: Mapping[str, Any], data: Mapping[str, Any],
                today: str) -> list[FieldError]:
    """Top-level date fields that must not lie in the past but do."""
    found = []
    for key, prop in (schema.get("properties") or {}).items():
        value = data.get(key)
        if (isinstance(prop, dict) and prop.get("x-notBefore") == "today"
                and isinstance(value, str) and len(value) >= 10 and value[:10] < today):
            found.append(FieldError(key, f"this date is in the past (today is {today})"))
    return found


def _message(error: Any) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("x-errorMessage")
    if isinstance(custom, str):
        return custom
    return str(error.message)
