"""Issue 12 through the web: what a department adds reaches the enterprise on paper."""

from __future__ import annotations

import io
import re

import pdfplumber
import pytest

from agency import documents
from tests.service import KEY_PROJECT, OFFICE, Service
from tests.test_oversight import _app
from tests.webhelpers import csrf_of, logged_in


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    return Service(make_pack_engine(sqlite_url), clock)


def test_a_material_added_by_a_department_is_in_the_one_time_notice_pdf(service, sqlite_url,
                                                                         tmp_path):
    """The housing bureau adds two materials to the construction permit while compiling the
    list: a new one, and one the catalogue knows by name that another item already asks for.
    The new one appears in the notice and the item's checklist; the known one stays once."""
    service.start(KEY_PROJECT)
    service.complete("select_items", selected_items=service.case().data["selected_items"])
    added = [{"item": "construction_permit", "material": "施工现场扬尘污染防治方案"},
             {"item": "construction_permit", "material": "营业执照（统一社会信用代码证）"},
             {"item": "construction_permit", "material": "施工现场扬尘污染防治方案"},
             {"item": "project_filing", "material": "法定代表人身份证明"}]
    service.complete("review_material_list", by="housing_construction", extra_materials=added)
    case = service.case()
    permit = next(i for i in case.data["items"] if i["code"] == "construction_permit")
    assert permit["materials"].count("施工现场扬尘污染防治方案") == 1
    assert "business_license" in permit["materials"]
    merged = {m["name"]: m for m in case.data["materials"]}
    assert "construction_permit" in merged["营业执照（统一社会信用代码证）"]["items"]
    assert merged["施工现场扬尘污染防治方案"]["items"] == ["construction_permit"]

    app = _app(service.engine, sqlite_url, tmp_path)
    agent = logged_in(app, "agent_approval_bureau")
    page = agent.get(f"/cases/{case.id}/documents").get_data(as_text=True)
    agent.post(f"/cases/{case.id}/documents", data={
        "csrf_token": csrf_of(page), "kind": "one_time_notice", "source": ""})
    [doc] = documents.list_documents(service.engine, case.id, OFFICE)
    pdf = agent.get(f"/documents/{doc.id}.pdf")
    assert pdf.status_code == 200
    materials = []
    with pdfplumber.open(io.BytesIO(pdf.data)) as opened:
        for page_ in opened.pages:
            for table in page_.extract_tables():
                header = [re.sub(r"\s", "", c or "") for c in table[0]]
                if header[:2] == ["序号", "材料名称"]:
                    materials += [re.sub(r"\s", "", row[1] or "") for row in table[1:]]
    assert materials.count("施工现场扬尘污染防治方案") == 1
    assert materials.count("营业执照（统一社会信用代码证）") == 1
    # The item's checklist at material preparation carries it too.
    service.complete("one_time_notice")
    service.complete("dispatch")
    service.complete("confirm_project_code")
    task = service.task("prepare_materials", "project_filing")
    checklist = agent.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "☐ 法定代表人身份证明" in checklist
    assert service.engine.verify_case(case.id).ok
