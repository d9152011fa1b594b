"""Safe parsing of XML that users supply: no entities, no DTDs, no network, bounded size."""

from __future__ import annotations

from lxml import etree

from engine.errors import InvalidProcess, Problem

MAX_XML_BYTES = 5 * 1024 * 1024


def parse_xml(data: bytes, filename: str, max_bytes: int = MAX_XML_BYTES) -> etree._ElementTree:
    """Parse `data` as XML, refusing DTDs, entities and oversized input with a clear message."""
    if len(data) > max_bytes:
        raise InvalidProcess([Problem(
            f"the file is {len(data):,} bytes; at most {max_bytes:,} bytes are accepted",
            file=filename)])
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_blank_text=False)
    try:
        tree = etree.ElementTree(etree.fromstring(data, parser))
    except etree.XMLSyntaxError as exc:
        raise InvalidProcess([Problem(f"not well-formed XML: {exc.msg}", file=filename,
                                      line=exc.lineno)]) from exc
    docinfo = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        # Entity expansion ("billion laughs") and external entities both need a DTD;
        # BPMN never does, so any DOCTYPE is refused outright.
        raise InvalidProcess([Problem(
            "DOCTYPE declarations (DTDs and entities) are not allowed in process files",
            file=filename, line=1)])
    return tree


def element_at_line(tree: etree._ElementTree, line: int | None) -> etree._Element | None:
    """The innermost element with an id that starts at (or encloses) a given line."""
    if line is None:
        return None
    best: etree._Element | None = None
    for element in tree.getroot().iter():
        if not isinstance(element.tag, str):
            continue
        start = element.sourceline or 0
        if start > line:
            break
        if element.get("id") is not None:
            best = element
    return best
