"""``harness export`` and ``harness import``: runs as one OCI layout file for machines without a registry
(harness.remote.travel), or one run in a standard provenance format (harness.provenance.export). Parse, call,
render."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.output import ByteProgress, TerminalReporter, echo, human, print_json
from harness.cli.recovered import finish_dead_runs
from harness.errors import UsageError


class Format(StrEnum):
    """The formats `-o` can be written in: oci by harness/remote/, the others each by a module under
    harness/provenance/."""

    oci = "oci"
    ro_crate = "ro-crate"
    prov = "prov"


def register(app: typer.Typer) -> None:
    command(app, "export", export)
    command(app, "import", import_runs)


def export(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN...", help="Run ids or unique prefixes (one for ro-crate and prov).", show_default=False
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="Where to write: a file (oci, prov) or a new directory (ro-crate); never an existing one.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="oci: the runs for another machine (default); ro-crate: Workflow Run RO-Crate directory; "
            "prov: W3C PROV-JSON file.",
        ),
    ] = Format.oci,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Write runs to one file for a machine without a registry, or one run's provenance in a standard format.

    oci       (the default) a file: an OCI image layout in an uncompressed tar, holding exactly what
              `harness push` sends: each run's sealed record, code, data, outputs and environment image,
              small files packed. `harness import FILE` on the other machine, then `harness rebuild RUN`,
              works offline. The file appears whole or not at all.
    ro-crate  a directory: an RO-Crate 1.3 conforming to the Process Run Crate profile 0.6 of the
              Workflow Run RO-Crate family (https://w3id.org/ro/wfrun/process/0.6). The run is a
              CreateAction; the code (commit, tree), the image (its id, a sha256), the data snapshot, the
              params (PropertyValues, and params.json) and the metrics are entities; the output files are
              copied into outputs/ with their sha256, and record.json is the record as sealed.
    prov      a file: W3C PROV-JSON. The run is an activity associated with harness and the code (its
              plan); it used the image, the data snapshot and the params and generated the outputs.

    The record is checked against its seal first. A run still running cannot be exported. ro-crate and prov
    need the provenance extra: pip install 'harness[provenance]'.

      harness export 3fa9c1 -o run-3fa9c1.tar

      harness export 3fa9c1 --format ro-crate -o run-3fa9c1.crate

      harness export 3fa9c1 --format prov -o run-3fa9c1.prov.json
    """
    finish_dead_runs(project)
    if fmt is Format.oci:
        from harness.remote.travel import export as export_runs

        with ByteProgress("exporting") as progress:
            result = export_runs(project, runs, output, TerminalReporter(as_json).progress, progress)
        if as_json:
            print_json(result)
        else:
            echo(f"wrote {result['file']} ({human(result['bytes'])}): {', '.join(r['run'] for r in result['runs'])}")
        return
    if len(runs) != 1:
        raise UsageError(
            f"harness export: --format {fmt.value} takes one run, not {len(runs)}", "export them one by one"
        )
    from harness.provenance.export import export_run

    done = export_run(project, runs[0], fmt.value, output)
    if as_json:
        print_json(done.to_dict())
    else:
        echo(f"wrote run {done.run} as {done.format} to {done.path} ({done.files} files)")


def import_runs(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A file `harness export` wrote (--format oci).")],
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Read runs from a file `harness export` wrote into this machine's stores.

    Every blob is checked against its digest before it is used, as for `harness pull`; then
    `harness rebuild RUN` works with no registry and no network. Outside a project, set HARNESS_HOME
    to the store to import into.

      harness import run.tar && harness rebuild 3fa9c1
    """
    from harness.remote.travel import import_file

    finish_dead_runs(project)
    with ByteProgress("importing") as progress:
        results = import_file(project, file, TerminalReporter(as_json).progress, progress)
    if as_json:
        print_json({"runs": [r.to_dict() for r in results]})
        return
    for r in results:
        echo(f"run {r.run}: " + ("already here" if r.already else f"imported ({human(r.bytes_fetched)})"))
