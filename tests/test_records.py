"""Follow-up records: what was submitted, searchable, with the items raised tracked to done."""

from __future__ import annotations

import pytest

from engine.actors import Actor
from engine.store.models import HumanTask
from tests.service import KEY_PROJECT, OFFICE, Service, small_project
from tests.test_scenarios import beijing, intake
from tests.webhelpers import logged_in, make_app, text_of


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


@pytest.fixture
def app(service, sqlite_url, tmp_path):
    return make_app(service.engine, sqlite_url, tmp_path)


def joint_meeting(service: Service) -> None:
    """A problem in the filing raised to a joint meeting whose minutes set one follow-up."""
    intake(service, small_project())
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    service.complete("check_materials", "project_filing")
    service.complete("track_approval", "project_filing", progress="problem",
                     problem="项目选址与园区规划不一致")
    service.complete("convene_meeting", meeting_topic="冷链项目选址协调",
                     meeting_date="2026-03-05", invited=["natural_resources", "drc"],
                     meeting_issues="选址与园区规划衔接")
    service.complete("department_opinion", by="natural_resources", department_view="可调整")
    service.complete("department_opinion", by="drc", department_view="同意")
    service.complete("record_minutes", minutes="会议议定调整选址", decisions=["调整用地布局"],
                     follow_ups=[{"task": "出具调整后的规划意见",
                                  "department": "natural_resources",
                                  "due_date": "2026-03-10"}])


def page_text(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return text_of(response.get_data(as_text=True))


def test_the_completed_task_keeps_its_submitted_data_on_the_index(service):
    joint_meeting(service)
    with service.engine.db.reading() as s:
        minutes = s.query(HumanTask).filter_by(spec_name="record_minutes").one()
        follow = s.query(HumanTask).filter_by(spec_name="follow_up").one()
    assert minutes.result["minutes"] == "会议议定调整选址"
    assert follow.result is None and follow.subject["task"] == "出具调整后的规划意见"


def test_a_meeting_record_tracks_its_follow_up_from_open_to_overdue_to_done(app, service):
    joint_meeting(service)
    office = logged_in(app, "office")
    text = page_text(office, "/records/meetings")
    assert "共 1 条记录" in text
    assert "会议议题 冷链项目选址协调" in text
    assert "参会部门 市自然资源局；市发展和改革委员会" in text
    assert "会议纪要 会议议定调整选址" in text and "议定事项 调整用地布局" in text
    assert ("出具调整后的规划意见（市自然资源局，2026-03-10） 市自然资源局 2026-03-10 办理中"
            in text)

    service.clock.set(beijing("2026-03-11"))
    text = page_text(office, "/records/meetings")
    assert "2026-03-10 已逾期" in text
    assert "共 1 条记录" in page_text(office, "/records/meetings?status=overdue")
    assert "共 0 条记录" in page_text(office, "/records/meetings?status=done")

    service.complete("follow_up", follow_up_result="已出具规划意见",
                     follow_up_done_date="2026-03-09")
    text = page_text(office, "/records/meetings?status=done")
    assert "共 1 条记录" in text and "落实情况：已出具规划意见" in text
    assert "2026-03-10 已办结" in text


def test_records_are_searchable_by_text_project_department_and_dates(app, service):
    joint_meeting(service)
    office = logged_in(app, "office")
    code = small_project()["code"]
    found = {"q=调整选址", "q=规划意见", f"project={code}", "project=冷链",
             "department=natural_resources", "since=2026-03-01&until=2026-03-31"}
    missed = {"q=不存在的内容", "project=2026-640521", "department=water",
              "since=2026-04-01", "until=2026-02-28"}
    for query in found:
        assert "共 1 条记录" in page_text(office, f"/records/meetings?{query}"), query
    for query in missed:
        text = page_text(office, f"/records/meetings?{query}")
        assert "共 0 条记录" in text and "没有符合条件的记录" in text, query
    assert "日期“2026-13-40”无法识别" in page_text(office, "/records/meetings?since=2026-13-40")


def test_leaders_see_the_records_of_their_own_department(app, service):
    joint_meeting(service)
    assert "共 1 条记录" in page_text(logged_in(app, "leader_natural_resources"),
                                      "/records/meetings?department=water")
    assert "共 0 条记录" in page_text(logged_in(app, "leader_water"), "/records/meetings")
    assert logged_in(app, "agent_water").get("/records/meetings").status_code == 403


def test_symposium_opinions_are_followed_by_their_departments(app, service):
    engine = service.engine
    case = engine.start_case("industry_symposium", {}, OFFICE)
    symposium = Service(engine, service.clock, case.id)
    symposium.complete("hold_symposium", industry="manufacturing", symposium_kind="symposium",
                       held_date="2026-03-02", enterprises="智造科技、冷链物流",
                       opinions=[{"issue": "用电报装周期长", "category": "pain_point",
                                  "department": "power_company"},
                                 {"issue": "水土保持方案审查标准不清", "category": "blockage",
                                  "department": "water"}])
    [water] = [t for t in symposium.ready("address_opinion") if t.department == "water"]
    engine.complete_task(water.id, {"measures": "印发审查要点", "resolved": True,
                                    "resolved_date": "2026-03-04"},
                         Actor("agent_water", "agent", "water"))
    office = logged_in(app, "office")
    text = page_text(office, "/records/symposiums")
    assert "行业 制造业" in text and "形式 座谈会" in text
    assert "用电报装周期长（国网中卫供电公司） 国网中卫供电公司 办理中" in text
    assert "水土保持方案审查标准不清（市水务局） 市水务局 已办结" in text
    assert "解决措施：印发审查要点" in text
    assert "共 1 条记录" in page_text(logged_in(app, "leader_water"), "/records/symposiums")


def test_policy_redemption_status_per_project(app, service):
    service.start(KEY_PROJECT)
    selected = service.case().data["selected_items"]
    service.complete("select_items", selected_items=selected)
    service.complete("review_material_list")
    service.complete("one_time_notice")
    service.complete("dispatch")
    service.complete("notify_policies")
    office = logged_in(app, "office")
    text = page_text(office, "/records/policies")
    assert KEY_PROJECT["name"] in text and "办理中" in text
    service.complete("redeem_policy")
    text = page_text(office, f"/records/policies?project={KEY_PROJECT['code']}&status=done")
    assert "共 1 条记录" in text and "兑现情况：已兑现" in text


def test_public_opinions_are_tracked_until_answered(app, service):
    engine = service.engine
    case = engine.start_case("public_opinion", {}, OFFICE)
    opinion = Service(engine, service.clock, case.id)
    opinion.complete("register_opinion", opinion_source="hotline",
                     opinion_content="希望公布各审批事项的办理进度", handling_department="water")
    office = logged_in(app, "office")
    text = page_text(office, "/records/opinions?q=办理进度")
    assert "共 1 条记录" in text and "研究整改 市水务局" in text and "办理中" in text
    opinion.complete("handle_opinion", by="water", rectification="在网站公开进度",
                     rectified_date="2026-03-03")
    opinion.complete("reply_opinion", reply="已公开", replied_date="2026-03-04")
    assert "共 1 条记录" in page_text(office, "/records/opinions?status=done")
