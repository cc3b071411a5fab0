"""``harness data ...``: snapshot paths, list, show and diff snapshots. Parse, call harness.datasets, render."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.app import AsJson, Project, command, new_app
from harness.cli.output import ByteProgress, echo, human, print_json

HELP = """Data snapshots: every byte hashed into the project's content-addressed store.

Identical files are stored once; a snapshot is named by the digest of its manifest (paths, sizes, executable
bits, symlinks, sha256). The same data gives the same digest on any machine, whatever the file order or
mtimes; `harness run` takes the same kind of snapshot of the configured data and mounts it read-only at /data.

  harness data snapshot data/train data/test

  harness data ls

  harness data diff 3fa9c1 77be02
"""
SNAP_HELP = "Snapshot digest or a unique prefix of a known one."


def register(app: typer.Typer) -> None:
    data = new_app(HELP)
    command(data, "snapshot", snapshot_cmd)
    command(data, "ls", ls_cmd)
    command(data, "show", show_cmd)
    command(data, "diff", diff_cmd)
    app.add_typer(data, name="data")


def layout_of(project: Path) -> Any:
    from harness.project.config import project_layout

    return project_layout(project)


def snapshot_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Files or directories to snapshot.")],
    name: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Name for a PATH in the snapshot (default: its basename); repeatable, in order."
        ),
    ] = None,
    rehash: Annotated[
        bool, typer.Option("--rehash", help="Read and hash every file; trust no cached hash (the cache is rewritten).")
    ] = False,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Hash paths into the project store as one snapshot and print its digest.

    Each PATH becomes a top-level entry named by its basename (or --name), as `harness run` mounts data at
    /data/<name>: snapshotting the paths of your data config gives the digest a run will record. Files are
    hashed in parallel while they are copied into the store (one read pass); a file whose size, mtime, ctime,
    inode and device are unchanged since it was hashed is not read again, so a second snapshot costs about a
    directory walk (--rehash reads everything). Symlinks must stay inside their PATH; devices, sockets and FIFOs
    are refused (exit 105). Nothing in PATH is changed. Prints the digest on stdout (files, bytes and sources on
    stderr), so SNAP=$(harness data snapshot data) works.

      harness data snapshot data/train data/test

      harness data snapshot ~/downloads/2024-06 --name raw
    """
    from harness.storage.datasets import take

    with ByteProgress("hashing") as progress:
        snap, sources, registered = take(layout_of(project), paths, tuple(name or ()), progress, rehash)
    if not registered:
        echo("warning: the snapshot is stored but could not be added to `harness data ls`", err=True)
    if as_json:
        print_json(snap.to_dict() | {"sources": sources})
        return
    echo(snap.digest)
    echo(f"  {snap.files} files, {human(snap.bytes)}", err=True)
    for root, src in sources.items():
        echo(f"  {root} <- {src}", err=True)


def ls_cmd(project: Project = Path("."), as_json: AsJson = False) -> None:
    """List the snapshots taken in this project, newest first.

    Columns: time (UTC, the newest time it was taken), digest prefix, files, bytes, origin (`data snapshot`
    or the id of the run that took it) and sources (name <- path). The full digests are in --json.
    """
    from harness.storage.datasets import iso, known

    rows = known(layout_of(project))
    if as_json:
        print_json([k.to_dict() for k in rows])
        return
    if not rows:
        echo("no snapshots yet: `harness data snapshot PATH` or `harness run` takes one")
        return
    echo(f"{'time':20}  {'snapshot':12}  {'files':>7}  {'bytes':>10}  {'origin':14}  sources")
    for k in rows:
        sources = ", ".join(f"{n} <- {p}" for n, p in k.sources.items())
        origin = k.origin if len(k.origins) == 1 else f"{k.origin} (+{len(k.origins) - 1})"
        echo(f"{iso(k.created_at):20}  {k.digest[:12]}  {k.files:>7}  {human(k.bytes):>10}  {origin:14}  {sources}")


def show_cmd(
    snap: Annotated[str, typer.Argument(metavar="SNAP", help=SNAP_HELP)],
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """List a snapshot's entries: kind, size, sha256 prefix and path.

    Kinds: `-` file, `x` executable file, `d` directory, `l` symlink (with its target). The manifest is
    re-hashed first, so a damaged one is reported (exit 107) rather than shown.
    """
    from harness.storage.datasets import load

    s = load(layout_of(project), snap)
    if as_json:
        print_json(s.to_dict() | {"entries": [e.to_dict() for e in s.entries]})
        return
    echo(f"snapshot {s.digest}: {s.files} files, {human(s.bytes)}")
    for e in s.entries:
        if e.kind == "dir":
            echo(f"d {'':>10}  {'':12}  {e.path}/")
        elif e.kind == "symlink":
            echo(f"l {'':>10}  {'':12}  {e.path} -> {e.target}")
        else:
            mark = "x" if e.executable else "-"
            echo(f"{mark} {human(e.size):>10}  {(e.sha256 or '')[:12]}  {e.path}")


def diff_cmd(
    snap_a: Annotated[str, typer.Argument(metavar="SNAP_A", help="The old snapshot (digest or unique prefix).")],
    snap_b: Annotated[str, typer.Argument(metavar="SNAP_B", help="The new snapshot.")],
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Show which paths were added, removed or changed between two snapshots.

    Exits 0 when the snapshots are identical and 1 when they differ, like diff(1), so it can gate a script:
    `harness data diff OLD NEW || echo "the data changed"`. A changed entry shows both sizes and hashes.
    """
    from harness.storage.datasets import compare

    result = compare(layout_of(project), snap_a, snap_b)
    if as_json:
        print_json(result)
    else:
        for e in result["added"]:
            echo(f"+ {e['path']}")
        for e in result["removed"]:
            echo(f"- {e['path']}")
        for c in result["changed"]:
            old, new = c["old"], c["new"]
            echo(f"~ {c['path']}  ({_describe(old)} -> {_describe(new)})")
        if result["identical"]:
            echo("identical", err=True)
    return 0 if result["identical"] else 1


def _describe(entry: dict[str, Any]) -> str:
    if entry["kind"] == "symlink":
        return f"symlink to {entry['target']}"
    if entry["kind"] == "dir":
        return "directory"
    mode = ", executable" if entry["executable"] else ""
    return f"{human(entry['size'])}, {(entry['sha256'] or '')[:12]}{mode}"
