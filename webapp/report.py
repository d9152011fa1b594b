"""The printable case report: assets inlined into one HTML file, printed to PDF by Chromium."""

from __future__ import annotations

from pathlib import Path

from engine.errors import EngineError

STATIC = Path(__file__).resolve().parent / "static"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class ReportUnavailable(EngineError):
    """The PDF could not be produced (no Chromium, or it failed)."""

    title = "PDF unavailable"
    status = 503


def inline_assets() -> dict[str, str]:
    """The viewer's script and styles as text, so the report needs no server to open."""
    def read(relative: str) -> str:
        path = STATIC / relative
        if not path.exists():
            raise ReportUnavailable(f"{relative} is missing; run `python -m webapp.assets`")
        return path.read_text(encoding="utf-8")

    return {"viewer": read("vendor/bpmn-viewer.js"),
            "css": read("vendor/diagram-js.css") + read("vendor/bpmn-js.css")
            + read("css/app.css"),
            "diagram": read("js/audit-diagram.js")}


def html_to_pdf(html: str, chromium: str, timeout_ms: int = 30000) -> bytes:
    """Open the report in headless Chromium, wait for its diagrams, print it to A4 PDF."""
    if not Path(chromium).exists():
        raise ReportUnavailable(f"Chromium is not installed at {chromium} (set ZERORUN_CHROMIUM)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_content(html, wait_until="load")
                page.wait_for_function("window.auditDiagramsReady === true", timeout=timeout_ms)
                page.emulate_media(media="print")
                return page.pdf(format="A4", print_background=True,
                                margin={"top": "12mm", "bottom": "12mm", "left": "10mm",
                                        "right": "10mm"})
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise ReportUnavailable(f"the PDF could not be printed: {exc.message}") from exc
