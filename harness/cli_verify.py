"""``harness verify``: re-hash store objects and report damaged ones with what uses them. Thin over integrity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_data import layout_of
from .cliout import ByteProgress, JsonOpt, ProjectOpt, human, json_mode, print_json


def verify(
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN", help="Check only the objects this run uses (id or prefix).")
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Re-hash store objects and report any whose bytes no longer match their name.

    Without --run: every object in the project store, and every object a run or a snapshot refers to (so a
    deleted one is reported too). With --run RUN: only what that run uses: its data snapshot and files, code
    archive, uncommitted changes, lock and outputs. Each damaged object is named with the data paths, outputs
    or runs that use it. Exit 0 when all is intact, 107 when an object changed, 108 when one is missing.

    Nothing is deleted or rewritten. The stat cache forgets the files behind a damaged object, so the next
    `harness data snapshot` (or `harness run`) of the original data re-reads them and replaces the object.

      harness verify

      harness verify --run 3fa9c1 --json
    """
    from .integrity import verify as verify_store

    json_mode(as_json)
    progress = ByteProgress("verifying")
    try:
        report = verify_store(layout_of(project), run, progress)
    finally:
        progress.close()
    if as_json:
        print_json(report.to_dict())
        raise typer.Exit(report.exit_code)
    what = "the project store" if report.scope == "store" else report.scope
    typer.echo(f"checked {report.checked} objects ({human(report.bytes)}) of {what}")
    for p in report.problems:
        state = "DAMAGED (its bytes changed)" if p.problem == "changed" else "MISSING"
        typer.echo(f"{state}: object {p.digest}\n  at {p.path}")
        for use in p.used_by or ("no run or known snapshot uses it",):
            typer.echo(f"  used by {use}")
    if report.problems:
        typer.secho(f"error: {len(report.problems)} object(s) failed verification", err=True, fg=typer.colors.RED)
        typer.echo(
            "hint: no object was changed. Snapshot the original data again (`harness data snapshot PATH`, or "
            "`harness run`) to replace a damaged data object; an output is written again when `harness rebuild "
            "RUN` reproduces it; a missing object comes back the same ways, or from a backup of the store",
            err=True,
        )
    else:
        typer.echo("all intact")
    raise typer.Exit(report.exit_code)
