"""BPMN messages and external service tasks, correlated and run from outside the engine."""

from __future__ import annotations

import threading

import pytest

from engine.actors import Actor
from engine.cases import AmbiguousMessage, NobodyWaits
from engine.errors import Conflict, Forbidden, InvalidData, InvalidProcess
from engine.pack.loader import PackParser, SourceFile
from tests.conftest import FIXTURES

OFFICE = Actor("office", "office", "leading_group_office")
ADMIN = Actor("admin", "admin")
AGENT_A = Actor("agent_a", "agent", "dept_a")
AGENT_B = Actor("agent_b", "agent", "dept_b")
PACK = FIXTURES / "interact"


def _to_lookup(engine, ref="R-1"):
    case = engine.start_case("interact", {}, OFFICE)
    [fill] = engine.list_tasks(case_id=case.id)
    engine.complete_task(fill.id, {"ref": ref}, AGENT_A)
    return case


def _to_result(engine, clock, ref="R-1"):
    case = _to_lookup(engine, ref)
    [job] = engine.fetch_and_lock("licence_lookup", "w1", 60, OFFICE)
    engine.complete_job(job.id, "w1", {"licence": "LIC-9"}, OFFICE)
    return case


def test_intermediate_message_and_receive_task_by_key_then_by_case(make_engine, db_url, clock):
    engine = make_engine(db_url, PACK)
    first = _to_result(engine, clock, "R-1")
    second = _to_result(engine, clock, "R-2")
    with pytest.raises(AmbiguousMessage):
        engine.correlate_message("item_result", {}, {"approved": True}, OFFICE)
    with pytest.raises(NobodyWaits):
        engine.correlate_message("item_result", {"key": "R-3"}, {"approved": True}, OFFICE)
    with pytest.raises(InvalidData):
        engine.correlate_message("item_result", {"key": "R-2"}, {"approved": "yes"}, OFFICE)
    delivery = engine.correlate_message("item_result", {"key": "R-2"},
                                        {"approved": True, "certificate": "C-7"}, OFFICE)
    assert (delivery.case_id, delivery.element) == (second.id, "wait_result")
    assert [w.element for w in engine.message_waits(second.id)] == ["receive_ack"]
    assert [w.element for w in engine.message_waits(first.id)] == ["wait_result"]
    with pytest.raises(InvalidData):  # ack declares no payload schema: it takes no data
        engine.correlate_message("ack", {"case_id": second.id}, {"x": 1}, OFFICE)
    done = engine.correlate_message("ack", {"case_id": second.id}, {}, OFFICE)
    assert done.case.status == "completed"
    assert done.case.data["result"] == {"approved": True, "certificate": "C-7"}
    assert done.case.data["licence"] == "LIC-9"
    types = [e.type for e in engine.case_events(second.id)]
    assert types.count("message_received") == 2 and "job_completed" in types
    assert engine.verify_case(second.id).ok
    with pytest.raises(NobodyWaits):  # a finished case waits for nothing
        engine.correlate_message("ack", {"case_id": second.id}, {}, OFFICE)


def test_interrupting_boundary_message_ends_the_task(make_engine, db_url):
    engine = make_engine(db_url, PACK)
    case = engine.start_case("interact", {}, OFFICE)
    delivery = engine.correlate_message("withdrawn", {"case_id": case.id}, {}, OFFICE)
    assert delivery.element == "withdrawn"
    assert delivery.case.status == "completed"
    assert engine.list_tasks(case_id=case.id) == []
    assert engine.verify_case(case.id).ok


def test_non_interrupting_boundary_message_adds_a_task(make_engine, db_url):
    engine = make_engine(db_url, PACK)
    case = engine.start_case("interact", {}, OFFICE)
    engine.correlate_message("reminder", {"case_id": case.id}, {"by": "office"}, OFFICE)
    titles = sorted(t.spec_name for t in engine.list_tasks(case_id=case.id))
    assert titles == ["fill", "note"]
    # SpiffWorkflow arms a non-interrupting boundary event once per activation of its task
    with pytest.raises(NobodyWaits):
        engine.correlate_message("reminder", {"case_id": case.id}, {}, OFFICE)
    [fill] = [t for t in engine.list_tasks(case_id=case.id) if t.spec_name == "fill"]
    engine.complete_task(fill.id, {"ref": "R-1"}, AGENT_A)  # the main path went on
    assert [j.element for j in engine.list_jobs()] == ["lookup"]
    assert engine.verify_case(case.id).ok


def test_message_start_event_starts_a_case(make_engine, db_url):
    engine = make_engine(db_url, PACK)
    with pytest.raises(InvalidData):
        engine.correlate_message("complaint", {}, {"text": ""}, OFFICE)
    delivery = engine.correlate_message("complaint", {}, {"text": "噪音"}, OFFICE)
    assert delivery.case_started and delivery.element == "received"
    [task] = engine.list_tasks(case_id=delivery.case_id)
    assert task.spec_name == "handle"
    assert engine.get_task(task.id, AGENT_B).data["complaint"] == {"text": "噪音"}
    assert engine.verify_case(delivery.case_id).ok


def test_message_senders_are_checked(make_engine, db_url):
    engine = make_engine(db_url, PACK)
    case = engine.start_case("interact", {}, OFFICE)
    # The element names no sender: a department's agent may not deliver it, and is told
    # only that nothing waits for it from them (the case's existence is not confirmed).
    with pytest.raises(NobodyWaits):
        engine.correlate_message("withdrawn", {"case_id": case.id}, {}, AGENT_B)
    with pytest.raises(NobodyWaits):
        engine.correlate_message("withdrawn", {"case_id": case.id}, {}, AGENT_A)
    with pytest.raises(Forbidden):
        engine.correlate_message("withdrawn", {"case_id": case.id}, {},
                                 Actor("aud", "auditor"))


def test_external_job_fail_back_off_incident_and_retry(make_engine, db_url, clock):
    engine = make_engine(db_url, PACK)
    case = _to_lookup(engine)
    assert engine.fetch_and_lock("other_topic", "w1", 60, OFFICE) == []
    [job] = engine.fetch_and_lock("licence_lookup", "w1", 60, OFFICE)
    assert job.data["ref"] == "R-1" and job.output_schema["required"] == ["licence"]
    assert engine.fetch_and_lock("licence_lookup", "w2", 60, OFFICE) == []  # locked
    with pytest.raises(Conflict):
        engine.complete_job(job.id, "w2", {"licence": "LIC"}, OFFICE)
    with pytest.raises(InvalidData):
        engine.complete_job(job.id, "w1", {"licence": "L"}, OFFICE)
    failed = engine.fail_job(job.id, "w1", "registry down", 1, 300, OFFICE)
    assert failed.state == "open" and failed.retries == 1
    clock.advance(seconds=200)
    assert engine.fetch_and_lock("licence_lookup", "w2", 60, OFFICE) == []  # backing off
    clock.advance(seconds=101)
    [again] = engine.fetch_and_lock("licence_lookup", "w2", 60, OFFICE)
    clock.advance(seconds=61)  # the lock expired: another worker may take it
    with pytest.raises(Conflict):
        engine.complete_job(again.id, "w2", {"licence": "LIC-1"}, OFFICE)
    [again] = engine.fetch_and_lock("licence_lookup", "w3", 60, OFFICE)
    incident = engine.fail_job(again.id, "w3", "registry still down", 0, 0, OFFICE)
    assert incident.state == "incident"
    assert [j.id for j in engine.list_jobs(states=("incident",))] == [job.id]
    assert engine.fetch_and_lock("licence_lookup", "w1", 60, OFFICE) == []
    with pytest.raises(Forbidden):
        engine.retry_job(job.id, 1, OFFICE)
    assert engine.retry_job(job.id, 2, ADMIN).state == "open"
    [job] = engine.fetch_and_lock("licence_lookup", "w1", 60, OFFICE)
    after = engine.complete_job(job.id, "w1", {"licence": "LIC-1"}, OFFICE)
    assert after.data["licence"] == "LIC-1"
    assert [w.element for w in engine.message_waits(case.id)] == ["wait_result"]
    types = [e.type for e in engine.case_events(case.id)]
    assert types.count("job_failed") == 2 and types.count("job_retried") == 1
    assert engine.verify_case(case.id).ok


def test_terminating_a_case_cancels_its_jobs_and_waits(make_engine, db_url):
    engine = make_engine(db_url, PACK)
    case = _to_lookup(engine)
    engine.terminate_case(case.id, "project withdrawn", OFFICE)
    assert engine.list_jobs(states=("cancelled",))[0].case_id == case.id
    assert engine.fetch_and_lock("licence_lookup", "w1", 60, OFFICE) == []
    assert engine.message_waits(case.id) == []


@pytest.mark.postgres
def test_concurrent_fetchers_never_get_the_same_job(make_engine, clock, request):
    from tests.conftest import _postgres_database

    gen = _postgres_database()
    url = next(gen)
    request.addfinalizer(lambda: next(gen, None))
    workers = [make_engine(url, PACK, migrate=i == 0, load=i == 0) for i in range(4)]
    for n in range(12):
        _to_lookup(workers[0], f"R-{n}")
    barrier = threading.Barrier(len(workers))
    got: list[list[str]] = []

    def run(worker, name):
        barrier.wait()
        mine: list[str] = []
        while jobs := worker.fetch_and_lock("licence_lookup", name, 60, OFFICE, max_jobs=2):
            mine.extend(j.id for j in jobs)
        got.append(mine)

    threads = [threading.Thread(target=run, args=(w, f"w{i}")) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [job for mine in got for job in mine]
    assert len(every) == len(set(every)) == 12


def test_service_task_without_topic_is_refused_naming_it():
    xml = (PACK / "interact.bpmn").read_bytes().replace(
        b'<spiffworkflow:property name="topic" value="licence_lookup"/>', b"")
    files = [SourceFile("interact.bpmn", xml)] + [
        SourceFile(f"forms/{p.name}", p.read_bytes()) for p in (PACK / "forms").iterdir()]
    with pytest.raises(InvalidProcess) as raised:
        PackParser({"dept_a": "dept_a"}, ()).parse(files)
    [problem] = [p for p in raised.value.problems if p.element == "lookup"]
    assert "no topic" in problem.message


def test_a_case_with_messages_and_jobs_exports_and_verifies_offline(make_engine, db_url, clock):
    from engine.audit.export import export_case, verify_export

    engine = make_engine(db_url, PACK)
    case = _to_result(engine, clock, "R-5")
    engine.correlate_message("item_result", {"key": "R-5"}, {"approved": True}, OFFICE)
    document = export_case(engine, case.id)
    assert [e["type"] for e in document["events"]].count("message_received") == 1
    assert verify_export(document, engine.script_engine).ok
    document["events"][-1]["data"]["payload"] = {"approved": False}  # tampered
    assert not verify_export(document, engine.script_engine).ok
