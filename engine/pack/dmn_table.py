"""A DMN decision table as rows of cells, and writing edited rows back into the XML."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from engine.errors import InvalidProcess, Problem
from engine.pack.xml import parse_xml

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,100}$")


@dataclass(frozen=True)
class Column:
    """An input (label and expression) or an output (label and variable name) of the table."""

    id: str
    label: str
    expression: str


@dataclass(frozen=True)
class DecisionTable:
    """The first decision table of a DMN file."""

    decision_id: str
    name: str
    hit_policy: str
    inputs: list[Column]
    outputs: list[Column]
    rules: list[dict[str, Any]] = field(default_factory=list)


def _table(root: etree._Element, name: str) -> tuple[etree._Element, etree._Element]:
    decision = next(root.iter("{*}decision"), None)
    table = decision.find("{*}decisionTable") if decision is not None else None
    if decision is None or table is None:
        raise InvalidProcess([Problem("the file has no decision table", file=name)])
    return decision, table


def _text(node: etree._Element | None) -> str:
    if node is None:
        return ""
    text = node.find("{*}text")
    return (text.text or "") if text is not None else ""


def read_table(data: bytes, name: str = "decision.dmn") -> DecisionTable:
    """The columns and rules of a DMN file's first decision table."""
    root = parse_xml(data, name).getroot()
    decision, table = _table(root, name)
    inputs = [Column(i.get("id", ""), i.get("label", ""), _text(i.find("{*}inputExpression")))
              for i in table.findall("{*}input")]
    outputs = [Column(o.get("id", ""), o.get("label", ""), o.get("name", ""))
               for o in table.findall("{*}output")]
    rules = []
    for rule in table.findall("{*}rule"):
        description = rule.find("{*}description")
        rules.append({
            "id": rule.get("id", ""),
            "description": (description.text or "") if description is not None else "",
            "inputs": [_text(e) for e in rule.findall("{*}inputEntry")],
            "outputs": [_text(e) for e in rule.findall("{*}outputEntry")],
        })
    return DecisionTable(decision.get("id", ""), decision.get("name", ""),
                         table.get("hitPolicy", "UNIQUE"), inputs, outputs, rules)


def write_table(data: bytes, rules: list[dict[str, Any]], name: str = "decision.dmn") -> bytes:
    """The DMN file with its first table's rules replaced by `rules` (cells as text)."""
    tree = parse_xml(data, name)
    root = tree.getroot()
    _, table = _table(root, name)
    ns = etree.QName(table).namespace
    n_in, n_out = len(table.findall("{*}input")), len(table.findall("{*}output"))
    old = {r.get("id"): r for r in table.findall("{*}rule")}
    for rule in old.values():
        table.remove(rule)
    used = {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id")}
    taken: set[str] = set()

    def fresh(base: str) -> str:
        counter = 1
        while f"{base}_{counter}" in used or f"{base}_{counter}" in taken:
            counter += 1
        taken.add(f"{base}_{counter}")
        return f"{base}_{counter}"

    for row in rules:
        ident = str(row.get("id") or "")
        previous = old.get(ident) if ident in old and ident not in taken else None
        if previous is None:
            ident = fresh("rule") if not _ID.match(ident) or ident in used | taken else ident
        taken.add(ident)
        rule = etree.SubElement(table, f"{{{ns}}}rule", id=ident)
        if row.get("description"):
            etree.SubElement(rule, f"{{{ns}}}description").text = str(row["description"])
        old_in = previous.findall("{*}inputEntry") if previous is not None else []
        old_out = previous.findall("{*}outputEntry") if previous is not None else []
        cells = list(row.get("inputs", []))[:n_in]
        cells += [""] * (n_in - len(cells))
        for index, value in enumerate(cells):
            entry_id = old_in[index].get("id") if index < len(old_in) else None
            entry = etree.SubElement(rule, f"{{{ns}}}inputEntry",
                                     id=entry_id or fresh(f"{ident}_in"))
            etree.SubElement(entry, f"{{{ns}}}text").text = str(value).strip()
        outs = list(row.get("outputs", []))[:n_out]
        outs += [""] * (n_out - len(outs))
        for index, value in enumerate(outs):
            entry_id = old_out[index].get("id") if index < len(old_out) else None
            entry = etree.SubElement(rule, f"{{{ns}}}outputEntry",
                                     id=entry_id or fresh(f"{ident}_out"))
            etree.SubElement(entry, f"{{{ns}}}text").text = str(value).strip()
    new_rules = table.findall("{*}rule")
    for position, rule in enumerate(new_rules):
        children = list(rule)
        rule.text = "\n        " if children else None
        for index, child in enumerate(children):
            child.tail = "\n        " if index < len(children) - 1 else "\n      "
        rule.tail = "\n      " if position < len(new_rules) - 1 else "\n    "
    before = new_rules[0].getprevious() if new_rules else None
    if before is not None:
        before.tail = "\n      "
    body: bytes = etree.tostring(tree, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"
