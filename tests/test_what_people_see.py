"""What people see (issue 29): labelled phone rows, a task form that names its item and
offers its own materials, accounts that are found and deactivated deliberately, absences
a leader records, names instead of codes."""

from __future__ import annotations

import re

import pytest

from engine.runtime.clock import MovableClock
from tests.conftest import START
from tests.webhelpers import csrf_of, text_of
from tests.workspace import logged_in, make_workspace


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path, MovableClock(START))


def test_each_inbox_cell_is_labelled_with_its_column(ws):
    ws.start()
    page = logged_in(ws.app, "agent_approval_bureau").get("/").get_data(as_text=True)
    row = page[page.index("<tr class=\"due-row"):]
    row = row[:row.index("</tr>")]
    labels = re.findall(r'data-label="([^"]*)"', row)
    assert labels == ["案件", "任务", "事项", "阶段", "环节", "期限", "已等待", "办理人"]


def test_the_inbox_names_the_phase_instead_of_its_digit(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    page = logged_in(ws.app, "agent_approval_bureau").get("/").get_data(as_text=True)
    phases = re.findall(r'data-label="阶段">(.*?)</td>', page)
    named = [text_of(p).strip() for p in phases if p]
    assert named and all(n.startswith("第1阶段（") for n in named), named


def _preparation(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    tasks = [t for t in ws.ready(case_id, "prepare_materials")]
    assert tasks
    return tasks[0]


def test_a_task_form_names_its_item_and_offers_only_its_materials(ws):
    task = _preparation(ws)
    client = logged_in(ws.app, "agent_approval_bureau")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    heading = text_of(page[page.index("<h1>"):page.index("</h1>")])
    assert task.item_name and task.item_name in heading
    checklist = page[page.index('id="f-prepared_materials"'):]
    checklist = checklist[:checklist.index("</span>")]
    offered = re.findall(r'value="([^"]+)"', checklist)
    item = ws.engine.get_case(task.case_id).data
    own = {m["code"] for m in item["materials"] if task.item_code in (m.get("items") or [])}
    assert own and set(offered) == own
    assert len(offered) < 10


def test_the_accounts_list_searches_and_filters(ws):
    admin = logged_in(ws.app, "admin")
    page = admin.get("/admin/accounts?q=drc").get_data(as_text=True)
    shown = re.findall(r'data-username="([^"]+)"', page)
    assert shown == ["agent_drc", "leader_drc"]
    assert "显示 2 个账户，共 10 个" in text_of(page)
    leaders = re.findall(r'data-username="([^"]+)"', admin.get(
        "/admin/accounts?role=leader&department=drc").get_data(as_text=True))
    assert leaders == ["leader_drc"]
    none = admin.get("/admin/accounts?q=nobody").get_data(as_text=True)
    assert "没有符合条件的账户" in none


def test_deactivating_asks_first_and_the_person_is_told_at_login(ws):
    from tests.workspace import PASSWORD

    admin = logged_in(ws.app, "admin")
    water = logged_in(ws.app, "agent_water")
    page = admin.get("/admin/accounts?q=agent_water").get_data(as_text=True)
    form = page[page.index("/admin/accounts/agent_water/deactivate"):]
    form = form[:form.index("</form>")]
    assert "data-confirm=" in form and "停用账户 agent_water？" in form
    assert admin.post("/admin/accounts/agent_water/deactivate", data={
        "csrf_token": csrf_of(page), "next": "/admin/accounts?q=agent_water"}
    ).headers["Location"] == "/admin/accounts?q=agent_water"
    # the open session ends with a reason, not a bare login page
    landed = water.get("/", follow_redirects=True).get_data(as_text=True)
    assert "/login" in landed and "此账户已停用，请联系管理员重新启用。" in text_of(landed)
    # logging in again: the right password learns why; a wrong one learns nothing
    fresh = ws.app.test_client()
    token = csrf_of(fresh.get("/login").get_data(as_text=True))
    right = fresh.post("/login", data={"username": "agent_water", "password": PASSWORD,
                                       "csrf_token": token}).get_data(as_text=True)
    assert "此账户已停用" in right
    wrong = fresh.post("/login", data={"username": "agent_water", "password": "wrong-one",
                                       "csrf_token": token}).get_data(as_text=True)
    assert "此账户已停用" not in wrong and "用户名或密码错误" in wrong


def test_a_leader_records_an_absence_for_his_unit_and_the_substitute_learns_of_it(ws):
    from agency import notify

    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    agent = logged_in(ws.app, "agent_approval_bureau")
    agent.post(f"/tasks/{task.id}/claim", data={"csrf_token": csrf_of(
        agent.get(f"/tasks/{task.id}").get_data(as_text=True)), "version": task.version})
    leader = logged_in(ws.app, "leader_approval_bureau")
    page = leader.get("/team").get_data(as_text=True)
    form = page[page.index('id="absence-form"'):]
    form = form[:form.index("</form>")]
    picker = form[form.index('name="username"'):form.index("</select>")]
    # only the unit's agents, each with the unit's name
    assert re.findall(r'<option value="([^"]+)"', picker) == [
        "agent2_approval_bureau", "agent_approval_bureau"]
    assert all("市审批服务管理局" in o for o in re.findall(r"<option[^>]*>([^<]*)<", picker))
    today = ws.clock().date().isoformat()
    # an agent of another unit is refused
    refused = leader.post("/team/absences", data={
        "csrf_token": csrf_of(page), "username": "agent_drc", "substitute": "agent_drc",
        "starts_on": today, "ends_on": today, "reason": ""})
    assert refused.status_code == 422
    done = leader.post("/team/absences", data={
        "csrf_token": csrf_of(page), "username": "agent_approval_bureau",
        "substitute": "agent2_approval_bureau", "starts_on": today, "ends_on": today,
        "reason": "培训"}, follow_redirects=True).get_data(as_text=True)
    assert "1 项未办结任务已转交 agent2_approval_bureau，并已通知本人" in text_of(done)
    [told] = notify.list_notifications(ws.engine, "agent2_approval_bureau")
    assert "agent_approval_bureau" in told.title and "已转交 1 项任务" in told.body
    inbox = logged_in(ws.app, "agent2_approval_bureau").get("/").get_data(as_text=True)
    row = inbox[inbox.index(f'data-task="{task.id}"'):]
    row = row[:row.index("</tr>")]
    assert "替 agent_approval_bureau 代岗" in text_of(row)


def test_the_team_page_says_a_substitute_was_deactivated(ws):
    from agency import team
    from tests.service import OFFICE

    today = ws.clock().date()
    team.record_absence(ws.engine, "agent_approval_bureau", "agent2_approval_bureau", today,
                        today, "", OFFICE)
    admin = logged_in(ws.app, "admin")
    page = admin.get("/admin/accounts").get_data(as_text=True)
    admin.post("/admin/accounts/agent2_approval_bureau/deactivate",
               data={"csrf_token": csrf_of(page)})
    shown = text_of(logged_in(ws.app, "office").get("/team").get_data(as_text=True))
    assert "账户已停用，请另选替岗人" in shown


def test_chinese_pages_name_events_units_and_states_instead_of_codes(ws):
    from sqlalchemy import select

    from agency import alerts
    from agency.enterprise import EnterpriseLinks
    from agency.models import Notification
    from tests.service import OFFICE

    case_id = ws.start()
    EnterpriseLinks(ws.engine).create(case_id, OFFICE, "王经理")
    office = logged_in(ws.app, "office")
    timeline = text_of(office.get(f"/cases/{case_id}").get_data(as_text=True))
    assert "生成企业查询链接" in timeline and "enterprise_link_created" not in timeline
    # a warning names the unit that handles the task, not its code
    ws.to_phase_one(case_id)
    ws.clock.advance(days=60)
    alerts.sweep(ws.engine)
    with ws.engine.db.reading() as s:
        bodies = list(s.scalars(select(Notification.body).where(
            Notification.kind.like("warning_%"))))
    assert bodies and all(re.search(r"由 [a-z_]+ ", b) is None for b in bodies), bodies[:3]
    assert any("由 市审批服务管理局 办理" in b for b in bodies)
    # the operations log names what was done and with what
    admin = logged_in(ws.app, "admin")
    admin.post("/admin/accounts/agent_water/deactivate", data={"csrf_token": csrf_of(
        admin.get("/admin/accounts").get_data(as_text=True))})
    ops = text_of(logged_in(ws.app, "auditor").get("/audit/ops").get_data(as_text=True))
    assert "停用账户" in ops and "account_deactivated" not in ops
    # a terminated case on the dashboard reads as such
    ws.engine.terminate_case(case_id, "企业申请终止", OFFICE)
    # after dispatch the service ends through its hand-backs and record (R03)
    from engine.actors import Actor
    from tests.service import DEFAULT_DATA
    bureau = Actor("agent_approval_bureau", "agent", "approval_bureau")
    for _ in range(20):
        steps = [t for t in ws.engine.list_tasks(case_id=case_id)
                 if t.spec_name in ("hand_back_materials", "termination_record")]
        if not steps:
            break
        for step in steps:
            data = {**DEFAULT_DATA.get(step.spec_name, {})}
            if step.spec_name == "hand_back_materials":
                data.setdefault("returned_materials", ["申请表"])
            ws.engine.complete_task(step.id, data, bureau)
    assert ws.engine.get_case(case_id).status == "terminated"
    board = text_of(office.get("/dashboard").get_data(as_text=True))
    assert "已终止" in board and "terminated" not in board


def test_migration_reasons_and_diff_details_read_in_chinese(ws):
    from webapp.pack_messages import diff_detail, migration_reason

    with ws.app.test_request_context("/"):
        assert migration_reason(
            "completed task prepare_materials (协助准备申报材料) changed in the new version "
            "(bpmn_name, outputs)") == \
            "任务 “协助准备申报材料”（已完成）在新版本中被修改：名称、流出的顺序流。"
        assert migration_reason("open task check (核验材料) no longer exists in the new "
                                "version") == "任务 “核验材料”（待办）在新版本中已不存在。"
        lanes = diff_detail("lane members: 'a, b' → 'a, b, c'",
                            {"a": "准备材料", "b": "核验材料", "c": "受理"})
        assert lanes.endswith("'准备材料、核验材料' → '准备材料、核验材料、受理'")


def test_old_refusal_reasons_leave_once_the_item_is_accepted(ws):
    from engine.actors import Actor
    from tests.service import DEFAULT_DATA

    case_id = ws.start()
    ws.to_phase_one(case_id)

    def one(spec):
        [task] = [t for t in ws.ready(case_id, spec) if t.item_code == "project_filing"]
        return task

    def done(spec, **data):
        task = one(spec)
        ws.engine.complete_task(task.id, {**DEFAULT_DATA.get(spec, {}), **data},
                                Actor("agent", "agent", task.department), task.version)

    done("prepare_materials")
    done("check_materials", decision="reject", rejection_reasons=["申请表未加盖公章"])
    bureau = logged_in(ws.app, "agent_approval_bureau")
    notice = bureau.get(f"/tasks/{one('notify_rejection').id}").get_data(as_text=True)
    assert 'id="reasons-to-pass-on"' in notice and "申请表未加盖公章" in notice
    done("notify_rejection")
    done("prepare_materials")
    done("check_materials", decision="accept")
    track = one("track_approval")
    page = logged_in(ws.app, "agent_drc").get(f"/tasks/{track.id}").get_data(as_text=True)
    assert 'id="reasons-to-pass-on"' not in page


def test_a_field_required_once_shown_is_marked_required(ws):
    from engine.actors import Actor
    from tests.service import DEFAULT_DATA

    case_id = ws.start()
    ws.to_phase_one(case_id)
    for spec in ("prepare_materials", "check_materials"):
        [task] = [t for t in ws.ready(case_id, spec) if t.item_code == "project_filing"]
        ws.engine.complete_task(task.id, DEFAULT_DATA[spec],
                                Actor("agent", "agent", task.department), task.version)
    [track] = [t for t in ws.ready(case_id, "track_approval")
               if t.item_code == "project_filing"]
    page = logged_in(ws.app, "agent_drc").get(f"/tasks/{track.id}").get_data(as_text=True)
    for name in ("approval_no", "approved_date"):
        box = page[page.index(f'data-field="{name}"'):]
        box = box[:box.index("</label>")]
        assert "data-show-when" in box and '<span class="req">*</span>' in box, name


def test_smaller_things_people_saw(ws):
    case_id = ws.start(investment_wan=86000.0)
    office = logged_in(ws.app, "office")
    # the office lands on its dashboard
    page = office.get("/login").get_data(as_text=True)
    fresh = ws.app.test_client()
    from tests.workspace import PASSWORD

    token = csrf_of(fresh.get("/login").get_data(as_text=True))
    assert fresh.post("/login", data={"username": "office", "password": PASSWORD,
                                      "csrf_token": token}).headers["Location"] == "/dashboard"
    # an investment in whole ten-thousands reads without a decimal
    case = text_of(office.get(f"/cases/{case_id}").get_data(as_text=True))
    assert "86000 万元" in case and "86000.0" not in case
    # the digest of this week offers no week in the future and says nothing was asked
    digest = office.get("/progress-reports").get_data(as_text=True)
    assert "下一周" not in text_of(digest) and "上一周" in text_of(digest)
    assert "本周没有需要报送的进度" in text_of(digest) and "各部门均已报送" not in text_of(digest)
    assert "CSV：" in digest
    english = logged_in(ws.app, "office")
    english.get("/lang/en")
    assert "CSV：" not in english.get("/progress-reports").get_data(as_text=True)
    # the event checkboxes of the integrations page sit in their labels
    admin = logged_in(ws.app, "admin").get("/admin/integrations/").get_data(as_text=True)
    boxes = re.findall(r'<label class="check"><input type="checkbox" name="event_types"', admin)
    assert boxes
    assert page


@pytest.mark.parametrize("username", ["agent_approval_bureau", "leader_drc"])
def test_every_task_link_on_a_case_page_opens_for_its_reader(ws, username):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    client = logged_in(ws.app, username)
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    links = set(re.findall(r'href="(/tasks/[^"#/]+)"', page))
    assert links
    assert {link: client.get(link).status_code for link in links} == dict.fromkeys(links, 200)


def test_english_case_page_names_tasks_and_roles_in_english(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    client = logged_in(ws.app, "agent_approval_bureau")
    client.get("/lang/en")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    timeline = text_of(page[page.index('<ol class="timeline">'):])
    timeline = timeline[:timeline.index("</ol>") if "</ol>" in timeline else None]
    assert "编制项目事项清单" not in timeline and "核对投资项目代码" not in timeline
    header = text_of(page[page.index('class="who"'):][:200])
    assert "（" not in header and "(Agent)" in header
