"""`make bench`: raw SpiffWorkflow vs the durable engine on SQLite and PostgreSQL, side by side."""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import create_engine, select, text

from bench import inbox, messages, seals, web, whatif
from bench.casegen import human_task_count, item_list, write_pack, write_parallel_pack
from engine.actors import Actor
from engine.audit.history import case_history
from engine.cases import Engine
from engine.config import Config
from engine.store import schema
from engine.store.db import Database
from engine.store.models import Case, CaseSnapshot, Department, Event, HumanTask, Timer

ROOT = Path(__file__).resolve().parent.parent
OFFICE = Actor("office", "office", "leading_group_office")
EDGE = 20  # completions counted as "near the start" and "near the end"


def route_for(n: int) -> dict[str, str]:
    """The data each completion submits (alternating gateway routes)."""
    return {"route": "fast" if n % 2 else "slow"}


def run_raw(pack: Path, items: int, repeat: int) -> dict[str, float]:
    """Complete every task of one case in memory with SpiffWorkflow alone."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_files([str(pack / "bench_case.bpmn")])
    spec, subs = parser.get_spec("bench_case"), parser.get_subprocess_specs("bench_case")
    best = float("inf")
    costs: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        workflow = BpmnWorkflow(spec, subs)
        workflow.task_tree.data.update({"items": item_list(items)})
        workflow.do_engine_steps()
        run_costs: list[float] = []
        while ready := workflow.get_tasks(state=TaskState.READY, manual=True):
            t0 = time.perf_counter()
            task = ready[0]
            task.data.update(route_for(len(run_costs)))
            task.run()
            workflow.do_engine_steps()
            run_costs.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, costs = elapsed, run_costs
    return {"completions": len(costs), "seconds": best, "per_s": len(costs) / best,
            "start_ms": statistics.median(costs[:EDGE]) * 1000,
            "end_ms": statistics.median(costs[-EDGE:]) * 1000}


def instrument(engine: Engine) -> None:
    """What the web app adds to every command: metrics and one JSON log line (to /dev/null)."""
    from webapp import metrics, observability

    observability.configure_logging(open(os.devnull, "w"))  # open for the process
    metrics.init_app(engine)
    engine.hooks.command_done.append(observability.log_command)


def run_engine(url: str, pack: Path, items: int, observed: bool = True) -> dict[str, Any]:
    """Complete every task of one case through the engine, one committed command each."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.from_env(database_url=url, processes_dir=pack, data_dir=ROOT / "data",
                                 instance_dir=Path(tmp))
        engine = Engine(config, database=Database(url), functions={})
        if observed:
            instrument(engine)
        schema.upgrade(engine.db)
        with engine.db.transaction() as s:
            for code in ("dept_a", "dept_b"):
                s.add(Department(code=code, name=code, name_en="", leader="", agent="",
                                 position=0))
        engine.load_processes(pack)
        # Warm the version cache with a throw-away case, as a running server would be.
        engine.start_case("bench_case", {"items": item_list(items)}, OFFICE)
        # Start from a clean heap: the workflows the parts before left for the collector
        # made this part's completions up to a fifth slower, depending on their order.
        gc.collect()
        costs: list[float] = []
        started = time.perf_counter()
        case = engine.start_case("bench_case", {"items": item_list(items)}, OFFICE)
        while tasks := engine.list_tasks(case_id=case.id, limit=1):
            task = tasks[0]
            actor = Actor("agent", "agent", task.department)
            t0 = time.perf_counter()
            engine.complete_task(task.id, route_for(len(costs)), actor, task.version)
            costs.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - started
        assert engine.get_case(case.id).status == "completed"
        stored = stored_bytes(engine, case.id)
        replay = time_replay(engine, case.id)
        engine.db.dispose()
    return {
        "completions": len(costs), "seconds": seconds, "per_s": len(costs) / seconds,
        "start_ms": statistics.median(costs[:EDGE]) * 1000,
        "end_ms": statistics.median(costs[-EDGE:]) * 1000,
        "mean_ms": statistics.mean(costs) * 1000,
        "p95_ms": sorted(costs)[int(len(costs) * 0.95)] * 1000,
        "bytes_per_case": stored, **replay,
    }


def stored_bytes(engine: Engine, case_id: int) -> int:
    """Bytes a case holds in the database: events, snapshot, task index, timers, case row."""
    def size(value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, bytes):
            return len(value)
        if isinstance(value, (dict, list)):
            return len(json.dumps(value, ensure_ascii=False).encode())
        return len(str(value).encode())

    total = 0
    with engine.db.reading() as s:
        for model, column in ((Event, Event.case_id), (HumanTask, HumanTask.case_id),
                              (Timer, Timer.case_id), (CaseSnapshot, CaseSnapshot.case_id),
                              (Case, Case.id)):
            for row in s.scalars(select(model).where(column == case_id)):
                total += sum(size(getattr(row, c.key)) for c in model.__table__.columns)
    return total


def time_replay(engine: Engine, case_id: int) -> dict[str, float]:
    """Re-execute a finished case from its events (what auditors' replay does)."""
    events = len(engine.case_events(case_id))
    engine.replay(case_id)  # warm the version's specs
    started = time.perf_counter()
    engine.replay(case_id)
    seconds = time.perf_counter() - started
    # The auditor's case page: the same re-execution, keeping each step's data and diff.
    started = time.perf_counter()
    case_history(engine, case_id, 1)
    history = time.perf_counter() - started
    return {"replay_events": events, "replay_ms_per_event": seconds * 1000 / events,
            "history_ms_per_event": history * 1000 / events}


def run_starts(folder: Path, items: int, repeat: int = 10) -> dict[str, float]:
    """Starting a case: the generated 200-task process vs parallel splits in a row (the
    largest shape the loader accepts with 8 branches: two splits; 16 branches: one)."""
    pack = write_parallel_pack(write_pack(folder / "pack", items=items), rows=2, branches=8)
    url = f"sqlite:///{folder / 'starts.db'}"
    config = Config.from_env(database_url=url, processes_dir=pack, data_dir=ROOT / "data",
                             instance_dir=folder)
    engine = Engine(config, database=Database(url), functions={})
    schema.upgrade(engine.db)
    with engine.db.transaction() as s:
        for code in ("dept_a", "dept_b"):
            s.add(Department(code=code, name=code, name_en="", leader="", agent="",
                             position=0))
    engine.load_processes(pack)
    timings: dict[str, list[float]] = {"plain": [], "parallel": []}
    for _ in range(repeat + 1):  # the first of each warms the version cache
        for name, process, data in (("plain", "bench_case", {"items": item_list(items)}),
                                    ("parallel", "parallel_rows", {})):
            began = time.perf_counter()
            engine.start_case(process, data, OFFICE)
            timings[name].append((time.perf_counter() - began) * 1000)
    engine.db.dispose()
    return {name: statistics.median(values[1:]) for name, values in timings.items()}


def run_http(url: str, folder: Path, args: argparse.Namespace, engine_ms: float
             ) -> dict[str, Any]:
    """The HTTP path on one database: agents against `zerorun serve`, figures printed."""
    pack = write_pack(folder / "pack", blocks=args.blocks, items=args.items)
    tokens = web.prepare(url, pack, folder, args.http_cases, args.agents, args.items)
    served = web.drive(url, pack, folder, tokens, args.http_seconds, warmup=3)
    statements = web.statements_per_completion(url, pack, folder, tokens[:2])
    name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"HTTP on {name} (zerorun serve, 2 workers, {args.agents} agents looping list -> "
          f"read -> complete): {served['completions_per_s']:.1f} completions/s, completion "
          f"p50 {served['p50_ms']:.1f} ms, p95 {served['p95_ms']:.1f} ms, list p95 "
          f"{served['list_p95_ms']:.1f} ms; server CPU {served['cpu_ms_per_completion']:.1f} ms"
          f" per completion ({served['cpu_ms_per_completion'] / engine_ms:.1f}x the engine's "
          f"{engine_ms:.2f} ms in-process; agents {served['agents_cpu_ms_per_completion']:.1f}"
          f" ms); {statements} SQL statements per API completion; "
          f"{served['conflicts']} conflicts, {served['errors']} errors")
    return {"http_completions_per_s": round(served["completions_per_s"], 1),
            "http_p50_ms": round(served["p50_ms"], 2), "http_p95_ms": round(served["p95_ms"], 2),
            "http_list_p95_ms": round(served["list_p95_ms"], 2),
            "http_cpu_ms_per_completion": round(served["cpu_ms_per_completion"], 2),
            "engine_ms_per_completion": round(engine_ms, 3),
            "sql_per_completion": statements}


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """A throw-away database on a PostgreSQL server."""
    name = f"zr_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on the same generated case and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=20, help="blocks of 10 human tasks")
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="raw runs (best is kept)")
    parser.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=True,
                        help="count and log every command as the web app does (default on)")
    parser.add_argument("--replay-blocks", type=int, default=50,
                        help="blocks of the case replayed for the audit figures (~10 events each)")
    parser.add_argument("--agents", type=int, default=20, help="HTTP agents (threads)")
    parser.add_argument("--http-seconds", type=float, default=15,
                        help="seconds the agents are measured on each database")
    parser.add_argument("--http-cases", type=int, default=30, help="cases the agents work on")
    parser.add_argument("--whatif-cases", type=int, default=1000,
                        help="recorded cases of the pack replayed against a draft")
    args = parser.parse_args(argv)
    tasks = human_task_count(args.blocks, args.items)
    with tempfile.TemporaryDirectory() as tmp:
        pack = write_pack(Path(tmp) / "pack", blocks=args.blocks, items=args.items)
        print(f"case: {tasks} human tasks (sequence, parallel split/join, multi-instance, "
              "exclusive gateway)")
        raw = run_raw(pack, args.items, args.repeat)
        print(f"raw SpiffWorkflow, in memory:  {raw['per_s']:8.1f} completions/s "
              f"(completion cost: start {raw['start_ms']:.2f} ms, end {raw['end_ms']:.2f} ms)")
        sqlite = run_engine(f"sqlite:///{Path(tmp) / 'bench.db'}", pack, args.items,
                            args.metrics)
        print(f"metrics and JSON command logs: {'on' if args.metrics else 'off'}")
        print(f"engine on SQLite, durable:     {sqlite['per_s']:8.1f} completions/s "
              f"(ratio {sqlite['per_s'] / raw['per_s']:.2f} of raw)")
        print(f"  completion cost: start {sqlite['start_ms']:.2f} ms, end "
              f"{sqlite['end_ms']:.2f} ms (end/start {sqlite['end_ms'] / sqlite['start_ms']:.2f}),"
              f" mean {sqlite['mean_ms']:.2f} ms, p95 {sqlite['p95_ms']:.2f} ms")
        print(f"  stored per case: {sqlite['bytes_per_case']:,} bytes")
        print(f"  replay: {sqlite['replay_ms_per_event']:.2f} ms/event over "
              f"{sqlite['replay_events']} events")
        long_pack = write_pack(Path(tmp) / "long", blocks=args.replay_blocks, items=args.items)
        long_case = run_engine(f"sqlite:///{Path(tmp) / 'long.db'}", long_pack, args.items)
        print(f"  audit replay of a {long_case['replay_events']}-event case: "
              f"{long_case['replay_ms_per_event']:.2f} ms/event vs "
              f"{long_case['mean_ms']:.2f} ms per live completion "
              f"({long_case['replay_ms_per_event'] / long_case['mean_ms']:.2f}x); with the "
              f"data and diff of every step (the audit page): "
              f"{long_case['history_ms_per_event']:.2f} ms/event")
        postgres = None
        server = os.environ.get("ZERORUN_BENCH_PG") or os.environ.get("ZERORUN_TEST_PG")
        if server:
            with postgres_database(server) as url:
                postgres = run_engine(url, pack, args.items, args.metrics)
            print(f"engine on PostgreSQL, durable: {postgres['per_s']:8.1f} completions/s "
                  f"(ratio {postgres['per_s'] / raw['per_s']:.2f} of raw)")
        else:
            print("engine on PostgreSQL: skipped (set ZERORUN_BENCH_PG to a server URL)")
        http = {"": run_http(f"sqlite:///{Path(tmp) / 'web.db'}", Path(tmp) / "web", args,
                             sqlite["mean_ms"])}
        if server:
            with postgres_database(server) as url:
                http["_postgres"] = run_http(url, Path(tmp) / "web_pg", args,
                                             postgres["mean_ms"] if postgres else 0.0)
        starts = run_starts(Path(tmp) / "starts", args.items)
        print(f"starting a case (SQLite): {starts['plain']:.1f} ms for the 200-task process, "
              f"{starts['parallel']:.1f} ms for two 8-branch parallel splits in a row "
              f"({starts['parallel'] / starts['plain']:.1f}x; the loader refuses rows that "
              "predict more)")
        correlated = messages.measure(Path(tmp))
        print(f"correlated messages on SQLite: {correlated['per_s']:8.1f} messages/s "
              f"({correlated['ms']:.2f} ms each: find the waiting case by key, validate, "
              "deliver, commit)")
        pages = inbox.measure(Path(tmp))
        print(f"inbox page with 10,000 open cases (SQLite, 130,000 indexed tasks): "
              f"{pages['plain']:.1f} ms, filtered by phase {pages['filtered']:.1f} ms, "
              f"overdue only {pages['overdue']:.1f} ms; of which its counts (open, claimed, "
              f"overdue, phases and items) {pages['counts']:.1f} ms (median)")
        sealing = seals.measure(Path(tmp))
        print(f"audit seal over {sealing['streams']:,} streams ({sealing['events']:,} events, "
              f"SQLite): sealing {sealing['seal_ms']:.0f} ms, verify-seal (every chain "
              f"recomputed) {sealing['verify_ms']:.0f} ms")
        print(f"over the same cases: audit search {pages['audit_search']:.1f} ms (by department"
              f" {pages['audit_search_department']:.1f} ms), dashboard {pages['dashboard']:.1f} "
              f"ms, heatmap of the version {pages['heatmap']:.1f} ms (median of 3)")
        replay = whatif.measure(Path(tmp) / "whatif", args.whatif_cases)
        for draft, label in (("renamed", "identical runs"), ("gateway", "diverging")):
            r = replay[draft]
            print(f"what-if replay of {replay['cases']:,} recorded phase_2 cases "
                  f"({replay['events']:,} events) against a draft, {label}: "
                  f"{r['cases_per_s']:.1f} cases/s ({r['seconds']:.1f} s wall, "
                  f"{r['cpu_seconds']:.1f} s CPU = {r['cases_per_cpu_s']:.1f} cases per CPU "
                  f"second; {r['identical']} identical, {r['diverged']} diverged)")
    figures = {
        "human_tasks": tasks,
        "raw_per_s": round(raw["per_s"], 1),
        "sqlite_per_s": round(sqlite["per_s"], 1),
        "postgres_per_s": round(postgres["per_s"], 1) if postgres else None,
        "ratio_sqlite": round(sqlite["per_s"] / raw["per_s"], 3),
        "ratio_postgres": round(postgres["per_s"] / raw["per_s"], 3) if postgres else None,
        "raw_start_ms": round(raw["start_ms"], 3),
        "raw_end_ms": round(raw["end_ms"], 3),
        "start_ms": round(sqlite["start_ms"], 3),
        "end_ms": round(sqlite["end_ms"], 3),
        "bytes_per_case": sqlite["bytes_per_case"],
        "replay_events": long_case["replay_events"],
        "replay_ms_per_event": round(long_case["replay_ms_per_event"], 3),
        "live_ms_per_completion": round(long_case["mean_ms"], 3),
        "inbox_page_ms_10k_cases": round(pages["plain"], 2),
        "inbox_filtered_ms_10k_cases": round(pages["filtered"], 2),
        "inbox_overdue_ms_10k_cases": round(pages["overdue"], 2),
        "inbox_counts_ms_10k_cases": round(pages["counts"], 2),
        "history_ms_per_event": round(long_case["history_ms_per_event"], 3),
        "seal_ms_10k_cases": round(sealing["seal_ms"], 1),
        "verify_seal_ms_10k_cases": round(sealing["verify_ms"], 1),
        "audit_search_ms_10k_cases": round(pages["audit_search"], 2),
        "audit_search_department_ms_10k_cases": round(pages["audit_search_department"], 2),
        "dashboard_ms_10k_cases": round(pages["dashboard"], 2),
        "heatmap_ms_10k_cases": round(pages["heatmap"], 2),
        "start_ms_plain": round(starts["plain"], 2),
        "start_ms_parallel": round(starts["parallel"], 2),
        "message_per_s": round(correlated["per_s"], 1),
        "whatif_cases": replay["cases"],
        "whatif_identical_cases_per_s": replay["renamed"]["cases_per_s"],
        "whatif_identical_cases_per_cpu_s": replay["renamed"]["cases_per_cpu_s"],
        "whatif_diverging_cases_per_s": replay["gateway"]["cases_per_s"],
    }
    for suffix, values in http.items():
        figures.update({f"{key}{suffix}": value for key, value in values.items()})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
