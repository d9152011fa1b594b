"""Generates a BPMN process of many human tasks for the benchmark and the engine's tests."""

from __future__ import annotations

import json
from pathlib import Path

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"

FORM = {
    "title": "步骤",
    "type": "object",
    "properties": {
        "route": {"type": "string", "enum": ["fast", "slow"], "title": "路线"},
        "note": {"type": "string", "maxLength": 200, "title": "备注"},
    },
    "additionalProperties": False,
}


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.flows: list[str] = []
        self.lane_a: list[str] = []
        self.lane_b: list[str] = []
        self.count = 0

    def node(self, xml: str, node_id: str, lane: str | None = None) -> str:
        self.nodes.append(xml)
        if lane == "a":
            self.lane_a.append(node_id)
        elif lane == "b":
            self.lane_b.append(node_id)
        return node_id

    def flow(self, source: str, target: str, condition: str | None = None) -> None:
        fid = f"flow_{len(self.flows) + 1}"
        body = (f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{condition}'
                "</bpmn:conditionExpression>" if condition else "")
        self.flows.append(f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" '
                          f'targetRef="{target}">{body}</bpmn:sequenceFlow>')

    def user_task(self, task_id: str, lane: str | None = None, extra: str = "",
                  rule: str | None = None) -> str:
        self.count += 1
        rule_prop = (f'<spiffworkflow:property name="departmentExpression" value="{rule}"/>'
                     if rule else "")
        xml = (f'<bpmn:userTask id="{task_id}" name="步骤 {task_id}"><bpmn:extensionElements>'
               '<spiffworkflow:properties>'
               '<spiffworkflow:property name="formJsonSchemaFilename" value="step.schema.json"/>'
               f'{rule_prop}</spiffworkflow:properties></bpmn:extensionElements>{extra}'
               '</bpmn:userTask>')
        return self.node(xml, task_id, lane)

    def gateway(self, kind: str, gid: str, lane: str = "a", default: str | None = None) -> str:
        attr = f' default="{default}"' if default else ""
        return self.node(f'<bpmn:{kind} id="{gid}"{attr}/>', gid, lane)


# Cases of the bench's processes are started by hand (only startable processes may be).
STARTABLE = ('<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property '
             'name="startable" value="true"/></spiffworkflow:properties>'
             '</bpmn:extensionElements>\n')


def build_process(blocks: int = 20, items: int = 4, process_id: str = "bench_case",
                  timer: str | None = None) -> str:
    """A process of `blocks` blocks of 10 human tasks (with items=4) each.

    Each block: a task; a parallel split into three tasks and a join; a parallel
    multi-instance task over `items`, owned by rule; an exclusive gateway choosing
    one of two tasks by the `route` field; a closing task. With `timer`, the process
    ends by waiting on a timer of that ISO duration before its last task.
    """
    b = _Builder()
    prev = b.node('<bpmn:startEvent id="start"/>', "start", "a")
    for i in range(1, blocks + 1):
        first = b.user_task(f"b{i}_open", "a")
        b.flow(prev, first)
        split = b.gateway("parallelGateway", f"b{i}_split")
        b.flow(first, split)
        join = b.gateway("parallelGateway", f"b{i}_join")
        for j in range(1, 4):
            branch = b.user_task(f"b{i}_par{j}", "b")
            b.flow(split, branch)
            b.flow(branch, join)
        mi_extra = ('<bpmn:multiInstanceLoopCharacteristics>'
                    '<bpmn:loopDataInputRef>items</bpmn:loopDataInputRef>'
                    f'<bpmn:inputDataItem id="b{i}_item" name="item"/>'
                    '</bpmn:multiInstanceLoopCharacteristics>') if items else ""
        mi = b.user_task(f"b{i}_items", None, mi_extra, rule=f"b{i}_item['department']")
        b.flow(join, mi)
        choice = b.gateway("exclusiveGateway", f"b{i}_choice", default=f"flow_default_{i}")
        b.flow(mi, choice)
        fast = b.user_task(f"b{i}_fast", "a")
        slow = b.user_task(f"b{i}_slow", "b")
        b.flow(choice, fast, "route == 'fast'")
        b.flows.append(f'<bpmn:sequenceFlow id="flow_default_{i}" sourceRef="{choice}" '
                       f'targetRef="{slow}"/>')
        merge = b.gateway("exclusiveGateway", f"b{i}_merge")
        b.flow(fast, merge)
        b.flow(slow, merge)
        close = b.user_task(f"b{i}_close", "a")
        b.flow(merge, close)
        prev = close
    if timer:
        wait = b.node(f'<bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition>'
                      f'<bpmn:timeDuration>"{timer}"</bpmn:timeDuration>'
                      '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>', "wait", "a")
        b.flow(prev, wait)
        prev = b.user_task("after_wait", "a")
        b.flow(wait, prev)
    end = b.node('<bpmn:endEvent id="end"/>', "end", "a")
    b.flow(prev, end)
    lanes = "".join(
        f'<bpmn:lane id="lane_{code}" name="{code}">'
        + "".join(f"<bpmn:flowNodeRef>{n}</bpmn:flowNodeRef>" for n in refs) + "</bpmn:lane>"
        for code, refs in (("dept_a", b.lane_a), ("dept_b", b.lane_b)))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<bpmn:definitions xmlns:bpmn="{BPMN_NS}" xmlns:spiffworkflow="{SPIFF_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs_bench" '
        'targetNamespace="http://zerorun.example/bench">\n'
        f'<bpmn:process id="{process_id}" name="基准流程" isExecutable="true">\n'
        + STARTABLE +
        f"<bpmn:laneSet id=\"lanes\">{lanes}</bpmn:laneSet>\n"
        + "\n".join(b.nodes) + "\n" + "\n".join(b.flows)
        + "\n</bpmn:process>\n</bpmn:definitions>\n")


def human_task_count(blocks: int, items: int) -> int:
    """How many human tasks one case of `build_process(blocks, items)` completes."""
    return blocks * (1 + 3 + items + 1 + 1)


def write_pack(directory: Path, blocks: int = 20, items: int = 4,
               timer: str | None = None) -> Path:
    """Write a pack folder holding the generated process and its form."""
    (directory / "forms").mkdir(parents=True, exist_ok=True)
    (directory / "bench_case.bpmn").write_text(build_process(blocks, items, timer=timer),
                                               encoding="utf-8")
    (directory / "forms" / "step.schema.json").write_text(json.dumps(FORM, ensure_ascii=False),
                                                          encoding="utf-8")
    return directory


def item_list(items: int) -> list[dict[str, str]]:
    """The `items` collection the multi-instance tasks run over."""
    return [{"code": f"item{k}", "name": f"事项{k}",
             "department": "dept_a" if k % 2 else "dept_b"} for k in range(1, items + 1)]



def build_parallel_rows(rows: int, branches: int, process_id: str = "parallel_rows") -> str:
    """`rows` parallel splits in a row, each into `branches` human tasks and a join."""
    b = _Builder()
    prev = b.node('<bpmn:startEvent id="start"/>', "start", "a")
    for r in range(1, rows + 1):
        split = b.gateway("parallelGateway", f"r{r}_split")
        b.flow(prev, split)
        join = b.gateway("parallelGateway", f"r{r}_join")
        for k in range(1, branches + 1):
            task = b.user_task(f"r{r}_t{k}", "a")
            b.flow(split, task)
            b.flow(task, join)
        prev = join
    end = b.node('<bpmn:endEvent id="end"/>', "end", "a")
    b.flow(prev, end)
    lanes = ('<bpmn:lane id="lane_dept_a" name="dept_a">'
             + "".join(f"<bpmn:flowNodeRef>{n}</bpmn:flowNodeRef>" for n in b.lane_a)
             + "</bpmn:lane>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<bpmn:definitions xmlns:bpmn="{BPMN_NS}" xmlns:spiffworkflow="{SPIFF_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs_rows" '
        'targetNamespace="http://zerorun.example/bench">\n'
        f'<bpmn:process id="{process_id}" name="并行分支" isExecutable="true">\n'
        + STARTABLE +
        f'<bpmn:laneSet id="lanes">{lanes}</bpmn:laneSet>\n'
        + "\n".join(b.nodes) + "\n" + "\n".join(b.flows)
        + "\n</bpmn:process>\n</bpmn:definitions>\n")


def write_parallel_pack(directory: Path, rows: int, branches: int) -> Path:
    """A pack folder holding `build_parallel_rows` (process id parallel_rows) and its form."""
    (directory / "forms").mkdir(parents=True, exist_ok=True)
    (directory / "parallel_rows.bpmn").write_text(build_parallel_rows(rows, branches),
                                                  encoding="utf-8")
    (directory / "forms" / "step.schema.json").write_text(json.dumps(FORM, ensure_ascii=False),
                                                          encoding="utf-8")
    return directory
