"""Line charts as SVG text, written by hand: what `harness plot` writes for FILE.svg (no dependency), and the
axis arithmetic (nice ticks) the PNG writer shares. The page draws its own charts in the browser
(harness/ui/static/charts.js) with the same palette and tick rule.

Every text in the SVG is XML-escaped; the document has no script, no external reference and fixed fonts
(generic families), so it renders the same wherever it is opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

# Tableau 10, then darker and lighter variants: one colour per run, distinct for the first 20.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f3b5a", "#a14f00", "#8c1d2a", "#2f6f6a", "#2b5e22", "#8a7200", "#5e3a58", "#c2185b", "#4e342e", "#616161",
)  # fmt: skip
WIDTH, HEIGHT = 820, 440
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 72, 24, 40, 48
LEGEND_LINE = 20


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    x: list[float]
    y: list[float]
    run: str = ""


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) that cover [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    n = round((last - first) / step)
    return [_clean(first + i * step, step) for i in range(n + 1)]


def _clean(value: float, step: float) -> float:
    digits = max(0, -math.floor(math.log10(step)) + 2)
    return round(value, digits)


def tick_text(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.3g}"
    return f"{value:.10g}"


def line_chart_svg(lines: list[Line], title: str, x_label: str = "step") -> str:
    """One chart: a line per entry of ``lines`` (class ``series``, ``data-run``), axes, grid and a legend."""
    xs = [v for line in lines for v in line.x]
    ys = [v for line in lines for v in line.y]
    x_ticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    y_ticks = nice_ticks(min(ys, default=0.0), max(ys, default=1.0))
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(v: float) -> float:
        return MARGIN_LEFT + (v - x0) / (x1 - x0) * plot_w

    def py(v: float) -> float:
        return MARGIN_TOP + plot_h - (v - y0) / (y1 - y0) * plot_h

    total_h = HEIGHT + LEGEND_LINE * len(lines) + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_h}" '
        f'viewBox="0 0 {WIDTH} {total_h}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{total_h}" fill="#ffffff"/>',
        f'<text x="{MARGIN_LEFT}" y="24" font-size="15" font-weight="bold" fill="#1d232b">{escape(title)}</text>',
    ]
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y:.2f}" y2="{y:.2f}" stroke="#e3e7ec"/>')
        out.append(
            f'<text x="{MARGIN_LEFT - 8}" y="{y + 4:.2f}" text-anchor="end" fill="#68717d">{tick_text(t)}</text>'
        )
    for t in x_ticks:
        x = px(t)
        out.append(f'<line x1="{x:.2f}" x2="{x:.2f}" y1="{MARGIN_TOP}" y2="{MARGIN_TOP + plot_h}" stroke="#eef1f4"/>')
        out.append(
            f'<text x="{x:.2f}" y="{MARGIN_TOP + plot_h + 18}" text-anchor="middle" fill="#68717d">'
            f"{tick_text(t)}</text>"
        )
    out.append(
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#b8c0ca"/>'
    )
    out.append(
        f'<text x="{MARGIN_LEFT + plot_w / 2:.2f}" y="{MARGIN_TOP + plot_h + 38}" text-anchor="middle" '
        f'fill="#1d232b">{escape(x_label)}</text>'
    )
    for line in lines:
        points = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in zip(line.x, line.y, strict=True))
        out.append(
            f'<polyline class="series" data-run={quoteattr(line.run)} points="{points}" fill="none" '
            f'stroke="{line.color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round">'
            f"<title>{escape(line.label)}</title></polyline>"
        )
        if len(line.x) == 1:  # a single step is a dot, not an invisible line
            out.append(f'<circle cx="{px(line.x[0]):.2f}" cy="{py(line.y[0]):.2f}" r="3" fill="{line.color}"/>')
    for i, line in enumerate(lines):
        y = HEIGHT + i * LEGEND_LINE + 4
        out.append(
            f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + 24}" y1="{y:.2f}" y2="{y:.2f}" stroke="{line.color}" '
            'stroke-width="3"/>'
        )
        out.append(f'<text x="{MARGIN_LEFT + 32}" y="{y + 4:.2f}" fill="#1d232b">{escape(line.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
