"""Bulk project lists: upload, a checked preview, fixing or dropping rows, all-or-nothing import."""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest
from sqlalchemy import func, select

from agency.intake import COLUMNS, IntakeError, ProjectImports, check_project_code
from agency.models import ProjectImport
from engine.actors import Actor
from engine.errors import Forbidden
from engine.store.models import Case, Event
from tests.service import KEY_PROJECT, OFFICE
from tests.webhelpers import csrf_of, logged_in, make_app, text_of

HEADERS = [c.header for c in COLUMNS]
INDUSTRIES = ["制造业", "新能源", "文化旅游", "农业及农产品加工", "物流商贸", "基础设施"]
UNITS = ["市工业和信息化局", "市发展和改革委员会", "市农业农村局", "市商务局", "市交通运输局"]
REGIONS = ["640502", "640521", "640522", "640500"]


def key_project_list() -> list[dict[str, str]]:
    """The DRC's annual key-project list: 50 projects, five of them with a mistake."""
    rows = []
    for n in range(1, 51):
        filing = n % 4 != 0
        rows.append({
            "项目名称": f"中卫市重点项目第{n:02d}号（{INDUSTRIES[n % 6]}）",
            "建设内容": f"新建生产及配套设施，总建筑面积{n * 1000}平方米",
            "责任单位": UNITS[n % 5], "实施企业": f"宁夏中卫第{n}实业有限公司",
            "项目负责人": f"负责人{n}", "联系电话": f"1399555{n:04d}",
            "项目代码": f"2026-{REGIONS[n % 4]}-{10 + n % 80:02d}-{'03' if filing else '02'}"
                        f"-{n:06d}",
            "行业类别": INDUSTRIES[n % 6], "总投资（万元）": str(1000 * n),
            "立项方式": "备案" if filing else "核准", "重点项目": "是",
            "需新增建设用地": "是" if n % 2 else "否", "环评类别": "报告表" if n % 3 else "",
            "有房屋建筑工程": "是" if n % 2 else "否", "需电力接入": "是",
        })
    rows[6]["联系电话"] = "1399555"                                   # line 8: short phone
    rows[11]["项目代码"] = "2026-640100-34-03-000012"                 # line 13: not Zhongwei
    rows[17]["项目代码"] = "2026-640502-34-02-000018"                 # line 19: 02 but 备案
    rows[17]["立项方式"] = "备案"
    rows[25]["项目负责人"] = ""                                       # line 27: no lead
    rows[40]["项目代码"] = KEY_PROJECT["code"]                        # line 42: registered
    return rows


BAD_LINES = {8: "联系电话“1399555”格式不对", 13: "行政区划代码 640100 不属于中卫市",
             19: "类型代码 02 表示核准，与立项方式“备案”不一致", 27: "“项目负责人”必须填写",
             42: f"项目代码 {KEY_PROJECT['code']} 已登记过"}
FIXES = {8: {"phone": "0955-7012345"}, 13: {"code": "2026-640502-22-02-000012"},
         19: {"approval_type": "核准"}, 27: {"lead": "李娜"},
         42: {"code": "2026-640521-34-03-000042"}}


def as_csv(rows: list[dict[str, str]], encoding: str = "utf-8-sig") -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADERS)
    writer.writeheader()
    for row in rows:
        writer.writerow({h: row.get(h, "") for h in HEADERS})
    return buffer.getvalue().encode(encoding)


def as_xlsx(rows: list[dict[str, str]], title: bool = False) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    if title:  # a title line above the header row, as lists often have
        sheet.append(["中卫市2026年重点项目清单"])
    headers = HEADERS
    sheet.append(headers)
    for row in rows:
        sheet.append([row.get(h, "") for h in headers])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def engine(make_pack_engine, sqlite_url):
    engine = make_pack_engine(sqlite_url)
    engine.start_case("case_flow", {"project": KEY_PROJECT}, OFFICE)  # already registered
    return engine


@pytest.fixture
def app(engine, sqlite_url, tmp_path):
    return make_app(engine, sqlite_url, tmp_path)


def count_cases(engine) -> int:
    with engine.db.reading() as s:
        return s.scalar(select(func.count()).select_from(Case))


def upload(client, content: bytes, filename: str, source: str = "drc_key_list"):
    page = client.get("/intake/").get_data(as_text=True)
    return client.post("/intake/", data={"csrf_token": csrf_of(page), "source": source,
                                         "file": (io.BytesIO(content), filename)},
                       content_type="multipart/form-data")


def preview_form(page: str, action: str, edits: dict[int, dict[str, str]] | None = None,
                 drop: set[int] = frozenset()) -> dict[str, str]:
    """What the browser submits from the preview: every editable cell, changed where asked."""
    form = {"csrf_token": csrf_of(page), "action": action}
    for name, value in re.findall(r'<input class="cell" name="([^"]+)" value="([^"]*)"', page):
        form[name] = value.replace("&#34;", '"').replace("&amp;", "&")
    for line in re.findall(r'name="drop-(\d+)" value="1" checked', page):
        form[f"drop-{line}"] = "1"
    for line, fields in (edits or {}).items():
        for field, value in fields.items():
            assert f"c-{line}-{field}" in form, f"line {line} is not editable"
            form[f"c-{line}-{field}"] = value
    for line in drop:
        form[f"drop-{line}"] = "1"
    return form


@pytest.mark.parametrize("fmt", ["csv", "csv-gbk", "xlsx"])
def test_a_list_with_five_bad_rows_imports_nothing_until_they_are_fixed(app, engine, fmt):
    client = logged_in(app, "office")
    before = count_cases(engine)
    content = {"csv": lambda r: as_csv(r), "csv-gbk": lambda r: as_csv(r, "gbk"),
               "xlsx": as_xlsx}[fmt](key_project_list())
    response = upload(client, content, f"2026年重点项目清单.{fmt[:4].strip('-')}")
    assert response.status_code == 302, text_of(response.get_data(as_text=True))
    preview_url = response.headers["Location"]
    page = client.get(preview_url).get_data(as_text=True)
    text = text_of(page)
    assert "共 50 行（已删除 0 行），有错误 5 行" in text
    for line, message in BAD_LINES.items():
        row = re.search(rf'<tr id="line-{line}" class="row-bad">(.*?)</tr>', page, re.S)
        assert row is not None, f"line {line} is not marked bad"
        assert message in text_of(row.group(1)), (line, text_of(row.group(1)))
    assert page.count('class="row-bad"') == 5
    assert re.search(r'name="action" value="import" class="secondary" disabled', page)

    refused = client.post(preview_url, data=preview_form(page, "import"),
                          follow_redirects=True)
    assert "还有 5 行有错误，未导入任何项目" in refused.get_data(as_text=True)
    assert count_cases(engine) == before

    partly = client.post(preview_url, data=preview_form(page, "check", {8: FIXES[8]}),
                         follow_redirects=True).get_data(as_text=True)
    assert "还有 4 行需要修改" in partly and 'id="line-8" class=""' in partly
    rest = {line: fix for line, fix in FIXES.items() if line != 8}
    fixed = client.post(preview_url, data=preview_form(partly, "check", rest),
                        follow_redirects=True).get_data(as_text=True)
    assert "所有行均无错误，可以导入" in fixed and "导入 50 个项目" in fixed
    assert count_cases(engine) == before

    done = client.post(preview_url, data=preview_form(fixed, "import"), follow_redirects=True)
    assert "已导入 50 个项目，每个项目的代办流程已启动" in done.get_data(as_text=True)
    assert count_cases(engine) == before + 50
    with engine.db.reading() as s:
        cases = list(s.scalars(select(Case).order_by(Case.id).offset(before)))
        imported = s.scalar(select(Event).where(Event.type == "project_list_imported"))
    assert len({c.project_code for c in cases}) == 50
    assert {c.status for c in cases} == {"running"}
    line_8 = next(c for c in cases if c.title.startswith("中卫市重点项目第07号"))
    assert line_8.data["project"]["phone"] == "0955-7012345"
    assert line_8.data["project"]["source"] == "drc_key_list"
    assert imported is not None and imported.data["imported"] == 50
    assert engine.list_tasks(case_id=cases[0].id)  # each case waits at its first task
    again = client.post(preview_url, data=preview_form(fixed, "import"), follow_redirects=True)
    assert "该导入已导入" in again.get_data(as_text=True)
    assert count_cases(engine) == before + 50


def test_dropping_the_bad_rows_imports_the_other_45(app, engine):
    client = logged_in(app, "office")
    before = count_cases(engine)
    preview_url = upload(client, as_xlsx(key_project_list(), title=True), "签约项目.xlsx",
                         "commerce_signed").headers["Location"]
    page = client.get(preview_url).get_data(as_text=True)
    bad = {line + 1 for line in BAD_LINES}  # the title line comes first
    assert all(f'id="line-{line}" class="row-bad"' in page for line in bad)
    checked = client.post(preview_url, data=preview_form(page, "check", drop=bad),
                          follow_redirects=True).get_data(as_text=True)
    assert "共 50 行（已删除 5 行），有错误 0 行" in text_of(checked)
    assert checked.count('class="row-dropped"') == 5
    done = client.post(preview_url, data=preview_form(checked, "import"), follow_redirects=True)
    assert "已导入 45 个项目" in done.get_data(as_text=True)
    assert count_cases(engine) == before + 45
    with engine.db.reading() as s:
        sources = {c.data["project"]["source"] for c in s.scalars(select(Case).offset(before))}
    assert sources == {"commerce_signed"}


def test_the_preview_survives_a_reload_and_is_listed_as_pending(app, engine):
    client = logged_in(app, "office")
    preview_url = upload(client, as_csv(key_project_list()), "list.csv").headers["Location"]
    page = client.get(preview_url).get_data(as_text=True)
    client.post(preview_url, data=preview_form(page, "check", {8: FIXES[8]}))
    other = logged_in(app, "office")
    assert "list.csv" in other.get("/intake/").get_data(as_text=True)
    assert "有错误 4 行" in text_of(other.get(preview_url).get_data(as_text=True))


def test_duplicates_within_the_file_are_shown_on_both_rows(app, engine):
    rows = key_project_list()[:3]
    rows[2]["项目代码"] = rows[0]["项目代码"]
    client = logged_in(app, "office")
    page = client.get(upload(client, as_csv(rows), "d.csv").headers["Location"])
    text = text_of(page.get_data(as_text=True))
    assert "项目代码与本文件第 4 行重复" in text and "项目代码与本文件第 2 行重复" in text


def test_templates_round_trip(app, engine):
    client = logged_in(app, "office")
    xlsx = client.get("/intake/template.xlsx")
    assert xlsx.status_code == 200 and "attachment" in xlsx.headers["Content-Disposition"]
    workbook = openpyxl.load_workbook(io.BytesIO(xlsx.data))
    sheet = workbook["项目清单"]
    assert [c.value for c in sheet[1]] == HEADERS
    assert "填写说明" in workbook.sheetnames
    for row in key_project_list()[:2]:
        sheet.append([row.get(h, "") for h in HEADERS])
    buffer = io.BytesIO()
    workbook.save(buffer)
    preview_url = upload(client, buffer.getvalue(), "filled.xlsx").headers["Location"]
    page = client.get(preview_url).get_data(as_text=True)
    assert "共 2 行（已删除 0 行），有错误 0 行" in text_of(page)

    csv_template = client.get("/intake/template.csv")
    assert csv_template.data.startswith(b"\xef\xbb\xbf")
    filled = csv_template.data + as_csv(key_project_list()[2:4]).split(b"\r\n", 1)[1]
    csv_url = upload(client, filled, "filled.csv").headers["Location"]
    assert "共 2 行（已删除 0 行），有错误 0 行" in text_of(client.get(csv_url).get_data(
        as_text=True))


def _zip_without_workbook() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    return buffer.getvalue()


@pytest.mark.parametrize(("filename", "content", "message"), [
    ("list.txt", b"hello", "只接受 .xlsx 或 .csv 文件"),
    ("list.xls", b"\xd0\xcf\x11\xe0", "不支持旧版 .xls 文件"),
    ("list.xlsx", b"this is not a zip at all", "不是有效的 .xlsx 工作簿"),
    ("list.xlsx", _zip_without_workbook(), "无法读取该 Excel 工作簿"),
    ("list.csv", b"", "上传的文件是空的"),
    ("list.csv", "项目名称,联系电话\n某项目,13995551234\n".encode(), "表头缺少这些列"),
    ("list.csv", as_csv([]), "表头下面没有项目行"),
    ("list.csv", as_csv(key_project_list() * 11), "一次最多导入 500 个项目，该文件有 550 行"),
    ("list.csv", b"x" * (300 * 1024), "文件超过 0.25 MB"),
])
def test_unreadable_files_get_a_clear_message(app, engine, monkeypatch, filename, content,
                                              message):
    # A smaller limit keeps the test client's body in memory (it leaks big bodies' temp files).
    monkeypatch.setattr("agency.intake.MAX_BYTES", 256 * 1024)
    monkeypatch.setattr("webapp.intake.MAX_BYTES", 256 * 1024)
    client = logged_in(app, "office")
    response = upload(client, content, filename)
    assert response.status_code == 422
    assert message in text_of(response.get_data(as_text=True))
    with engine.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(ProjectImport)) == 0


def test_only_the_office_imports(app, engine):
    agent = logged_in(app, "agent_approval_bureau")
    assert agent.get("/intake/").status_code == 403
    with pytest.raises(Forbidden):
        ProjectImports(engine).upload("a.csv", as_csv(key_project_list()[:1]), "drc_key_list",
                                      Actor("agent_approval_bureau", "agent", "approval_bureau"))


def test_a_crash_midway_through_the_import_leaves_no_case(engine, monkeypatch):
    imports = ProjectImports(engine)
    rows = key_project_list()
    view = imports.upload("list.csv", as_csv(rows), "drc_key_list", OFFICE)
    view = imports.revise(view.id, {}, set(BAD_LINES), OFFICE)
    assert view.bad_lines == []
    before = count_cases(engine)
    started = []
    original = engine._start

    def crashing(*args, **kwargs):
        if len(started) == 30:
            raise RuntimeError("the database server went away")
        case = original(*args, **kwargs)
        started.append(case.id)
        return case

    monkeypatch.setattr(engine, "_start", crashing)
    with pytest.raises(RuntimeError):
        imports.commit(view.id, OFFICE)
    assert len(started) == 30
    assert count_cases(engine) == before
    assert imports.get(view.id).status == "pending"
    with engine.db.reading() as s:
        assert s.scalar(select(Event).where(Event.type == "project_list_imported")) is None
    monkeypatch.setattr(engine, "_start", original)
    assert len(imports.commit(view.id, OFFICE)) == 45
    assert count_cases(engine) == before + 45


def test_the_size_limit_is_two_megabytes():
    from agency.intake import read_table

    with pytest.raises(IntakeError) as raised:
        read_table("list.csv", b"x" * (2 * 1024 * 1024 + 1))
    error = raised.value
    assert error.message % error.details["params"] == "文件超过 2 MB，请拆分后分批上传"


@pytest.mark.parametrize(("code", "approval_type", "expected"), [
    ("2026-640502-34-03-000127", "filing", []),
    ("2026-640521-44-02-000001", "approval", []),
    ("2026-640502-34-03-00012", "filing", ["应为24位"]),
    ("2026/640502/34/03/000127", "filing", ["应为24位"]),
    ("1998-640502-34-03-000127", "filing", ["年份 1998 不合理"]),
    ("2031-640502-34-03-000127", "filing", ["年份 2031 不合理"]),
    ("2026-640100-34-03-000127", "filing", ["不属于中卫市"]),
    ("2026-640502-99-03-000127", "filing", ["行业代码 99 不存在"]),
    ("2026-640502-34-01-000127", "filing", ["应为 02（核准）或 03（备案）"]),
    ("2026-640502-34-03-000127", "approval", ["表示备案，与立项方式“核准”不一致"]),
    ("2026-640502-34-03-000000", "filing", ["流水号不能为 000000"]),
])
def test_the_project_code_check(code, approval_type, expected):
    messages = [m.message % m.params for m in check_project_code(code, approval_type, 2026)]
    assert len(messages) == len(expected)
    for message, part in zip(messages, expected, strict=True):
        assert part in message
