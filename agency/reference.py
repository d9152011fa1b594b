"""Reference data (departments, approval items, materials, policies, calendar) and the
functions diagrams may call with it."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import cached_property
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
        counts = self._counts
        k = (start - TABLE_FROM).days
        if days > 0 and 0 <= k < len(counts):
            # The first day whose count reaches the start's count plus `days` (a working day).
            found = bisect_left(counts, counts[k] + days, lo=k)
            if found < len(counts):
                return TABLE_FROM + timedelta(days=found)
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
        counts = self._counts
        a, b = (start - TABLE_FROM).days, (end - TABLE_FROM).days
        if 0 <= a and b < len(counts):
            return counts[b] - counts[a]
        return sum(1 for n in range(1, (end - start).days + 1)
                   if self.is_working_day(start + timedelta(days=n)))

    @cached_property
    def _counts(self) -> list[int]:
        """Working days after TABLE_FROM up to each day of the table (built once, on first
        use): the two questions above become a subtraction and a binary search."""
        counts, n = [0], 0
        for k in range(1, TABLE_DAYS):
            n += self.is_working_day(TABLE_FROM + timedelta(days=k))
            counts.append(n)
        return counts


# The days the calendar answers from its table (others are counted one by one).
TABLE_FROM = date(2000, 1, 1)
TABLE_DAYS = (date(2060, 1, 1) - TABLE_FROM).days


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
                   committed_days: int, paused_days: int = 0) -> tuple[date, date, date]:
    """(due date, first yellow day, first red day) of a limit counted from `accepted`.

    Yellow starts when the configured share of the committed working days remains
    (at least one day before the due date when the limit allows it); red starts on
    the first working day after the due date. `paused_days`: working days the clock stood
    still (行政许可法 §45), which move all three by as many working days.
    """
    days = max(1, int(committed_days))
    warn_days = max(1, int(settings.yellow_fraction * days))
    paused = max(0, int(paused_days))
    due = calendar.add_working_days(accepted, days + paused)
    yellow = calendar.add_working_days(accepted, max(1, days - warn_days) + paused)
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
    # Return visits during handling, construction and production (data/return_visits.json).
    return_visits: list[dict[str, Any]] = field(default_factory=list)
    # Why an item's clock may stop (data/pause_reasons.json), by code, and the longest pause
    # the service accepts for a reason the law sets no maximum for.
    pause_reasons: dict[str, dict[str, Any]] = field(default_factory=dict)
    longest_pause: int = 120

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
            for part in item.get("parts", []):
                if part.get("department") not in departments:
                    raise ReferenceDataError(f"items.json: a part of item {item['code']} names "
                                             f"unknown department {part.get('department')!r}")
            _check_limits(item)
        _check_prerequisites(items)
        calendar = published_calendar(_read(directory / "calendar.json", {}))
        settings = ServiceSettings.from_dict(_read(directory / "settings.json", {}),
                                             directory / "settings.json")
        return_visits = _return_visits(_read(directory / "return_visits.json", {}),
                                       departments, items)
        reasons, longest = _pause_reasons(_read(directory / "pause_reasons.json", {}))
        return cls(departments, items, materials, policies, calendar, settings, return_visits,
                   reasons, longest)


PAUSE_KINDS = ("applicant", "procedure")


def _pause_reasons(raw: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """The catalogue of reasons an item's clock may stop for, checked."""
    if not isinstance(raw, dict):
        raise ReferenceDataError("pause_reasons.json must hold an object with a list 'reasons'")
    longest = raw.get("longest_pause_working_days", 120)
    if isinstance(longest, bool) or not isinstance(longest, int) or not 1 <= longest <= 250:
        raise ReferenceDataError("pause_reasons.json: longest_pause_working_days must be a "
                                 "whole number from 1 to 250")
    reasons: dict[str, dict[str, Any]] = {}
    for reason in raw.get("reasons", []):
        code = reason.get("code") if isinstance(reason, dict) else None
        if not code or not reason.get("name") or reason.get("kind") not in PAUSE_KINDS:
            raise ReferenceDataError("pause_reasons.json: every reason needs a code, a name and "
                                     "a kind (applicant or procedure)")
        most = reason.get("max_working_days")
        if most is not None and (isinstance(most, bool) or not isinstance(most, int)
                                 or not 1 <= most <= longest):
            raise ReferenceDataError(f"pause_reasons.json: reason {code}: max_working_days "
                                     f"must be null or a whole number from 1 to {longest}")
        reasons[code] = {"code": code, "name": reason["name"], "kind": reason["kind"],
                         "max_working_days": most, "basis": reason.get("basis", "")}
    return reasons, longest


def published_calendar(raw: Any) -> WorkingCalendar:
    """The State Council's published holidays and make-up working days as the maintained
    `chinese-calendar` package lists them (it names the years it covers), with the days of
    data/calendar.json over them (a year published after the package's release)."""
    import chinese_calendar  # noqa: PLC0415 - read once per load

    holidays = set(chinese_calendar.constants.holidays)
    workdays = set(chinese_calendar.constants.workdays)
    extra_holidays = {date.fromisoformat(d) for d in raw.get("holidays", [])}
    extra_workdays = {date.fromisoformat(d) for d in raw.get("workdays", [])}
    holidays = (holidays - extra_workdays) | extra_holidays
    workdays = (workdays - extra_holidays) | extra_workdays
    return WorkingCalendar(frozenset(holidays), frozenset(workdays))


def _return_visits(raw: Any, departments: dict[str, dict[str, Any]],
                   items: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The configured milestone visits, checked: each waits for one known item or stage."""
    visits = raw.get("visits", []) if isinstance(raw, dict) else None
    if not isinstance(visits, list):
        raise ReferenceDataError("return_visits.json must hold an object with a list 'visits'")
    checked = []
    for visit in visits:
        code = visit.get("code") if isinstance(visit, dict) else None
        if not code or not visit.get("name"):
            raise ReferenceDataError("return_visits.json: every visit needs a code and a name")
        item, stage = visit.get("after_item", ""), visit.get("after_stage", "")
        if bool(item) == bool(stage) or (item and item not in items) or (
                stage and stage not in ("construction", "production")):
            raise ReferenceDataError(f"return_visits.json: visit {code} must wait for one known "
                                     "after_item or an after_stage (construction, production)")
        department = visit.get("department", "")
        if department != "responsible_unit" and department not in departments:
            raise ReferenceDataError(f"return_visits.json: visit {code} names unknown "
                                     f"department {department!r}")
        days = visit.get("delay_working_days", 0)
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 250:
            raise ReferenceDataError(f"return_visits.json: visit {code}: delay_working_days "
                                     "must be a whole number from 0 to 250")
        checked.append({"code": code, "name": visit["name"], "after_item": item,
                        "after_stage": stage, "delay_working_days": days,
                        "department": department})
    return checked


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


# Arguments the diagrams' functions accept: bounded, so one call stays short.
MAX_WORKING_DAYS = 3000  # about twelve years of working days


def _working_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, (int, float, str)):
        raise TypeError(f"a number of working days is needed, not {type(days).__name__}")
    count = int(days)
    if not -MAX_WORKING_DAYS <= count <= MAX_WORKING_DAYS:
        raise expressions.ExpressionLimitExceeded(
            f"{count:,} working days is out of range: at most {MAX_WORKING_DAYS:,} are accepted")
    return count


def _iso_date(text: Any) -> date:
    if not isinstance(text, str):
        raise TypeError(f"a date such as 2026-03-02 is needed, not {type(text).__name__}")
    return date.fromisoformat(text[:10])


def script_functions(ref: ReferenceData, now: Callable[[], datetime]
                     ) -> dict[str, Callable[..., Any]]:
    """The functions diagrams may call; each returns plain data."""

    def today() -> str:
        return now().astimezone(SERVICE_TZ).date().isoformat()

    def now_iso() -> str:
        return now().astimezone(SERVICE_TZ).isoformat()

    def working_days_after(start: str, days: int) -> str:
        return ref.calendar.add_working_days(_iso_date(start), _working_days(days)).isoformat()

    def warning_dates(accepted_date: str, committed_days: int) -> dict[str, str]:
        due, yellow, red = warning_limits(ref.calendar, ref.settings, _iso_date(accepted_date),
                                          _working_days(committed_days))
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
                entry = merged.setdefault(code, {**ref.materials.get(
                    code, {"code": code, "name": code}), "items": []})
                entry["items"].append(item.get("code"))
        return list(merged.values())

    def with_added_materials(items: list[dict[str, Any]],
                             added: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items with the materials departments added to them (by catalogue code or
        name, else as written), each material once per item."""
        by_name = {str(m.get("name", "")).strip(): code for code, m in ref.materials.items()}
        result = [{**item, "materials": list(item.get("materials", []))} for item in items]
        codes = {str(item.get("code")) for item in result}
        for entry in added:
            target = str(entry.get("item", ""))
            if target not in codes:
                raise LookupError(f"material added to {target!r}, which is not an item of "
                                  "this project")
            written = " ".join(str(entry.get("material", "")).split())
            code = written if written in ref.materials else by_name.get(written, written)
            for item in result:
                if item["code"] == target and code and code not in item["materials"]:
                    item["materials"].append(code)
                    item["added_materials"] = [*item.get("added_materials", []), code]
        return result

    def eligible_policies(project: dict[str, Any]) -> list[dict[str, Any]]:
        return [{key: policy[key] for key in ("code", "name", "department", "benefit")
                 if key in policy}
                for policy in ref.policies
                if expressions.evaluate(policy.get("eligibility", "True"),
                                        {"project": project})]

    def next_quarter_start() -> str:
        """08:30 on the first day of the next quarter (January, April, July, October)."""
        day = now().astimezone(SERVICE_TZ).date()
        month = (day.month - 1) // 3 * 3 + 4
        year = day.year + (month > 12)
        return f"{year}-{(month - 1) % 12 + 1:02d}-01T08:30:00+08:00"

    def next_march_first() -> str:
        """08:30 on the next 1 March (this year's while it is still ahead)."""
        moment = now().astimezone(SERVICE_TZ)
        year = moment.year if (moment.month, moment.day, moment.hour) < (3, 1, 8) \
            else moment.year + 1
        return f"{year}-03-01T08:30:00+08:00"

    def key_list_due() -> str:
        """The DRC's yearly key-project list is due by 31 March of the current year."""
        return f"{now().astimezone(SERVICE_TZ).year}-03-31"

    def return_visit_plan() -> list[dict[str, Any]]:
        """The visits during handling, construction and production (data/return_visits.json)."""
        return [dict(visit) for visit in ref.return_visits]

    return {"eligible_policies": eligible_policies, "today": today, "now": now_iso,
            "return_visit_plan": return_visit_plan,
            "next_quarter_start": next_quarter_start, "next_march_first": next_march_first,
            "key_list_due": key_list_due,
            "working_days_after": working_days_after, "warning_dates": warning_dates,
            "department_name": department_name,
            "catalogue_item": catalogue_item, "merged_materials": merged_materials,
            "with_added_materials": with_added_materials}


def _check_prerequisites(items: dict[str, dict[str, Any]]) -> None:
    """Each item names the items it needs (`requires`) and may run beside the phases until
    `due_phase`; no item may need itself, directly or through others (the cycle is named),
    and a required item must be able to start no later than the phase by which the item
    needing it must be done: its own phase, or its `due_phase` when it runs beside the
    phases (it waits for its prerequisites; the items of later phases wait for it). An item
    can start in its phase, or later when a prerequisite can only start later."""
    for code, item in items.items():
        phase, due = item.get("phase"), item.get("due_phase", item.get("phase"))
        if not isinstance(due, int) or not isinstance(phase, int) or due < phase:
            raise ReferenceDataError(f"items.json: item {code}: due_phase ({due}) is earlier "
                                     f"than its phase ({phase})")
        for needed in item.get("requires", []):
            if needed not in items:
                raise ReferenceDataError(f"items.json: item {code} requires unknown item "
                                         f"{needed!r}")
    done: set[str] = set()

    def visit(code: str, path: list[str]) -> None:
        if code in path:
            cycle = [*path[path.index(code):], code]
            raise ReferenceDataError("items.json: the prerequisites form a cycle: "
                                     + " -> ".join(cycle))
        if code in done:
            return
        for needed in items[code].get("requires", []):
            visit(needed, [*path, code])
        done.add(code)

    for code in items:
        visit(code, [])
    starts: dict[str, int] = {}

    def start(code: str) -> int:
        if code not in starts:
            starts[code] = max([int(items[code]["phase"]),
                                *(start(needed) for needed in items[code].get("requires", []))])
        return starts[code]

    for code, item in items.items():
        phase, due = item["phase"], item.get("due_phase", item["phase"])
        for needed in item.get("requires", []):
            if start(needed) > due:
                by = f"phase {phase}" if due == phase else f"phase {phase}, due by phase {due}"
                raise ReferenceDataError(
                    f"items.json: item {code} ({by}) requires {needed}, which starts "
                    f"only in phase {start(needed)}")


def _check_limits(item: dict[str, Any]) -> None:
    """Each item carries its statutory limit (法定时限) and the shorter or equal limit the
    service commits to (承诺时限), in working days; warnings run on the committed one.
    `time_limit_days` is kept as the committed limit for diagrams of earlier versions."""
    statutory, committed = item.get("statutory_days"), item.get("committed_days")
    if committed is None and isinstance(item.get("time_limit_days"), int):
        committed = item["time_limit_days"]  # a catalogue of the earlier form
        item["committed_days"] = committed
    if not isinstance(committed, int) or committed < 1:
        raise ReferenceDataError(f"items.json: item {item['code']} needs committed_days, a "
                                 "positive number of working days")
    if statutory is not None and (not isinstance(statutory, int) or statutory < committed):
        raise ReferenceDataError(f"items.json: item {item['code']}: the statutory limit "
                                 f"({statutory}) is shorter than the committed one ({committed})")
    item["time_limit_days"] = committed
