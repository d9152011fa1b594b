"""Reference data (departments, approval items, materials, policies, calendar) and the
functions diagrams may call with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.runtime import expressions
from engine.runtime.clock import SERVICE_TZ

if TYPE_CHECKING:
    from engine.cases import Engine



class ReferenceDataError(EngineError):
    """A reference data file is missing an entry or refers to an unknown code."""


@dataclass(frozen=True)
class WorkingCalendar:
    """Working days: weekdays, minus public holidays, plus make-up working days."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def is_working_day(self, day: date) -> bool:
        """Whether government offices work on that day."""
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start` (start itself not counted)."""
        current = start
        remaining = days
        while remaining > 0:
            current += timedelta(days=1)
            if self.is_working_day(current):
                remaining -= 1
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (negative if end is earlier)."""
        if end < start:
            return -self.working_days_between(end, start)
        return sum(1 for n in range(1, (end - start).days + 1)
                   if self.is_working_day(start + timedelta(days=n)))


DEFAULT_YELLOW_FRACTION = Fraction(1, 5)
DEFAULT_DOCUMENT_NUMBER = "中卫代办〔{year}〕第{n}号"


@dataclass(frozen=True)
class ServiceSettings:
    """Service rules kept with the reference data (data/settings.json)."""

    # The yellow warning starts when this share of an item's committed working days
    # remains (1/5: the last fifth of the limit).
    yellow_fraction: Fraction = DEFAULT_YELLOW_FRACTION
    # How documents sent to the enterprise are numbered: {year} and {n} (per year, from 1).
    document_number: str = DEFAULT_DOCUMENT_NUMBER

    @classmethod
    def from_dict(cls, raw: Any, path: Path) -> ServiceSettings:
        """Read and check the settings file's entries."""
        if not isinstance(raw, dict):
            raise ReferenceDataError(f"{path.name} must hold a JSON object")
        value = raw.get("yellow_warning_fraction", str(DEFAULT_YELLOW_FRACTION))
        try:
            fraction = Fraction(str(value))
        except (ValueError, ZeroDivisionError) as exc:
            raise ReferenceDataError(f"{path.name}: yellow_warning_fraction {value!r} is not "
                                     "a number such as 0.2 or \"1/5\"") from exc
        if not 0 < fraction < 1:
            raise ReferenceDataError(f"{path.name}: yellow_warning_fraction must be between 0 "
                                     f"and 1 (the share of the limit left when the yellow "
                                     f"warning starts), not {value!r}")
        scheme = str(raw.get("document_number", DEFAULT_DOCUMENT_NUMBER))
        try:
            sample = scheme.format(year=2026, n=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ReferenceDataError(f"{path.name}: document_number {scheme!r} may use only "
                                     "{year} and {n}") from exc
        if sample == scheme.format(year=2026, n=2):
            raise ReferenceDataError(f"{path.name}: document_number {scheme!r} must contain "
                                     "{n}, the number within the year")
        return cls(fraction, scheme)


def warning_limits(calendar: WorkingCalendar, settings: ServiceSettings, accepted: date,
                   committed_days: int) -> tuple[date, date, date]:
    """(due date, first yellow day, first red day) of a limit counted from `accepted`.

    Yellow starts when the configured share of the committed working days remains
    (at least one day before the due date when the limit allows it); red starts on
    the first working day after the due date.
    """
    days = max(1, int(committed_days))
    warn_days = max(1, int(settings.yellow_fraction * days))
    due = calendar.add_working_days(accepted, days)
    yellow = calendar.add_working_days(accepted, max(1, days - warn_days))
    red = calendar.add_working_days(due, 1)
    return due, yellow, red


@dataclass
class ReferenceData:
    """Everything under data/, validated."""

    departments: dict[str, dict[str, Any]]
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    materials: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: list[dict[str, Any]] = field(default_factory=list)
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    settings: ServiceSettings = field(default_factory=lambda: ServiceSettings())

    @classmethod
    def load(cls, directory: Path) -> ReferenceData:
        """Read and cross-check the reference files of a folder."""
        departments = {d["code"]: d for d in _read(directory / "departments.json", [])}
        if not departments:
            raise ReferenceDataError(f"{directory / 'departments.json'} lists no departments")
        items = {i["code"]: i for i in _read(directory / "items.json", [])}
        materials = {m["code"]: m for m in _read(directory / "materials.json", [])}
        policies = _read(directory / "policies.json", [])
        for policy in policies:
            expressions.check(policy.get("eligibility", "True"), "eval")
        for item in items.values():
            if item.get("department") not in departments:
                raise ReferenceDataError(f"items.json: item {item['code']} names unknown "
                                         f"department {item.get('department')!r}")
            for material in item.get("materials", []):
                if material not in materials:
                    raise ReferenceDataError(f"items.json: item {item['code']} names unknown "
                                             f"material {material!r}")
        raw_calendar = _read(directory / "calendar.json", {})
        calendar = WorkingCalendar(
            frozenset(date.fromisoformat(d) for d in raw_calendar.get("holidays", [])),
            frozenset(date.fromisoformat(d) for d in raw_calendar.get("workdays", [])))
        settings = ServiceSettings.from_dict(_read(directory / "settings.json", {}),
                                             directory / "settings.json")
        return cls(departments, items, materials, policies, calendar, settings)


def _read(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ReferenceDataError(f"{path.name} is not valid JSON: {exc}") from exc


def reference_of(engine: Engine) -> ReferenceData:
    """The reference data an engine runs with (loaded once per engine)."""
    ref = engine.extensions.get("reference")
    if not isinstance(ref, ReferenceData):
        ref = ReferenceData.load(engine.config.data_dir)
        engine.extensions["reference"] = ref
    return ref


def script_functions(ref: ReferenceData, now: Callable[[], datetime]
                     ) -> dict[str, Callable[..., Any]]:
    """The functions diagrams may call; each returns plain data."""

    def today() -> str:
        return now().astimezone(SERVICE_TZ).date().isoformat()

    def now_iso() -> str:
        return now().astimezone(SERVICE_TZ).isoformat()

    def working_days_after(start: str, days: int) -> str:
        return ref.calendar.add_working_days(date.fromisoformat(start[:10]), int(days)).isoformat()

    def warning_dates(accepted_date: str, committed_days: int) -> dict[str, str]:
        due, yellow, red = warning_limits(ref.calendar, ref.settings,
                                          date.fromisoformat(accepted_date[:10]),
                                          int(committed_days))
        return {"due_date": due.isoformat(), "yellow_at": f"{yellow.isoformat()}T00:00:00+08:00",
                "red_at": f"{red.isoformat()}T00:00:00+08:00"}

    def department_name(code: str) -> str:
        department = ref.departments.get(code)
        if department is None:
            raise LookupError(f"unknown department {code!r}")
        return str(department["name"])

    def catalogue_item(code: str) -> dict[str, Any]:
        item = ref.items.get(code)
        if item is None:
            raise LookupError(f"unknown approval item {code!r}")
        return dict(item)

    def merged_materials(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for item in items:
            for code in item.get("materials", []):
                entry = merged.setdefault(code, {**ref.materials.get(code, {"code": code}),
                                                 "items": []})
                entry["items"].append(item.get("code"))
        return list(merged.values())

    def eligible_policies(project: dict[str, Any]) -> list[dict[str, Any]]:
        return [{key: policy[key] for key in ("code", "name", "department", "benefit")
                 if key in policy}
                for policy in ref.policies
                if expressions.evaluate(policy.get("eligibility", "True"),
                                        {"project": project})]

    return {"eligible_policies": eligible_policies, "today": today, "now": now_iso,
            "working_days_after": working_days_after, "warning_dates": warning_dates,
            "department_name": department_name,
            "catalogue_item": catalogue_item, "merged_materials": merged_materials}
