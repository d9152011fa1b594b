"""Names, never codes, in what the enterprise receives: documents name the people and
departments, carry a number under the service's scheme (per year, never reused), and the
notifications name the department that handles a task."""

from __future__ import annotations

import pytest

from agency import documents, notify
from agency.models import DocumentCounter
from agency.reference import ReferenceData, ReferenceDataError, ServiceSettings
from engine import accounts
from engine.errors import Unavailable
from tests.conftest import ROOT
from tests.service import OFFICE, Service, small_project


@pytest.fixture
def service(make_pack_engine, sqlite_url, clock) -> Service:
    engine = make_pack_engine(sqlite_url)
    with engine.db.transaction() as s:
        accounts.create_user(s, "agent_drc", "pass-word-1", "agent", department="drc",
                             display_name="周建国", now=clock())
        accounts.create_user(s, "office", "pass-word-1", "office",
                             department="leading_group_office", display_name="马丽", now=clock())
    return Service(engine, clock)


def _rejected(service: Service) -> str:
    service.start(small_project())
    service.complete("select_items", selected_items=service.case().data["selected_items"])
    for spec in ("review_material_list", "one_time_notice", "dispatch"):
        service.complete(spec)
    service.complete("confirm_project_code")
    service.complete("prepare_materials", "project_filing")
    service.complete("check_materials", "project_filing", decision="reject",
                     rejection_reasons=["申请表未加盖公章"])
    [choice] = [c for c in documents.choices(service.engine, service.case_id)
                if c.kind == "rejection"]
    return choice.source


def test_documents_name_people_and_are_numbered_per_year_never_reused(service, monkeypatch):
    engine = service.engine
    source = _rejected(service)
    first = documents.generate(engine, service.case_id, "rejection", source, OFFICE)
    _, html, _ = documents.get_document(engine, first.id, OFFICE)
    assert first.number == "中卫代办〔2026〕第1号"
    assert "编号：中卫代办〔2026〕第1号" in html
    assert "核查人：周建国" in html and "agent_drc" not in html
    assert "经市发展和改革委员会核对" in html
    assert "ZR-" not in html

    # a document that fails to be laid out takes no number
    def broken(html: str) -> bytes:
        raise Unavailable("no fonts")
    real = documents.to_pdf
    monkeypatch.setattr(documents, "to_pdf", broken)
    with pytest.raises(Unavailable):
        documents.generate(engine, service.case_id, "one_time_notice", "", OFFICE)
    monkeypatch.setattr(documents, "to_pdf", real)
    second = documents.generate(engine, service.case_id, "one_time_notice", "", OFFICE)
    assert second.number == "中卫代办〔2026〕第2号"

    # the next calendar year (in the service's time zone) starts again at 1
    service.clock.set(service.clock().replace(month=12, day=31, hour=16, minute=5))
    third = documents.generate(engine, service.case_id, "progress", "", OFFICE)
    assert third.number == "中卫代办〔2027〕第1号"
    with engine.db.reading() as s:
        assert {c.year: c.last for c in s.query(DocumentCounter)} == {2026: 2, 2027: 1}
    numbers = [d.number for d in documents.list_documents(engine, service.case_id, OFFICE)]
    assert len(numbers) == len(set(numbers)) == 3


def test_the_numbering_scheme_is_configurable_and_checked(tmp_path):
    settings = ServiceSettings.from_dict({"document_number": "ZW-{year}-{n:04d}"},
                                         tmp_path / "settings.json")
    assert settings.document_number.format(year=2026, n=7) == "ZW-2026-0007"
    with pytest.raises(ReferenceDataError, match="must contain"):
        ServiceSettings.from_dict({"document_number": "中卫代办〔{year}〕"}, tmp_path / "s.json")
    with pytest.raises(ReferenceDataError, match="may use only"):
        ServiceSettings.from_dict({"document_number": "{who}-{n}"}, tmp_path / "s.json")
    assert ReferenceData.load(ROOT / "data").settings.document_number == "中卫代办〔{year}〕第{n}号"


def test_notifications_name_the_department_not_its_code(service):
    from agency.models import Notification
    from engine.hooks import TaskRaised
    from engine.store.models import HumanTask

    service.start(small_project())
    with service.engine.db.transaction() as s:
        task = s.query(HumanTask).filter_by(case_id=service.case_id).first()
        assert task is not None and task.department == "approval_bureau"
        notify.task_raised(s, TaskRaised(case_id=service.case_id, case_title="测试项目",
                                         task=task, item_department=None, targets=("office",),
                                         now=service.clock()), mail=False)
    with service.engine.db.reading() as s:
        [body] = [n.body for n in s.query(Notification)]
    assert "由 市审批服务管理局 办理" in body and "approval_bureau" not in body
