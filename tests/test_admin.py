"""Administrators' pages: library, editor, save, publish, diff, migration, DMN, permissions."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from engine import accounts
from engine.actors import SYSTEM
from engine.store.models import Event, ProcessVersion
from tests.conftest import PACK
from tests.test_interop_miwg import FILES as MIWG_FILES
from tests.test_library import phase_2_data, review, with_condition, with_confirmation_task
from tests.webhelpers import PASSWORD, csrf_of, logged_in, text_of
from webapp import create_app


@pytest.fixture
def app(make_pack_engine, sqlite_url, tmp_path):
    engine = make_pack_engine(sqlite_url)
    with engine.db.transaction() as s:
        for name, role, dept in (("admin", "admin", None), ("auditor", "auditor", None),
                                 ("agent_housing", "agent", "housing_construction")):
            accounts.create_user(s, name, PASSWORD, role, department=dept, now=engine.clock())
    return create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                       "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})




def token(client) -> str:
    return csrf_of(client.get("/admin/processes").get_data(as_text=True)
                   if client is not None else "")


def version_count(app) -> int:
    with app.extensions["zerorun"].db.reading() as s:
        return s.scalar(select(func.count()).select_from(ProcessVersion))


def save_json(client, csrf, xml: bytes, file="phase_2.bpmn", comment="", forms=None):
    return client.post("/admin/processes/save", data=json.dumps(
        {"file": file, "xml": xml.decode(), "comment": comment, "forms": forms or {}}),
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf})


def test_the_library_lists_every_process_with_versions_and_running_cases(app):
    engine = app.extensions["zerorun"]
    engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    for user in ("admin", "auditor"):
        page = logged_in(app, user).get("/admin/processes").get_data(as_text=True)
        assert 'id="process-phase_2"' in page and 'id="process-case_flow"' in page
        section = page.split('id="process-phase_2"')[1].split("</section>")[0]
        assert "新案件使用：第 1 版" in section and "已发布" in section
        assert '<td class="running">1</td>' in section
        assert ("/admin/processes/phase_2/edit" in section) == (user == "admin")


@pytest.mark.parametrize("user,status", [("auditor", 403), ("agent_housing", 403)])
def test_only_administrators_reach_the_editing_routes(app, user, status):
    client = logged_in(app, user)
    csrf = csrf_of(client.get("/", follow_redirects=True).get_data(as_text=True))
    engine = app.extensions["zerorun"]
    with engine.db.reading() as s:
        version_id = s.scalar(select(ProcessVersion.id).where(
            ProcessVersion.process_id == "phase_2"))
    case = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    before = version_count(app)
    assert client.get("/admin/processes/phase_2/edit").status_code == status
    assert client.get("/admin/processes/phase_2/migrate").status_code == status
    assert client.get("/admin/decisions/item_selection.dmn").status_code == status
    posts = [
        ("/admin/processes/save", {}),
        ("/admin/processes/upload", {}),
        (f"/admin/versions/{version_id}/publish", {}),
        ("/admin/processes/phase_2/migrate", {"case": case.id, "to": version_id}),
        (f"/admin/cases/{case.id}/revert-migration", {}),
        ("/admin/decisions/item_selection.dmn", {"rows": 0}),
    ]
    for url, form in posts:
        assert client.post(url, data={**form, "csrf_token": csrf}).status_code == status, url
    assert version_count(app) == before
    expected = 200 if user == "auditor" else 403
    assert client.get("/admin/processes").status_code == expected
    assert client.get(f"/admin/versions/{version_id}/download").status_code == expected


def test_the_editor_opens_the_published_version_in_the_modeler(app):
    client = logged_in(app, "admin")
    page = client.get("/admin/processes/phase_2/edit").get_data(as_text=True)
    assert "vendor/bpmn-modeler.js" in page and "js/admin-editor.js" in page
    data = json.loads(re.search(r'id="editor-data">(.*?)</script>', page, re.S).group(1))
    assert data["file"] == "phase_2.bpmn" and data["version"]["number"] == 1
    assert data["xml"] == (PACK / "phase_2.bpmn").read_text(encoding="utf-8")
    assert "joint_drawing_review.schema.json" in data["forms"]
    assert "item_approval" in data["processes"]
    assert ["housing_construction", "市住房和城乡建设局"] in data["departments"]


def test_a_valid_save_creates_a_draft_and_an_invalid_one_stores_nothing(app):
    client = logged_in(app, "admin")
    csrf = token(client)
    original = (PACK / "phase_2.bpmn").read_bytes()
    ok = save_json(client, csrf, with_confirmation_task(original), comment="加确认")
    assert ok.status_code == 201
    # the processes by name, not by id
    assert "工程建设许可阶段 第 2 版" in ok.get_json()["message"]
    assert "phase_2" not in ok.get_json()["message"]
    before = version_count(app)
    bad = save_json(client, csrf, with_condition(
        original, "flow_has_items_to_confirm_planning_conditions", "__import__('os')"))
    assert bad.status_code == 422
    body = bad.get_json()
    assert "未存储任何内容" in body["message"]
    [problem] = body["problems"]
    assert problem["element"] == "flow_has_items_to_confirm_planning_conditions"
    assert problem["element_name"] == "有事项" and "__import__" in problem["message"]
    assert version_count(app) == before
    no_token = client.post("/admin/processes/save", json={"file": "phase_2.bpmn", "xml": ""})
    assert no_token.status_code == 400  # CSRF


def test_a_save_with_a_new_form_stores_it_in_the_version(app):
    client = logged_in(app, "admin")
    # the new task (and only it) gets a new form, sent with the diagram
    root_xml = with_confirmation_task((PACK / "phase_2.bpmn").read_bytes()).replace(
        b'"joint_drawing_review.schema.json"/><spiffworkflow:property name="departmentExpression"',
        b'"confirm.schema.json"/><spiffworkflow:property name="departmentExpression"')
    assert root_xml.count(b"confirm.schema.json") == 1
    form = {"type": "object", "properties": {"confirmed": {"type": "boolean", "title": "已确认"}}}
    response = save_json(client, token(client), root_xml,
                         forms={"confirm.schema.json": json.dumps(form)})
    assert response.status_code == 201, response.get_json()
    engine = app.extensions["zerorun"]
    with engine.db.reading() as s:
        draft = s.scalar(select(ProcessVersion).where(ProcessVersion.process_id == "phase_2",
                                                      ProcessVersion.number == 2))
    assert "forms/confirm.schema.json" in draft.sources
    missing = save_json(client, token(client), root_xml.replace(b"confirm.schema.json",
                                                                b"nowhere.schema.json"))
    assert missing.status_code == 422
    [problem] = missing.get_json()["problems"]
    assert problem["message"] == "表单文件 forms/nowhere.schema.json 不存在或无效。"
    assert "forms/nowhere.schema.json does not exist" in problem["engine_message"]


def test_a_sequential_multi_instance_call_activity_is_refused_before_any_case_runs_it(app):
    """SpiffWorkflow would fail at the second item: the editor names the element and says how
    to fix it, in the user's language, and keeps no version."""
    client = logged_in(app, "admin")
    xml = (PACK / "phase_2.bpmn").read_bytes().replace(
        b"<bpmn:multiInstanceLoopCharacteristics>",
        b'<bpmn:multiInstanceLoopCharacteristics isSequential="true">')
    response = save_json(client, token(client), xml)
    assert response.status_code == 422
    [problem] = response.get_json()["problems"]
    assert problem["element"] == "items" and "并联办理审批事项" in json.dumps(
        problem, ensure_ascii=False)
    assert problem["message"].startswith("串行多实例的子流程或调用活动无法运行")
    engine = app.extensions["zerorun"]
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(ProcessVersion).where(
            ProcessVersion.process_id == "phase_2")) == 1


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
<bpmn:process id="bomb" isExecutable="true"><bpmn:documentation>&lol3;</bpmn:documentation>
</bpmn:process></bpmn:definitions>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
<bpmn:process id="leak" isExecutable="true"><bpmn:documentation>&secret;</bpmn:documentation>
</bpmn:process></bpmn:definitions>"""


@pytest.mark.parametrize("name,body", [("bomb.bpmn", BOMB), ("leak.bpmn", EXTERNAL)])
def test_xml_attacks_through_the_upload_are_refused_and_nothing_is_stored(app, name, body):
    from io import BytesIO

    client = logged_in(app, "admin")
    before = version_count(app)
    response = client.post("/admin/processes/upload", data={
        "csrf_token": token(client), "file": (BytesIO(body), name)},
        content_type="multipart/form-data")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f"上传的文件 {name} 未被接受，未存储任何内容" in page
    assert "流程文件中不允许 DOCTYPE 声明（DTD 和实体）" in page
    assert "root:" not in page and "lollollol" not in page
    assert version_count(app) == before
    also = save_json(client, token(client), body, file=name)
    assert also.status_code == 422 and version_count(app) == before


def test_an_oversized_file_is_refused_with_the_limit(app):
    client = logged_in(app, "admin")
    before = version_count(app)
    response = save_json(client, token(client), b"<a>" + b" " * (5 * 1024 * 1024) + b"</a>",
                         file="big.bpmn")
    assert response.status_code == 422
    [problem] = response.get_json()["problems"]
    assert "最多接受 5,242,880 字节" in problem["message"]
    assert version_count(app) == before


def test_publish_diff_and_migrate_through_the_pages(app):
    engine = app.extensions["zerorun"]
    # phase_2 is called by the main flow; the system starts it on its own for the test
    waiting = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    past = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    review(engine, past.id)
    client = logged_in(app, "admin")
    save_json(client, token(client), with_confirmation_task((PACK / "phase_2.bpmn").read_bytes()))
    with engine.db.reading() as s:
        draft = s.scalar(select(ProcessVersion).where(ProcessVersion.process_id == "phase_2",
                                                      ProcessVersion.number == 2))
    diff = client.get("/admin/processes/phase_2/diff?from=1&to=2").get_data(as_text=True)
    assert 'data-element="confirm_drawings" data-kind="added"' in diff
    # element names first, the id beside them; an unnamed flow by the elements it joins
    assert "终点: &#39;并联办理审批事项&#39; → &#39;确认审查意见&#39;" in diff
    changed = re.search(r'data-element="flow_confirm_planning_conditions_to_items" '
                        r'data-kind="changed">(.*?)</li>', diff, re.S).group(1)
    assert re.search(r'<strong>修改</strong>\s*<span class="change-title">核实规划设计条件'
                     r' → 确认审查意见</span>\s*<span class="muted">顺序流 · 标识 '
                     r'<code class="identifier">flow_confirm_planning_conditions_to_items</code>',
                     changed), changed
    assert '<span class="change-title">确认审查意见</span>' in diff
    published = client.post(f"/admin/versions/{draft.id}/publish",
                            data={"csrf_token": token(client)}, follow_redirects=True)
    text = published.get_data(as_text=True)
    assert "已发布：工程建设许可阶段 第 2 版" in text and "代办服务主流程 第 2 版" in text
    with engine.db.reading() as s:
        ops = [e.type for e in s.scalars(select(Event).where(Event.stream == "ops"))]
    assert "process_version_published" in ops

    page = client.get("/admin/processes/phase_2/migrate").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-case="(\d+)" class="(safe|unsafe)"', page))
    assert rows == {str(waiting.id): "safe", str(past.id): "unsafe"}
    assert "任务 “核实规划设计条件”（已完成）在新版本中被修改" in page
    assert "confirm_planning_conditions" not in text_of(page)
    moved = client.post("/admin/processes/phase_2/migrate", data={
        "csrf_token": token(client), "to": draft.id, "case": [waiting.id, past.id]},
        follow_redirects=True).get_data(as_text=True)
    assert f"已迁移到第 2 版的案件：#{waiting.id}" in moved
    assert f"未迁移 #{past.id}" in moved
    assert engine.get_case(waiting.id).process_version_id == draft.id
    assert engine.get_case(past.id).process_version_id != draft.id
    reverted = client.post(f"/admin/cases/{waiting.id}/revert-migration",
                           data={"csrf_token": token(client)}, follow_redirects=True)
    assert f"已撤销案件 #{waiting.id} 的迁移" in reverted.get_data(as_text=True)
    assert engine.get_case(waiting.id).process_version_id != draft.id
    assert engine.verify_case(waiting.id).ok


def test_the_decision_table_is_edited_as_a_table(app):
    client = logged_in(app, "admin")
    page = client.get("/admin/decisions/item_selection.dmn").get_data(as_text=True)
    assert "立项方式" in page and 'value="&#34;approval&#34;"' in page
    rows = int(re.search(r'name="rows" value="(\d+)"', page).group(1))
    form = dict(re.findall(r'name="(r\d+-[a-z0-9]+)" value="([^"]*)"', page))
    form = {k: v.replace("&#34;", '"').replace("&#39;", "'") for k, v in form.items()}
    form = {k: v for k, v in form.items() if not k.endswith("-delete")}
    form["r0-description"] = "核准类项目（已修订）"
    bad = {**form, "r0-in0": "__import__('os')", "rows": rows, "csrf_token": csrf_of(page)}
    before = version_count(app)
    refused = client.post("/admin/decisions/item_selection.dmn", data=bad)
    assert refused.status_code == 422
    assert "__import__" in refused.get_data(as_text=True) and version_count(app) == before
    saved = client.post("/admin/decisions/item_selection.dmn", data={
        **form, "rows": rows, "csrf_token": csrf_of(page)}, follow_redirects=True)
    assert "代办服务主流程 第 2 版" in saved.get_data(as_text=True)
    library = app.extensions["zerorun"]
    with library.db.reading() as s:
        draft = s.scalar(select(ProcessVersion).where(ProcessVersion.process_id == "case_flow",
                                                      ProcessVersion.number == 2))
    assert "核准类项目（已修订）" in draft.sources["item_selection.dmn"]
    published = (PACK / "item_selection.dmn").read_text(encoding="utf-8")
    assert draft.sources["item_selection.dmn"].count("<rule ") == published.count("<rule ")


def test_a_decision_table_without_rules_or_rows_is_refused_and_nothing_stored(app):
    client = logged_in(app, "admin")
    page = client.get("/admin/decisions/item_selection.dmn").get_data(as_text=True)
    before = version_count(app)
    rows = int(re.search(r'name="rows" value="(\d+)"', page).group(1))
    every_row_deleted = {f"r{n}-delete": "on" for n in range(rows)}
    emptied = client.post("/admin/decisions/item_selection.dmn", data={
        **every_row_deleted, "rows": rows, "csrf_token": csrf_of(page)})
    assert emptied.status_code == 422
    assert "决策表至少需要一条规则" in emptied.get_data(as_text=True)
    malformed = client.post("/admin/decisions/item_selection.dmn",
                            data={"csrf_token": csrf_of(page)})
    assert malformed.status_code == 400
    assert version_count(app) == before


@pytest.mark.parametrize("path", MIWG_FILES, ids=lambda p: p.name)
def test_deploying_a_miwg_diagram_stores_it_or_names_each_element_and_reason(app, path):
    from io import BytesIO

    client = logged_in(app, "admin")
    before = version_count(app)
    response = client.post("/admin/processes/upload", data={
        "csrf_token": token(client), "file": (BytesIO(path.read_bytes()), path.name)},
        content_type="multipart/form-data")
    if response.status_code == 302:
        assert version_count(app) > before
        page = client.get("/admin/processes").get_data(as_text=True)
        assert "已上传并保存为草稿" in page
        return
    assert response.status_code == 422
    assert version_count(app) == before
    page = response.get_data(as_text=True)
    assert f"上传的文件 {path.name} 未被接受，未存储任何内容" in page
    items = re.findall(r"<li>(.*?)</li>", page.split('id="upload-problems"')[1]
                       .split("</section>")[0], re.S)
    assert items
    for item in items:
        assert "<strong>" in item, item  # every refusal names its element


def save_preview(client, csrf, xml: bytes, file="phase_2.bpmn"):
    return client.post("/admin/processes/save", data=json.dumps(
        {"file": file, "xml": xml.decode(), "comment": "", "forms": {}, "preview": True}),
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf})


def test_saving_a_called_process_first_lists_the_callers_that_get_versions(app):
    client = logged_in(app, "admin")
    before = version_count(app)
    edited = (PACK / "stage_handling.bpmn").read_bytes().replace(
        'name="核对、检查、接收材料并受理"'.encode(), 'name="核对材料并受理"'.encode(), 1)
    assert edited != (PACK / "stage_handling.bpmn").read_bytes()
    preview = save_preview(client, token(client), edited, file="stage_handling.bpmn")
    assert preview.status_code == 200
    body = preview.get_json()
    assert version_count(app) == before  # a preview stores nothing
    own = [v for v in body["versions"] if not v["caller"]]
    assert [(v["process_id"], v["number"]) for v in own] == [("stage_handling", 2)]
    callers = {v["process_id"]: v["name"] for v in body["callers"]}
    assert callers["item_approval"] == "审批事项代办"
    assert callers["case_flow"] == "代办服务主流程"
    assert {"phase_1", "phase_2", "phase_3", "phase_4"} <= set(callers)
    assert f"{len(callers)} 个调用此流程的流程" in body["message"]

    saved = save_json(client, token(client), edited, file="stage_handling.bpmn")
    assert saved.status_code == 201
    assert version_count(app) == before + 1 + len(callers)  # what the preview announced

    # an invalid file is refused by the preview too, with its problems translated
    bad = save_preview(client, token(client), with_condition(
        (PACK / "phase_2.bpmn").read_bytes(), "flow_has_items_to_confirm_planning_conditions",
        "__import__('os')"))
    assert bad.status_code == 422
    [problem] = bad.get_json()["problems"]
    assert problem["message"].startswith("表达式 ") and "被拒绝" in problem["message"]
    assert version_count(app) == before + 1 + len(callers)


def test_the_modelers_validation_messages_follow_the_language(app):
    client = logged_in(app, "admin")
    xml = (PACK / "phase_2.bpmn").read_bytes().replace(
        b'name="formJsonSchemaFilename" value="planning_conditions.schema.json"',
        b'name="formJsonSchemaFilename" value="nowhere.schema.json"')
    zh = save_json(client, token(client), xml).get_json()["problems"]
    assert [p["message"] for p in zh] == ["表单文件 forms/nowhere.schema.json 不存在或无效。"]
    client.get("/lang/en")
    en = save_json(client, token(client), xml).get_json()["problems"]
    assert [p["message"] for p in en] == [
        "The form file forms/nowhere.schema.json does not exist or is invalid."]
