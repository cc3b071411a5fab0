"""``harness gc``: remove what nothing in the project store references. Thin over harness.runs.gc."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.output import echo, human, print_json
from harness.cli.recovered import finish_dead_runs

LISTED = 20  # items of one kind listed by name; the rest are counted
WHAT = {
    "container": ("container", "containers", "of runs that are over"),
    "work": ("work directory", "work directories", "of runs that are over"),
    "run": ("run directory", "run directories", "holding no record"),
    "temp": ("temp file", "temp files", "left by harness processes that died"),
    "object": ("object", "objects", "referenced by nothing"),
    "image": ("environment image", "environment images", "no record of this store or container uses"),
}


def register(app: typer.Typer) -> None:
    command(app, "gc", gc)


def gc(
    dry_run: Annotated[
        bool, typer.Option("-n", "--dry-run", help="List what would be removed and the space it would free.")
    ] = False,
    images: Annotated[
        bool,
        typer.Option(
            "--images",
            help="Also remove environment images (harness-env:*) that no run of this store uses, no container uses "
            "and the cache can load back. Other projects on this machine may use them.",
        ),
    ] = False,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Remove what nothing in the project store references; never what a live run uses.

    First, as every command does, runs whose harness died are recorded as interrupted. Then gc removes:
    containers of this store's runs that are over (stopped ones, or any a dead harness left), work directories
    and record-less run directories left by a killed harness, temp files, and objects that no record, seal, data
    snapshot or code archive pointer names (what a run killed before its record named them stored, say).
    With --images, also environment images that no run of this store uses and no container uses, and that the
    cache can load back: they are shared by all projects on this machine, and another project's next run loads
    its image back from the cache (a few seconds).

    A live run is never touched: while a run, rebuild or data snapshot is in progress in this store, objects and
    temp files are left alone (gc says so); containers and work directories of live runs always are. Outputs
    directories and logs are never removed. Nothing is removed with --dry-run.

      harness gc --dry-run

      harness gc --images --json
    """
    from harness.project.config import project_layout
    from harness.runs.gc import collect

    finish_dead_runs(project)
    report = collect(project_layout(project), dry_run=dry_run, images=images)
    if as_json:
        print_json(report.to_dict())
        return
    echo(_text(report))


def _text(report: Any) -> str:
    lines = []
    verb = "would remove" if report.dry_run else "removed"
    for kind, (one, many, why) in WHAT.items():
        items = report.of(kind)
        if not items:
            continue
        size = sum(i.size or 0 for i in items)
        sized = f", {'up to ' if kind == 'image' else ''}{human(size)}" if kind != "container" else ""
        lines.append(f"{verb} {len(items)} {one if len(items) == 1 else many} {why}{sized}")
        if kind != "object" and kind != "temp":
            detailed = kind in ("container", "image")
            lines += [f"  {i.name}" + (f"  ({i.detail})" if detailed else "") for i in items[:LISTED]]
            if len(items) > LISTED:
                lines.append(f"  ... and {len(items) - LISTED} more (--json lists them all)")
    if not report.items:
        lines.append("nothing to remove")
    else:
        lines.append(f"{'would free' if report.dry_run else 'freed'} {human(report.bytes)} in the store")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"could not remove {f}" for f in report.failed]
    return "\n".join(lines)
