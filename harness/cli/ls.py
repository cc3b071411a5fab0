"""``harness ls``: the runs as a table, JSON or CSV. Parse, call harness.runs.query_runs, render."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.recovered import finish_dead_runs
from harness.errors import ConfigError


def register(app: typer.Typer) -> None:
    command(app, "ls", list_runs)


def _count(text: str) -> int:
    if not text.isdigit():
        raise typer.BadParameter(f"not a count of runs: {text!r} (a whole number, 0 or more)")
    return int(text)


def list_runs(
    where: Annotated[
        str | None,
        typer.Option(
            "-w",
            "--where",
            metavar="EXPR",
            help="Only runs for which this holds, e.g. 'metrics.rmse_test < 40 and params.model == \"linear\"'.",
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "-s",
            "--sort",
            metavar="FIELD",
            help="Order by a field, e.g. metrics.rmse_test; a leading - sorts descending.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("-n", "--limit", metavar="N", parser=_count, help="Show at most N runs.")
    ] = None,
    all_columns: Annotated[
        bool,
        typer.Option("-a", "--all-columns", help="Show every param and metric, not only those that vary."),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="REF",
            help="List the runs an OCI registry holds (pushed with `harness push`) instead of this store's.",
        ),
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout: every param and metric a column.")] = False,
) -> None:
    """List runs as a table: Meta | Provenance | Params | Metrics, newest first.

    Only params and metrics that differ between the listed runs get a column (--all-columns shows all).
    FAILED and INTERRUPTED runs are in capitals; a run of uncommitted code says DIRTY next to its commit.

    --where: comparisons (== != < <= > >= in, not in) joined by and/or/not, with parentheses.
    Names: params.X, metrics.X, status, name, id, dirty, commit, code.branch, ... (metrics["f1-score"]).
    Strings in double quotes; true, false, null. A run without the field never matches.

    Examples:

      harness ls --limit 20

      harness ls --where 'metrics.rmse_test < 40 and params.model == "linear"'

      harness ls --sort metrics.rmse_test --limit 5     (best first; -metrics.rmse_test: worst first)

      harness ls --where 'status == "failed" or dirty' --sort -started_at

      harness ls --csv > runs.csv

      harness ls --remote 127.0.0.1:5000/team/bikes --where 'metrics.rmse_test < 40'
    """
    if as_json and as_csv:
        raise ConfigError("--json and --csv both asked for", "choose one output format")
    if remote is not None:
        from harness.remote.listing import list_remote

        records, total = list_remote(project, remote, where, sort, limit)
    else:
        from harness.runs.history import query_runs

        finish_dead_runs(project)
        records, total = query_runs(project, where, sort, limit, full=as_json)
    if as_json:
        text = json.dumps(records, indent=2, sort_keys=True) + "\n"
    elif as_csv:
        from harness.cli.table import render_csv

        text = render_csv(records)
    else:
        from harness.cli.table import render_table

        text = render_table(records, all_columns, total, where) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
