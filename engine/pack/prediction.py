"""How many future tasks SpiffWorkflow predicts for a diagram, without running it.

When a token passes a task, SpiffWorkflow adds to the case every task that will
certainly follow (state FUTURE), up to the next decision (exclusive, inclusive or
event-based gateway, whose outcomes it only guesses a step or two ahead). Each
branch of a parallel split gets its own copy of everything after the join, so
parallel gateways in a row multiply: four 16-branch gateways in a row predict
16**4 = 65,536 tasks, which takes seconds and megabytes to start one case. The
loader refuses diagrams whose prediction from any element exceeds `MAX_PREDICTED`.
"""

from __future__ import annotations

from dataclasses import dataclass

from SpiffWorkflow.bpmn.specs.control import EventSplit
from SpiffWorkflow.specs.base import TaskSpec
from SpiffWorkflow.specs.MultiChoice import MultiChoice
from SpiffWorkflow.specs.WorkflowSpec import WorkflowSpec

MAX_PREDICTED = 400  # future tasks predicted when one token moves on


@dataclass(frozen=True)
class Explosion:
    """The element from which too many future tasks would be predicted."""

    element: str
    element_name: str | None
    predicted: int


def _guessing(spec: TaskSpec) -> bool:
    """Whether the spec only guesses its outcomes (predicted a step or two ahead)."""
    if isinstance(spec, MultiChoice):  # exclusive and inclusive gateways
        return True
    hook = type(spec)._predict_hook
    # Event-based gateways and the like override the hook to predict MAYBE children.
    return hook is not TaskSpec._predict_hook and not isinstance(spec, EventSplit) and \
        getattr(hook, "__module__", "").endswith("intermediate_event")


def predicted_counts(process: WorkflowSpec, cap: int = MAX_PREDICTED * 4) -> dict[str, int]:
    """For each task spec: how many tasks SpiffWorkflow predicts below one of its tasks
    (itself included), capped at `cap`."""
    counts: dict[str, int] = {}
    visiting: set[str] = set()

    def count(spec: TaskSpec) -> int:
        known = counts.get(spec.name)
        if known is not None:
            return known
        if spec.name in visiting:  # a loop: its tasks are added when it is taken
            return 1
        visiting.add(spec.name)
        total = 1
        for output in spec.outputs:
            if _guessing(spec) or (isinstance(spec, EventSplit)
                                   and isinstance(output, spec.event_type)):
                total += 1
            else:
                total += count(output)
            if total >= cap:
                total = cap
                break
        visiting.discard(spec.name)
        counts[spec.name] = total
        return total

    for spec in process.task_specs.values():
        count(spec)
    return counts


def explosion(process: WorkflowSpec, bound: int = MAX_PREDICTED) -> Explosion | None:
    """The deepest branching element below which more than `bound` tasks are predicted."""
    counts = predicted_counts(process)
    over = [process.task_specs[name] for name, n in counts.items() if n > bound
            and len(process.task_specs[name].outputs) > 1]
    if not over:
        return None
    # The deepest one: the last gateway in the row that still predicts too much.
    spec = min(over, key=lambda s: counts[s.name])
    return Explosion(getattr(spec, "bpmn_id", None) or spec.name,
                     getattr(spec, "bpmn_name", None), counts[spec.name])
