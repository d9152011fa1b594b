"""The BPMN coverage table of processes/README.md: every element the engine runs has a small
diagram here that runs it (the message and external-task rows run tests/fixtures/interact
in tests/test_engine_interactions.py), and every element it refuses is refused at load with
the element named. A test keeps the table and these cases in step."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.actors import SYSTEM, Actor
from engine.cases import Engine
from engine.errors import InvalidProcess
from engine.runtime.clock import MovableClock
from tests.conftest import ROOT

OFFICE = Actor("office", "office", "leading_group_office")
AGENT = Actor("agent_a", "agent", "dept_a")
README = ROOT / "processes" / "README.md"

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  id="defs_{pid}" targetNamespace="http://zerorun.example/coverage">
{before}
  <bpmn:process id="{pid}" name="{pid}" isExecutable="true">
    <bpmn:laneSet id="lanes_{pid}"><bpmn:lane id="lane_{pid}" name="dept_a">{refs}</bpmn:lane>
    </bpmn:laneSet>
{body}
  </bpmn:process>
</bpmn:definitions>
"""
FORM = '{"type": "object", "properties": {"note": {"type": "string"}, "thing_done": {}}}'
DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="size_defs" name="size"
  namespace="http://zerorun.example/coverage">
  <decision id="size" name="size">
    <decisionTable id="size_table" hitPolicy="FIRST">
      <input id="size_in" label="n"><inputExpression id="size_in_expr" typeRef="boolean">
        <text>n &lt; 10</text></inputExpression></input>
      <output id="size_out" name="size" typeRef="string"/>
      <rule id="size_small"><inputEntry id="small_in"><text>True</text></inputEntry>
        <outputEntry id="small_out"><text>'small'</text></outputEntry></rule>
      <rule id="size_big"><inputEntry id="big_in"><text>False</text></inputEntry>
        <outputEntry id="big_out"><text>'big'</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>
"""


def user_task(task_id: str) -> str:
    return (f'<bpmn:userTask id="{task_id}" name="{task_id}"><bpmn:extensionElements>'
            '<spiffworkflow:properties><spiffworkflow:property '
            'name="formJsonSchemaFilename" value="f.schema.json"/></spiffworkflow:properties>'
            '</bpmn:extensionElements></bpmn:userTask>')


def flow(source: str, target: str, condition: str | None = None) -> str:
    fid = f"flow_{source}_{target}"
    if condition is None:
        return f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}"/>'
    return (f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}">'
            f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{condition}'
            '</bpmn:conditionExpression></bpmn:sequenceFlow>')


def chain(*ids: str) -> str:
    return "".join(flow(a, b) for a, b in zip(ids, ids[1:], strict=False))


def write(folder: Path, pid: str, body: str, *, before: str = "",
          extra: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "forms").mkdir(exist_ok=True)
    (folder / "forms" / "f.schema.json").write_text(FORM)
    refs = "".join(f"<bpmn:flowNodeRef>{t}</bpmn:flowNodeRef>"
                   for t in re.findall(r'<bpmn:(?:userTask|manualTask) id="([^"]+)"', body))
    (folder / f"{pid}.bpmn").write_text(HEAD.format(pid=pid, before=before, refs=refs,
                                                    body=body))
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def ready(engine: Engine, case_id: int) -> list[str]:
    return sorted(t.spec_name for t in engine.list_tasks(case_id=case_id))


def complete(engine: Engine, case_id: int, spec: str, **data: object) -> None:
    task = next(t for t in engine.list_tasks(case_id=case_id) if t.spec_name == spec)
    engine.complete_task(task.id, dict(data), AGENT)


@dataclass(frozen=True)
class Case:
    """A small diagram using one element, and what running it must show."""

    body: str
    run: Callable[[Engine, MovableClock, int], None]
    data: dict[str, object] | None = None
    before: str = ""
    extra: dict[str, str] | None = None


def _done(engine: Engine, case_id: int) -> None:
    assert engine.get_case(case_id).status == "completed"
    assert engine.verify_case(case_id).ok


def _run_user(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["work"]
    complete(engine, case_id, "work", note="ok")
    _done(engine, case_id)


def _run_script(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert engine.get_task(engine.list_tasks(case_id=case_id)[0].id, AGENT).data["x"] == 6
    complete(engine, case_id, "work")
    _done(engine, case_id)


def _run_exclusive(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["big"]  # n = 12: the condition, not the default


def _run_parallel(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["a", "b"]
    complete(engine, case_id, "a")
    assert ready(engine, case_id) == ["b"]  # the join waits for both
    complete(engine, case_id, "b")
    assert ready(engine, case_id) == ["after"]


def _run_inclusive(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["a", "c"]  # every true condition, not b
    complete(engine, case_id, "a")
    complete(engine, case_id, "c")
    assert ready(engine, case_id) == ["after"]


def _run_event_gateway(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert [w.message for w in engine.message_waits(case_id)] == ["go"]
    engine.correlate_message("go", {"case_id": case_id}, {}, OFFICE)
    assert ready(engine, case_id) == ["on_message"]
    assert engine.case_timers(case_id) == []  # the timer branch was withdrawn


def _run_timer_catch(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == []
    clock.advance(days=1, seconds=1)
    assert engine.fire_due_timers() == 1
    assert ready(engine, case_id) == ["work"]


def _run_boundary_timer(engine: Engine, clock: MovableClock, case_id: int) -> None:
    [timer] = engine.case_timers(case_id)
    assert (timer.kind, timer.cancels, timer.attached_to) == ("boundary", True, "work")
    clock.advance(hours=2, seconds=1)
    engine.fire_due_timers()
    assert ready(engine, case_id) == ["late"]


def _run_boundary_timer_non_interrupting(engine: Engine, clock: MovableClock,
                                         case_id: int) -> None:
    clock.advance(hours=2, seconds=1)
    engine.fire_due_timers()
    assert ready(engine, case_id) == ["late", "work"]


def _run_subprocess(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["inner"]
    complete(engine, case_id, "inner")
    assert ready(engine, case_id) == ["after"]


def _run_call(engine: Engine, clock: MovableClock, case_id: int) -> None:
    [task] = engine.list_tasks(case_id=case_id)
    assert (task.spec_name, task.process_id) == ("called_work", "called")
    complete(engine, case_id, "called_work")
    assert ready(engine, case_id) == ["after"]


def _run_mi_parallel(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["each", "each", "each"]
    for _ in range(3):
        complete(engine, case_id, "each")
    assert ready(engine, case_id) == ["after"]


def _run_mi_sequential(engine: Engine, clock: MovableClock, case_id: int) -> None:
    for n in range(3):
        assert ready(engine, case_id) == ["each"]  # one at a time
        complete(engine, case_id, "each", thing_done=f"#{n}")
    assert ready(engine, case_id) == ["after"]


def _run_dmn(engine: Engine, clock: MovableClock, case_id: int) -> None:
    [task] = engine.list_tasks(case_id=case_id)
    assert engine.get_task(task.id, AGENT).data["size"] == "small"


def _run_terminate(engine: Engine, clock: MovableClock, case_id: int) -> None:
    complete(engine, case_id, "a")
    case = engine.get_case(case_id)
    assert case.status == "terminated" and ready(engine, case_id) == []
    assert engine.verify_case(case_id).ok


def _run_error_boundary(engine: Engine, clock: MovableClock, case_id: int) -> None:
    complete(engine, case_id, "inner")
    assert ready(engine, case_id) == ["handle_error"]


def _run_signal(engine: Engine, clock: MovableClock, case_id: int) -> None:
    assert ready(engine, case_id) == ["a"]
    complete(engine, case_id, "a")  # then the throw event signals the waiting branch
    assert ready(engine, case_id) == ["signalled"]


SUB_WORK = ('<bpmn:subProcess id="sub" name="sub"><bpmn:startEvent id="sub_start"/>'
            + user_task("inner") + '<bpmn:endEvent id="sub_end"/>'
            + chain("sub_start", "inner", "sub_end") + "</bpmn:subProcess>")
MI = ('<bpmn:userTask id="each" name="each"><bpmn:extensionElements><spiffworkflow:properties>'
      '<spiffworkflow:property name="formJsonSchemaFilename" value="f.schema.json"/>'
      '</spiffworkflow:properties></bpmn:extensionElements>'
      '<bpmn:multiInstanceLoopCharacteristics isSequential="{seq}">'
      '<bpmn:loopDataInputRef>things</bpmn:loopDataInputRef>{output_ref}'
      '<bpmn:inputDataItem id="thing" name="thing"/>{output}'
      '</bpmn:multiInstanceLoopCharacteristics>'
      '</bpmn:userTask>')

# A sequential instance hands its result on (SpiffWorkflow wants an output item there).
SEQ_OUTPUT = ('<bpmn:loopDataOutputRef>done</bpmn:loopDataOutputRef>',
              '<bpmn:outputDataItem id="thing_done" name="thing_done"/>')

CASES: dict[str, Case] = {
    "none_start_and_end_events": Case(
        '<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>' + chain("start", "end"),
        lambda e, c, i: _done(e, i)),
    "user_task": Case('<bpmn:startEvent id="start"/>' + user_task("work")
                      + '<bpmn:endEvent id="end"/>' + chain("start", "work", "end"), _run_user),
    "manual_task": Case(
        '<bpmn:startEvent id="start"/>' + user_task("work").replace("userTask", "manualTask")
        + '<bpmn:endEvent id="end"/>' + chain("start", "work", "end"), _run_user),
    "script_task": Case(
        '<bpmn:startEvent id="start"/><bpmn:scriptTask id="calc" name="calc">'
        '<bpmn:script>x = n * 2</bpmn:script></bpmn:scriptTask>' + user_task("work")
        + '<bpmn:endEvent id="end"/>' + chain("start", "calc", "work", "end"),
        _run_script, {"n": 3}),
    "business_rule_task_dmn": Case(
        '<bpmn:startEvent id="start"/><bpmn:businessRuleTask id="decide" name="decide">'
        '<bpmn:extensionElements><spiffworkflow:calledDecisionId>size'
        '</spiffworkflow:calledDecisionId></bpmn:extensionElements></bpmn:businessRuleTask>'
        + user_task("work") + '<bpmn:endEvent id="end"/>'
        + chain("start", "decide", "work", "end"), _run_dmn, {"n": 3},
        extra={"size.dmn": DMN}),
    "exclusive_gateway": Case(
        '<bpmn:startEvent id="start"/><bpmn:exclusiveGateway id="gw" default="flow_gw_small"/>'
        + user_task("big") + user_task("small") + '<bpmn:endEvent id="end"/>'
        + flow("start", "gw") + flow("gw", "big", "n &gt; 10") + flow("gw", "small")
        + chain("big", "end") + chain("small", "end"), _run_exclusive, {"n": 12}),
    "parallel_gateway": Case(
        '<bpmn:startEvent id="start"/><bpmn:parallelGateway id="split"/>'
        '<bpmn:parallelGateway id="join"/>' + user_task("a") + user_task("b")
        + user_task("after") + '<bpmn:endEvent id="end"/>' + flow("start", "split")
        + chain("split", "a", "join") + chain("split", "b", "join")
        + chain("join", "after", "end"), _run_parallel),
    "inclusive_gateway": Case(
        '<bpmn:startEvent id="start"/><bpmn:inclusiveGateway id="split"/>'
        '<bpmn:inclusiveGateway id="join"/>' + user_task("a") + user_task("b")
        + user_task("c") + user_task("after") + '<bpmn:endEvent id="end"/>'
        + flow("start", "split") + flow("split", "a", "n &gt; 1")
        + flow("split", "b", "n &gt; 100") + flow("split", "c", "n &gt; 2")
        + chain("a", "join") + chain("b", "join") + chain("c", "join")
        + chain("join", "after", "end"), _run_inclusive, {"n": 5}),
    "event_based_gateway": Case(
        '<bpmn:startEvent id="start"/><bpmn:eventBasedGateway id="gw"/>'
        '<bpmn:intermediateCatchEvent id="got"><bpmn:messageEventDefinition '
        'messageRef="msg_go"/></bpmn:intermediateCatchEvent>'
        '<bpmn:intermediateCatchEvent id="waited"><bpmn:timerEventDefinition><bpmn:timeDuration>'
        '"P1D"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>'
        + user_task("on_message") + user_task("on_timer") + '<bpmn:endEvent id="end"/>'
        + flow("start", "gw") + chain("gw", "got", "on_message", "end")
        + chain("gw", "waited", "on_timer", "end"), _run_event_gateway,
        before='<bpmn:message id="msg_go" name="go"/>'),
    "timer_intermediate_catch_event": Case(
        '<bpmn:startEvent id="start"/><bpmn:intermediateCatchEvent id="wait">'
        '<bpmn:timerEventDefinition><bpmn:timeDuration>"P1D"</bpmn:timeDuration>'
        '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>' + user_task("work")
        + '<bpmn:endEvent id="end"/>' + chain("start", "wait", "work", "end"),
        _run_timer_catch),
    "timer_boundary_event_interrupting": Case(
        '<bpmn:startEvent id="start"/>' + user_task("work") + user_task("late")
        + '<bpmn:boundaryEvent id="too_late" attachedToRef="work" cancelActivity="true">'
        '<bpmn:timerEventDefinition><bpmn:timeDuration>"PT2H"</bpmn:timeDuration>'
        '</bpmn:timerEventDefinition></bpmn:boundaryEvent><bpmn:endEvent id="end"/>'
        + chain("start", "work", "end") + chain("too_late", "late", "end"),
        _run_boundary_timer),
    "timer_boundary_event_non_interrupting": Case(
        '<bpmn:startEvent id="start"/>' + user_task("work") + user_task("late")
        + '<bpmn:boundaryEvent id="too_late" attachedToRef="work" cancelActivity="false">'
        '<bpmn:timerEventDefinition><bpmn:timeDuration>"PT2H"</bpmn:timeDuration>'
        '</bpmn:timerEventDefinition></bpmn:boundaryEvent><bpmn:endEvent id="end"/>'
        '<bpmn:endEvent id="end_late"/>'
        + chain("start", "work", "end") + chain("too_late", "late", "end_late"),
        _run_boundary_timer_non_interrupting),
    "embedded_sub_process": Case(
        '<bpmn:startEvent id="start"/>' + SUB_WORK + user_task("after")
        + '<bpmn:endEvent id="end"/>' + chain("start", "sub", "after", "end"),
        _run_subprocess),
    "call_activity": Case(
        '<bpmn:startEvent id="start"/><bpmn:callActivity id="call" name="call" '
        'calledElement="called"/>' + user_task("after") + '<bpmn:endEvent id="end"/>'
        + chain("start", "call", "after", "end"), _run_call,
        extra={"called.bpmn": HEAD.format(
            pid="called", before="", refs="<bpmn:flowNodeRef>called_work</bpmn:flowNodeRef>",
            body='<bpmn:startEvent id="c_start"/>' + user_task("called_work")
            + '<bpmn:endEvent id="c_end"/>' + chain("c_start", "called_work", "c_end"))}),
    "multi_instance_parallel": Case(
        '<bpmn:startEvent id="start"/>' + MI.format(seq="false", output_ref="", output="")
        + user_task("after")
        + '<bpmn:endEvent id="end"/>' + chain("start", "each", "after", "end"),
        _run_mi_parallel, {"things": [1, 2, 3]}),
    "multi_instance_sequential": Case(
        '<bpmn:startEvent id="start"/>'
        + MI.format(seq="true", output_ref=SEQ_OUTPUT[0], output=SEQ_OUTPUT[1])
        + user_task("after")
        + '<bpmn:endEvent id="end"/>' + chain("start", "each", "after", "end"),
        _run_mi_sequential, {"things": [1, 2, 3]}),
    "terminate_end_event": Case(
        '<bpmn:startEvent id="start"/><bpmn:parallelGateway id="split"/>' + user_task("a")
        + user_task("b") + '<bpmn:endEvent id="stop" name="stop"><bpmn:terminateEventDefinition/>'
        '</bpmn:endEvent><bpmn:endEvent id="end"/>' + flow("start", "split")
        + chain("split", "a", "stop") + chain("split", "b", "end"), _run_terminate),
    "error_end_and_boundary_events": Case(
        '<bpmn:startEvent id="start"/><bpmn:subProcess id="sub" name="sub">'
        '<bpmn:startEvent id="sub_start"/>' + user_task("inner")
        + '<bpmn:endEvent id="fail"><bpmn:errorEventDefinition errorRef="err_x"/>'
        '</bpmn:endEvent>' + chain("sub_start", "inner", "fail") + "</bpmn:subProcess>"
        '<bpmn:boundaryEvent id="caught" attachedToRef="sub"><bpmn:errorEventDefinition '
        'errorRef="err_x"/></bpmn:boundaryEvent>' + user_task("handle_error")
        + '<bpmn:endEvent id="end"/><bpmn:endEvent id="end_error"/>'
        + chain("start", "sub", "end") + chain("caught", "handle_error", "end_error"),
        _run_error_boundary, before='<bpmn:error id="err_x" name="x" errorCode="x"/>'),
    "signal_throw_and_catch_events": Case(
        '<bpmn:startEvent id="start"/><bpmn:parallelGateway id="split"/>' + user_task("a")
        + '<bpmn:intermediateThrowEvent id="shout"><bpmn:signalEventDefinition '
        'signalRef="sig_x"/></bpmn:intermediateThrowEvent><bpmn:intermediateCatchEvent '
        'id="hear"><bpmn:signalEventDefinition signalRef="sig_x"/></bpmn:intermediateCatchEvent>'
        + user_task("signalled") + '<bpmn:endEvent id="end_a"/><bpmn:endEvent id="end_b"/>'
        + flow("start", "split") + chain("split", "a", "shout", "end_a")
        + chain("split", "hear", "signalled", "end_b"), _run_signal,
        before='<bpmn:signal id="sig_x" name="x"/>'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_element(name, make_engine, sqlite_url, clock, tmp_path):
    case = CASES[name]
    pack = write(tmp_path / "pack", name, case.body, before=case.before, extra=case.extra)
    engine = make_engine(sqlite_url, pack)
    # the test diagrams are not marked startable: the system starts them
    started = engine.start_case(name, dict(case.data or {}), SYSTEM)
    case.run(engine, clock, started.id)
    assert engine.verify_case(started.id).ok


REFUSED: dict[str, tuple[str, str]] = {
    "service_task_without_topic": (
        '<bpmn:startEvent id="start"/><bpmn:serviceTask id="call_out" name="call"/>'
        '<bpmn:endEvent id="end"/>' + chain("start", "call_out", "end"), "call_out"),
    "data_store": (
        '<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>'
        '<bpmn:dataStoreReference id="store_ref"/>' + chain("start", "end"), "store_ref"),
    "sequential_multi_instance_sub_process": (
        '<bpmn:startEvent id="start"/><bpmn:subProcess id="each_sub">'
        '<bpmn:multiInstanceLoopCharacteristics isSequential="true"><bpmn:loopDataInputRef>'
        'things</bpmn:loopDataInputRef><bpmn:inputDataItem id="thing" name="thing"/>'
        '</bpmn:multiInstanceLoopCharacteristics><bpmn:startEvent id="s_start"/>'
        + user_task("inner") + '<bpmn:endEvent id="s_end"/>' + chain("s_start", "inner", "s_end")
        + '</bpmn:subProcess><bpmn:endEvent id="end"/>' + chain("start", "each_sub", "end"),
        "each_sub"),
    "interrupting_boundary_on_multi_instance_sub_process": (
        '<bpmn:startEvent id="start"/><bpmn:subProcess id="each_sub">'
        '<bpmn:multiInstanceLoopCharacteristics><bpmn:loopDataInputRef>things'
        '</bpmn:loopDataInputRef><bpmn:inputDataItem id="thing" name="thing"/>'
        '</bpmn:multiInstanceLoopCharacteristics><bpmn:startEvent id="s_start"/>'
        + user_task("inner") + '<bpmn:endEvent id="s_end"/>' + chain("s_start", "inner", "s_end")
        + '</bpmn:subProcess><bpmn:boundaryEvent id="too_late" attachedToRef="each_sub">'
        '<bpmn:timerEventDefinition><bpmn:timeDuration>"PT2H"</bpmn:timeDuration>'
        '</bpmn:timerEventDefinition></bpmn:boundaryEvent>' + user_task("late")
        + '<bpmn:endEvent id="end"/><bpmn:endEvent id="end_late"/>'
        + chain("start", "each_sub", "end") + chain("too_late", "late", "end_late"),
        "too_late"),
    "complex_gateway": (
        '<bpmn:startEvent id="start"/><bpmn:complexGateway id="cx"/><bpmn:endEvent id="end"/>'
        + chain("start", "cx", "end"), "cx"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name, make_engine, sqlite_url, tmp_path):
    body, element = REFUSED[name]
    pack = write(tmp_path / "pack", name, body)
    engine = make_engine(sqlite_url, pack, load=False)
    with pytest.raises(InvalidProcess) as raised:
        engine.load_processes(pack)
    assert element in {p.element for p in raised.value.problems}, raised.value.problems


def test_the_readme_table_names_a_test_for_every_row():
    rows = re.findall(r"^\| (.+?) \| (.+?) \| `(tests/[^`]+)` \|$", README.read_text(
        encoding="utf-8"), re.M)
    assert rows, "processes/README.md has no BPMN coverage table"
    named = {ref for _, _, ref in rows}
    expected = {f"tests/test_bpmn_coverage.py::test_element[{n}]" for n in CASES} | \
        {f"tests/test_bpmn_coverage.py::test_refused[{n}]" for n in REFUSED}
    assert expected <= named
    other = named - expected
    tests = (ROOT / "tests" / "test_engine_interactions.py").read_text(encoding="utf-8")
    for ref in other:
        assert ref.startswith("tests/test_engine_interactions.py::"), ref
        assert f"def {ref.split('::')[1]}(" in tests, ref
