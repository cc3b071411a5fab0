"""`harness ui`: serve the runs table, run pages and comparisons on 127.0.0.1 until Ctrl-C."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import Project, command
from harness.cli.output import echo


def register(app: typer.Typer) -> None:
    command(app, "ui", ui)


def ui(
    port: Annotated[int, typer.Option(metavar="PORT", help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser; just print the URL.")] = False,
    project: Project = Path("."),
) -> None:
    """Browse runs in a local web page: the runs table, sortable and filterable, a page per run, comparisons.

    Served on 127.0.0.1 only; it reads the records and changes nothing.
    Click a column header to sort; filter with the expressions of `harness ls --where`.
    Tick two runs and press Compare: side by side, the differences highlighted.
    Ctrl-C stops the server.

    Examples:

      harness ui

      harness ui --port 8765 --no-open -C ~/projects/bikes
    """
    from harness.runs.history import project_records
    from harness.ui.server import make_server

    server = make_server(project_records(project), port)
    echo(f"harness ui: {server.url}  (Ctrl-C stops it)")
    if not no_open and _has_display():
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("harness ui: stopped", err=True)
    finally:
        server.server_close()


def _has_display() -> bool:
    # Without a display, webbrowser falls back to text browsers (lynx, w3m) that would take over the terminal.
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
