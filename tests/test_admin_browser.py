"""The editor in headless Chromium: edit, refuse, publish, migrate; every MIWG diagram opens."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from lxml import etree
from werkzeug.serving import make_server

from engine import accounts
from engine.actors import SYSTEM
from tests.test_admin import PASSWORD, version_count
from tests.test_interop_miwg import FILES as MIWG_FILES
from tests.test_library import phase_2_data, review
from tests.webhelpers import wait_until

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def live(make_pack_engine, sqlite_url, tmp_path):
    from webapp import create_app

    engine = make_pack_engine(sqlite_url)
    with engine.db.transaction() as s:
        accounts.create_user(s, "admin", PASSWORD, "admin", now=engine.clock())
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def page(live):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Chromium")
    _, base = live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(base_url=base, viewport={"width": 1500, "height": 1000})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto("/login")
        tab.fill("input[name=username]", "admin")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url("**/admin/processes")  # administrators land on their own area
        yield tab
        browser.close()
        assert errors == [], errors


def open_editor(page, process_id="phase_2"):
    page.goto(f"/admin/processes/{process_id}/edit")
    wait_until(page, "!!(window.zerorunEditor && window.zerorunEditor.ready)")
    page.evaluate("window.zerorunEditor.ready")


def wait_saved(page):
    wait_until(page, "!document.getElementById('status').textContent.includes('正在校验')")


INSERT_TASK = """() => {
  const m = window.zerorunEditor.modeler;
  const reg = m.get('elementRegistry'), modeling = m.get('modeling');
  const shape = m.get('elementFactory').createShape({ type: 'bpmn:UserTask' });
  const task = modeling.createShape(shape, { x: 700, y: 215 }, reg.get('phase_2_pool'));
  const flow = reg.get('flow_confirm_planning_conditions_to_items');
  modeling.reconnectEnd(flow, task, { x: task.x + 10, y: task.y + 40 });
  modeling.connect(task, reg.get('items'));
  return task.id;
}"""


def test_an_administrator_edits_refuses_publishes_and_migrates(live, page):
    app, _ = live
    engine = app.extensions["zerorun"]
    older = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)

    open_editor(page)
    task_id = page.evaluate(INSERT_TASK)
    page.click(f'.djs-element[data-element-id="{task_id}"]')
    page.fill("#panel-body input[name=name]", "确认审查意见")
    page.press("#panel-body input[name=name]", "Tab")
    page.select_option("#panel-body select[name=form]", "joint_drawing_review.schema.json")
    page.select_option("#panel-body select[name=department]", "natural_resources")
    assert page.input_value("#panel-body input[name=departmentExpression]") == \
        "'natural_resources'"
    assert "市自然资源局" in page.inner_text("#panel-body .lane")
    page.fill("#comment", "增加确认审查意见任务")
    page.click("#save")
    # the main flow calls phase_3: it gets a version too, and the editor asks first
    page.wait_for_selector("#callers:not([hidden])")
    assert page.inner_text('#caller-list li[data-process="case_flow"]').startswith("代办服务主流程")
    page.click("#callers-confirm")
    wait_saved(page)
    assert "已保存为草稿" in page.inner_text("#status"), page.inner_text("#problems")
    page.wait_for_selector('#versions tr[data-version="2"]')
    assert "工程建设许可阶段 第 2 版" in page.inner_text("#status")

    stored = version_count(app)
    page.evaluate("""() => { const m = window.zerorunEditor.modeler;
        m.get('selection').select(m.get('elementRegistry').get(
            'flow_has_items_to_confirm_planning_conditions')); }""")
    page.fill("#panel-body textarea[name=condition]", "__import__('os')")
    page.press("#panel-body textarea[name=condition]", "Tab")
    page.click("#save")
    wait_saved(page)
    problem = page.inner_text(
        '#problem-list li[data-element="flow_has_items_to_confirm_planning_conditions"]')
    assert "有事项" in problem and "__import__" in problem
    assert "未存储任何内容" in page.inner_text("#problems-title")
    assert page.locator('.djs-element.zr-problem[data-element-id='
                        '"flow_has_items_to_confirm_planning_conditions"]').count() == 1
    assert version_count(app) == stored

    page.goto("/admin/processes")
    page.click('#process-phase_2 tr[data-version="2"] button.publish')
    assert "已发布：工程建设许可阶段 第 2 版" in page.inner_text(".flash")
    assert "新案件使用：第 2 版" in page.inner_text("#process-phase_2")

    new = engine.start_case("phase_2", phase_2_data(engine), SYSTEM)
    review(engine, new.id)
    [added] = [t for t in engine.list_tasks(case_id=new.id) if t.title == "确认审查意见"]
    assert added.department == "natural_resources"
    assert added.form == "joint_drawing_review.schema.json"
    before = engine.get_case(older.id)
    assert before.process_version_id != engine.get_case(new.id).process_version_id
    assert [t.spec_name for t in engine.list_tasks(case_id=older.id)] == [
        "confirm_planning_conditions"]

    page.goto("/admin/processes/phase_2/migrate")
    assert "可以安全迁移" in page.inner_text(f'tr[data-case="{older.id}"]')
    page.click("#migrate")
    assert f"已迁移到第 2 版的案件：#{older.id}" in page.inner_text("main")
    review(engine, older.id)
    assert "确认审查意见" in {t.title for t in engine.list_tasks(case_id=older.id)}
    assert engine.verify_case(older.id).ok


DI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"


def _ids(xml: str | bytes) -> tuple[set[str], dict[str, str]]:
    """Ids of the model's elements, and of its diagram shapes/edges -> the element drawn."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    model, drawn = set(), {}
    for node in root.iter():
        if not isinstance(node.tag, str) or not node.get("id"):
            continue
        if etree.QName(node).namespace == DI_NS and node.get("bpmnElement"):
            drawn[node.get("id")] = node.get("bpmnElement")
        elif etree.QName(node).namespace != DI_NS:
            model.add(node.get("id"))
    return model, drawn


def test_every_miwg_diagram_opens_renders_and_saves_back_without_losing_elements(page):
    open_editor(page)
    for path in MIWG_FILES:
        page.set_input_files("#open-file", str(path))
        wait_until(page, "name => document.getElementById('status').textContent"
                   ".includes(name)", arg=path.name)
        assert page.evaluate("window.zerorunEditor.lastImportError") is None, path.name
        shapes = page.evaluate("window.zerorunEditor.modeler.get('elementRegistry')"
                               ".getAll().length")
        assert shapes > 1, path.name
        saved = page.evaluate("window.zerorunEditor.modeler.saveXML({format: true})"
                              ".then(r => r.xml)")
        model, drawn = _ids(path.read_bytes())
        saved_model, saved_drawn = _ids(saved)
        assert model - saved_model == set(), f"{path.name} lost elements"
        rendered = set(page.evaluate("window.zerorunEditor.modeler.get('elementRegistry')"
                                     ".getAll().map(e => e.businessObject.id)"))
        # bpmn-js cannot show (and does not write back) shapes of a process that no pool
        # of the collaboration holds; every shape it shows must come back.
        lost = {i for i, element in drawn.items() if element in rendered} - set(saved_drawn)
        assert lost == set(), f"{path.name} lost shapes {sorted(lost)}"


def test_deploying_a_diagram_that_cannot_run_is_refused_in_the_editor(live, page):
    app, _ = live
    path = next(p for p in MIWG_FILES if p.name == "C.7.0.bpmn")
    stored = version_count(app)
    open_editor(page)
    page.set_input_files("#open-file", str(path))
    wait_until(page, "document.getElementById('status').textContent.includes('C.7.0')")
    assert page.input_value("#file-name") == "C.7.0.bpmn"
    page.click("#save")
    page.wait_for_selector("#problems:not([hidden])")
    text = page.inner_text("#problem-list")
    assert "Publish on" in text and "服务任务没有主题（属性 topic）" in text
    assert "用户任务没有表单（属性 formJsonSchemaFilename）" in text
    marked = page.evaluate("window.zerorunEditor.marked")
    assert "_64eabfe9-6947-43eb-ac45-8d331745f86c" in marked
    assert version_count(app) == stored


def test_the_editor_opens_without_console_errors(live, page):
    """bpmn-js 18 rejects `keyboard.bindTo` with a console error; the editor no longer passes it."""
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
    open_editor(page)
    assert [m for m in messages if "unsupported configuration" in m] == []
    assert [m for m in messages if "Failed to load resource" not in m] == []


def test_the_palette_leaves_the_diagram_uncovered(page):
    for process_id in ("case_flow", "phase_3", "stage_handling"):
        open_editor(page, process_id)
        palette = page.locator("#canvas .djs-palette").bounding_box()
        shapes = page.eval_on_selector_all(
            "#canvas .djs-element.djs-shape, #canvas .djs-element.djs-connection",
            "els => els.map(e => { const r = e.getBoundingClientRect();"
            " return [e.getAttribute('data-element-id'), r.left, r.top, r.right, r.bottom]; })")
        assert len(shapes) > 5
        right, bottom = palette["x"] + palette["width"], palette["y"] + palette["height"]
        covered = [s[0] for s in shapes if s[3] - s[1] > 0 and s[1] < right
                   and s[3] > palette["x"] and s[2] < bottom and s[4] > palette["y"]]
        assert covered == [], (process_id, covered)


def test_saving_a_called_process_asks_first_and_cancel_stores_nothing(live, page):
    app, _ = live
    before = version_count(app)
    open_editor(page, "stage_handling")
    page.evaluate("""() => { const m = window.zerorunEditor.modeler;
        m.get('modeling').updateLabel(m.get('elementRegistry').get('check_materials'),
                                      '核对材料并受理'); }""")
    page.click("#save")
    page.wait_for_selector("#callers:not([hidden])")
    listed = page.eval_on_selector_all("#caller-list li", "els => els.map(e => e.textContent)")
    assert any(t.startswith("审批事项代办") for t in listed)
    assert any(t.startswith("代办服务主流程") for t in listed)
    assert not any("item_approval" in t or "case_flow" in t for t in listed)  # names, not ids
    assert f"{len(listed)} 个调用此流程的流程" in page.inner_text("#callers-title")
    assert version_count(app) == before  # asking stored nothing
    page.click("#callers-cancel")
    assert page.locator("#callers").is_hidden()
    assert "未存储任何内容" in page.inner_text("#status")
    assert version_count(app) == before

    page.click("#save")
    page.wait_for_selector("#callers:not([hidden])")
    page.click("#callers-confirm")
    wait_until(page, "document.getElementById('status').textContent.includes('已保存为草稿')")
    assert version_count(app) == before + 1 + len(listed)
