"""The command line: parse, call one core function, render. No docker or git here.

Exit codes: a run that ran returns its own exit code; harness's own errors use 101-108 (see harness/errors.py
and `harness exit-codes`); 2 is a usage error; 130 an interrupted run. Each command module registers its
commands on the parser (cli_<group>.py); a handler gets the parsed arguments and returns its exit code.
Core modules are imported inside the handlers, so a command imports only what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.cli import data, env, ls, ui, verify
from harness.cli.output import (
    STATE,
    Parser,
    TerminalReporter,
    command,
    dash_values,
    echo,
    json_mode,
    print_json,
    project_option,
    with_common,
)
from harness.errors import ERRORS, INTERRUPTED_EXIT_CODE, HarnessError, UsageError

DESCRIPTION = """Reproducible runs by construction: the committed code, an image pinned by hash, a hashed read-only
data snapshot and the params, run in a hermetic container and recorded.

Start with `harness init` in a git project, then `harness run --commit HEAD`.
`harness COMMAND --help` explains each command; `harness exit-codes` lists the exit codes.
"""
RUN_HELP = "Run id or a unique prefix of one."


def build_parser() -> Parser:
    parser = Parser(prog="harness", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="Show tracebacks for errors.")
    parser.set_defaults(handler=None)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)

    p = command(sub, "run", run)
    p.add_argument("command", nargs="*", metavar="-- CMD", help="Override the configured command: -- python eval.py")
    p.add_argument("--commit", default="HEAD", metavar="REV", help="Commit to run: any rev git understands.")
    p.add_argument("-c", "--config", action="append", default=[], help="Named param config; repeatable.")
    p.add_argument("-p", "--param", action="append", default=[], help="key=value (a YAML scalar); repeatable.")
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="Run the working tree with uncommitted changes; they are stored and the run is marked dirty. "
        "Refused when CI is set.",
    )
    p.add_argument("--name", help="Name for this run (default: project+configs).")
    with_common(p)

    for name, handler in (("show", show), ("rebuild", rebuild)):
        with_common(command(sub, name, handler)).add_argument("run_id", metavar="RUN", help=RUN_HELP)
    p = with_common(command(sub, "diff", diff_runs))
    p.add_argument("run_a", metavar="RUN_A", help=RUN_HELP)
    p.add_argument("run_b", metavar="RUN_B", help=RUN_HELP)
    ls.register(sub)

    p = command(sub, "init", init)
    p.add_argument(
        "--harness-toml",
        dest="standalone",
        action="store_true",
        help="Write harness.toml even if pyproject.toml exists.",
    )
    project_option(p)
    with_common(command(sub, "lock", lock))
    command(sub, "exit-codes", exit_codes)
    env.register(sub)
    ui.register(sub)
    data.register(sub)
    verify.register(sub)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the project's entry point hermetically and record everything about it.

    Code: the commit, never the working tree (unless --allow-dirty).
    Environment: the image built from the base recipe and the lock.
    Data: a hashed, read-only snapshot. Params: config defaults, then -c configs, then -p overrides.
    Exits with the run's own exit code; harness's own errors use 101-108 (see `harness exit-codes`).

    Examples:

      harness run --commit HEAD

      harness run -c linear_regression -p test_days=14

      harness run -p epochs=1 -- python train.py --smoke

      CI=true harness run --json
    """
    from harness.runs.runner import RunRequest
    from harness.runs.runner import run as run_project

    request = RunRequest(
        project_dir=args.project,
        rev=args.commit,
        allow_dirty=args.allow_dirty,
        configs=tuple(args.config),
        overrides=tuple(args.param),
        name=args.name,
        command=tuple(args.command) if args.command else None,
    )
    _sigterm_interrupts()
    result = run_project(request, TerminalReporter(args.as_json))
    if args.as_json:
        print_json(result.record)
    else:
        from harness.cli.render import run_summary

        echo(run_summary(result.record), err=True)
    return result.exit_code


def show(args: argparse.Namespace) -> None:
    """Show one run's record: code, environment, data, params, outputs, metrics."""
    from harness.cli.render import show_record
    from harness.runs.history import read_record

    record = read_record(args.project, args.run_id)
    if args.as_json:
        print_json(record)
    else:
        echo(show_record(record))


def rebuild(args: argparse.Namespace) -> int:
    """Re-execute a run from its record alone and prove its outputs bit-identical.

    The image, code (even if the commit is gone from the repository), data snapshot, params and command all
    come from the record and the stores; a missing or tampered input is named and nothing runs. Exits 0 when
    every output file, the exit code and the metrics match; 1 when they differ, listing each differing file
    with both hashes and sizes, a short diff for text outputs and the metrics side by side.

    Use it as a CI gate: harness rebuild RUN --json
    """
    from harness.cli.render import rebuild_report
    from harness.runs.rebuild import rebuild as rebuild_run

    _sigterm_interrupts()
    result = rebuild_run(args.project, args.run_id, TerminalReporter(args.as_json))
    if args.as_json:
        print_json(result.to_dict())
    else:
        echo(rebuild_report(result.to_dict()))
    return result.exit_code


def diff_runs(args: argparse.Namespace) -> int:
    """Why two runs gave different results: what differs in their inputs and outputs.

    Inputs: code (commit, tree, uncommitted changes), environment (image, packages), data (snapshot and the
    files that changed), params, command and runtime settings. Outputs: files, exit code, metrics.
    Exits 0 when nothing differs, 1 otherwise.
    """
    from harness.cli.render import runs_diff
    from harness.runs.history import diff_runs as compare_runs

    result = compare_runs(args.project, args.run_a, args.run_b)
    if args.as_json:
        print_json(result)
    else:
        echo(runs_diff(result))
    return 0 if result["identical"] else 1


def init(args: argparse.Namespace) -> None:
    """Write a commented starter config and ignore the store.

    Adds a tool.harness table to pyproject.toml, keeping every existing line, or writes harness.toml when
    there is no pyproject.toml (or with --harness-toml); adds .harness/ to .gitignore.
    """
    from harness.project.initconfig import init_project

    for line in init_project(args.project.resolve(), args.standalone):
        echo(line)


def lock(args: argparse.Namespace) -> None:
    """Pin the requirements by hash for the image's Python and platform.

    Resolves the configured requirements (a requirements file, one already pinned with --hash, or pyproject.toml's
    [project] dependencies) with uv into the lock (wheels only) for the base's Python and platform, not the host's:
    a recipe's, or what a digest-pinned image's own python3 reports (the first lock pulls and archives that image,
    which needs Docker once). The lock is harness.lock, or PEP 751 when named pylock.toml; a pylock.toml made by
    another tool is only checked. Says what changed against the old lock. Commit the lock: a run whose lock is
    older than its requirements is refused.
    """
    from harness.env.locking import lock_project

    outcome = lock_project(args.project.resolve(), TerminalReporter(args.as_json).progress)
    if args.as_json:
        print_json(outcome)
        return
    if not outcome["written"]:
        # A pylock.toml that another tool keeps: checked for the image, left as it is.
        echo(f"checked {outcome['lock']}: {len(outcome['packages'])} packages for the image, unchanged")
        return
    echo(f"wrote {outcome['lock']} ({len(outcome['packages'])} packages)")
    for line in outcome["changes"] or ["no changes"]:
        echo(f"  {line}")


def exit_codes(args: argparse.Namespace) -> None:
    """Print the exit codes harness uses, for CI scripts."""
    echo("0-255  the run's own exit code, when the run started (harness run)")
    echo("0/1    rebuild and diff: 0 identical, 1 different")
    for code, error in sorted((cls.exit_code, cls) for cls in ERRORS):
        summary = (error.__doc__ or "").strip().splitlines()[0]
        echo(f"{code:<6} {summary} ({error.__name__})")
    echo(f"{INTERRUPTED_EXIT_CODE}    interrupted (Ctrl-C or SIGTERM); a run is recorded as interrupted")


def _sigterm_interrupts() -> None:
    """CI cancels a job with SIGTERM: treat it like Ctrl-C, so the container is removed and the run recorded."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    tokens = list(sys.argv[1:] if argv is None else argv)
    json_mode("--json" in tokens[: tokens.index("--") if "--" in tokens else None])  # for usage errors too
    try:
        args, extra = parser.parse_known_args(dash_values(parser, tokens))
        STATE["verbose"] = args.verbose
        json_mode(getattr(args, "as_json", False))
        if extra:
            prog = getattr(args, "prog", "harness")
            raise UsageError(f"{prog}: unrecognized arguments: {' '.join(extra)}", f"see `{prog} --help`")
        if args.handler is None:
            parser.print_help(sys.stderr)
            return 2
        return int(args.handler(args) or 0)
    except HarnessError as exc:
        if STATE["verbose"]:
            import traceback

            traceback.print_exc()
        if STATE["json"]:
            print_json(exc.to_dict())
        echo(f"error: {exc.message}", err=True, color="red")
        if exc.hint:
            echo(f"hint: {exc.hint}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        return INTERRUPTED_EXIT_CODE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
