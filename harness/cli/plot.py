"""`harness plot`: a step metric of one or more runs as an SVG or PNG file. Parse, call harness.ui.plot, render."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.output import echo, print_json


def register(app: typer.Typer) -> None:
    command(app, "plot", plot)


def plot(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN...", help="Run ids or unique prefixes; one line each.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="FILE.svg (no dependency) or FILE.png (needs harness[plot]).",
            show_default=False,
        ),
    ],
    metric: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--metric",
            metavar="NAME",
            help="The step metric to draw, e.g. loss or val.acc (default: the one metric the runs share).",
        ),
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Draw a step metric of runs as a line chart file: one line per run, for a report or a CI artifact.

    The steps are each run's metrics.jsonl output (one JSON object per line, e.g. {"step": 3, "loss": 0.41}),
    read from the store by the digest its record names. x is a line's "step", else its position (1, 2, ...).
    Each run gets its own colour; the legend names the run and the params that differ between the runs.

    FILE.svg is written by harness itself. FILE.png needs matplotlib: pip install 'harness[plot]'.

    Examples:

      harness plot 3fa9c1 --metric loss -o loss.svg

      harness plot 3fa9c1 7be210 c04d11 -m val.acc -o acc.png
    """
    from harness.ui.plot import plot_runs

    result = plot_runs(project, list(runs), metric, output)
    if as_json:
        print_json(result.to_dict())
    else:
        echo(f"wrote {result.path}: {result.metric} of {len(result.lines)} run(s)")
