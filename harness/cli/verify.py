"""``harness verify``: re-hash store objects and report damaged ones with what uses them. Thin over integrity."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.data import layout_of
from harness.cli.output import ByteProgress, echo, human, print_json


def register(app: typer.Typer) -> None:
    command(app, "verify", verify)


def verify(
    run: Annotated[
        str | None, typer.Option(metavar="RUN", help="Check only the objects this run uses (id or prefix).")
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Re-hash store objects and report any whose bytes no longer match their name.

    Without --run: every object in the project store, and every object a run or a snapshot refers to (so a
    deleted one is reported too). With --run RUN: only what that run uses: its data snapshot and files, code
    archive, uncommitted changes, lock, params helper and outputs. Each damaged object is named with the data
    paths, outputs or runs that use it. Exit 0 when all is intact, 107 when an object changed, 108 when one is
    missing.

    Nothing is deleted or rewritten. The stat cache forgets the files behind a damaged object, so the next
    `harness data snapshot` (or `harness run`) of the original data re-reads them and replaces the object.

      harness verify

      harness verify --run 3fa9c1 --json
    """
    from harness.runs.integrity import verify as verify_store

    progress = ByteProgress("verifying")
    try:
        report = verify_store(layout_of(project), run, progress)
    finally:
        progress.close()
    if as_json:
        print_json(report.to_dict())
        return report.exit_code
    what = "the project store" if report.scope == "store" else report.scope
    echo(f"checked {report.checked} objects ({human(report.bytes)}) of {what}")
    for p in report.problems:
        state = "DAMAGED (its bytes changed)" if p.problem == "changed" else "MISSING"
        echo(f"{state}: object {p.digest}\n  at {p.path}")
        for use in p.used_by or ("no run or known snapshot uses it",):
            echo(f"  used by {use}")
    if report.problems:
        echo(f"error: {len(report.problems)} object(s) failed verification", err=True, color="red")
        echo(
            "hint: no object was changed. Snapshot the original data again (`harness data snapshot PATH`, or "
            "`harness run`) to replace a damaged data object; an output is written again when `harness rebuild "
            "RUN` reproduces it; a missing object comes back the same ways, or from a backup of the store",
            err=True,
        )
    else:
        echo("all intact")
    return report.exit_code
