"""``harness push`` and ``harness pull``: runs to and from an OCI registry. Parse, call harness.remote.travel,
render."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import AsJson, Project, command
from harness.cli.output import ByteProgress, TerminalReporter, echo, human, print_json
from harness.cli.recovered import finish_dead_runs

Remote = Annotated[
    str | None,
    typer.Option(
        "--remote",
        metavar="REF",
        show_default=False,
        help="OCI repository, e.g. 127.0.0.1:5000/team/bikes (default: HARNESS_REMOTE, else `remote` in the config).",
    ),
]


def register(app: typer.Typer) -> None:
    command(app, "push", push)
    command(app, "pull", pull)


def push(
    runs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids or unique prefixes.")],
    remote: Remote = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Send runs to an OCI registry, so that any machine can pull and rebuild them.

    Each run goes up with everything a rebuild reads: its sealed record, code archive, uncommitted changes,
    lock, params helper, data snapshot and every data file, and its outputs; small files packed into a few
    blobs. Its environment image goes up as an ordinary image (tag env-<key>), pullable by anyone with
    `docker pull REF@<manifest digest>`. The registry is asked first and nothing it holds is sent again:
    pushing a run twice costs a request or two.

    Logins are docker's (`docker login HOST`: config.json and credential helpers). TLS is verified against
    the system's CAs, or /etc/docker/certs.d/HOST:PORT/ca.crt; a registry on 127.0.0.1 without TLS is
    spoken to over http, as docker does.

      harness push 3fa9c1 --remote 127.0.0.1:5000/team/bikes

      HARNESS_REMOTE=registry.example/team/bikes harness push 3fa9c1 7bd20e --json
    """
    from harness.remote.travel import push as push_runs

    finish_dead_runs(project)
    with ByteProgress("pushing") as progress:
        results = push_runs(project, runs, remote, TerminalReporter(as_json).progress, progress)
    if as_json:
        print_json({"runs": [r.to_dict() for r in results]})
        return
    for r in results:
        if r.already:
            echo(f"run {r.run}: already on the remote, nothing sent ({r.seconds:.2f} s)")
        else:
            echo(
                f"run {r.run}: sent {r.sent} of {r.blobs} blobs, {human(r.bytes_sent)} ({r.seconds:.1f} s); "
                f"manifest sha256:{r.manifest}"
            )
        if r.image:
            echo(f"  image {r.image}")


def pull(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id, or a unique prefix among the remote's runs.")],
    remote: Remote = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Fetch a run from an OCI registry into this machine's stores, ready for `harness rebuild RUN`.

    Only what the stores lack is fetched, and every blob is checked against its digest before it is used:
    one that was altered or cut short is named and refused (exit 107), and nothing of it is stored. The
    record is written last, once every object it names is here. An interrupted pull resumes where it
    stopped when run again. Outside a project, set HARNESS_HOME to the store to pull into.

      harness pull 3fa9c1 --remote 127.0.0.1:5000/team/bikes

      HARNESS_HOME=/tmp/runs harness pull 3fa9c1 --remote registry.example/team/bikes --json
    """
    from harness.remote.travel import pull as pull_run

    finish_dead_runs(project)
    with ByteProgress("pulling") as progress:
        result = pull_run(project, run, remote, TerminalReporter(as_json).progress, progress)
    if as_json:
        print_json(result.to_dict())
        return
    if result.already:
        echo(f"run {result.run}: already here, nothing fetched")
    else:
        echo(
            f"run {result.run}: fetched {result.fetched} blobs, {human(result.bytes_fetched)} "
            f"({result.seconds:.1f} s); every object checked"
        )
