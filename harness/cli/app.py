"""The typer side every command module shares: the command and group classes, the options most commands take
(-C/--project, --json), and command groups that print their help without a sub-command.

A handler is a plain function whose signature declares its options (typer reads the annotations) and whose
docstring is its --help, printed with its line breaks kept. It returns its exit code (None is 0). Errors are not
handled here: `harness.cli.main.main` runs the command tree with typer's own error printing off and reports
every error in harness's form.

The CLI modules do without `from __future__ import annotations`: typer reads the annotations of every handler
at each start (three times each), and as strings each is an eval, which made building the command tree 11 ms
instead of 4 (bench/cli_startup.py).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from harness.cli.output import echo, json_mode

Handler = Callable[..., int | None]


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM, see app.sigterm_interrupts) inside a command. typer would turn a KeyboardInterrupt
    into a silent exit 130; this carries it to `main`, which says so."""


def _write_verbatim(text: str | None, formatter: Any) -> None:
    """Help text as written: click would re-flow each paragraph, losing the docstrings' lines and examples."""
    if not text:
        return
    formatter.write_paragraph()
    with formatter.indentation():
        for line in text.partition("\f")[0].splitlines():
            formatter.write(f"{'':>{formatter.current_indent}}{line}\n" if line.strip() else "\n")


def _parse_args(parse: Callable[[Any, list[str]], list[str]], ctx: Any, args: list[str]) -> list[str]:
    try:
        return parse(ctx, args)
    except typer.TyperException as exc:
        # click's parser raises some usage errors (an option missing its value) without the command they are
        # about; main names the command in the message
        if getattr(exc, "ctx", False) is None:
            exc.ctx = ctx  # type: ignore[attr-defined]
        raise


class Command(TyperCommand):
    """A command whose --help is its handler's docstring, line for line."""

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        _write_verbatim(self.help, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return _parse_args(super().parse_args, ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None


class Group(TyperGroup):
    """A command group whose --help keeps its text's line breaks."""

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        _write_verbatim(self.help, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return _parse_args(super().parse_args, ctx, args)


def new_app(
    help_text: str, callback: Callable[..., None] | None = None, completion: bool = False, **settings: Any
) -> typer.Typer:
    """A command group (`harness`, `harness data`, `harness env`); the first line of ``help_text`` is its line
    in its parent's list. Without a sub-command its help goes to stderr and the exit code is 2, as for any
    other usage error; a ``callback`` of its own must call :func:`help_without_command` for that."""
    app = typer.Typer(
        cls=Group,
        help=help_text.strip(),
        short_help=_summary(help_text),
        add_completion=completion,
        rich_markup_mode=None,  # plain help: rich would cost ~50 ms to import and recolour the docstrings
        pretty_exceptions_enable=False,
        **settings,
    )
    app.callback(invoke_without_command=True)(callback or help_without_command)
    return app


def help_without_command(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        echo(ctx.get_help(), err=True)
        raise typer.Exit(2)


def command(app: typer.Typer, name: str, handler: Handler) -> None:
    """Register a handler; the first line of its docstring is its line in the group's list."""
    app.command(name, cls=Command, short_help=_summary(handler.__doc__ or ""))(handler)


def _summary(doc: str) -> str:
    # click would cut it at 45 characters or so, mid-sentence
    return doc.strip().partition("\n")[0]


def sigterm_interrupts() -> None:
    """CI cancels a job with SIGTERM: treat it like Ctrl-C, so containers are removed and runs recorded."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _json_mode(value: bool) -> bool:
    json_mode(value)  # errors from here on are printed as one JSON document too
    return value


Project = Annotated[
    Path,
    typer.Option(
        "-C",
        "--project",
        metavar="DIR",
        show_default=False,
        help="Project directory (default: the current directory).",
    ),
]
AsJson = Annotated[
    bool,
    typer.Option("--json", callback=_json_mode, help="Print one machine-readable JSON result on stdout."),
]
