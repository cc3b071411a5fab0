"""``harness sweep``: parse, call harness.runs.sweep.sweep, render its progress and its result."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.app import AsJson, Project, command, sigterm_interrupts
from harness.cli.output import echo, print_json
from harness.cli.recovered import finish_dead_runs
from harness.errors import UsageError


def register(app: typer.Typer) -> None:
    command(app, "sweep", sweep)


def _jobs(given: str | int) -> int:
    text = str(given)  # click passes the default (an int) through the parser too
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter(f"not a number of runs at once: {text!r} (a whole number, 1 or more)")
    return int(text)


def sweep(
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="-- CMD...", show_default=False, help="Override the configured command."),
    ] = None,
    commit: Annotated[str, typer.Option(metavar="REV", help="Commit to run: any rev git understands.")] = "HEAD",
    config: Annotated[
        list[str] | None,
        typer.Option("-c", "--config", metavar="NAME", help="Named param config for every run; repeatable."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", metavar="K=A,B,...", help="A sweep axis: the values of one param; repeatable."),
    ] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", metavar="N", parser=_jobs, help="Runs at once.")] = 1,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Run the working tree with uncommitted changes (as harness run).")
    ] = False,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Name for every run of the sweep.")] = None,
    rehash: Annotated[
        bool, typer.Option("--rehash", help="Read and hash every data file; trust no cached hash.")
    ] = False,
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", metavar="KEY=VALUE", help="A resource limit for each run (see harness run --help)."),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Submit each run as a task to the Dask scheduler at ADDRESS (tcp://HOST:8786); needs a remote.",
        ),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            metavar="REF",
            help="With --cluster: the OCI repository the workers get inputs from and send runs back to "
            "(else HARNESS_REMOTE, else the config's remote).",
        ),
    ] = None,
    project: Project = Path("."),
    as_json: AsJson = False,
) -> int:
    """Run the project once for every combination of the swept params, each an ordinary recorded run.

    Each -p K=A,B,... is an axis; the sweep runs their cross product (the last axis changing fastest), and a
    sweep: block in the params file adds axes of its own (a -p for the same key replaces its values):

      sweep:
        lr: [0.001, 0.01, 0.1]
        model: {depth: [3, 5]}         (nested params: model.depth)
        layers: [[64, 64], [128]]      (each value a list)

    Values are read as the items of a YAML list: -p lr=0.001,0.01 is two numbers, -p lr=0.1 one. A literal
    comma goes inside quotes: -p 'name="a,b",c' is the two values "a,b" and c. A value that is a list goes in
    brackets: -p 'layers=[64,64],[128]' is two lists.

    The code, environment image and data snapshot are resolved, built and hashed once for the whole sweep.
    Every run is recorded like one of `harness run`, with sweep: {id, index, size}, so show, rebuild, diff, ls
    and ui work on it as on any run:  harness ls --where 'sweep == "ID"' --sort metrics.rmse_test

    -j N runs N at a time. A run that fails does not stop the others. Each run's output goes to its log
    (.harness/runs/RUN/log.txt); the terminal gets a line as each run starts and ends, and the progress.
    Ctrl-C (or SIGTERM) stops the sweep: running containers are stopped and removed, their runs recorded
    interrupted, and the runs not yet started are not run.

    Exit code: 0 when every run succeeded; else the number of runs that failed (at most 99); 130 when the sweep
    was stopped; 2 and 101-108 when harness could not start it (nothing ran). Two failed runs and a usage
    error both exit 2: --json tells them apart.

    Examples:

      harness sweep -p lr=0.001,0.01,0.1 -p depth=3,5 -j 2

      harness sweep -c baseline -p seed=1,2,3,4,5 --json

      harness sweep -p lr=0.001,0.01,0.1 --cluster tcp://scheduler:8786 --remote registry.example/team/bikes

    --cluster ADDRESS sends each run to a Dask cluster (pip install 'harness[dask]'). The sweep's code, data,
    params helper and image are pushed to the remote once; each worker (a machine with Docker and harness,
    nothing of the project) pulls them by digest, checked, runs the run as harness run would, and pushes its
    record and outputs back; this machine pulls each record as its run ends, so harness ls shows the sweep as
    it goes. A run whose worker dies is run again once on another worker; none is recorded twice. How many run
    at once is the cluster's (its workers' threads), so -j does not apply. See README, "Scaling out".
    """
    from harness.runs.runner import RunRequest
    from harness.runs.sweep import SweepRequest, local_executor
    from harness.runs.sweep import sweep as run_sweep

    request = SweepRequest(
        run=RunRequest(
            project_dir=project,
            rev=commit,
            allow_dirty=allow_dirty,
            configs=tuple(config or ()),
            name=name,
            command=tuple(command) if command else None,
            rehash=rehash,
            limits=tuple(limit or ()),
        ),
        axes=tuple(param or ()),
        jobs=jobs,
    )
    lines = SweepLines(cluster)
    executor_for: Any = local_executor
    if cluster:
        from harness.cluster.executor import cluster_executor
        from harness.remote.reference import resolve

        if jobs != 1:
            raise UsageError(
                "-j does not apply with --cluster: the cluster's workers decide how many runs go at once",
                "drop -j, or start workers with more threads (dask worker --nthreads N)",
            )
        executor_for = cluster_executor(cluster, resolve(remote, project), lines.progress)
    elif remote:
        raise UsageError("--remote is for --cluster: a local sweep needs no remote", "push its runs with harness push")
    finish_dead_runs(project)
    sigterm_interrupts()
    result = run_sweep(request, lines, executor_for=executor_for)
    if as_json:
        print_json(result.to_dict())
    else:
        from harness.cli.render import sweep_summary

        echo(sweep_summary(result.to_dict()), err=True)
    return result.exit_code


class SweepLines:
    """The sweep's progress on stderr, a line at a time (runs in several threads report here)."""

    def __init__(self, cluster: str | None = None) -> None:
        self.cluster = cluster
        self._lock = threading.Lock()
        self.size = 0
        self.sweep_id = ""

    def _say(self, text: str, color: str | None = "gray") -> None:
        with self._lock:
            echo(f"harness: {text}", err=True, color=color)

    def progress(self, message: str) -> None:
        self._say(message)

    def planned(self, sweep_id: str, grid: Any, jobs: int) -> None:
        self.size, self.sweep_id = grid.size, sweep_id
        axes = ", ".join(f"{a.key} x{len(a.values)}" for a in grid.axes)
        where = f"on the Dask cluster at {self.cluster}" if self.cluster else f"{jobs} at a time"
        self._say(f"sweep {sweep_id}: {grid.size} runs ({axes}), {where}", color="cyan")

    def started(self, task: Any, run_id: str) -> None:
        self._say(f"[{task.index + 1}/{self.size}] run {run_id} started: {task.describe()}")

    def finished(self, task: Any, outcome: Any, counts: Any) -> None:
        run = f"run {outcome.run_id}" if outcome.run_id else "run"
        status = outcome.status.upper() if outcome.status != "succeeded" else outcome.status
        detail = f" (exit {outcome.exit_code})" if outcome.status == "failed" and outcome.exit_code else ""
        if outcome.error and outcome.status != "succeeded":
            detail += f": {outcome.error}"
        color = "red" if outcome.status == "failed" else "gray"
        self._say(f"[{task.index + 1}/{self.size}] {run} {status}{detail}", color=color)
        self._say(f"sweep {self.sweep_id}: {counts.line()}", color="cyan")

    def note(self, task: Any, message: str) -> None:
        self._say(f"[{task.index + 1}/{self.size}] {message}")
