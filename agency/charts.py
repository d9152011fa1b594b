"""Small bar charts as inline SVG, drawn on the server for pages and documents alike."""

from __future__ import annotations

from html import escape

COLOURS = {"count": "#3b6ea8", "yellow": "#e0a800", "red": "#c0392b"}


def bar_chart(title: str, rows: list[tuple[str, dict[str, int]]], series: list[str],
              labels: dict[str, str] | None = None, width: int = 640) -> str:
    """Horizontal bars, one group per row, one bar per series; an empty chart says so."""
    labels = labels or {}
    bar, gap, label_width = 14, 10, 220
    height = 40 + max(1, len(rows)) * (bar * len(series) + gap) + 24
    largest = max([v for _, values in rows for v in values.values()] + [1])
    scale = (width - label_width - 60) / largest
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'font-family="Noto Sans CJK SC, sans-serif" font-size="12">',
             f'<title>{escape(title)}</title>',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    y = 30
    if not rows:
        parts.append(f'<text x="0" y="{y + 16}" fill="#666">—</text>')
    for name, values in rows:
        parts.append(f'<text x="{label_width - 6}" y="{y + bar}" text-anchor="end">'
                     f'{escape(name[:18])}</text>')
        for key in series:
            value = values.get(key, 0)
            length = max(0.0, value * scale)
            parts.append(f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar - 2}"'
                         f' fill="{COLOURS.get(key, "#3b6ea8")}"><title>{escape(name)} '
                         f'{escape(labels.get(key, key))}: {value}</title></rect>')
            parts.append(f'<text x="{label_width + length + 4:.1f}" y="{y + bar - 3}">{value}'
                         '</text>')
            y += bar
        y += gap
    legend_x = 0
    for key in series:
        parts.append(f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" '
                     f'fill="{COLOURS.get(key, "#3b6ea8")}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{height - 7}">'
                     f'{escape(labels.get(key, key))}</text>')
        legend_x += 110
    parts.append("</svg>")
    return "".join(parts)
