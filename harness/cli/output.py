"""What every CLI module prints with: plain, coloured and JSON output, progress on the terminal, and the
--json/-v state that `harness.cli.main` reads when it reports an error. No core logic and no typer here (the
typer side is harness.cli.app).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

STATE: dict[str, Any] = {"json": False, "verbose": False}

COLORS = {"red": "31", "cyan": "36", "gray": "90"}


def subcommands(command: Any) -> dict[str, Any]:
    """The commands a command group dispatches to, by name (none for a plain command), for --help tests and
    docs; ``command`` is a node of the command tree `harness.cli.main.build_parser` returns."""
    return dict(getattr(command, "commands", None) or {})


def json_mode(on: bool) -> None:
    """Errors are then printed as one JSON document too (harness.cli.main reads STATE)."""
    STATE["json"] = on


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def echo(text: str = "", err: bool = False, color: str | None = None) -> None:
    """One line to stdout (or stderr), coloured only on a terminal and only without NO_COLOR."""
    stream: IO[str] = sys.stderr if err else sys.stdout
    if color and stream.isatty() and not os.environ.get("NO_COLOR"):
        text = f"\x1b[{COLORS[color]}m{text}\x1b[0m"
    stream.write(text + "\n")
    stream.flush()


class TerminalReporter:
    """Progress to stderr; the container's output to the terminal as it arrives (to stderr under --json)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def progress(self, message: str) -> None:
        echo(f"harness: {message}", err=True, color="gray")

    def output(self, stream: str, chunk: bytes) -> None:
        target = sys.stderr if (self.as_json or stream == "stderr") else sys.stdout
        target.buffer.write(chunk)
        target.flush()

    def started(self, run_id: str) -> None:
        echo(f"harness: run {run_id} started", err=True, color="cyan")


class ByteProgress:
    """A progress bar on stderr for work that has taken more than a second; silent for quick work.

    Called as (done_bytes, total_bytes) from the calling thread. On a terminal it redraws one line; elsewhere
    (CI logs) it prints a line every few seconds."""

    def __init__(self, label: str, delay: float = 1.0) -> None:
        self.label, self.delay = label, delay
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.start < self.delay or (now - self.last < (0.1 if self.tty else 5.0) and done < total):
            return
        if not self.shown and done >= total:
            return  # finished before the first draw
        self.last, self.shown = now, True
        frac = done / total if total else 1.0
        rate = done / max(now - self.start, 1e-9)
        text = f"{self.label} {human(done)} / {human(total)} ({frac:4.0%}, {human(rate)}/s)"
        if self.tty:
            width = 24
            bar = "#" * int(frac * width)
            sys.stderr.write(f"\r{text} [{bar:<{width}}]\x1b[K")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover
