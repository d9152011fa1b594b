"""Finished cases of the process pack that the audit tests replay and tamper with."""

from __future__ import annotations

from engine.cases import Engine
from engine.runtime.clock import MovableClock
from tests.service import Service, small_project

REJECTION_REASONS = [["申请表未加盖公章", "营业执照已过期"], ["申请表法定代表人签字缺失"]]


def rejected_twice_then_accepted(engine: Engine, clock: MovableClock) -> Service:
    """A filing item rejected twice with reasons, then accepted; the case runs to its closing."""
    service = Service(engine, clock)
    service.start(small_project())
    selected = service.case().data["selected_items"]
    service.complete("select_items", selected_items=selected)
    service.complete("review_material_list")
    service.complete("one_time_notice")
    service.complete("dispatch")
    service.complete("acknowledge_notice")
    service.complete("confirm_project_code")
    for reasons in REJECTION_REASONS:
        service.complete("prepare_materials", "project_filing")
        clock.advance(hours=20)
        service.complete("check_materials", "project_filing", decision="reject",
                         rejection_reasons=reasons)
        service.complete("notify_rejection")
    service.run_item("project_filing")
    clock.advance(days=31)
    engine.fire_due_timers()
    service.complete("record_visit")
    service.complete("close_case")
    assert service.case().status == "completed", service.ready()
    return service
