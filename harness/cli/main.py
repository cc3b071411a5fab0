"""The command line: parse, call one core function, render. No docker or git here.

Exit codes: a run that ran returns its own exit code; harness's own errors use 101-108 (see harness/errors.py
and `harness exit-codes`); 2 is a usage error; 130 an interrupted run. The parser is typer's: each command
module registers its handlers on the app (`register`), a handler's signature declares its options and its
docstring is its --help, and it returns its exit code. Core modules are imported inside the handlers, so a
command imports only what it uses. `main` is the one place errors are reported.
"""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from harness import __version__
from harness.cli import data, env, export, gc, ls, plot, remote, sweep, ui, verify
from harness.cli.app import (
    AsJson,
    Interrupted,
    Project,
    command,
    help_without_command,
    new_app,
    sigterm_interrupts,
)
from harness.cli.output import STATE, TerminalReporter, echo, json_mode, print_json
from harness.cli.recovered import finish_dead_runs
from harness.errors import ERRORS, INTERRUPTED_EXIT_CODE, MAX_FAILED_EXIT_CODE, HarnessError, UsageError

DESCRIPTION = """Reproducible runs by construction: the committed code, an image pinned by hash, a hashed read-only
data snapshot and the params, run in a hermetic container and recorded.

Start with `harness init` in a git project, then `harness run --commit HEAD`.
`harness COMMAND --help` explains each command; `harness exit-codes` lists the exit codes.
"""
RunId = Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of one.", show_default=False)]


def build_app() -> typer.Typer:
    app = new_app(
        DESCRIPTION,
        callback=root,
        completion=True,  # --install-completion, --show-completion
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    command(app, "run", run)
    sweep.register(app)
    command(app, "show", show)
    command(app, "rebuild", rebuild)
    command(app, "diff", diff_runs)
    ls.register(app)
    command(app, "init", init)
    command(app, "lock", lock)
    command(app, "exit-codes", exit_codes)
    env.register(app)
    ui.register(app)
    plot.register(app)
    data.register(app)
    verify.register(app)
    gc.register(app)
    remote.register(app)
    export.register(app)
    return app


def build_parser() -> Any:
    """The command tree typer builds from the app (click commands): what parses argv, and what the --help
    tests walk with `harness.cli.output.subcommands`."""
    return typer.main.get_command(build_app())


def _print_version(value: bool) -> None:
    if value:
        echo(f"harness {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    STATE["verbose"] = verbose
    help_without_command(ctx)


def run(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- CMD...", show_default=False, help="Override the configured command: -- python eval.py"
        ),
    ] = None,
    commit: Annotated[str, typer.Option(metavar="REV", help="Commit to run: any rev git understands.")] = "HEAD",
    config: Annotated[
        list[str] | None, typer.Option("-c", "--config", metavar="NAME", help="Named param config; repeatable.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", metavar="K=V", help="key=value (a YAML scalar); repeatable.")
    ] = None,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Run the working tree with uncommitted changes; they are stored and the run is marked dirty. "
            "Refused when CI is set.",
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Name for this run (default: project+configs).")
    ] = None,
    rehash: Annotated[
        bool,
        typer.Option("--rehash", help="Read and hash every data file; trust no cached hash (the cache is rewritten)."),
    ] = False,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            metavar="KEY=VALUE",
            help="A resource limit for this run, over the config's [limits]; repeatable (keys: see Limits above).",
        ),
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Run the project's entry point hermetically and record everything about it.

    Code: the commit, never the working tree (unless --allow-dirty).
    Environment: the image built from the base recipe and the lock.
    Data: a hashed, read-only snapshot. Params: config defaults, then -c configs, then -p overrides.
    Exits with the run's own exit code; harness's own errors use 101-108 (see `harness exit-codes`).

    Limits (--limit KEY=VALUE, or KEY = VALUE under [limits] in the config; sizes as 512m, 8g or bytes;
    'none' for no limit; each is recorded, and a rebuild runs under the same):

      memory   RAM, swap off; past it the kernel kills the run (oom). Default: the host's memory less
               an eighth of it (at least 512 MiB, at most 4 GiB)
      cpus     CPUs' worth of time, fractions allowed (1.5). Default: all
      pids     processes and threads at once; past it, forks fail inside the run. Default: 4096
      outputs  what the run may write to /outputs; past it the run is stopped. Default: the free space on
               the store's disk when the run starts, less 5% of that disk (at least 1 GiB)
      state    what the run may write to /harness/state. Default: 64m; with mlflow in the lock
               (its store is there), the outputs limit
      log      the size of log.txt: past it, it keeps the first and last halves and says what was
               dropped. Default: 64m

    A run stopped by a limit is recorded failed with the reason (oom, outputs over limit, ...) and the
    setting to raise; `harness show RUN` says it.

    Examples:

      harness run --commit HEAD

      harness run -c linear_regression -p test_days=14

      harness run -p epochs=1 -- python train.py --smoke

      harness run --limit memory=16g --limit cpus=4

      CI=true harness run --json
    """
    from harness.runs.runner import RunRequest
    from harness.runs.runner import run as run_project

    request = RunRequest(
        project_dir=project,
        rev=commit,
        allow_dirty=allow_dirty,
        configs=tuple(config or ()),
        overrides=tuple(param or ()),
        name=name,
        command=tuple(command) if command else None,
        rehash=rehash,
        limits=tuple(limit or ()),
    )
    finish_dead_runs(project)
    sigterm_interrupts()
    result = run_project(request, TerminalReporter(as_json))
    if as_json:
        print_json(result.record)
    else:
        from harness.cli.render import run_summary

        echo(run_summary(result.record), err=True)
    return result.exit_code


def show(run_id: RunId, project: Project = Path("."), as_json: AsJson = False) -> None:
    """Show one run's record: code, environment, data, params, outputs, metrics.

    The record is checked against the seal it got when its run ended: one that was changed since, or cannot be
    read, is an error (exit 107) naming the file and what changed, and is not shown.
    """
    from harness.cli.render import show_record
    from harness.runs.history import check_record

    finish_dead_runs(project)
    checked = check_record(project, run_id)
    if as_json:
        print_json(checked.record)
    else:
        echo(show_record(checked.record or {}, checked.seal, checked.state))


def rebuild(
    run_id: RunId,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="REF",
            show_default=False,
            help="Pull what this machine lacks of the run from this OCI repository first (127.0.0.1:5000/team/bikes).",
        ),
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Re-execute a run from its record alone and prove its outputs bit-identical.

    The image, code (even if the commit is gone from the repository), data snapshot, params and command all
    come from the record and the stores; a missing or tampered input is named and nothing runs, and so is a
    record changed since its run ended (exit 107: it no longer matches its seal). Exits 0 when every output
    file, the exit code and the metrics match; 1 when they differ, listing each differing file with both hashes
    and sizes, a short diff for text outputs and the metrics side by side.

    With --remote REF, on a machine that never saw the run: first pull what the stores
    lack of it from that registry (every blob checked, as `harness pull`), then rebuild. Outside a
    project, set HARNESS_HOME to the store to use.

    Use it as a CI gate: harness rebuild RUN --json
    """
    from harness.cli.render import rebuild_report
    from harness.runs.rebuild import rebuild as rebuild_run

    finish_dead_runs(project)
    sigterm_interrupts()
    reporter = TerminalReporter(as_json)
    if remote is not None:
        from harness.cli.output import ByteProgress
        from harness.remote.travel import rebuild as rebuild_remote

        with ByteProgress("pulling") as progress:
            result = rebuild_remote(project, run_id, remote, reporter, progress)
    else:
        result = rebuild_run(project, run_id, reporter)
    if as_json:
        print_json(result.to_dict())
    else:
        echo(rebuild_report(result.to_dict()))
    return result.exit_code


def diff_runs(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="Run id or a unique prefix of one.")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="Run id or a unique prefix of one.")],
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Why two runs gave different results: what differs in their inputs and outputs.

    Inputs: code (commit, tree, uncommitted changes), environment (image, packages), data (snapshot and the
    files that changed), params, command and runtime settings. Outputs: files, exit code, metrics.
    Exits 0 when nothing differs, 1 otherwise; 107 when a record was changed since its run ended (it no longer
    matches its seal) or cannot be read.
    """
    from harness.cli.render import runs_diff
    from harness.runs.history import diff_runs as compare_runs

    finish_dead_runs(project)
    result = compare_runs(project, run_a, run_b)
    if as_json:
        print_json(result)
    else:
        echo(runs_diff(result))
    return 0 if result["identical"] else 1


def init(
    standalone: Annotated[
        bool, typer.Option("--harness-toml", help="Write harness.toml even if pyproject.toml exists.")
    ] = False,
    source: Annotated[
        Path | None,
        typer.Option("--from", metavar="FILE", help="Write the config from an MLproject or a dvc.yaml."),
    ] = None,
    stage: Annotated[
        str | None, typer.Option(metavar="NAME", help="The dvc.yaml stage to run (needed when it has several).")
    ] = None,
    project: Project = Path("."),
) -> None:
    """Write a commented starter config and ignore the store.

    Adds a tool.harness table to pyproject.toml, keeping every existing line, or writes harness.toml when
    there is no pyproject.toml (or with --harness-toml); adds .harness/ to .gitignore.

    With --from MLproject: the main entry point's command (its {placeholders} kept), its parameters' defaults
    and types as [params], and the pip packages of its python_env.yaml or conda.yaml as the requirements
    (conda packages under their PyPI names; those with no wheel are named in a note). With --from dvc.yaml: the
    stage's cmd (${x} becomes {x}), its data deps as [data], params.yaml as the defaults_file, its outs and
    metrics as outputs ([paths]) and its metrics files as the run's metrics. Neither mlflow nor dvc is needed.

    Examples:

      harness init

      harness init --from MLproject

      harness init --from dvc.yaml --stage train
    """
    from harness.project.initconfig import init_project

    root = project.resolve()
    for line in init_project(root, standalone, (root / source) if source else None, stage):
        echo(line)


def lock(project: Project = Path("."), as_json: AsJson = False) -> None:
    """Pin the requirements by hash for the image's Python and platform.

    Resolves the configured requirements (a requirements file, one already pinned with --hash, or pyproject.toml's
    [project] dependencies) with uv into the lock (wheels only) for the base's Python and platform, not the host's:
    a recipe's, or what a digest-pinned image's or a Dockerfile base's own python3 reports (the first lock pulls or
    builds and archives that image, which needs Docker once). The lock is harness.lock, or PEP 751 when named
    pylock.toml; a pylock.toml made by another tool is only checked. Says what changed against the old lock. Commit
    the lock: a run whose lock is older than its requirements is refused.
    """
    from harness.env.locking import lock_project

    outcome = lock_project(project.resolve(), TerminalReporter(as_json).progress)
    if as_json:
        print_json(outcome)
        return
    if not outcome["written"]:
        # A pylock.toml that another tool keeps: checked for the image, left as it is.
        echo(f"checked {outcome['lock']}: {len(outcome['packages'])} packages for the image, unchanged")
        return
    echo(f"wrote {outcome['lock']} ({len(outcome['packages'])} packages)")
    for line in outcome["changes"] or ["no changes"]:
        echo(f"  {line}")


def exit_codes() -> None:
    """Print the exit codes harness uses, for CI scripts."""
    echo("0-255  the run's own exit code, when the run started (harness run)")
    echo("0/1    rebuild and diff: 0 identical, 1 different")
    echo(
        f"0-{MAX_FAILED_EXIT_CODE}   sweep: how many of its runs failed (0: all succeeded; "
        f"{MAX_FAILED_EXIT_CODE}: that many or more)"
    )
    for code, error in sorted((cls.exit_code, cls) for cls in ERRORS):
        summary = (error.__doc__ or "").strip().splitlines()[0]
        echo(f"{code:<6} {summary} ({error.__name__})")
    echo(
        f"{INTERRUPTED_EXIT_CODE}    interrupted (Ctrl-C or SIGTERM); a run is recorded as interrupted (in a sweep, "
        "every run that had started)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    json_mode("--json" in tokens[: tokens.index("--") if "--" in tokens else None])  # for usage errors too
    try:
        # typer prints nothing itself (standalone_mode=False): its usage errors come here as exceptions, --help
        # and --version as their exit code, a handler's exit code as the value it returned.
        code = build_parser().main(tokens, prog_name="harness", standalone_mode=False)
        return int(code or 0)
    except typer.TyperException as exc:  # click's UsageError and its kin: unknown option, missing argument, ...
        return _report(_usage_error(exc))
    except HarnessError as exc:
        return _report(exc)
    except (Interrupted, KeyboardInterrupt):
        echo("interrupted", err=True)
        return INTERRUPTED_EXIT_CODE


def _usage_error(exc: typer.TyperException) -> UsageError:
    """click's message in harness's form: `harness data snapshot: no such option: --bogus`, and where to look."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "harness"
    message = exc.format_message().rstrip(".")
    message = message[:1].lower() + message[1:]
    return UsageError(f"{where}: {message}", f"see `{where} --help`")


def _report(exc: HarnessError) -> int:
    if STATE["verbose"]:
        import traceback

        traceback.print_exc()
    if STATE["json"]:
        print_json(exc.to_dict())
    echo(f"error: {exc.message}", err=True, color="red")
    if exc.hint:
        echo(f"hint: {exc.hint}", err=True)
    return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
