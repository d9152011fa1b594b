"""Element-by-element differences between two versions of a BPMN diagram."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from engine.pack.xml import parse_xml

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
_LABELS = {
    "conditionExpression": "condition",
    "timeDuration": "timer duration",
    "timeDate": "timer date",
    "timeCycle": "timer cycle",
    "script": "script",
    "instructionsForEndUser": "instructions",
    "calledDecisionId": "called decision",
    "flowNodeRef": "lane members",
    "incoming": "incoming flows",
    "outgoing": "outgoing flows",
}


_CONTAINERS = frozenset({"definitions", "process", "subProcess", "transaction", "adHocSubProcess",
                         "collaboration", "laneSet", "decision", "decisionTable"})


@dataclass(frozen=True)
class ElementChange:
    """One element added, removed or changed between two versions."""

    element: str
    kind: str  # added, removed, changed
    type: str
    name: str | None
    details: list[str] = field(default_factory=list)


def _units(root: etree._Element) -> dict[str, etree._Element]:
    """The elements a reader sees as one thing: those drawn in the diagram, and processes."""
    drawn = {node.get("bpmnElement") for node in root.iter(f"{{{BPMNDI}}}BPMNShape",
                                                           f"{{{BPMNDI}}}BPMNEdge")}
    units: dict[str, etree._Element] = {}
    for node in root.iter():
        if not isinstance(node.tag, str) or node.tag.startswith(f"{{{BPMNDI}}}"):
            continue
        ident = node.get("id")
        parent = node.getparent()
        container = etree.QName(parent).localname if parent is not None else ""
        if ident and (ident in drawn or container in _CONTAINERS):
            units[ident] = node
    return units


def _local(name: str) -> str:
    return etree.QName(name).localname if name.startswith("{") else name


def _signature(node: etree._Element, units: dict[str, etree._Element]) -> dict[str, str]:
    """What an element says, outside its id and the elements nested in it."""
    sig = {f"@{_local(k)}": v for k, v in node.attrib.items() if _local(k) != "id"}
    lists: dict[str, list[str]] = {}

    def walk(parent: etree._Element, path: str) -> None:
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            if child.get("id") in units and child.get("id") != node.get("id"):
                continue  # an element of its own (a sub-process's task, a child lane)
            local = etree.QName(child).localname
            if local == "property":
                sig[f"property {child.get('name', '')}"] = child.get("value", "")
                continue
            text = (child.text or "").strip()
            if local in ("flowNodeRef", "incoming", "outgoing"):
                lists.setdefault(local, []).append(text)
                continue
            key = f"{path}/{local}" if path else local
            if text:
                sig[key] = text
            for attr, value in child.attrib.items():
                if _local(attr) != "id":
                    sig[f"{key}@{_local(attr)}"] = value
            walk(child, key)

    walk(node, "")
    for key, values in lists.items():
        sig[key] = ", ".join(sorted(values))
    return sig


def _describe(key: str) -> str:
    if key.startswith("@"):
        return key[1:]
    last = key.rsplit("/", 1)[-1]
    base = last.split("@", 1)[0]
    return _LABELS.get(base, last)


def diff_xml(old: bytes | str, new: bytes | str) -> list[ElementChange]:
    """The elements added, removed and changed from `old` to `new` (both BPMN or DMN XML)."""
    old_root = parse_xml(old.encode() if isinstance(old, str) else old, "old").getroot()
    new_root = parse_xml(new.encode() if isinstance(new, str) else new, "new").getroot()
    before, after = _units(old_root), _units(new_root)
    changes: list[ElementChange] = []
    for ident, node in after.items():
        if ident not in before:
            changes.append(ElementChange(ident, "added", etree.QName(node).localname,
                                         node.get("name") or node.get("label")))
    for ident, node in before.items():
        kind = etree.QName(node).localname
        if ident not in after:
            changes.append(ElementChange(ident, "removed", kind,
                                         node.get("name") or node.get("label")))
            continue
        other = after[ident]
        a, b = _signature(node, before), _signature(other, after)
        details = []
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                what = _describe(key)
                if key not in a:
                    details.append(f"{what}: added {b[key]!r}")
                elif key not in b:
                    details.append(f"{what}: removed {a[key]!r}")
                else:
                    details.append(f"{what}: {a[key]!r} → {b[key]!r}")
        if etree.QName(other).localname != kind:
            details.insert(0, f"type: {kind} → {etree.QName(other).localname}")
        if details:
            changes.append(ElementChange(ident, "changed", etree.QName(other).localname,
                                         other.get("name") or other.get("label"), details))
    order = {"added": 0, "changed": 1, "removed": 2}
    return sorted(changes, key=lambda c: (order[c.kind], c.element))


def element_names(xml: bytes | str) -> dict[str, str]:
    """A readable name for each element of a diagram: its name, or for an unnamed flow
    the names of the elements it connects ("A → B")."""
    root = parse_xml(xml.encode() if isinstance(xml, str) else xml, "diagram").getroot()
    names: dict[str, str] = {}
    flows: dict[str, tuple[str, str]] = {}
    for node in root.iter():
        if not isinstance(node.tag, str) or node.tag.startswith(f"{{{BPMNDI}}}"):
            continue
        ident = node.get("id")
        if not ident:
            continue
        name = " ".join((node.get("name") or node.get("label") or "").split())
        if name:
            names[ident] = name
        elif node.get("sourceRef") and node.get("targetRef"):
            flows[ident] = (node.get("sourceRef", ""), node.get("targetRef", ""))
    for ident, (source, target) in flows.items():
        if source in names or target in names:
            names[ident] = f"{names.get(source, source)} → {names.get(target, target)}"
    return names
