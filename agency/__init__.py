"""The zero-run agency service (零跑路代办服务), built on the generic case engine.

Everything here is about this city's service rather than about running BPMN: reference data
and the functions diagrams may call with it (`reference`: departments, approval items,
materials, policies, the working-day calendar), intake of project lists (`intake`),
documents issued to the project unit (`documents`), overdue warnings and the leading group's
figures (`oversight`), notifications and mail (`notify`), auditors' and office reports
(`reports`), follow-up records (`records`), the enterprise's progress page (`enterprise`),
and first-run set-up (`bootstrap`). It imports the engine's front door and store; the engine
never imports it, and calls back into it only through the hooks `service_engine` registers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine.actors import Proxy
from engine.cases import Engine
from engine.config import Config
from engine.hooks import Hooks
from engine.runtime import clock
from engine.store.db import Database


def service_engine(config: Config, *, database: Database | None = None,
                   clock_source: Callable[[], datetime] = clock.now) -> Engine:
    """An engine running the agency service: its reference functions and notifications."""
    from agency import alerts, calendar, clocks, intake, notify, oversight, progress, webhooks
    from agency.reference import ReferenceData, script_functions
    from engine import accounts

    # API token caches of every process sharing the instance folder forget at once.
    accounts.watch_epoch(config.instance_dir / "accounts.epoch")
    reference = ReferenceData.load(config.data_dir)
    hooks = Hooks()
    hooks.task_raised.append(functools.partial(notify.task_raised, mail=config.mail_enabled))
    addresses = notify.seal_addresses(config)
    if addresses:
        hooks.seal_made.append(lambda s, document: notify.seal_made(
            s, document, addresses=addresses, now=clock_source()))
    hooks.case_event.append(webhooks.record)
    hooks.case_event.append(clocks.record)
    hooks.task_raised.append(alerts.task_raised)
    hooks.task_indexed.append(functools.partial(oversight.set_warn_moment, reference))
    hooks.case_changed.append(progress.report_submitted)
    hooks.case_changed.append(functools.partial(alerts.case_changed, reference=reference,
                                                mail=config.mail_enabled))
    hooks.data_submitted.append(intake.unique_project_code)
    hooks.case_departments.append(alerts.item_departments)
    # The functions read the clock in force: a command pins it to its own time and a
    # replay to the recorded event's, so re-execution computes the same dates.
    functions: dict[str, Callable[..., Any]] = script_functions(reference, clock.now)
    engine = Engine(config, database=database, clock_source=clock_source,
                    functions=functions, hooks=hooks)
    engine.extensions["reference"] = reference
    # 代办: the unit's agency authorisation lets a department's agents do its lane's steps.
    for code, entry in reference.departments.items():
        if entry.get("external") and entry.get("acted_for_by"):
            engine.proxies[code] = Proxy(code, str(entry["acted_for_by"]),
                                         participant="enterprise:{case_id}")
    calendar.refresh(engine)  # the office's holidays and make-up days over the published ones
    return engine
