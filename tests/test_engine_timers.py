"""Timers fire from the worker with a moved clock, once, whatever the number of workers."""

from __future__ import annotations

import threading

from bench.casegen import item_list, write_pack
from engine.actors import Actor
from tests.conftest import FIXTURES

OFFICE = Actor("office", "office", "leading_group_office")
AGENT_A = Actor("agent_a", "agent", "dept_a")


def test_a_boundary_timer_fires_only_when_the_clock_passes_it(make_engine, db_url, clock):
    engine = make_engine(db_url, FIXTURES / "mini")
    case = engine.start_case("mini", {"due": None}, OFFICE)
    [task] = engine.list_tasks(case_id=case.id)
    engine.complete_task(task.id, {"total": 9, "divisor": 3}, AGENT_A)
    assert engine.fire_due_timers() == 0
    clock.advance(days=2, hours=23)
    assert engine.fire_due_timers() == 0
    clock.advance(hours=2)
    assert engine.fire_due_timers() == 1
    assert engine.get_case(case.id).status == "completed"
    assert engine.list_tasks(case_id=case.id) == []
    fired = engine.case_events(case.id)[-1]
    assert (fired.type, fired.data["timers"]) == ("timer_fired", ["review_late"])
    assert engine.verify_case(case.id).ok
    assert engine.fire_due_timers() == 0


def test_two_workers_never_fire_the_same_timer_twice(make_engine, db_url, clock, tmp_path):
    pack = write_pack(tmp_path / "pack", blocks=1, items=1, timer="PT1H")
    workers = [make_engine(db_url, pack, migrate=i == 0, load=i == 0) for i in range(3)]
    cases = [workers[0].start_case("bench_case", {"items": item_list(1)}, OFFICE)
             for _ in range(4)]
    for case in cases:
        while tasks := [t for t in workers[0].list_tasks(case_id=case.id)
                        if t.spec_name != "after_wait"]:
            actor = Actor("a", "agent", tasks[0].department)
            workers[0].complete_task(tasks[0].id, {"route": "fast"}, actor)
    clock.advance(hours=2)
    barrier = threading.Barrier(len(workers))
    fired: list[int] = []

    def run(worker):
        barrier.wait()
        fired.append(worker.fire_due_timers())

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == len(cases)
    for case in cases:
        types = [e.type for e in workers[0].case_events(case.id)]
        assert types.count("timer_fired") == 1
        assert [t.spec_name for t in workers[0].list_tasks(case_id=case.id)] == ["after_wait"]
