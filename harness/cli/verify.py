"""``harness verify``: check records against their seals, re-hash store objects and report damaged ones with what
uses them. Thin over integrity."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.data import layout_of
from harness.cli.output import ByteProgress, echo, human, print_json
from harness.cli.recovered import finish_dead_runs


def register(app: typer.Typer) -> None:
    command(app, "verify", verify)


def verify(
    run: Annotated[
        str | None, typer.Option(metavar="RUN", help="Check only the objects this run uses (id or prefix).")
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Check run records against their seals and re-hash store objects; report what no longer matches.

    Records: each run's record.json must match the seal it got when the run ended. One that was changed since, or
    cannot be read, is named (with the fields that changed and its sealed copy) and the others are checked all the
    same. A finished record with no seal (from a harness that did not seal records) is a warning.

    Objects: without --run, every object in the project store, and every object a run or a snapshot refers to (so
    a deleted one is reported too). With --run RUN: only that run's record and what it uses: its data snapshot and
    files, code archive, uncommitted changes, lock, params helper and outputs. Each damaged object is named with
    the data paths, outputs or runs that use it.

    Outputs: each run's runs/<id>/outputs is compared with its record: a file modified, replaced, removed or
    added there, or made writable, is named. Exit 0 when all is intact, 107 when a record, an object or an
    outputs directory changed, 108 when an object is missing.

    Nothing is deleted or rewritten. The stat cache forgets the files behind a damaged object, so the next
    `harness data snapshot` (or `harness run`) of the original data re-reads them and replaces the object.

      harness verify

      harness verify --run 3fa9c1 --json
    """
    from harness.runs.integrity import verify as verify_store

    finish_dead_runs(project)
    with ByteProgress("verifying") as progress:
        report = verify_store(layout_of(project), run, progress)
    if as_json:
        print_json(report.to_dict())
        return report.exit_code
    what = "the project store" if report.scope == "store" else report.scope
    records = f"{report.records} record{'' if report.records == 1 else 's'}"
    dirs = f"{report.output_dirs} run outputs director{'y' if report.output_dirs == 1 else 'ies'}"
    echo(f"checked {records}, {report.checked} objects ({human(report.bytes)}) and {dirs} of {what}")
    for c in report.damaged_records:
        heading = {"changed": "CHANGED since its run ended", "unreadable": "UNREADABLE", "seal": "SEAL DAMAGED"}
        echo(f"{heading[c.state]}: the record of run {c.run}\n  at {c.path}")
        if c.detail:
            echo(f"  {c.detail}")
        if c.sealed_object is not None:
            echo(f"  put back the record as sealed: cp {c.sealed_object} {c.path}")
    for p in report.problems:
        state = "DAMAGED (its bytes changed)" if p.problem == "changed" else "MISSING"
        echo(f"{state}: object {p.digest}\n  at {p.path}")
        for use in p.used_by or ("no run or known snapshot uses it",):
            echo(f"  used by {use}")
    for o in report.outputs:
        echo(f"OUTPUT {o.problem.upper()}: runs/{o.run}/outputs/{o.path}: {o.detail}")
    if report.unsealed:
        listed = ", ".join(report.unsealed[:10]) + (" ..." if len(report.unsealed) > 10 else "")
        echo(
            f"warning: {len(report.unsealed)} finished run(s) have no seal, so an edit to them could not be noticed "
            f"(recorded by a harness that did not seal records): {listed}",
            err=True,
        )
    failed = [f"{len(report.damaged_records)} record(s)"] if report.damaged_records else []
    failed += [f"{len(report.problems)} object(s)"] if report.problems else []
    failed += [f"{len(report.outputs)} file(s) in run outputs directories"] if report.outputs else []
    if failed:
        echo(f"error: {' and '.join(failed)} failed verification", err=True, color="red")
    if report.damaged_records:
        echo(
            "hint: nothing was changed. Each `cp` shown puts back a record as it was sealed when its run ended; a "
            "record with no sealed copy, or a damaged seal, comes back from a backup of the store",
            err=True,
        )
    if report.problems:
        echo(
            "hint: no object was changed. Snapshot the original data again (`harness data snapshot PATH`, or "
            "`harness run`) to replace a damaged data object; an output is written again when `harness rebuild "
            "RUN` reproduces it; a missing object comes back the same ways, or from a backup of the store",
            err=True,
        )
    if report.outputs:
        echo(
            "hint: nothing was changed. The record and the store objects it names are the truth: read an output "
            "from the store (`harness show RUN` lists the object of each), or `harness rebuild RUN` to reproduce "
            "them; find out who changed the directory",
            err=True,
        )
    if not failed:
        echo("all intact")
    return report.exit_code
