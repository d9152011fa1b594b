"""R05 代办 means the agent can always act for the unit (DOMAIN.md): every step of the project
unit can be recorded by the Approval Service Bureau's agent on its behalf (代为办理), with how
the unit confirmed it and the evidence, under the agency authorisation it signed."""

from __future__ import annotations

import pytest

from agency.enterprise import UnitTasks
from engine.actors import Actor
from tests.service import Service
from tests.test_enterprise import deficiency_case

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BUREAU = Actor("agent_approval_bureau", "agent", "approval_bureau")


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def test_R05_smoke(service):
    case_id = deficiency_case(service)
    unit = UnitTasks(service.engine)
    unit.record_authorisation(case_id, {"principal": "中卫冷链", "signatory": "张伟",
                                        "signed_on": "2026-03-02", "signing_method": "paper"},
                              BUREAU)
    [task] = [d for d in unit.open_tasks(case_id, BUREAU) if d.task.spec_name == "supply_material"]
    unit.complete(case_id, task.task.id, {"supplied_materials": ["project_code_proof"],
                                          "supplied_date": service.clock().date().isoformat()},
                  {"confirmation_method": "phone", "confirmed_by": "张伟",
                   "confirmed_on": service.clock().date().isoformat()},
                  [("通话记录.pdf", PDF)], BUREAU)
    assert [d.task.spec_name for d in unit.open_tasks(case_id, BUREAU)] == ["rate_item"]
    assert service.engine.verify_case(case_id).ok
