"""`harness plot`: one step metric of one or more runs as a picture for a report or a CI artifact.

FILE.svg is written by hand (harness/ui/svgchart.py), needing nothing beyond harness; FILE.png is drawn by
matplotlib, the optional extra ``harness[plot]``, with the same colours, ticks and legend. Each run is one line
(one colour per run), labelled with its name, its id and the params whose values differ between the runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError
from harness.files import write_atomic
from harness.ui.svgchart import PALETTE, Line, line_chart_svg, nice_ticks, tick_text

FORMATS = (".svg", ".png")


@dataclass(frozen=True)
class Plot:
    path: Path
    format: str
    metric: str
    lines: list[Line]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "metric": self.metric,
            "series": [
                {"run": line.run, "label": line.label, "color": line.color, "points": len(line.x)}
                for line in self.lines
            ],
        }


def plot_runs(project_dir: Path, refs: list[str], metric: str | None, out: Path) -> Plot:
    """Write the step curves of ``metric`` for the runs ``refs`` to ``out`` (.svg or .png)."""
    from harness.project.config import project_layout
    from harness.runs.records import Records
    from harness.runs.schema import RunRecord
    from harness.runs.steps import differing_params, read_steps, run_label
    from harness.storage.store import Store

    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"-o {out}: cannot tell the format from {out.suffix or 'a name without a suffix'}",
            "name the file FILE.svg (needs nothing more) or FILE.png (needs matplotlib: pip install 'harness[plot]')",
        )
    if len(PALETTE) < len(refs):
        raise UsageError(f"{len(refs)} runs: a plot holds at most {len(PALETTE)} (one colour each)", None)
    layout = project_layout(project_dir)
    records = Records(layout.runs, layout.index)
    store = Store(layout.objects)
    chosen: list[RunRecord] = []
    for ref in refs:
        record = records.read(ref)
        if all(r["id"] != record["id"] for r in chosen):  # a run named twice is drawn once
            chosen.append(record)
    steps = [read_steps(r, store) for r in chosen]
    for record, found in zip(chosen, steps, strict=True):
        if found.source is None:
            raise UsageError(
                f"run {record['id']} wrote no metrics.jsonl: there are no step metrics to plot",
                "a run's code writes one JSON object per step to /outputs/metrics.jsonl, "
                'e.g. {"step": 3, "loss": 0.41}',
            )
    if metric is None:
        common = set.intersection(*(set(s.series) for s in steps))
        if len(common) != 1:
            raise UsageError(
                "which metric? name one with --metric",
                f"the step metrics of {'these runs' if len(steps) > 1 else 'this run'}: "
                + (", ".join(sorted(common)) or "none in common"),
            )
        metric = common.pop()
    for record, found in zip(chosen, steps, strict=True):
        if metric not in found.series:
            raise UsageError(
                f"run {record['id']} has no step metric {metric!r}",
                f"its steps have: {', '.join(sorted(found.series)) or 'no numeric values'}",
            )
    differing = differing_params(chosen)
    lines = [
        Line(run_label(r, differing), PALETTE[i], s.series[metric].x, s.series[metric].y, str(r["id"]))
        for i, (r, s) in enumerate(zip(chosen, steps, strict=True))
    ]
    title = f"{metric} by step"
    data = line_chart_svg(lines, title).encode() if suffix == ".svg" else _png(lines, title)
    write_atomic(out, data)
    return Plot(out, suffix.lstrip("."), metric, lines)


def _png(lines: list[Line], title: str) -> bytes:
    try:
        import matplotlib
    except ImportError:
        raise HarnessError(
            "writing a PNG needs matplotlib, which is not installed",
            "pip install 'harness[plot]' (or matplotlib), or write FILE.svg, which needs nothing more",
        ) from None
    import io

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib import pyplot as plt

    xs = [v for line in lines for v in line.x]
    ys = [v for line in lines for v in line.y]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    fig, ax = plt.subplots(figsize=(8.2, 4.4 + 0.22 * len(lines)), dpi=100)
    try:
        for line in lines:
            marker = "o" if len(line.x) == 1 else None
            ax.plot(line.x, line.y, color=line.color, linewidth=2, label=line.label, marker=marker)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_xlabel("step")
        ax.set_xticks(x_ticks, [tick_text(t) for t in x_ticks])
        ax.set_yticks(y_ticks, [tick_text(t) for t in y_ticks])
        ax.set_xlim(x_ticks[0], x_ticks[-1])
        ax.set_ylim(y_ticks[0], y_ticks[-1])
        ax.grid(color="#e3e7ec")
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.14), frameon=False)
        buffer = io.BytesIO()
        # fixed metadata: the same curves give the same bytes
        fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(fig)
