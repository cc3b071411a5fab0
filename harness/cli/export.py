"""``harness export``: one run in a standard provenance format. Thin over harness.provenance.export."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.output import echo, print_json
from harness.cli.recovered import finish_dead_runs


class Format(StrEnum):
    """The formats `-o` can be written in; each is written by its own module under harness/provenance/."""

    ro_crate = "ro-crate"
    prov = "prov"


def register(app: typer.Typer) -> None:
    command(app, "export", export)


def export(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of one.", show_default=False)],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="Where to write: a new directory (ro-crate) or a new file (prov); never an existing one.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        Format,
        typer.Option("--format", "-f", help="ro-crate: Workflow Run RO-Crate directory; prov: W3C PROV-JSON file."),
    ] = Format.ro_crate,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Write one run's provenance in a standard format, for tools and archives that read it.

    ro-crate  a directory: an RO-Crate 1.3 conforming to the Process Run Crate profile 0.6 of the
              Workflow Run RO-Crate family (https://w3id.org/ro/wfrun/process/0.6). The run is a
              CreateAction; the code (commit, tree), the image (its id, a sha256), the data snapshot, the
              params (PropertyValues, and params.json) and the metrics are entities; the output files are
              copied into outputs/ with their sha256, and record.json is the record as sealed.
    prov      a file: W3C PROV-JSON. The run is an activity associated with harness and the code (its
              plan); it used the image, the data snapshot and the params and generated the outputs.

    The record is checked against its seal first, and every output's bytes against its sha256. A run still
    running cannot be exported. Needs the provenance extra: pip install 'harness[provenance]'.

      harness export 3fa9c1 -o run-3fa9c1.crate

      harness export 3fa9c1 --format prov -o run-3fa9c1.prov.json
    """
    from harness.provenance.export import export_run

    finish_dead_runs(project)
    result = export_run(project, run_id, fmt.value, output)
    if as_json:
        print_json(result.to_dict())
    else:
        echo(f"wrote run {result.run} as {result.format} to {result.path} ({result.files} files)")
