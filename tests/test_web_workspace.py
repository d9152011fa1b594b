"""The agent workspace over the real process pack: inbox, task page, new case, files, language."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest

from engine.actors import Actor
from engine.errors import CaseNotFound, InvalidData
from engine.store.files import AttachmentRefused, check_upload
from engine.store.models import Attachment, HumanTask
from tests.service import KEY_PROJECT
from tests.workspace import csrf_of, logged_in, make_workspace, token

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def ws(tmp_path, clock):
    return make_workspace(tmp_path, clock)


def test_the_inbox_lists_the_department_tasks_with_project_stage_and_counts(ws):
    case_id = ws.start()
    client = logged_in(ws.app, "agent_approval_bureau")
    page = client.get("/").get_data(as_text=True)
    assert KEY_PROJECT["name"] in page and "编制项目事项清单" in page and "受理登记" in page
    assert re.search(r'data-count="ready">1<', page)
    assert re.search(r'data-count="mine">0<', page)
    other = logged_in(ws.app, "agent_drc").get("/").get_data(as_text=True)
    assert "编制项目事项清单" not in other and "没有待办任务" in other
    ws.to_phase_one(case_id)
    page = client.get("/?phase=1").get_data(as_text=True)
    assert "企业投资项目备案" in page and "材料准备" in page and "告知惠企政策" not in page
    only = client.get("/?item=eia_report_form").get_data(as_text=True).split("<tbody>")[1]
    assert "环境影响报告表审批" in only and "企业投资项目备案" not in only


def test_inbox_filters_sorting_and_claimed_by_me(ws):
    first = ws.start()
    ws.clock.advance(hours=2)
    second = ws.start(name="第二个项目")
    [task] = ws.ready(second, "select_items")
    client = logged_in(ws.app, "agent_approval_bureau")
    client.post(f"/tasks/{task.id}/claim", data={"csrf_token": token(client),
                                                 "version": task.version})
    mine = client.get("/?mine=1").get_data(as_text=True)
    assert "第二个项目" in mine and KEY_PROJECT["name"] not in mine
    assert re.search(r'data-count="mine">1<', mine)
    # a colleague no longer sees the claimed task; the leader does, and may release it
    colleague = logged_in(ws.app, "agent2_approval_bureau").get("/").get_data(as_text=True)
    assert "第二个项目" not in colleague and KEY_PROJECT["name"] in colleague
    leader = logged_in(ws.app, "leader_approval_bureau")
    page = leader.get("/").get_data(as_text=True)
    assert "第二个项目" in page and "agent_approval_bureau" in page
    fresh = ws.engine.list_tasks(case_id=second)[0]
    released = leader.post(f"/tasks/{task.id}/release", data={
        "csrf_token": csrf_of(page), "version": fresh.version}, follow_redirects=True)
    assert "已释放：任务已放回部门待办" in released.get_data(as_text=True)
    assert ws.engine.list_tasks(case_id=second)[0].assignee is None
    by_age = client.get("/?sort=age").get_data(as_text=True)
    assert by_age.index(f"#{first} ") < by_age.index(f"#{second} ")
    assert "没有待办任务" in client.get("/?phase=4").get_data(as_text=True)


def test_overdue_tasks_are_red_counted_and_filtered(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    items = [t for t in ws.ready(case_id) if t.due_at is not None]
    assert items, "phase 1 items have due dates"
    task = items[0]
    assert task.department == "approval_bureau"
    client = logged_in(ws.app, "agent_approval_bureau")
    assert 'data-count="overdue">0<' in client.get("/").get_data(as_text=True)
    ws.clock.set(task.due_at + timedelta(hours=1))
    page = client.get("/").get_data(as_text=True)
    assert 'data-count="overdue">0<' not in page and "due-red" in page and "超期" in page
    overdue = client.get("/?overdue=1").get_data(as_text=True)
    assert task.title in overdue


def test_paging_keeps_the_filters(ws):
    for n in range(27):
        ws.start(name=f"项目{n:02d}")
        ws.clock.advance(minutes=5)
    client = logged_in(ws.app, "agent_approval_bureau")
    first = client.get("/?sort=age").get_data(as_text=True)
    assert "第 1 / 2 页（共 27 项）" in first and "项目00" in first and "项目26" not in first
    assert "page=2" in first and "sort=age" in first
    second = client.get("/?sort=age&page=2").get_data(as_text=True)
    assert "项目26" in second and "项目00" not in second


def test_the_language_switches_to_english_and_back(ws):
    ws.start()
    client = logged_in(ws.app, "agent_approval_bureau")
    assert "待办" in client.get("/").get_data(as_text=True)
    response = client.get("/lang/en?next=/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    page = client.get("/").get_data(as_text=True)
    assert "Inbox" in page and "Claimed by me" in page and 'lang="en"' in page
    assert "中文" in page
    client.get("/lang/zh")
    assert "我认领的" in client.get("/").get_data(as_text=True)
    # the login page switches too, before anyone logs in
    anonymous = ws.app.test_client()
    anonymous.get("/lang/en")
    assert "User name" in anonymous.get("/login").get_data(as_text=True)


def test_an_english_user_sees_engine_messages_in_english(ws):
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    client = logged_in(ws.app, "agent_approval_bureau")
    client.get("/lang/en")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    wrong = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": task.version, "action": "complete"})
    assert wrong.status_code == 422
    assert "This field is required." in wrong.get_data(as_text=True)


def test_the_office_registers_a_project_and_wrong_values_are_kept_and_marked(ws):
    client = logged_in(ws.app, "office")
    page = client.get("/cases/new").get_data(as_text=True)
    assert 'name="project.name"' in page and 'name="project.phone"' in page
    form = {"csrf_token": csrf_of(page), "process": "case_flow"}
    form.update({f"project.{k}": ("on" if v is True else str(v)) for k, v in KEY_PROJECT.items()
                 if v is not False})
    form["project.phone"] = "12345"
    form["project.name"] = "新登记的光伏项目"
    wrong = client.post("/cases/new", data=form)
    assert wrong.status_code == 422
    text = wrong.get_data(as_text=True)
    assert "请填写11位手机号或带区号的固定电话" in text
    assert 'value="12345"' in text and 'value="新登记的光伏项目"' in text
    assert ws.engine.count_cases() == 0
    form["project.phone"] = "13995550000"
    done = client.post("/cases/new", data=form)
    assert done.status_code == 302
    [case] = ws.engine.list_cases()
    assert case.title == "新登记的光伏项目" and case.data["project"]["phone"] == "13995550000"
    assert case.data["project"]["key_project"] is True
    listed = client.get("/cases?q=光伏").get_data(as_text=True)
    assert "新登记的光伏项目" in listed
    assert "没有找到案件" in client.get("/cases?q=不存在的项目").get_data(as_text=True)
    assert "新登记的光伏项目" in client.get(f"/cases?q={KEY_PROJECT['code'][:9]}").get_data(
        as_text=True)


def test_the_engine_validates_start_data_against_the_start_form(ws):
    with pytest.raises(InvalidData) as refused:
        ws.engine.start_case("case_flow", {"project": {**KEY_PROJECT, "code": "123"}},
                             Actor("office", "office", "leading_group_office"))
    assert [e.field for e in refused.value.errors] == ["project.code"]
    assert ws.engine.count_cases() == 0


def test_agents_of_other_roles_cannot_start_unstartable_or_any_case_as_auditor(ws):
    auditor = logged_in(ws.app, "auditor")
    assert auditor.get("/cases/new").status_code == 403
    agent = logged_in(ws.app, "agent_drc")
    assert agent.get("/cases/new").status_code == 200
    assert agent.get("/cases/new?process=item_approval").status_code == 404


def test_the_task_page_shows_the_case_context_and_earlier_decisions(ws):
    case_id = ws.start()
    ws.to_phase_one(case_id)
    item_task = next(t for t in ws.ready(case_id) if t.item_code)
    client = logged_in(ws.app, f"agent_{item_task.department}")
    page = client.get(f"/tasks/{item_task.id}").get_data(as_text=True)
    assert KEY_PROJECT["enterprise"] in page and KEY_PROJECT["code"] in page
    assert KEY_PROJECT["lead"] in page and "承诺时限" in page and "个工作日" in page
    assert "材料清单" in page and "申请表（申请书）" in page
    assert "编制项目事项清单" in page and "填写并分发审批任务派遣单" in page  # decisions


def test_the_item_list_is_prefilled_from_the_case(ws):
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    page = logged_in(ws.app, "agent_approval_bureau").get(f"/tasks/{task.id}").get_data(
        as_text=True)
    assert re.search(r'name="selected_items" value="project_filing" checked', page)


def test_attachments_upload_list_download_and_refusals(ws):
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    client = logged_in(ws.app, "agent_approval_bureau")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    upload = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": task.version, "action": "upload",
        "item_list_note": "先上传营业执照", "material": "business_license",
        "attachment": (io.BytesIO(PDF), "营业执照.pdf")}, content_type="multipart/form-data",
        follow_redirects=True)
    text = upload.get_data(as_text=True)
    assert "附件已上传：营业执照.pdf" in text and "先上传营业执照" in text  # note kept as draft
    with ws.engine.db.reading() as s:
        [row] = s.query(Attachment).all()
    assert row.sha256 == __import__("hashlib").sha256(PDF).hexdigest()
    assert (ws.engine.config.instance_dir / "attachments" / row.sha256[:2] / row.sha256).exists()
    download = client.get(f"/attachments/{row.id}")
    assert download.status_code == 200 and download.data == PDF
    assert "attachment" in download.headers["Content-Disposition"]
    download.close()
    assert "营业执照.pdf" in client.get(f"/cases/{case_id}").get_data(as_text=True)
    # another department's agent cannot tell the file from a missing one
    assert logged_in(ws.app, "agent_drc").get(f"/attachments/{row.id}").status_code == 404
    audit = logged_in(ws.app, "auditor").get(f"/attachments/{row.id}")
    assert audit.status_code == 200
    audit.close()
    fresh = ws.engine.list_tasks(case_id=case_id)[0]
    wrong_type = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": fresh.version, "action": "upload",
        "item_list_note": "保留这段说明",
        "attachment": (io.BytesIO(b"MZ\x90\x00"), "setup.exe")},
        content_type="multipart/form-data")
    assert wrong_type.status_code == 422
    body = wrong_type.get_data(as_text=True)
    assert "只能上传 PDF、JPG、PNG、DOCX 和 XLSX 文件" in body and "保留这段说明" in body
    fake = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": fresh.version, "action": "upload",
        "attachment": (io.BytesIO(b"not a pdf"), "scan.pdf")}, content_type="multipart/form-data")
    assert "文件内容与其类型不符" in fake.get_data(as_text=True)
    with pytest.raises(AttachmentRefused, match="larger than 10 MB"):
        check_upload("big.pdf", b"%PDF-" + b"0" * (10 * 1024 * 1024))
    ws.app.config["MAX_CONTENT_LENGTH"] = 4096  # the request limit, without a 10 MB body
    big = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": fresh.version, "action": "upload",
        "attachment": (io.BytesIO(b"%PDF-" + b"0" * 8192), "big.pdf")},
        content_type="multipart/form-data")
    assert big.status_code == 413 and "超过 10 MB，未保存任何内容" in big.get_data(as_text=True)
    with ws.engine.db.reading() as s:
        assert s.query(Attachment).count() == 1


def test_a_stale_form_keeps_the_values_and_says_what_happened(ws):
    case_id = ws.start()
    [task] = ws.ready(case_id, "select_items")
    client = logged_in(ws.app, "agent_approval_bureau")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    ws.engine.claim_task(task.id, Actor("agent_approval_bureau", "agent", "approval_bureau"))
    response = client.post(f"/tasks/{task.id}", data={
        "csrf_token": csrf_of(page), "version": task.version, "action": "complete",
        "selected_items": ["project_filing"], "item_list_note": "我的会商意见"})
    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert "已被他人认领、释放或保存过" in text and "我的会商意见" in text


def test_engine_queries_filter_and_count_in_sql(ws):
    ids = [ws.start(name=f"查询项目{n}") for n in range(3)]
    assert ws.engine.count_tasks(department="approval_bureau") == 3
    assert ws.engine.count_tasks(department="approval_bureau", phase="1") == 0
    assert len(ws.engine.list_tasks(department="approval_bureau", limit=2)) == 2
    assert ws.engine.count_cases(search="查询项目1") == 1
    assert ws.engine.count_cases(department="drc") == 0
    assert ws.engine.count_cases(department="approval_bureau") == 3
    assert ws.engine.may_see_case(ids[0], Actor("x", "agent", "approval_bureau"))
    assert not ws.engine.may_see_case(ids[0], Actor("x", "agent", "drc"))
    with pytest.raises(CaseNotFound):  # hidden reads as missing
        ws.engine.check_case_visible(ids[0], Actor("x", "leader", "drc"))
    with ws.engine.db.reading() as s:
        assert s.query(HumanTask).count() == 3


def test_the_case_timeline_names_the_completed_tasks(ws):
    case_id = ws.start()
    ws.complete(case_id, "select_items")
    ws.complete(case_id, "review_material_list")
    page = logged_in(ws.app, "office").get(f"/cases/{case_id}").get_data(as_text=True)
    timeline = page[page.index('class="timeline"'):]
    assert "编制项目事项清单" in timeline and "编制事项材料清单" in timeline
    [completed] = [e for e in ws.engine.case_events(case_id) if e.type == "task_completed"][:1]
    assert completed.data["task_id"] not in timeline  # names, not internal ids


def test_the_office_terminates_a_case_from_its_page_with_a_reason(ws):
    case_id = ws.start()
    agent = logged_in(ws.app, "agent_approval_bureau")
    assert "终止代办服务" not in agent.get(f"/cases/{case_id}").get_data(as_text=True)
    office = logged_in(ws.app, "office")
    page = office.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "终止代办服务" in page
    empty = office.post(f"/cases/{case_id}/terminate", data={"csrf_token": csrf_of(page),
                                                            "reason": "  "})
    assert empty.status_code == 302
    assert "请填写终止代办服务的原因" in office.get(f"/cases/{case_id}").get_data(as_text=True)
    assert ws.engine.get_case(case_id).status == "running"
    office.post(f"/cases/{case_id}/terminate", data={"csrf_token": csrf_of(page),
                                                   "reason": "项目单位主动要求终止"})
    shown = office.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "已终止代办服务：项目单位主动要求终止" in shown
    case = ws.engine.get_case(case_id)
    assert (case.status, case.end_reason) == ("terminated", "项目单位主动要求终止")
    assert ws.ready(case_id) == []


def test_green_channel_tasks_are_marked_and_can_be_filtered(ws):
    green = ws.start(name="绿色通道储能项目", green_channel=True)
    plain = ws.start(name="普通备案项目", code="2026-640502-59-03-000999")
    for case_id in (green, plain):
        ws.to_phase_one(case_id)
    client = logged_in(ws.app, "agent_approval_bureau")
    page = client.get("/").get_data(as_text=True)
    rows = {case_id: page.count(f'href="/cases/{case_id}"') for case_id in (green, plain)}
    assert rows[green] and rows[plain]
    assert page.count('class="badge badge-green"') == rows[green]
    only = client.get("/?green=1").get_data(as_text=True)
    assert f'href="/cases/{green}"' in only and f'href="/cases/{plain}"' not in only
    assert ws.engine.count_tasks(department="approval_bureau", green_only=True) == rows[green]
