"""Bad input gets a clear 4xx and stores nothing (issue 14, points 6-9): NUL and lone
surrogates, ids and offsets out of range, deep JSON, workbook bombs, multi-instance
activities without bound, and a case's open tasks paged with their total."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from agency.intake import MAX_CELLS, MAX_XLSX_UNCOMPRESSED, IntakeError, read_table
from engine import accounts
from engine.actors import Actor
from engine.errors import InvalidProcess, WorkflowError
from engine.pack.loader import read_pack_dir
from engine.store.models import Case, Event, HumanTask
from tests.service import KEY_PROJECT, OFFICE
from tests.test_hardening import PASSWORD, Site
from tests.webhelpers import csrf_of, logged_in

NUL, SURROGATE = "\x00", "\ud800"


@pytest.fixture
def site(make_pack_engine, db_url, tmp_path) -> Site:
    return Site(make_pack_engine, db_url, tmp_path)


def stored(site: Site) -> tuple[int, int, int]:
    with site.engine.db.reading() as s:
        return tuple(s.scalar(select(func.count()).select_from(model)) or 0
                     for model in (Case, Event, HumanTask))


def token_of(site: Site, username: str) -> dict[str, str]:
    with site.engine.db.transaction() as s:
        return {"Authorization": f"Bearer {accounts.issue_token(s, username)}"}


def start_form(name: str) -> dict[str, str]:
    form = {f"project.{k}": ("on" if v is True else str(v)) for k, v in KEY_PROJECT.items()
            if v is not False}
    return {"process": "case_flow", **form, "project.name": name}


# 6. NUL and lone surrogates --------------------------------------------------------------


def test_nul_and_surrogates_are_refused_everywhere_and_nothing_is_stored(site):
    case = site.engine.start_case("case_flow", {"project": KEY_PROJECT}, OFFICE)
    [task] = [t for t in site.engine.list_tasks(case_id=case.id)
              if t.spec_name == "select_items"]
    headers = token_of(site, "office")
    before = stored(site)
    office = logged_in(site.app, "office", PASSWORD)
    agent = logged_in(site.app, "agent_ab", PASSWORD)
    token = csrf_of(office.get("/").get_data(as_text=True))
    # a page form
    response = office.post("/cases/new", data={**start_form(f"园区{NUL}项目"),
                                               "csrf_token": token})
    assert response.status_code == 400
    assert "project.name" in response.get_data(as_text=True)
    # a task form and a draft
    agent_token = csrf_of(agent.get("/").get_data(as_text=True))
    for action in ("complete", "draft"):
        response = agent.post(f"/tasks/{task.id}", data={
            "csrf_token": agent_token, "version": task.version, "action": action,
            "item_list_note": f"备注{NUL}"})
        assert response.status_code == 400, action
    # a query string and an upload's name
    assert office.get(f"/audit/?project=a{NUL}b").status_code == 400
    response = office.post("/intake/", data={
        "csrf_token": token, "source": "drc_key_list",
        "file": (io.BytesIO(b"a,b\n1,2\n"), f"list{NUL}.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 400
    # the API: body members, member names, ids in the path
    api = site.app.test_client()
    for body, field in [
        ({"process_id": "case_flow", "data": {"project": {**KEY_PROJECT,
                                                          "name": f"项目{NUL}"}}},
         "data.project.name"),
        ({"process_id": "case_flow", "data": {"project": {**KEY_PROJECT,
                                                          "name": f"项目{SURROGATE}"}}},
         "data.project.name"),
        ({"process_id": f"case_flow{NUL}", "data": {}}, "process_id"),
        ({"process_id": "case_flow", "data": {f"x{SURROGATE}": 1}}, "data.x?"),
    ]:
        response = api.post("/api/v1/cases", json=body, headers=headers)
        assert response.status_code == 400, body
        error = response.get_json()["error"]
        assert error["code"] == "bad_request"
        assert [f["field"] for f in error["fields"]] == [field]
    response = api.post(f"/api/v1/tasks/{task.id}{NUL}/claim", json={}, headers=headers)
    assert response.status_code == 400
    assert stored(site) == before
    # the audit search keeps working for everyone (a stored NUL broke it on PostgreSQL)
    assert office.get("/audit/?project=园区").status_code == 200


# 7. No 500 for ids, offsets and nesting out of range ------------------------------------


def test_ids_offsets_and_nesting_out_of_range_get_a_uniform_4xx(site):
    api = site.app.test_client()
    headers = token_of(site, "office")
    before = stored(site)
    for path, status in [("/api/v1/cases/2147483648", 404),
                         ("/api/v1/cases/2147483648/events", 404),
                         ("/api/v1/cases/99999999999999999999999/tasks", 404),
                         ("/api/v1/tasks?offset=9223372036854775808", 400),
                         ("/api/v1/tasks?limit=9223372036854775808", 400)]:
        response = api.get(path, headers=headers)
        assert response.status_code == status, path
        assert set(response.get_json()["error"]) >= {"code", "message", "fields"}
    deep = "[" * 100_000 + "]" * 100_000
    response = api.post("/api/v1/cases", data=deep, headers=headers,
                        content_type="application/json")
    assert response.status_code == 400
    assert "nested" in response.get_json()["error"]["message"]
    nested = '{"a": ' * 5_000 + '"leaf"' + "}" * 5_000
    body = json.dumps({"process_id": "case_flow", "data": {"project": KEY_PROJECT,
                                                           "extra": "NESTED"}})
    body = body.replace('"NESTED"', nested)
    response = api.post("/api/v1/cases", data=body, headers=headers,
                        content_type="application/json")
    assert response.status_code == 400
    assert stored(site) == before
    office = logged_in(site.app, "office", PASSWORD)
    for path in ("/cases/2147483648", "/audit/cases/2147483648",
                 "/cases/2147483648/documents"):
        assert office.get(path).status_code == 404, path
    for path in ("/cases?page=9223372036854775808", "/?page=9223372036854775808"):
        assert office.get(path).status_code < 500, path


# 8. Workbook bombs ------------------------------------------------------------------------


def _workbook(sheet_xml: bytes) -> bytes:
    """A real workbook whose first sheet is replaced by the given XML."""
    book = openpyxl.Workbook()
    book.active.append(["项目名称"])
    plain = io.BytesIO()
    book.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = sheet_xml
            dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


SHEET = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
         b'%s<sheetData>%s</sheetData></worksheet>')


def test_a_workbook_that_expands_past_the_limit_is_refused_before_parsing():
    row = b'<row r="1"><c r="A1" t="inlineStr"><is><t>' + b"x" * 1000 + b"</t></is></c></row>"
    bomb = _workbook(SHEET % (b"", row * (MAX_XLSX_UNCOMPRESSED // len(row) + 10)))
    assert len(bomb) < 2 * 1024 * 1024  # small upload, big expansion
    with pytest.raises(IntakeError) as refused:
        read_table("list.xlsx", bomb)
    assert refused.value.details["params"]["limit"] == 20
    assert "20 MB" in refused.value.message % refused.value.details["params"]


def test_a_sheet_with_too_many_cells_is_refused_with_the_limit_named():
    declared = _workbook(SHEET % (b'<dimension ref="A1:XFD1048576"/>', b""))
    with pytest.raises(IntakeError) as refused:
        read_table("list.xlsx", declared)
    assert str(MAX_CELLS) in refused.value.message % refused.value.details["params"]
    cells = b"".join(b'<c r="A%d"><v>1</v></c>' % i for i in range(1, 2))
    wide = b"".join(b'<row r="%d">%s</row>' % (r, b"<c><v>1</v></c>" * 200)
                    for r in range(1, MAX_CELLS // 200 + 5))
    with pytest.raises(IntakeError) as refused:
        read_table("list.xlsx", _workbook(SHEET % (b"", cells + wide)))
    assert str(MAX_CELLS) in refused.value.message % refused.value.details["params"]


def test_the_import_page_names_the_limit_of_a_bomb(site):
    row = b'<row r="1"><c r="A1" t="inlineStr"><is><t>' + b"x" * 1000 + b"</t></is></c></row>"
    bomb = _workbook(SHEET % (b"", row * (MAX_XLSX_UNCOMPRESSED // len(row) + 10)))
    office = logged_in(site.app, "office", PASSWORD)
    token = csrf_of(office.get("/intake/").get_data(as_text=True))
    response = office.post("/intake/", data={
        "csrf_token": token, "source": "drc_key_list",
        "file": (io.BytesIO(bomb), "list.xlsx")}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "20 MB" in response.get_data(as_text=True)


# 9. Multi-instance bound and paged open tasks ---------------------------------------------

FANOUT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
                  id="defs_fanout" targetNamespace="http://zerorun.example/tests">
  <bpmn:process id="fanout" name="分发" isExecutable="true">
    <bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="startable" value="true"/>
    </spiffworkflow:properties></bpmn:extensionElements>
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane_a" name="dept_a">
      <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>check</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
    </bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="check"/>
    <bpmn:userTask id="check" name="逐项核对">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="fill.schema.json"/>
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:multiInstanceLoopCharacteristics>
        %s
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""
BY_COLLECTION = ('<bpmn:loopDataInputRef>entries</bpmn:loopDataInputRef>'
                 '<bpmn:inputDataItem id="entry" name="entry"/>')


def fanout_pack(tmp_path: Path, loop: str) -> Path:
    pack = tmp_path / "fanout"
    (pack / "forms").mkdir(parents=True)
    (pack / "fanout.bpmn").write_text(FANOUT % loop, encoding="utf-8")
    (pack / "forms" / "fill.schema.json").write_text('{"type": "object"}', encoding="utf-8")
    return pack


def test_a_literal_cardinality_above_the_bound_is_refused_at_load(make_engine, sqlite_url,
                                                                  tmp_path):
    pack = fanout_pack(tmp_path, "<bpmn:loopCardinality>20000</bpmn:loopCardinality>")
    engine = make_engine(sqlite_url, pack, load=False, max_instances=500)
    with pytest.raises(InvalidProcess) as refused:
        engine.load_processes(pack)
    [problem] = refused.value.problems
    assert (problem.file, problem.element) == ("fanout.bpmn", "check")
    assert "20000" in problem.message and "500" in problem.message


def test_a_collection_above_the_bound_is_refused_when_the_case_reaches_it(
        make_engine, db_url, tmp_path):
    engine = make_engine(db_url, fanout_pack(tmp_path, BY_COLLECTION), max_instances=50)
    office = Actor("office", "office", "dept_a")
    with pytest.raises(WorkflowError) as refused:
        engine.start_case("fanout", {"entries": list(range(51))}, office)
    assert "51" in refused.value.message and "at most 50" in refused.value.message
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0
        assert s.scalar(select(func.count()).select_from(HumanTask)) == 0
    case = engine.start_case("fanout", {"entries": list(range(50))}, office)
    assert engine.count_tasks(case_id=case.id) == 50


def test_a_cardinality_expression_is_bounded_at_run_time(make_engine, sqlite_url, tmp_path):
    pack = fanout_pack(tmp_path, "<bpmn:loopCardinality>size</bpmn:loopCardinality>")
    engine = make_engine(sqlite_url, pack, max_instances=10)
    with pytest.raises(WorkflowError):
        engine.start_case("fanout", {"size": 20_000}, Actor("office", "office", "dept_a"))


def test_the_open_tasks_of_a_case_are_paged_with_their_total(make_engine, sqlite_url,
                                                             tmp_path):
    from webapp import create_app

    engine = make_engine(sqlite_url, fanout_pack(tmp_path, BY_COLLECTION), max_instances=1500)
    case = engine.start_case("fanout", {"entries": list(range(1200))},
                             Actor("office", "office", "dept_a"))
    with engine.db.transaction() as s:
        accounts.create_user(s, "admin", PASSWORD, "admin", now=engine.clock())
        headers = {"Authorization": f"Bearer {accounts.issue_token(s, 'admin')}"}
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": sqlite_url, "instance_dir": tmp_path}})
    api = app.test_client()
    body = api.get(f"/api/v1/cases/{case.id}", headers=headers).get_json()
    assert len(body["open_tasks"]) == 200 and body["open_tasks_total"] == 1200
    seen: set[str] = set()
    offset: int | None = 0
    while offset is not None:
        page = api.get(f"/api/v1/cases/{case.id}/tasks?limit=200&offset={offset}",
                       headers=headers).get_json()
        assert page["total"] == 1200
        seen |= {t["id"] for t in page["tasks"]}
        offset = page["next_offset"]
    assert len(seen) == 1200


def test_the_pack_loads_under_the_default_bound(make_pack_engine, sqlite_url):
    engine = make_pack_engine(sqlite_url)
    assert engine.config.max_instances == 500
    assert engine.parse_pack(read_pack_dir(engine.config.processes_dir))
