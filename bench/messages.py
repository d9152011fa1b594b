"""Correlated messages per second on SQLite: cases waiting at a message catch event, each
reached by its correlation key, one committed delivery (and hash-chained event) each."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.actors import Actor
from engine.cases import Engine
from engine.config import Config
from engine.store import schema
from engine.store.db import Database

OFFICE = Actor("office", "office", "leading_group_office")
DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
  id="bench_messages_defs" targetNamespace="http://zerorun.example/bench">
  <bpmn:message id="reported_message" name="reported">
    <bpmn:extensionElements>
      <spiffworkflow:messageVariable>report</spiffworkflow:messageVariable>
    </bpmn:extensionElements>
  </bpmn:message>
  <bpmn:process id="bench_messages" name="bench_messages" isExecutable="true">
    <bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="startable" value="true"/>
    </spiffworkflow:properties></bpmn:extensionElements>
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="correlationKey" value="ref"/>
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:messageEventDefinition messageRef="reported_message"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""
SCHEMA = {"type": "object", "properties": {"approved": {"type": "boolean"},
                                           "certificate_no": {"type": "string"}},
          "required": ["approved"], "additionalProperties": False}


def measure(folder: Path, cases: int = 300) -> dict[str, float]:
    """Deliver one message to each of `cases` waiting cases; messages per second."""
    pack = folder / "messages_pack"
    (pack / "forms").mkdir(parents=True, exist_ok=True)
    (pack / "bench_messages.bpmn").write_text(DIAGRAM, encoding="utf-8")
    (pack / "forms" / "message.reported.schema.json").write_text(json.dumps(SCHEMA))
    url = f"sqlite:///{folder / 'messages.db'}"
    config = Config.from_env(database_url=url, processes_dir=pack,
                             data_dir=Path(__file__).resolve().parent.parent / "data",
                             instance_dir=folder)
    engine = Engine(config, database=Database(url), functions={})
    schema.upgrade(engine.db)
    engine.load_processes(pack)
    started = [engine.start_case("bench_messages", {"ref": f"R-{n}"}, OFFICE).id
               for n in range(cases)]
    t0 = time.perf_counter()
    for n in range(cases):
        engine.correlate_message("reported", {"key": f"R-{n}"},
                                 {"approved": True, "certificate_no": f"C-{n}"}, OFFICE)
    seconds = time.perf_counter() - t0
    assert all(engine.get_case(c).status == "completed" for c in started[:5])
    engine.db.dispose()
    return {"per_s": cases / seconds, "ms": seconds * 1000 / cases}
