"""Seals leave the system: the audit area lists and serves them, the periodic report prints
them, and they are mailed to the configured addresses; a case's page says which seals cover it."""

from __future__ import annotations

import io
import re

import pdfplumber
from sqlalchemy import select

from agency import documents, oversight, service_engine
from agency.models import OutboxMail
from engine.audit.sealcheck import trusted_key, verify_seals
from engine.audit.seals import seal
from engine.config import Config
from engine.store.db import Database
from engine.store.models import Case
from tests.conftest import PACK, ROOT
from tests.service import OFFICE
from tests.test_audit_web import audit_app, client_as  # noqa: F401 - the fixture
from tests.test_seals import rewrite_case


def test_auditors_see_download_and_verify_seals(audit_app, clock):  # noqa: F811
    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    client = client_as(audit_app, "auditor")
    page = client.get(f"/audit/cases/{case_id}").get_data(as_text=True)
    assert "本案件尚未被审计封印覆盖" in page
    assert "暂无审计封印" in client.get("/audit/seals").get_data(as_text=True)
    made = seal(engine)
    clock.advance(hours=2)
    seal(engine)
    listing = client.get("/audit/seals").get_data(as_text=True)
    assert made.root[:16] in listing and "/audit/seals/1.json" in listing
    download = client.get("/audit/seals/1.json")
    assert download.headers["Content-Disposition"].endswith('zerorun-seal-1.json"')
    held = download.get_json()
    assert held == made.document()
    assert verify_seals(engine, [held], trusted_key(engine.config)).ok
    assert client.get("/audit/seals/9.json").status_code == 404
    events = len(engine.case_events(case_id))
    page = client.get(f"/audit/cases/{case_id}").get_data(as_text=True)
    assert "本案件由 2 个审计封印覆盖（最近的封印：第 2 号" in page
    assert f"封存至第 {events} 个事件" in page
    checked = client.get(f"/audit/cases/{case_id}?verify=1").get_data(as_text=True)
    assert checked.count("当前事件与封存的一致") == 2
    # A consistent rewrite passes the case's own check but not the seals.
    submitted = next(e for e in engine.case_events(case_id)
                     if e.data.get("data", {}).get("decision") == "reject")
    rewrite_case(engine, case_id, submitted.seq,
                 {**submitted.data["data"], "rejection_reasons": ["（已删除）"]})
    checked = client.get(f"/audit/cases/{case_id}?verify=1").get_data(as_text=True)
    assert "核验通过" in checked
    assert f"第 {submitted.seq} 个事件已被改写" in checked
    assert checked.count(f"step={submitted.seq}#step") >= 1


def test_only_auditors_office_and_admins_open_the_seals(audit_app):  # noqa: F811
    seal(audit_app.extensions["zerorun"])
    for role, status in (("auditor", 200), ("office", 200), ("admin", 200), ("agent", 403),
                         ("leader", 403)):
        client = client_as(audit_app, role)
        assert client.get("/audit/seals").status_code == status
        assert client.get("/audit/seals/1.json").status_code == status


def test_seals_are_mailed_and_printed_in_the_periodic_report(sqlite_url, tmp_path, clock):
    from agency import bootstrap
    from engine.store import schema

    config = Config.from_env(database_url=sqlite_url, processes_dir=PACK,
                             data_dir=ROOT / "data", instance_dir=tmp_path,
                             seal_mail_to="audit@city.example, archive@city.example")
    engine = service_engine(config, database=Database(sqlite_url), clock_source=clock)
    try:
        schema.upgrade(engine.db)
        bootstrap.sync_departments(engine)
        made = seal(engine)
        with engine.db.reading() as s:
            mails = list(s.scalars(select(OutboxMail).order_by(OutboxMail.recipient)))
            assert s.scalar(select(Case.id)) is None
        assert [m.recipient for m in mails] == ["archive@city.example", "audit@city.example"]
        assert made.root in mails[0].body and '"signature"' in mails[0].body
        figures = oversight.figures(engine, None)
        report = documents.generate_periodic_report(engine, figures, {"phase_stage": "",
                                                                      "overdue": ""}, OFFICE)
        _, html, pdf = documents.get_document(engine, report.id, OFFICE)
        assert "六、审计封印" in html and made.root in html
        with pdfplumber.open(io.BytesIO(pdf)) as opened:
            text = re.sub(r"\s", "", "".join(p.extract_text() for p in opened.pages))
        assert "#1" in text and made.root[:32] in text
    finally:
        engine.db.dispose()


def test_the_printable_report_carries_the_seal_proofs(audit_app, tmp_path):  # noqa: F811
    from engine.audit.export import read_export, verify_export_seal

    engine = audit_app.extensions["zerorun"]
    case_id = audit_app.config["CASE_ID"]
    client = client_as(audit_app, "auditor")
    before = client.get(f"/audit/cases/{case_id}/report.html").get_data(as_text=True)
    assert "导出时本案件尚未被审计封印覆盖" in before
    held = seal(engine).document()
    report = client.get(f"/audit/cases/{case_id}/report.html").get_data(as_text=True)
    assert "带有 1 个审计封印的包含证明（最近：第 1 号" in report and held["root"] in report
    assert verify_export_seal(read_export(report), held, held["public_key"]).ok
