"""Reference data: the seed's sixteen units, the item catalogue, the working-day calendar."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime

import pytest

from agency.reference import ReferenceData, ReferenceDataError, script_functions
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def ref():
    return ReferenceData.load(ROOT / "data")


def test_the_sixteen_units_of_the_seed_and_the_office(ref):
    units = [d for d in ref.departments.values()
             if not d.get("office") and not d.get("external")]
    assert len(units) == 16
    assert (units[0]["name"], units[0]["leader"], units[0]["agent"]) == (
        "市审批服务管理局", "万富春", "罗文虎")
    assert units[-1]["name"] == "国网中卫供电公司"


def test_every_phase_has_items_with_limits(ref):
    for phase in (1, 2, 3, 4):
        assert [i for i in ref.items.values() if i["phase"] == phase]
    assert ref.items["construction_permit"]["time_limit_days"] == 7
    # Committed limits are compressed by the reform; the statutory one stays for legal dates.
    assert ref.items["eia_report_book"]["time_limit_days"] == 30
    assert ref.items["eia_report_book"]["statutory_days"] == 60


@pytest.mark.parametrize("start, days, expected", [
    (date(2026, 3, 2), 5, date(2026, 3, 9)),      # a plain week
    (date(2026, 2, 12), 2, date(2026, 2, 14)),    # Saturday 14 Feb is a make-up working day
    (date(2026, 2, 14), 1, date(2026, 2, 24)),    # the Spring Festival holiday is skipped
    (date(2026, 9, 30), 1, date(2026, 10, 8)),    # National Day
])
def test_working_days_follow_the_calendar(ref, start, days, expected):
    assert ref.calendar.add_working_days(start, days) == expected
    assert ref.calendar.working_days_between(start, expected) == days


def test_functions_for_diagrams(ref):
    functions = script_functions(ref, lambda: datetime(2026, 3, 2, 1, tzinfo=UTC))
    assert functions["today"]() == "2026-03-02"
    assert functions["working_days_after"]("2026-03-02", 7) == "2026-03-11"
    items = [functions["catalogue_item"]("construction_permit"),
             functions["catalogue_item"]("drawing_review")]
    merged = functions["merged_materials"](items)
    codes = [m["code"] for m in merged]
    assert len(codes) == len(set(codes))
    assert functions["department_name"]("water") == "市水务局"
    policies = functions["eligible_policies"]({"industry": "manufacturing",
                                               "investment_wan": 8000})
    assert [p["code"] for p in policies] == ["manufacturing_investment_award"]


def test_an_unknown_department_is_named(tmp_path):
    shutil.copytree(ROOT / "data", tmp_path / "data")
    items = json.loads((tmp_path / "data" / "items.json").read_text(encoding="utf-8"))
    items[0]["department"] = "nowhere"
    (tmp_path / "data" / "items.json").write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="project_filing.*nowhere"):
        ReferenceData.load(tmp_path / "data")


@pytest.mark.parametrize("fraction, yellow_after", [("1/5", 24), ("0.5", 15), (0.1, 27)])
def test_the_yellow_threshold_is_configurable(tmp_path, fraction, yellow_after):
    shutil.copytree(ROOT / "data", tmp_path / "data")
    (tmp_path / "data" / "settings.json").write_text(
        json.dumps({"yellow_warning_fraction": fraction}), encoding="utf-8")
    ref = ReferenceData.load(tmp_path / "data")
    functions = script_functions(ref, lambda: datetime(2026, 3, 2, tzinfo=UTC))
    limits = functions["warning_dates"]("2026-03-02", 30)
    cal = ref.calendar
    assert limits == {
        "due_date": cal.add_working_days(date(2026, 3, 2), 30).isoformat(),
        "yellow_at": cal.add_working_days(date(2026, 3, 2), yellow_after).isoformat()
        + "T00:00:00+08:00",
        "red_at": cal.add_working_days(cal.add_working_days(date(2026, 3, 2), 30), 1)
        .isoformat() + "T00:00:00+08:00"}


@pytest.mark.parametrize("fraction, words", [("2", "between 0 and 1"), ("a fifth", "not a number"),
                                             (0, "between 0 and 1")])
def test_a_wrong_yellow_threshold_is_refused_clearly(tmp_path, fraction, words):
    shutil.copytree(ROOT / "data", tmp_path / "data")
    (tmp_path / "data" / "settings.json").write_text(
        json.dumps({"yellow_warning_fraction": fraction}), encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=words):
        ReferenceData.load(tmp_path / "data")
