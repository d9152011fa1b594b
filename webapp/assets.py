"""Copies the front-end packages installed by npm into the app's static folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = Path(__file__).resolve().parent / "static" / "vendor"

# (package file under node_modules, name under static/vendor)
FILES = [
    ("bpmn-js/dist/bpmn-navigated-viewer.production.min.js", "bpmn-viewer.js"),
    ("bpmn-js/dist/bpmn-modeler.production.min.js", "bpmn-modeler.js"),
    ("bpmn-js/dist/assets/diagram-js.css", "diagram-js.css"),
    ("bpmn-js/dist/assets/bpmn-js.css", "bpmn-js.css"),
    ("bpmn-js/dist/assets/bpmn-font/css/bpmn.css", "bpmn-font/css/bpmn.css"),
    ("bpmn-js/dist/assets/bpmn-font/font/bpmn.woff", "bpmn-font/font/bpmn.woff"),
    ("bpmn-js/dist/assets/bpmn-font/font/bpmn.woff2", "bpmn-font/font/bpmn.woff2"),
    ("bpmn-js/dist/assets/bpmn-font/font/bpmn.ttf", "bpmn-font/font/bpmn.ttf"),
    # accessibility checks in the browser tests (tests/test_phone_and_accessibility.py)
    ("axe-core/axe.min.js", "axe.min.js"),
]


def main() -> int:
    """Copy each file; fail with a clear message if npm has not installed it."""
    modules = ROOT / "node_modules"
    for source, target in FILES:
        src = modules / source
        if not src.exists():
            sys.stderr.write(f"missing {src}: run `npm ci` first\n")
            return 1
        dest = VENDOR / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
