"""``harness ls``: the runs as a table, JSON or CSV. Parse, call harness.runs.query_runs, render."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli.output import command, json_option, project_option
from harness.errors import ConfigError


def register(sub: Any) -> None:
    parser = command(sub, "ls", list_runs)
    parser.add_argument(
        "-w",
        "--where",
        help="Only runs for which this holds, e.g. 'metrics.rmse_test < 40 and params.model == \"linear\"'.",
    )
    parser.add_argument(
        "-s",
        "--sort",
        metavar="FIELD",
        help="Order by a field, e.g. metrics.rmse_test; a leading - sorts descending.",
    )
    parser.add_argument("-n", "--limit", type=_count, metavar="N", help="Show at most N runs.")
    parser.add_argument(
        "-a", "--all-columns", action="store_true", help="Show every param and metric, not only those that vary."
    )
    project_option(parser)
    json_option(parser)
    parser.add_argument(
        "--csv", dest="as_csv", action="store_true", help="CSV on stdout: every param and metric a column."
    )


def list_runs(args: argparse.Namespace) -> None:
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
    """
    from harness.runs.history import query_runs

    if args.as_json and args.as_csv:
        raise ConfigError("--json and --csv both asked for", "choose one output format")
    records, total = query_runs(args.project, args.where, args.sort, args.limit, full=args.as_json)
    if args.as_json:
        text = json.dumps(records, indent=2, sort_keys=True) + "\n"
    elif args.as_csv:
        from harness.cli.table import render_csv

        text = render_csv(records)
    else:
        from harness.cli.table import render_table

        text = render_table(records, args.all_columns, total, args.where) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count of runs: {text!r} (a whole number, 0 or more)")
    return int(text)
