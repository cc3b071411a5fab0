"""The command line: parse, call one core function, render. No docker or git here.

Exit codes: a run that ran returns its own exit code; harness's own errors use 100-108 (see harness/errors.py
and `harness help-exit-codes`); 2 is a usage error; 130 an interrupted run.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from .cli_data import data_app
from .cli_env import env_app
from .cli_ls import list_command, parse_plain_ls
from .cli_ui import ui as ui_command
from .cli_verify import verify as verify_command
from .cliout import STATE, JsonOpt, ProjectOpt, TerminalReporter, json_mode, print_json
from .errors import EXIT_CODES, INTERRUPTED_EXIT_CODE, HarnessError

app = typer.Typer(
    name="harness",
    help=(
        "Reproducible runs by construction: the committed code, an image pinned by hash, a hashed read-only "
        "data snapshot and the params, run in a hermetic container and recorded.\n\n"
        "Start with `harness init` in a git project, then `harness run --commit HEAD`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks for errors.")] = False,
) -> None:
    STATE["verbose"] = verbose


@app.command()
def run(
    command: Annotated[
        list[str] | None, typer.Argument(help="Override the configured command (after --), e.g. -- python eval.py")
    ] = None,
    commit: Annotated[str, typer.Option("--commit", help="Commit to run: any rev git understands.")] = "HEAD",
    config: Annotated[
        list[str] | None, typer.Option("--config", "-c", help="Named param config from the params file; repeatable.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Override a param: key=value (YAML scalar); repeatable.")
    ] = None,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Run the working tree with uncommitted changes; the changes are stored and the run marked dirty. "
            "Refused when CI is set.",
        ),
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name for this run (default: project+configs).")] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run the project's entry point hermetically and record everything about it.

    Code: the commit, never the working tree (unless --allow-dirty).
    Environment: the image built from the base recipe and the lock.
    Data: a hashed, read-only snapshot. Params: config defaults, then -c configs, then -p overrides.
    Exits with the run's own exit code; harness's own errors use 101-108 (see `harness exit-codes`).

    Examples:

      harness run --commit HEAD

      harness run -c linear_regression -p test_days=14

      CI=true harness run --json
    """
    from .runner import RunRequest
    from .runner import run as run_project

    json_mode(as_json)
    request = RunRequest(
        project_dir=project,
        rev=commit,
        allow_dirty=allow_dirty,
        configs=tuple(config or ()),
        overrides=tuple(param or ()),
        name=name,
        command=tuple(command) if command else None,
    )
    _sigterm_interrupts()
    result = run_project(request, TerminalReporter(as_json))
    record = result.record
    if as_json:
        print_json(record)
    else:
        from .render import run_summary

        typer.echo(run_summary(record), err=True)
    raise typer.Exit(result.exit_code)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of one.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show one run's record: code, environment, data, params, outputs, metrics."""
    from .render import show_record
    from .runs import read_record

    json_mode(as_json)
    record = read_record(project, run_id)
    if as_json:
        print_json(record)
    else:
        typer.echo(show_record(record))


@app.command()
def rebuild(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of one.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Re-execute a run from its record alone and prove its outputs bit-identical.

    The image, code (even if the commit is gone from the repository), data snapshot, params and command all
    come from the record and the stores; a missing or tampered input is named and nothing runs. Exits 0 when
    every output file, the exit code and the metrics match; 1 when they differ, listing each differing file
    with both hashes and sizes, a short diff for text outputs and the metrics side by side.

    Use it as a CI gate: harness rebuild RUN --json
    """
    from .rebuild import rebuild as rebuild_run
    from .render import rebuild_report

    json_mode(as_json)
    _sigterm_interrupts()
    result = rebuild_run(project, run_id, TerminalReporter(as_json))
    if as_json:
        print_json(result.to_dict())
    else:
        typer.echo(rebuild_report(result.to_dict()), err=False)
    raise typer.Exit(result.exit_code)


@app.command("diff")
def diff_runs(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="The first run (id or unique prefix).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The second run.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Why two runs gave different results: what differs in their inputs and outputs.

    Inputs: code (commit, tree, uncommitted changes), environment (image, packages), data (snapshot and the
    files that changed), params, command and runtime settings. Outputs: files, exit code, metrics.
    Exits 0 when nothing differs, 1 otherwise.
    """
    from .render import runs_diff
    from .runs import diff_runs as compare_runs

    json_mode(as_json)
    result = compare_runs(project, run_a, run_b)
    if as_json:
        print_json(result)
    else:
        typer.echo(runs_diff(result))
    raise typer.Exit(0 if result["identical"] else 1)


@app.command("ls")
def list_runs(
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="Only runs for which this holds, e.g. 'metrics.rmse_test < 40 and params.model == \"linear\"'.",
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option("--sort", "-s", help="Order by a field, e.g. metrics.rmse_test; a leading - sorts descending."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Show at most N runs.", min=0)] = None,
    all_columns: Annotated[
        bool, typer.Option("--all-columns", "-a", help="Show every param and metric, not only those that vary.")
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout: every param and metric a column.")] = False,
) -> None:
    """List runs as a table: Meta | Provenance | Params | Metrics, newest first.

    Only params and metrics that differ between the listed runs get a column (--all-columns shows all).
    FAILED and INTERRUPTED runs are in capitals; a run of uncommitted code says DIRTY next to its commit.

    --where: comparisons (== != < <= > >= in, not in) joined by and/or/not, with parentheses.
    Names: params.X, metrics.X, status, name, id, dirty, commit, code.branch, ... (metrics["f1-score"]).
    Strings in double quotes; true, false, null. A run without the field never matches.

    Examples:

      harness ls --limit 20

      harness ls --where 'metrics.rmse_test < 40 and params.model == "linear"'

      harness ls --sort metrics.rmse_test --limit 5     (best first; -metrics.rmse_test: worst first)

      harness ls --where 'status == "failed" or dirty' --sort=-started_at

      harness ls --csv > runs.csv
    """
    from .cli_ls import LsArgs

    json_mode(as_json)
    list_command(LsArgs(where, sort, limit, all_columns, project, as_json, as_csv))


@app.command()
def init(
    project: ProjectOpt = Path("."),
    standalone: Annotated[
        bool, typer.Option("--harness-toml", help="Write harness.toml even if pyproject.toml exists.")
    ] = False,
) -> None:
    """Write a commented starter config and ignore the store.

    Adds a tool.harness table to pyproject.toml, keeping every existing line, or writes harness.toml when
    there is no pyproject.toml (or with --harness-toml); adds .harness/ to .gitignore.
    """
    from .initconfig import init_project

    for line in init_project(project.resolve(), standalone):
        typer.echo(line)


@app.command()
def lock(
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Pin the requirements by hash for the image's Python and platform.

    Resolves the configured requirements file into the lock (wheels only, for the base recipe's Python and
    platform, not the host's) and says what changed against the old lock. Commit the lock: a run whose lock
    is older than its requirements is refused.
    """
    from .locking import lock_project

    json_mode(as_json)
    outcome = lock_project(project.resolve())
    if as_json:
        print_json(outcome)
        return
    typer.echo(f"wrote {outcome['lock']} ({len(outcome['packages'])} packages)")
    for line in outcome["changes"] or ["no changes"]:
        typer.echo(f"  {line}")


@app.command("exit-codes")
def exit_codes() -> None:
    """Print the exit codes harness uses, for CI scripts."""
    typer.echo("0-255  the run's own exit code, when the run started (harness run)")
    typer.echo("0/1    rebuild and diff: 0 identical, 1 different")
    typer.echo("2      usage error (bad option or argument)")
    for name, code in sorted(EXIT_CODES.items(), key=lambda kv: kv[1]):
        typer.echo(f"{code}    {name}")
    typer.echo(f"{INTERRUPTED_EXIT_CODE}    interrupted (Ctrl-C); the run is recorded as interrupted")


# Sub-command groups live in their own modules (cli_<group>.py, each a typer.Typer) and are added here:
# app.add_typer(<group>_app, name="<group>")
app.add_typer(env_app, name="env")
app.command("ui")(ui_command)
app.add_typer(data_app, name="data")
app.command("verify")(verify_command)


def _sigterm_interrupts() -> None:
    """CI cancels a job with SIGTERM: treat it like Ctrl-C, so the container is removed and the run recorded."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    try:
        # A plain `harness ls` skips typer's parameter conversion, which imports pydantic (see cli_ls.py).
        plain = parse_plain_ls(sys.argv[1:] if argv is None else argv)
        if plain is not None:
            json_mode(plain.as_json)
            list_command(plain)
            return 0
        result = app(args=argv, standalone_mode=False)
        return int(result or 0)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        return INTERRUPTED_EXIT_CODE
    except HarnessError as exc:
        if STATE["verbose"]:
            traceback.print_exc()
        if STATE["json"]:
            print_json(exc.to_dict())
        typer.secho(f"error: {exc.message}", err=True, fg=typer.colors.RED)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return INTERRUPTED_EXIT_CODE
    except Exception as exc:
        # Usage errors (bad option, missing argument) come from typer's click layer, whichever click that is.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return int(exc.exit_code)  # type: ignore[attr-defined]
        raise


if __name__ == "__main__":  # pragma: no cover
    # `python -m harness.cli` runs this file as __main__; delegate to the imported harness.cli so that the
    # sub-command modules, which import harness.cli, share its state (--json, -v).
    from harness.cli import main as _main

    sys.exit(_main())
