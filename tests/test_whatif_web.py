"""The what-if pages: choosing cases, the run's progress and outcomes, publish confirmation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine import accounts
from engine.actors import SYSTEM
from engine.pack import whatif
from engine.pack.library import Library
from engine.store.models import ProcessVersion, WhatIfRun
from tests.conftest import PACK
from tests.test_library import ADMIN, phase_2_data, with_condition
from tests.test_whatif import renamed_review, three_cases
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


def gateway_draft(engine) -> int:
    xml = with_condition((PACK / "phase_2.bpmn").read_bytes(),
                         "flow_has_items_to_confirm_planning_conditions",
                         "len(phase_items) > 99 and not terminated")
    Library(engine).save("phase_2.bpmn", xml, ADMIN, "what-if")
    return Library(engine).process("phase_2").versions[0].id


def run_worker_until_done(engine) -> None:
    while whatif.work(engine, "web-test", seconds=30)[1]:
        pass


def start_from_page(client, draft: int, **form):
    page = client.get(f"/admin/versions/{draft}/whatif").get_data(as_text=True)
    return client.post(f"/admin/versions/{draft}/whatif",
                       data={"csrf_token": csrf_of(page), **form})


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_administrator_replays_the_versions_cases_and_sees_where_they_diverge(app, language):
    engine = app.extensions["zerorun"]
    waiting, past, skipped = three_cases(engine)
    draft = gateway_draft(engine)
    client = logged_in(app, "admin")
    if language == "en":
        client.get("/lang/en")
    library = client.get("/admin/processes").get_data(as_text=True)
    assert f"/admin/versions/{draft}/whatif" in library
    choose = text_of(client.get(f"/admin/versions/{draft}/whatif").get_data(as_text=True))
    assert ("办理中的 2 个案件" in choose) if language == "zh" else ("2 running cases" in choose)

    started = start_from_page(client, draft, mode="candidates", closed="5")
    assert started.status_code == 302
    run_url = started.headers["Location"]
    progress = client.get(run_url).get_data(as_text=True)
    assert 'id="whatif-progress"' in progress and 'data-finished="false"' in progress
    assert "0 / 3" in progress
    run_worker_until_done(engine)
    assert client.get(run_url + "/progress").get_json() == {
        "state": "done", "done": 3, "total": 3, "finished": True}

    page = client.get(run_url).get_data(as_text=True)
    diverged = text_of(page.split('id="whatif-diverged"')[1].split("</table>")[0])
    identical = text_of(page.split('id="whatif-identical"')[1].split("</table>")[0])
    assert f"#{waiting}" in diverged and f"#{past}" in diverged and f"#{skipped}" in identical
    if language == "zh":
        assert "执行相同 1 件，会不同 2 件" in text_of(page)
        assert "第 1 个事件（案件开始）：" in diverged and "网关会走另一条路径" in diverged
        assert "本阶段有事项？" in diverged and "核实规划设计条件（办理中）" in diverged
        assert "不能迁移" in diverged
    else:
        assert "1 identical, 2 would differ" in text_of(page)
        assert "event 1 (case started):" in diverged
        assert "核实规划设计条件 (In progress)" in diverged
        assert "a gateway would take another flow" in diverged
        assert "cannot be migrated" in diverged.lower()


def test_searching_and_choosing_cases_and_refusals_store_nothing(app):
    engine = app.extensions["zerorun"]
    waiting, past, _ = three_cases(engine)
    other = engine.start_case("phase_3", phase_2_data(engine), SYSTEM)
    draft = gateway_draft(engine)
    client = logged_in(app, "admin")
    found = client.get(f"/admin/versions/{draft}/whatif?q=%23{past}").get_data(as_text=True)
    assert f'name="case" value="{past}"' in found and f'value="{waiting}"' not in found

    refused = start_from_page(client, draft, mode="chosen", case=[str(past), str(other.id)])
    assert refused.status_code == 422
    assert f"以下案件不属于本流程，不能用此草稿试演：#{other.id}" in refused.get_data(as_text=True)
    empty = start_from_page(client, draft, mode="chosen")
    assert empty.status_code == 422 and "请至少选择一个案件" in empty.get_data(as_text=True)
    bad = start_from_page(client, draft, mode="chosen", case="abc")
    assert bad.status_code == 422 and "案件编号必须是数字" in bad.get_data(as_text=True)
    with engine.db.reading() as s:
        published = s.scalar(select(ProcessVersion.id).where(
            ProcessVersion.process_id == "phase_2", ProcessVersion.status == "published"))
    not_draft = start_from_page(client, published, mode="chosen", case=str(past))
    assert not_draft.status_code == 422
    with engine.db.reading() as s:
        assert s.scalars(select(WhatIfRun)).all() == []
    assert start_from_page(client, draft, mode="chosen", case=str(past)).status_code == 302


def test_only_administrators_reach_the_what_if_pages(app):
    engine = app.extensions["zerorun"]
    waiting, _, _ = three_cases(engine)
    draft = gateway_draft(engine)
    run_id = whatif.start_run(engine, draft, [waiting], ADMIN)
    for user in ("auditor", "agent_housing"):
        client = logged_in(app, user)
        for url in (f"/admin/versions/{draft}/whatif", f"/admin/whatif/{run_id}",
                    f"/admin/whatif/{run_id}/progress"):
            assert client.get(url).status_code == 403, (user, url)
        assert client.post(f"/admin/versions/{draft}/whatif",
                           data={"mode": "candidates"}).status_code in (400, 403)
    anonymous = app.test_client()
    assert anonymous.get(f"/admin/whatif/{run_id}").status_code == 302
    admin = logged_in(app, "admin")
    assert admin.get("/admin/whatif/9999").status_code == 404
    assert admin.get("/admin/versions/9999/whatif").status_code == 404
    with engine.db.reading() as s:
        assert s.get(WhatIfRun, run_id).state == "queued"  # nobody but the worker ran it


def test_publishing_a_draft_whose_replay_diverged_asks_for_confirmation(app):
    engine = app.extensions["zerorun"]
    waiting, past, skipped = three_cases(engine)
    draft = gateway_draft(engine)
    whatif.start_run(engine, draft, [waiting, past, skipped], ADMIN)
    run_worker_until_done(engine)
    client = logged_in(app, "admin")
    csrf = csrf_of(client.get("/admin/processes").get_data(as_text=True))
    asked = client.post(f"/admin/versions/{draft}/publish", data={"csrf_token": csrf})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="whatif-confirm-publish"' in page
    assert "有 2 个案件在此版本下会以不同方式执行" in text_of(page)
    assert f"#{waiting}" in page and "网关会走另一条路径" in page
    with engine.db.reading() as s:
        assert s.get(ProcessVersion, draft).status == "draft"  # not published yet
    done = client.post(f"/admin/versions/{draft}/publish",
                       data={"csrf_token": csrf_of(page), "confirm": "1"})
    assert done.status_code == 302
    with engine.db.reading() as s:
        assert s.get(ProcessVersion, draft).status == "published"


def test_publishing_without_divergence_needs_no_confirmation(app):
    engine = app.extensions["zerorun"]
    cases = three_cases(engine)
    Library(engine).save("phase_2.bpmn", renamed_review((PACK / "phase_2.bpmn").read_bytes()),
                         ADMIN, "")
    draft = Library(engine).process("phase_2").versions[0].id
    whatif.start_run(engine, draft, cases, ADMIN)
    run_worker_until_done(engine)
    client = logged_in(app, "admin")
    csrf = csrf_of(client.get("/admin/processes").get_data(as_text=True))
    assert client.post(f"/admin/versions/{draft}/publish",
                       data={"csrf_token": csrf}).status_code == 302
    with engine.db.reading() as s:
        assert s.get(ProcessVersion, draft).status == "published"
