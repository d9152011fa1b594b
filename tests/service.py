"""Drives whole cases of the process pack through the engine API, as the agents would."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from engine.actors import Actor
from engine.cases import CaseView, Engine, TaskView
from engine.runtime.clock import MovableClock

OFFICE = Actor("office", "office", "leading_group_office")

# A key manufacturing project that needs items in all four phases.
KEY_PROJECT: dict[str, Any] = {
    "source": "drc_key_list",
    "name": "中卫市智能装备制造产业园一期",
    "content": "新建生产厂房4栋、研发楼1栋及配套设施，总建筑面积6.2万平方米",
    "responsible_unit": "industry_it",
    "enterprise": "宁夏中卫智造科技有限公司",
    "lead": "张伟",
    "phone": "13995551234",
    "code": "2026-640502-34-03-000127",
    "industry": "manufacturing",
    "investment_wan": 38000,
    "key_project": True,
    "approval_type": "filing",
    "energy_review": False,
    "new_land": True,
    "eia": "form",
    "soil_water": False,
    "water_draw": False,
    "buildings": True,
    "special_fire": False,
    "civil_air_defence": False,
    "power": True,
    "water_supply": False,
}



_serials = itertools.count(1)


def fresh_code(project: dict[str, Any]) -> dict[str, Any]:
    """The project with a project code no other case of the test has: a code belongs to one
    running or completed case (a second registration with it is refused)."""
    code = project.get("code")
    if not code:
        return project
    return {**project, "code": f"{code[:-6]}{900000 + next(_serials):06d}"}


def unused_code(engine: Engine, project: dict[str, Any]) -> dict[str, Any]:
    """The project as given if no case of the engine holds its code yet, else with a fresh one."""
    code = project.get("code")
    if not code or not engine.list_cases(search=code, statuses=("running", "completed")):
        return project
    return fresh_code(project)


def small_project(**changes: Any) -> dict[str, Any]:
    """A filing-only project without buildings: phase 1 alone, one item unless changed."""
    project = {**KEY_PROJECT, "name": "沙坡头区农产品冷链仓储项目", "industry": "logistics",
               "investment_wan": 2600, "key_project": False, "new_land": False, "eia": "none",
               "buildings": False, "power": False, "code": "2026-640502-59-03-000311"}
    project.update(changes)
    return project


# What an agent submits at each task when a scenario does not say otherwise.
DEFAULT_DATA: dict[str, dict[str, Any]] = {
    "rate_service": {"service_rating": 5, "rating_comment": "代办及时"},
    "rate_item": {"service_rating": 5, "rating_comment": "本事项办得快"},
    "select_items": {"consulted_departments": ["natural_resources", "housing_construction"],
                     "item_list_note": "会商确认"},
    "review_material_list": {"materials_confirmed": True},
    "one_time_notice": {"notice_method": "phone", "notice_contact": "张伟",
                        "notice_date": "2026-03-03", "notice_note": "企业已知悉全部事项和材料"},
    "dispatch": {"dispatch_no": "PQ-2026-001", "dispatch_date": "2026-03-03"},
    "acknowledge_notice": {"notice_received": True, "acknowledged_by": "张伟"},
    "confirm_notice_received": {"contact_method": "phone", "contact_date": "2026-03-09",
                                "notice_confirmed": True, "follow_up_note": "企业已知悉"},
    "sign_commitment": {"commitment_accepted": True, "signatory": "张伟",
                        "letter_signed_date": "2026-03-05"},
    "notify_policies": {"policy_notice_method": "visit", "policy_notice_date": "2026-03-04"},
    "redeem_policy": {"redemption_status": "redeemed", "redeemed_amount_wan": 120,
                      "redeemed_date": "2026-04-20"},
    "confirm_project_code": {"code_confirmed": True},
    "confirm_planning_conditions": {"conditions_confirmed": True},
    "joint_drawing_review": {"review_organised_date": "2026-05-06",
                             "review_parties": ["housing_construction", "civil_air_defence"]},
    "organise_joint_acceptance": {"acceptance_date": "2026-09-01",
                                  "acceptance_parties": ["housing_construction",
                                                         "natural_resources"]},
    "prepare_materials": {"prepared_materials": ["application_form", "business_license"],
                          "forms_filled": True},
    "check_materials": {"decision": "accept"},
    "notify_rejection": {"rejection_notice_method": "phone",
                         "rejection_notice_date": "2026-03-05"},
    "track_approval": {"progress": "approved", "approval_no": "中审批〔2026〕1号",
                       "approved_date": "2026-03-20"},
    "handover_results": {"handed_documents": ["批准文件"], "handed_to": "张伟",
                         "handed_date": "2026-03-21", "handover_method": "visit"},
    "hand_back_materials": {"returned_materials": ["申请表"], "returned_to": "张伟",
                            "returned_date": "2026-03-21"},
    "record_visit": {"visit_date": "2026-11-02", "visit_method": "onsite",
                     "project_stage": "production", "satisfaction": "very_satisfied",
                     "needs_joint_meeting": False, "continue_visits": False},
    "close_case": {"closing_summary": "全部事项办结", "closed_date": "2026-11-03"},
    "termination_record": {"termination_confirmed": True, "termination_detail": "企业申请终止",
                           "returned_to": "张伟", "returned_date": "2026-06-01"},
    "progress_report": {"report_summary": "审批正常推进"},
    "yellow_warning": {"warning_cause": "材料审查中", "warning_measures": "加派人员",
                       "expected_date": "2026-04-10"},
    "red_warning": {"supervision_measures": "挂牌督办", "supervision_owner": "周兆龙",
                    "supervision_deadline": "2026-04-15"},
}


# The joint steps recorded on an item's prepared materials (catalogue `joint_review`).
JOINT_REVIEWS = ("joint_drawing_review", "organise_joint_acceptance")


@dataclass
class Step:
    """One completed task, as the scenario saw it."""

    spec_name: str
    department: str | None
    item_code: str | None
    data: dict[str, Any]


@dataclass
class Service:
    """A case of the pack driven task by task by the owning department's agents."""

    engine: Engine
    clock: MovableClock
    case_id: int = 0
    steps: list[Step] = field(default_factory=list)

    def start(self, project: dict[str, Any] | None = None) -> CaseView:
        case = self.engine.start_case(
            "case_flow", {"project": unused_code(self.engine, project or KEY_PROJECT)}, OFFICE)
        self.case_id = case.id
        return case

    def ready(self, spec_name: str | None = None, item: str | None = None) -> list[TaskView]:
        tasks = self.engine.list_tasks(case_id=self.case_id, limit=1000)
        return [t for t in tasks if (spec_name is None or t.spec_name == spec_name)
                and (item is None or t.item_code == item)]

    def task(self, spec_name: str, item: str | None = None) -> TaskView:
        found = self.ready(spec_name, item)
        assert found, (f"no ready task {spec_name} (item {item}); ready: "
                       f"{[(t.spec_name, t.item_code) for t in self.ready()]}")
        return found[0]

    def complete(self, spec_name: str, item: str | None = None, *, by: str | None = None,
                 **data: Any) -> TaskView:
        """Complete a ready task as an agent of the department that owns it (`by`, if given)."""
        task = self.task(spec_name, item)
        if by is not None:  # of several ready tasks of the spec, the one `by` owns
            task = next((t for t in self.ready(spec_name, item) if t.department == by), task)
            assert task.department == by, f"{spec_name} is owned by {task.department}, not {by}"
        submitted = {**copy.deepcopy(DEFAULT_DATA.get(spec_name, {})), **data}
        agent = Actor(f"agent_{task.department}", "agent", task.department)
        self.engine.complete_task(task.id, submitted, agent, seen_version=task.version)
        self.steps.append(Step(spec_name, task.department, task.item_code, submitted))
        return task

    def complete_all(self, spec_name: str, **data: Any) -> list[TaskView]:
        done = []
        while self.ready(spec_name):
            done.append(self.complete(spec_name, **data))
        return done

    def run_item(self, item: str, **overrides: dict[str, Any]) -> None:
        """Take one approval item through its four stages on the normal path (with its joint
        review or acceptance, for the items that have one, once its materials are prepared)."""
        for spec in ("prepare_materials", *JOINT_REVIEWS, "check_materials", "track_approval",
                     "handover_results"):
            if spec in JOINT_REVIEWS and not self.ready(spec, item):
                continue
            self.complete(spec, item, **overrides.get(spec, {}))

    def run_phase(self, phase_task: str | None, items: list[str]) -> None:
        if phase_task:
            self.complete(phase_task)
        pending = list(items)
        while pending:  # an item waiting for its prerequisites runs once they are approved
            ready = [code for code in pending if self.ready("prepare_materials", code)]
            assert ready, f"none of {pending} can start; ready: " + str(
                [(t.spec_name, t.item_code) for t in self.ready()])
            self.run_item(ready[0])
            pending.remove(ready[0])

    def case(self) -> CaseView:
        return self.engine.get_case(self.case_id)

    def events(self) -> list[str]:
        return [e.type for e in self.engine.case_events(self.case_id)]
