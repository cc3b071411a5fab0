"""Pieces every CLI module shares: the argument parser and its common options, the --json/-v state that
`harness.cli.main` reads when it reports an error, output (plain, coloured, JSON) and progress on the terminal.
No core logic here.

The parser is the standard library's argparse: a `harness` command must start in tens of milliseconds, because it
runs before every experiment and around every data snapshot. typer 0.29 imports pydantic and rich before a
command starts (0.1-0.2 s, measured with `python -X importtime`), more than a whole `harness ls`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from harness.errors import UsageError

STATE: dict[str, Any] = {"json": False, "verbose": False}

Handler = Callable[[argparse.Namespace], int | None]

COLORS = {"red": "31", "cyan": "36", "gray": "90"}


class Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is raised as a :class:`UsageError` (exit 2) for `main` to report in
    harness's own form (error, hint, JSON under --json), and help keeps the docstrings' line breaks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def group(sub: Any, name: str, text: str) -> Any:
    """A command group (`harness data`, `harness env`): returns the subparsers to add its commands to.
    Without a sub-command, the group's help is printed and the exit code is 2."""
    parser = sub.add_parser(name, help=text.strip().splitlines()[0], description=text.strip())
    parser.set_defaults(handler=lambda args: _help_and_fail(parser))  # no sub-command given
    return parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)


def command(sub: Any, name: str, handler: Handler) -> Parser:
    """A command whose --help is the handler's docstring; the first line is its summary in the group's list."""
    doc = _cleandoc(handler.__doc__ or "")
    parser: Parser = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
    parser.set_defaults(handler=handler, prog=parser.prog)
    return parser


def project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-C",
        "--project",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="Project directory (default: the current directory).",
    )


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="Print one machine-readable JSON result on stdout."
    )


def with_common(parser: Parser) -> Parser:
    """The options most commands share: --project/-C and --json."""
    project_option(parser)
    json_option(parser)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands a parser (or group) dispatches to, by name, for --help tests and docs."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def dash_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Let an option's value start with '-' (`--sort -metrics.rmse`), as argparse alone would refuse it.

    Every harness option that takes a value takes exactly one, so `--opt VALUE` becomes `--opt=VALUE` (and
    `-s VALUE` becomes `-sVALUE`) whenever VALUE starts with '-'. Nothing after `--` is touched."""
    takes_value = _value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + list(argv[i:])
        following = argv[i + 1] if i + 1 < len(argv) else None
        if token in takes_value and following is not None and following.startswith("-") and following != "--":
            out.append(f"{token}={following}" if token.startswith("--") else token + following)
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _value_options(child)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def _cleandoc(doc: str) -> str:
    """inspect.cleandoc without importing inspect (5 ms of every start): drop the common indent of the lines
    after the first, and blank lines at either end."""
    first, _, rest = doc.partition("\n")
    lines = rest.splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join([first.strip(), *(line[indent:].rstrip() for line in lines)]).strip("\n")


def _help_and_fail(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


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


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover
