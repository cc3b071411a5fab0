"""`harness ui`: serve the runs table, run pages and comparisons on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from harness.cli.output import command, echo, project_option


def register(sub: Any) -> None:
    parser = command(sub, "ui", ui)
    parser.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1; 0 picks a free one.")
    parser.add_argument("--no-open", action="store_true", help="Do not open a browser; just print the URL.")
    project_option(parser)


def ui(args: argparse.Namespace) -> None:
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

    server = make_server(project_records(args.project), args.port)
    echo(f"harness ui: {server.url}  (Ctrl-C stops it)")
    if not args.no_open and _has_display():
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
