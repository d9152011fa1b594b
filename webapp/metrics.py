"""Prometheus metrics at /metrics: per-process counters added up across gunicorn workers,
plus figures read from the database when scraped (open tasks, timers, worker, outbox).

prometheus-client chooses between per-process and multiprocess values when it is first
imported, from PROMETHEUS_MULTIPROC_DIR; `zerorun serve` sets it before the app loads.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from engine.cases import Engine
from engine.hooks import CommandDone
from webapp import get_engine

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("zerorun_http_requests", "HTTP requests answered, by route and status",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("zerorun_http_request_duration_seconds",
                            "Time to answer an HTTP request, by route", ["route", "method"])
COMMANDS = Counter("zerorun_commands", "Engine commands run, by type and outcome",
                   ["command", "outcome"])
COMMAND_SECONDS = Histogram("zerorun_command_duration_seconds",
                            "Time an engine command took, commit included", ["command"])
CASE_CACHE = Counter("zerorun_case_cache", "Running cases taken from the in-memory cache "
                     "(hit) or rebuilt from snapshot and events (rebuild)", ["result"])


def multiprocess_dir() -> str | None:
    """Where the workers' metric files are, when several processes add up."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def count_request(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request."""
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_SECONDS.labels(route, method).observe(seconds)


def count_command(done: CommandDone) -> None:
    """One engine command (hook on `Hooks.command_done`)."""
    COMMANDS.labels(done.command, done.outcome).inc()
    COMMAND_SECONDS.labels(done.command).observe(done.seconds)


def count_cache(hit: bool) -> None:
    """One lookup of a running case (hook on `Hooks.case_cache`)."""
    CASE_CACHE.labels("hit" if hit else "rebuild").inc()


class StoreCollector(Collector):
    """Figures read from the database at each scrape, so every process reports the same."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from agency.models import OutboxMail
        from agency.notify import MAX_MAIL_ATTEMPTS
        from agency.oversight import warning_levels
        from engine.health import heartbeats
        from engine.store.models import Timer

        engine = self.engine
        now = engine.clock()
        tasks = engine.list_tasks(limit=1_000_000)
        levels = warning_levels(engine, tasks)
        tally = Tally((t.department or "", levels.get(t.id, "none")) for t in tasks)
        open_tasks = GaugeMetricFamily("zerorun_open_tasks", "Open human tasks by department "
                                       "and overdue warning level", labels=["department",
                                                                            "level"])
        for (department, level), count in sorted(tally.items()):
            open_tasks.add_metric([department, level], count)
        yield open_tasks
        with engine.db.reading() as s:
            due = s.scalar(select(func.count()).select_from(Timer)
                           .where(Timer.due_at <= now)) or 0
            waiting = s.scalar(select(func.count()).select_from(Timer)) or 0
            backlog = s.scalar(select(func.count()).select_from(OutboxMail).where(
                OutboxMail.sent_at.is_(None), OutboxMail.attempts < MAX_MAIL_ATTEMPTS)) or 0
            dead = s.scalar(select(func.count()).select_from(OutboxMail).where(
                OutboxMail.sent_at.is_(None), OutboxMail.attempts >= MAX_MAIL_ATTEMPTS)) or 0
        yield GaugeMetricFamily("zerorun_timers_due", "Timers due now and not yet fired",
                                value=due)
        yield GaugeMetricFamily("zerorun_timers_waiting", "Timers waiting in running cases",
                                value=waiting)
        outbox = GaugeMetricFamily("zerorun_outbox_backlog", "Messages queued and not yet "
                                   "delivered", labels=["kind"])
        outbox.add_metric(["mail"], backlog)
        yield outbox
        given_up = GaugeMetricFamily("zerorun_outbox_given_up", "Messages no longer retried "
                                     "after repeated failures", labels=["kind"])
        given_up.add_metric(["mail"], dead)
        yield given_up
        beat = GaugeMetricFamily("zerorun_worker_heartbeat_timestamp_seconds",
                                 "When each timer worker's loop last ran", labels=["worker"])
        age = GaugeMetricFamily("zerorun_worker_heartbeat_age_seconds",
                                "Seconds since each timer worker's loop last ran",
                                labels=["worker"])
        fired = CounterMetricFamily("zerorun_timers_fired", "Cases advanced by fired timers, "
                                    "by worker", labels=["worker"])
        loops = CounterMetricFamily("zerorun_worker_loops", "Loops each timer worker ran",
                                    labels=["worker"])
        failures = CounterMetricFamily("zerorun_worker_failures", "Failed worker steps (mail "
                                       "not delivered, loops that raised)", labels=["worker"])
        for row in heartbeats(engine):
            beat.add_metric([row.worker], row.beat_at.timestamp())
            age.add_metric([row.worker], max(0.0, (now - row.beat_at).total_seconds()))
            fired.add_metric([row.worker], row.timers_fired)
            loops.add_metric([row.worker], row.loops)
            failures.add_metric([row.worker], row.failures)
        yield from (beat, age, fired, loops, failures)


def init_app(engine: Engine) -> None:
    """Count the engine's commands and cache lookups (once per engine)."""
    if engine.extensions.get("metrics"):
        return
    engine.extensions["metrics"] = True
    engine.hooks.command_done.append(count_command)
    engine.hooks.case_cache.append(count_cache)


def _allowed() -> bool:
    config = get_engine().config
    token = config.metrics_token
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(
            header[len("Bearer "):].encode(), token.encode()):
        return True
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False  # through the reverse proxy its address says nothing: token only
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    for entry in config.metrics_allow.split(","):
        entry = entry.strip()
        if entry and address in ipaddress.ip_network(entry, strict=False):
            return True
    return False


@bp.route("/metrics")
def metrics() -> Response:
    """Every metric in Prometheus text format, for allowed addresses or the token."""
    if not _allowed():
        return Response("metrics are not available to this address; send the configured "
                        "token as 'Authorization: Bearer ...'\n", status=403,
                        mimetype="text/plain")
    store = CollectorRegistry()
    store.register(StoreCollector(get_engine()))
    if multiprocess_dir():
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)
        body = generate_latest(workers)
    else:
        body = generate_latest(REGISTRY)
    return Response(body + generate_latest(store), mimetype=CONTENT_TYPE_LATEST)
