"""`harness ls` without the CLI framework's start-up cost.

typer (0.29) builds a pydantic TypeAdapter for every parameter it converts, and importing pydantic costs
0.15-0.25 s: more than all of `ls` over 10,000 runs. So :func:`main` in cli.py first offers argv to
:func:`parse_plain_ls`, which accepts only a plain, well-formed `ls` invocation (the options the typer command
declares, each value valid); anything else (--help, a typo, a bad number, global options) returns None and
goes through typer as usual, with its help and error messages. Both routes call :func:`list_command`, and
tests/test_ls.py checks that they print the same bytes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class LsArgs:
    where: str | None = None
    sort: str | None = None
    limit: int | None = None
    all_columns: bool = False
    project: Path = Path(".")
    as_json: bool = False
    as_csv: bool = False


_VALUE_OPTIONS = {
    "--where": "where",
    "-w": "where",
    "--sort": "sort",
    "-s": "sort",
    "--limit": "limit",
    "-n": "limit",
    "--project": "project",
    "-C": "project",
}
_FLAGS = {"--all-columns": "all_columns", "-a": "all_columns", "--json": "as_json", "--csv": "as_csv"}


def parse_plain_ls(argv: list[str]) -> LsArgs | None:
    """The arguments of a plain `ls` invocation, or None to let typer parse (and explain) it."""
    if not argv or argv[0] != "ls":
        return None
    values: dict[str, object] = {}
    rest = argv[1:]
    i = 0
    while i < len(rest):
        token = rest[i]
        name, eq, inline = token.partition("=")
        if token in _FLAGS:
            values[_FLAGS[token]] = True
        elif name in _VALUE_OPTIONS and name.startswith("--") and eq:
            values[_VALUE_OPTIONS[name]] = inline
        elif token in _VALUE_OPTIONS and i + 1 < len(rest):
            values[_VALUE_OPTIONS[token]] = rest[i + 1]
            i += 1
        else:
            return None
        i += 1
    if "limit" in values:
        raw = str(values["limit"])
        if not raw.isdigit():
            return None
        values["limit"] = int(raw)
    if "project" in values:
        values["project"] = Path(str(values["project"]))
    return LsArgs(**values)  # type: ignore[arg-type]


def list_command(args: LsArgs) -> None:
    """Select the runs and print them as the table, JSON or CSV."""
    from .runs import query_runs

    if args.as_json and args.as_csv:
        raise ConfigError("--json and --csv both asked for", "choose one output format")
    records, total = query_runs(args.project, args.where, args.sort, args.limit, full=args.as_json)
    if args.as_json:
        text = json.dumps(records, indent=2, sort_keys=True) + "\n"
    elif args.as_csv:
        from .table import render_csv

        text = render_csv(records)
    else:
        from .table import render_table

        text = render_table(records, args.all_columns, total, args.where) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
