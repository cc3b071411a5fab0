"""`harness ui`: serve the runs table, run pages and comparisons on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cliout import ProjectOpt


def ui(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser; just print the URL.")] = False,
    project: ProjectOpt = Path("."),
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
    from .runs import project_records
    from .ui import make_server

    server = make_server(project_records(project), port)
    typer.echo(f"harness ui: {server.url}  (Ctrl-C stops it)")
    if not no_open and _has_display():
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("harness ui: stopped", err=True)
    finally:
        server.server_close()


def _has_display() -> bool:
    # Without a display, webbrowser falls back to text browsers (lynx, w3m) that would take over the terminal.
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
