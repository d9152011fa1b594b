"""Project lists in bulk: reading an uploaded list, checking every row, importing all or none.

Messages are Chinese message ids with `%(name)s` parameters, so the web layer can
translate them; the engine itself stays free of any UI library.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import ProjectImport
from engine.actors import Actor
from engine.audit import chain as audit
from engine.audit.chain import NewEvent
from engine.cases import CaseView, Engine
from engine.errors import N_, Conflict, EngineError, FieldError, Forbidden, InvalidData, NotFound
from engine.hooks import DataSubmitted
from engine.pack.loader import start_form_files
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case

PROCESS_ID = "case_flow"
START_FORM = start_form_files(PROCESS_ID)[0]
MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 500
# A workbook is a zip of XML: 2 MB of it can expand to gigabytes. Its declared sizes are
# checked before anything is decompressed (the reader never inflates past them), and the
# cells are counted before and while the sheet is read.
MAX_XLSX_UNCOMPRESSED = 20 * 1024 * 1024
MAX_CELLS = (MAX_ROWS + 50) * 60
SOURCES = {"drc_key_list": N_("发改委年度重点项目清单"),
           "commerce_signed": N_("商务局招商引资签约项目")}
# The city and its three county-level divisions (行政区划代码) a project code may name.
ZHONGWEI_REGIONS = {"640500": "中卫市", "640502": "沙坡头区", "640521": "中宁县",
                    "640522": "海原县"}
# Type digits of the national project code: 02 核准, 03 备案.
CODE_TYPES = {"02": "approval", "03": "filing"}
CODE_PATTERN = re.compile(r"^(\d{4})-(\d{6})-(\d{2})-(\d{2})-(\d{6})$")
PHONE_PATTERN = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
YES = {"是", "y", "yes", "true", "1", "√", "✓", "需要", "有"}
STILL_BAD = N_("还有 %(count)s 行有错误，未导入任何项目；请修改或删除这些行后重新检查")
NO = {"否", "n", "no", "false", "0", "×", "无", "不需要", ""}


@dataclass(frozen=True)
class Column:
    """One column of a project list: the registration field it fills and its header."""

    field: str
    header: str
    kind: str  # text, choice, number, yesno
    required: bool = False
    aliases: tuple[str, ...] = ()


COLUMNS: tuple[Column, ...] = (
    Column("name", "项目名称", "text", True),
    Column("content", "建设内容", "text", True, ("建设规模及内容", "建设规模和内容")),
    Column("responsible_unit", "责任单位", "choice", True, ("牵头单位",)),
    Column("enterprise", "实施企业", "text", True, ("实施企业名称", "项目单位", "建设单位")),
    Column("lead", "项目负责人", "text", True, ("负责人",)),
    Column("phone", "联系电话", "text", True, ("联系方式", "电话")),
    Column("code", "项目代码", "text", True, ("项目编码",)),
    Column("industry", "行业类别", "choice", True, ("行业",)),
    Column("investment_wan", "总投资（万元）", "number", False, ("总投资", "计划总投资（万元）")),
    Column("approval_type", "立项方式", "choice", True, ("立项类型",)),
    Column("key_project", "重点项目", "yesno", False, ("是否重点项目",)),
    Column("energy_review", "需节能审查", "yesno"),
    Column("new_land", "需新增建设用地", "yesno", False, ("新增建设用地",)),
    Column("eia", "环评类别", "choice"),
    Column("soil_water", "涉及水土保持方案", "yesno", False, ("水土保持",)),
    Column("water_draw", "需取水许可", "yesno", False, ("取水许可",)),
    Column("buildings", "有房屋建筑工程", "yesno", False, ("房屋建筑工程",)),
    Column("special_fire", "属特殊建设工程", "yesno", False, ("特殊建设工程",)),
    Column("civil_air_defence", "需修建防空地下室", "yesno", False, ("防空地下室",)),
    Column("power", "需电力接入", "yesno", False, ("电力接入",)),
    Column("water_supply", "需供水接入", "yesno", False, ("供水接入",)),
    Column("hazardous_chemicals", "属危险化学品建设项目", "yesno", False, ("危险化学品",)),
    Column("special_equipment", "安装特种设备", "yesno", False, ("特种设备",)),
    Column("road_works", "需占用挖掘公路", "yesno", False, ("涉路施工",)),
    Column("cultural_relics", "涉及文物保护", "yesno", False, ("文物",)),
    Column("forest_land", "需占用林地草原", "yesno", False, ("使用林地",)),
    Column("pollutant_discharge", "纳入排污许可管理", "yesno", False, ("排污许可",)),
    Column("green_channel", "走绿色通道", "yesno", False, ("绿色通道",)),
)
FIELDS = {c.field: c for c in COLUMNS}


class IntakeError(EngineError):
    """An uploaded list cannot be read or imported; the message says why and what to do."""

    title = "项目清单无法处理"
    status = 422


@dataclass(frozen=True)
class Message:
    """A problem with one cell, as a message id with its parameters."""

    field: str
    message: str
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "params": self.params}


@dataclass(frozen=True)
class ImportView:
    """A pending (or finished) import as the preview shows it."""

    id: int
    filename: str
    source: str
    status: str
    rows: list[dict[str, Any]]
    errors: dict[str, list[dict[str, Any]]]
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    case_ids: list[int]

    @property
    def kept(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r.get("dropped")]

    @property
    def bad_lines(self) -> list[int]:
        return sorted(int(line) for line, problems in self.errors.items() if problems)


# Reading files ------------------------------------------------------------------------


def _normalise_header(text: str) -> str:
    text = re.sub(r"\s+", "", str(text)).replace("(", "（").replace(")", "）")
    return text.strip("*＊")


_HEADERS: dict[str, str] = {}
for _column in COLUMNS:
    for _name in (_column.header, *_column.aliases):
        _HEADERS[_normalise_header(_name)] = _column.field


def read_table(filename: str, content: bytes) -> list[list[str]]:
    """The cells of an uploaded .xlsx or .csv file as text, row by row."""
    if len(content) > MAX_BYTES:
        raise IntakeError("文件超过 %(limit)s MB，请拆分后分批上传",
                          params={"limit": f"{MAX_BYTES / (1024 * 1024):g}"})
    if not content:
        raise IntakeError("上传的文件是空的", params={})
    lower = filename.lower()
    if lower.endswith(".csv"):
        return _read_csv(content)
    if lower.endswith(".xlsx"):
        return _read_xlsx(content)
    if lower.endswith(".xls"):
        raise IntakeError("不支持旧版 .xls 文件，请在 Excel 中另存为 .xlsx 或 CSV 后上传",
                          params={})
    raise IntakeError("只接受 .xlsx 或 .csv 文件（收到的是 %(name)s）",
                      params={"name": filename or "?"})


def _read_csv(content: bytes) -> list[list[str]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError:
            continue
        break
    else:
        raise IntakeError("无法识别 CSV 文件的编码，请保存为 UTF-8 或 GBK 编码", params={})
    if "\x00" in text:
        raise IntakeError("这不是文本格式的 CSV 文件，请检查文件类型", params={})
    try:
        return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise IntakeError("CSV 文件格式有误：%(detail)s", params={"detail": str(exc)}) from exc


def _read_xlsx(content: bytes) -> list[list[str]]:
    import openpyxl

    if not zipfile.is_zipfile(io.BytesIO(content)):
        raise IntakeError("该文件不是有效的 .xlsx 工作簿（可能已损坏，或只是改了扩展名）",
                          params={})
    _check_expansion(content)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the reader means an unreadable file
        raise IntakeError("无法读取该 Excel 工作簿（文件已损坏或格式不受支持）",
                          params={}) from exc
    try:
        sheet = workbook.worksheets[0]
        rows: list[list[str]] = []
        cells = 0
        for values in sheet.iter_rows(values_only=True):
            cells += len(values)
            if cells > MAX_CELLS:
                raise _too_many_cells()
            rows.append([_cell_text(v) for v in values])
            if len(rows) > MAX_ROWS + 50:
                break
        return rows
    except IntakeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken sheet inside a valid zip
        raise IntakeError("无法读取该 Excel 工作簿（文件已损坏或格式不受支持）",
                          params={}) from exc
    finally:
        workbook.close()


def _too_many_cells() -> IntakeError:
    return IntakeError("工作表超过 %(limit)s 个单元格，未导入；请删除多余行列或拆分上传",
                       params={"limit": MAX_CELLS})


def _check_expansion(content: bytes) -> None:
    """Refuse a workbook that would expand past the limits, before parsing any of it."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
            expanded = sum(member.file_size for member in members)
            if expanded > MAX_XLSX_UNCOMPRESSED:
                raise IntakeError(
                    "工作簿解压后为 %(size)s MB，超过 %(limit)s MB 上限，未导入；请拆分上传",
                    params={"limit": MAX_XLSX_UNCOMPRESSED // (1024 * 1024),
                            "size": f"{expanded / (1024 * 1024):.0f}"})
            sheets = [m for m in members if m.filename.startswith("xl/worksheets/sheet")]
            for member in sheets[:1]:
                with archive.open(member) as sheet:
                    head = sheet.read(4096).decode("utf-8", "replace")
                found = re.search(r'<(?:\w+:)?dimension ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"',
                                  head)
                if found and found.group(3):
                    columns = _column_number(found.group(3)) - _column_number(found.group(1)) + 1
                    count = (int(found.group(4)) - int(found.group(2)) + 1) * columns
                    if count > MAX_CELLS:
                        raise _too_many_cells()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IntakeError("无法读取该 Excel 工作簿（文件已损坏或格式不受支持）",
                          params={}) from exc


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value).strip()


def rows_from_table(table: list[list[str]]) -> list[dict[str, Any]]:
    """Rows keyed by registration field, each with its line number in the file."""
    start = next((i for i, row in enumerate(table) if any(cell for cell in row)), None)
    if start is None:
        raise IntakeError("文件中没有任何内容", params={})
    # Lists often carry a title line or two above the header row: take the first of the
    # top rows that names at least three known columns.
    for index, row in enumerate(table[start:start + 10], start=start):
        if sum(1 for cell in row if _normalise_header(cell) in _HEADERS) >= 3:
            start = index
            break
    header = table[start]
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        known = _HEADERS.get(_normalise_header(cell))
        if known is not None and known not in positions:
            positions[known] = index
    missing = [c.header for c in COLUMNS if c.required and c.field not in positions]
    if missing:
        raise IntakeError("第 %(line)s 行的表头缺少这些列：%(columns)s。请使用下载的模板",
                          params={"line": start + 1, "columns": "、".join(missing)})
    rows = []
    for offset, cells in enumerate(table[start + 1:], start=start + 2):
        if not any(cells):
            continue
        values = {f: (cells[i] if i < len(cells) else "") for f, i in positions.items()}
        rows.append({"line": offset, "values": values, "dropped": False})
    if not rows:
        raise IntakeError("表头下面没有项目行", params={})
    if len(rows) > MAX_ROWS:
        raise IntakeError("一次最多导入 %(limit)s 个项目，该文件有 %(count)s 行，请拆分后上传",
                          params={"limit": MAX_ROWS, "count": len(rows)})
    return rows


# Checking rows ------------------------------------------------------------------------


def choices(schema: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Accepted spellings (code or Chinese title) of each choice field -> code."""
    props = schema["properties"]["project"]["properties"]
    result: dict[str, dict[str, str]] = {}
    for column in COLUMNS:
        if column.kind != "choice":
            continue
        options = props[column.field].get("oneOf", [])
        spelled: dict[str, str] = {}
        for option in options:
            spelled[str(option["const"]).lower()] = option["const"]
            spelled[str(option.get("title", option["const"])).lower()] = option["const"]
        result[column.field] = spelled
    result["eia"].update({"": "none", "无": "none", "登记表": "none", "豁免": "none"})
    return result


def check_project_code(code: str, approval_type: str | None, this_year: int) -> list[Message]:
    """The 24-character national project code: structure, region, type, plausible year."""
    match = CODE_PATTERN.match(code)
    if len(code) != 24 or match is None:
        return [Message("code", "项目代码应为24位：年份-行政区划代码-行业代码-类型代码-流水号，"
                        "例如 2026-640502-34-03-000127（收到 %(code)s）", {"code": code})]
    year, region, industry, kind, serial = match.groups()
    problems = []
    if not 2000 <= int(year) <= this_year + 1:
        problems.append(Message("code", "项目代码中的年份 %(year)s 不合理",
                                {"year": year}))
    if region not in ZHONGWEI_REGIONS:
        problems.append(Message("code", "项目代码中的行政区划代码 %(region)s 不属于中卫市"
                                "（应为 640500、640502、640521 或 640522）",
                                {"region": region}))
    if not 1 <= int(industry) <= 97:
        problems.append(Message("code", "项目代码中的行业代码 %(industry)s 不存在",
                                {"industry": industry}))
    if kind not in CODE_TYPES:
        problems.append(Message("code",
                                "项目代码中的类型代码 %(kind)s 应为 02（核准）或 03（备案）",
                                {"kind": kind}))
    elif approval_type in CODE_TYPES.values() and CODE_TYPES[kind] != approval_type:
        problems.append(Message(
            "code", "项目代码的类型代码 %(kind)s 表示%(coded)s，与立项方式“%(declared)s”不一致",
            {"kind": kind, "coded": N_("核准") if kind == "02" else N_("备案"),
             "declared": N_("核准") if approval_type == "approval" else N_("备案")}))
    if serial == "000000":
        problems.append(Message("code", "项目代码的流水号不能为 000000", {}))
    return problems


def _normalise_code(text: str) -> str:
    return re.sub(r"\s+", "", text).translate(str.maketrans("－—–", "---"))


def row_project(values: Mapping[str, str], source: str,
                spelled: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, Any], list[Message]]:
    """A row's registration data and the problems converting its cells."""
    project: dict[str, Any] = {"source": source}
    problems: list[Message] = []
    for column in COLUMNS:
        raw = str(values.get(column.field, "") or "").strip()
        if column.required and not raw:
            problems.append(Message(column.field, "“%(column)s”必须填写",
                                    {"column": column.header}))
            continue
        if column.kind == "text":
            if raw:
                project[column.field] = _normalise_code(raw) if column.field == "code" else raw
        elif column.kind == "choice":
            code = spelled[column.field].get(raw.lower())
            if code is None:
                allowed = "、".join(sorted({k for k in spelled[column.field] if k and
                                            not k.isascii()}))
                problems.append(Message(column.field,
                                        "“%(column)s”无法识别“%(value)s”，可填：%(allowed)s",
                                        {"column": column.header, "value": raw,
                                         "allowed": allowed}))
            else:
                project[column.field] = code
        elif column.kind == "number":
            if raw:
                try:
                    number = float(raw.replace(",", ""))
                except ValueError:
                    number = -1.0
                if number < 0:
                    problems.append(Message(column.field,
                                            "“%(column)s”应为不小于0的数字（收到 %(value)s）",
                                            {"column": column.header, "value": raw}))
                else:
                    project[column.field] = int(number) if number.is_integer() else number
        elif raw.lower() in YES:
            project[column.field] = True
        elif raw.lower() in NO:
            project[column.field] = False
        else:
            problems.append(Message(column.field,
                                    "“%(column)s”请填“是”或“否”（收到 %(value)s）",
                                    {"column": column.header, "value": raw}))
    return project, problems


def check_rows(rows: Sequence[Mapping[str, Any]], source: str, schema: Mapping[str, Any],
               existing: Mapping[str, int], this_year: int) -> dict[str, list[dict[str, Any]]]:
    """Every problem of every kept row, by line: cells, code check, duplicates, the form."""
    spelled = choices(schema)
    validator = Draft202012Validator(schema)
    kept = [r for r in rows if not r.get("dropped")]
    by_code: dict[str, list[int]] = {}
    for row in kept:
        code = _normalise_code(str(row["values"].get("code", "") or ""))
        if code:
            by_code.setdefault(code, []).append(int(row["line"]))
    errors: dict[str, list[dict[str, Any]]] = {}
    for row in kept:
        line = int(row["line"])
        project, problems = row_project(row["values"], source, spelled)
        phone = project.get("phone")
        if isinstance(phone, str) and not PHONE_PATTERN.match(phone.replace(" ", "")):
            problems.append(Message("phone", "联系电话“%(value)s”格式不对：应为11位手机号或带区号的"
                                    "固定电话，如 13995551234 或 0955-7012345", {"value": phone}))
        given = project.get("code")
        if isinstance(given, str):
            problems.extend(check_project_code(given, project.get("approval_type"), this_year))
            if given in existing:
                problems.append(Message("code", "项目代码 %(code)s 已登记过（案件 %(case)s），"
                                        "不能重复导入", {"code": given, "case": existing[given]}))
            others = [n for n in by_code.get(given, []) if n != line]
            if others:
                problems.append(Message("code", "项目代码与本文件第 %(lines)s 行重复",
                                        {"lines": "、".join(str(n) for n in others)}))
        if not problems:
            for error in validator.iter_errors({"project": project}):
                field = str(error.absolute_path[-1]) if error.absolute_path else "name"
                column = FIELDS.get(field)
                problems.append(Message(field, "“%(column)s”不符合登记要求：%(detail)s",
                                        {"column": column.header if column else field,
                                         "detail": error.schema.get("x-errorMessage")
                                         if isinstance(error.schema, dict)
                                         and error.schema.get("x-errorMessage")
                                         else error.message}))
        if problems:
            errors[str(line)] = [p.to_dict() for p in problems]
    return errors


# Templates ----------------------------------------------------------------------------

def template_csv() -> bytes:
    """A CSV template (UTF-8 with BOM, which Excel opens as UTF-8): headers only."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([c.header for c in COLUMNS])
    return buffer.getvalue().encode("utf-8-sig")


def template_xlsx(schema: Mapping[str, Any]) -> bytes:
    """An Excel template: the headers, and a sheet explaining every column."""
    import openpyxl
    from openpyxl.styles import Font, PatternFill

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "项目清单"
    sheet.append([c.header for c in COLUMNS])
    for index, column in enumerate(COLUMNS, start=1):
        cell = sheet.cell(row=1, column=index)
        cell.font = Font(bold=True)
        if column.required:
            cell.fill = PatternFill("solid", fgColor="FFF2CC")
        letter = cell.column_letter
        sheet.column_dimensions[letter].width = 28 if column.kind == "text" else 14
        if column.field == "code":
            for row in range(2, MAX_ROWS + 2):  # text cells keep the code as typed
                sheet.cell(row=row, column=index).number_format = "@"
    sheet.freeze_panes = "A2"
    help_sheet = workbook.create_sheet("填写说明")
    help_sheet.append(["列", "是否必填", "填写要求"])
    props = schema["properties"]["project"]["properties"]
    for column in COLUMNS:
        if column.kind == "choice":
            rule = "可填：" + "、".join(str(o.get("title")) for o in props[column.field]["oneOf"])
        elif column.kind == "yesno":
            rule = "填“是”或“否”，空白视为否"
        elif column.kind == "number":
            rule = "数字，单位万元"
        elif column.field == "code":
            rule = "24位项目代码，如 2026-640502-34-03-000127；类型代码 02 核准、03 备案"
        elif column.field == "phone":
            rule = "11位手机号或带区号的固定电话"
        else:
            rule = "文字"
        help_sheet.append([column.header, "必填" if column.required else "", rule])
    help_sheet.column_dimensions["C"].width = 80
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# Pending imports ----------------------------------------------------------------------


def _view(row: ProjectImport) -> ImportView:
    return ImportView(id=row.id, filename=row.filename, source=row.source, status=row.status,
                      rows=list(row.rows), errors=dict(row.errors), created_by=row.created_by,
                      created_at=row.created_at, finished_at=row.finished_at,
                      case_ids=list(row.case_ids or []))


class ProjectImports:
    """Uploaded lists kept in preview, fixed row by row, then imported all at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _check_actor(actor: Actor) -> None:
        if not (actor.is_system or actor.role in ("office", "admin")):
            raise Forbidden(N_("只有领导小组办公室可以导入项目清单"))

    def _schema(self) -> dict[str, Any]:
        schema = self.engine.process_form(PROCESS_ID, START_FORM)
        if schema is None:
            raise IntakeError("代办服务主流程没有项目登记表单，无法检查项目清单", params={})
        return schema

    def _check(self, s: Session, rows: list[dict[str, Any]], source: str,
               exclude: Sequence[int] = ()) -> dict[str, list[dict[str, Any]]]:
        codes = {_normalise_code(str(r["values"].get("code", "") or "")) for r in rows}
        query = select(Case.project_code, Case.id).where(
            Case.process_id == PROCESS_ID, Case.project_code.in_(codes - {""}))
        if exclude:
            query = query.where(Case.id.not_in(list(exclude)))
        existing = {code: case_id for code, case_id in s.execute(query) if code}
        this_year = self.engine.clock().astimezone(SERVICE_TZ).year
        return check_rows(rows, source, self._schema(), existing, this_year)

    def upload(self, filename: str, content: bytes, source: str, actor: Actor) -> ImportView:
        """Read and check an uploaded list; keep it in preview (nothing is imported yet)."""
        self._check_actor(actor)
        if source not in SOURCES:
            raise IntakeError("请选择项目来源（发改委重点项目清单或商务局签约项目清单）", params={})
        rows = rows_from_table(read_table(filename, content))
        now = self.engine.clock()
        with self.engine.db.transaction() as s:
            errors = self._check(s, rows, source)
            row = ProjectImport(filename=filename[:300], source=source, rows=rows,
                                errors=errors, status="pending", created_by=actor.username,
                                created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            audit.append_ops(s, NewEvent("project_list_uploaded", actor.username, now, {
                "import_id": row.id, "filename": row.filename, "source": source,
                "rows": len(rows), "rows_with_errors": len(errors)}))
            return _view(row)

    def get(self, import_id: int) -> ImportView:
        """An import with its rows and the problems of each."""
        with self.engine.db.reading() as s:
            return _view(self._row(s, import_id))

    def pending(self) -> list[ImportView]:
        """Imports waiting in preview, newest first."""
        with self.engine.db.reading() as s:
            return [_view(r) for r in s.scalars(select(ProjectImport).where(
                ProjectImport.status == "pending").order_by(ProjectImport.id.desc()))]

    @staticmethod
    def _row(s: Session, import_id: int, lock: bool = False) -> ProjectImport:
        row = s.get(ProjectImport, import_id, populate_existing=lock)
        if row is None:
            raise NotFound(f"没有编号为 {import_id} 的导入")
        return row

    def revise(self, import_id: int, edits: Mapping[int, Mapping[str, str]],
               dropped: set[int], actor: Actor) -> ImportView:
        """Apply the office's corrections and drops to a pending import, and check it again."""
        self._check_actor(actor)
        now = self.engine.clock()
        with self.engine.db.transaction() as s:
            row = self._pending_row(s, import_id)
            rows = []
            for entry in row.rows:
                line = int(entry["line"])
                values = dict(entry["values"])
                for field, text in edits.get(line, {}).items():
                    if field in FIELDS:
                        values[field] = str(text).strip()
                rows.append({"line": line, "values": values, "dropped": line in dropped})
            row.rows = rows
            row.errors = self._check(s, rows, row.source)
            row.updated_at = now
            return _view(row)

    def _pending_row(self, s: Session, import_id: int) -> ProjectImport:
        row = self._row(s, import_id, lock=True)
        if row.status != "pending":
            raise Conflict(f"该导入已{'导入' if row.status == 'imported' else '放弃'}，不能再修改")
        return row

    def discard(self, import_id: int, actor: Actor) -> ImportView:
        """Give up a pending import; nothing is registered."""
        self._check_actor(actor)
        now = self.engine.clock()
        with self.engine.db.transaction() as s:
            row = self._pending_row(s, import_id)
            row.status, row.finished_at, row.updated_at = "discarded", now, now
            audit.append_ops(s, NewEvent("project_list_discarded", actor.username, now, {
                "import_id": row.id, "filename": row.filename}))
            return _view(row)

    def commit(self, import_id: int, actor: Actor) -> list[CaseView]:
        """Register every kept row and start its case, all in one transaction, or nothing."""
        self._check_actor(actor)
        with self.engine.db.reading() as s:
            row = self._row(s, import_id)
            if row.status != "pending":
                raise Conflict(f"该导入已{'导入' if row.status == 'imported' else '放弃'}")
            rows, source = list(row.rows), row.source
            errors = self._check(s, rows, source)
        kept = [r for r in rows if not r.get("dropped")]
        if errors or not kept:
            self._store_errors(import_id, errors)
            if not kept:
                raise IntakeError("所有行都已删除，没有可导入的项目", params={})
            raise IntakeError(STILL_BAD, params={"count": len(errors)})
        spelled = choices(self._schema())
        starts = []
        for entry in kept:
            project, _ = row_project(entry["values"], source, spelled)
            starts.append(({"project": project}, None))

        def finish(s: Session, cases: list[CaseView]) -> None:
            ids = [c.id for c in cases]
            # Another import may have registered the same codes since the check above.
            late = self._check(s, rows, source, exclude=ids)
            if late:
                raise _LateDuplicates(late)
            record = self._pending_row(s, import_id)
            now = self.engine.clock()
            record.status, record.finished_at, record.updated_at = "imported", now, now
            record.case_ids, record.errors = ids, {}
            audit.append_ops(s, NewEvent("project_list_imported", actor.username, now, {
                "import_id": record.id, "filename": record.filename, "source": source,
                "imported": len(ids), "dropped": len(rows) - len(kept), "case_ids": ids,
                "project_codes": [c.project_code for c in cases]}))

        try:
            return self.engine.start_cases(PROCESS_ID, starts, actor, then=finish)
        except _LateDuplicates as exc:
            self._store_errors(import_id, exc.errors)
            raise IntakeError(STILL_BAD, params={"count": len(exc.errors)}) from exc

    def _store_errors(self, import_id: int, errors: dict[str, list[dict[str, Any]]]) -> None:
        with self.engine.db.transaction() as s:
            row = self._row(s, import_id, lock=True)
            if row.status == "pending":
                row.errors = errors


class _LateDuplicates(EngineError):
    """Rows became duplicates while the import ran."""

    def __init__(self, errors: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__("duplicates appeared during the import")
        self.errors = errors


# Project codes in use --------------------------------------------------------------

# Cases whose project code another case may not take: those still running or completed.
CODE_HOLDING_STATUSES = ("running", "completed")


def unique_project_code(s: Session, submitted: DataSubmitted) -> None:
    """Refuse a project code another running or completed case already carries, naming
    that case; a code obtained later (phase 1, `project_code`) becomes the case's code."""
    case = submitted.case
    if case.process_id != PROCESS_ID:
        return
    if submitted.spec_name is None:
        project = submitted.data.get("project")
        code = project.get("code") if isinstance(project, dict) else None
        field_name = "project.code"
    else:
        code = submitted.data.get("project_code")
        field_name = "project_code"
    if not isinstance(code, str) or not code:
        return
    other = s.execute(select(Case.id, Case.title, Case.status).where(
        Case.process_id == PROCESS_ID, Case.project_code == code, Case.id != case.id,
        Case.status.in_(CODE_HOLDING_STATUSES)).order_by(Case.id).limit(1)).first()
    if other is not None:
        actor = submitted.actor
        if actor is None or actor.is_system or actor.role in ("office", "admin", "auditor"):
            # Those who read every case are told which one holds the code.
            state = "办理中" if other.status == "running" else "已办结"
            message = f"项目代码 {code} 已被案件 #{other.id}「{other.title}」（{state}）使用"
        else:
            # Anyone else learns only that the code is taken: not another unit's case.
            message = f"项目代码 {code} 已被另一个案件使用（请联系领导小组办公室核实）"
        raise InvalidData(message, [FieldError(field_name, f"{message}，不能重复登记")])
    case.project_code = code
