"""`harness sweep`: one run per point of a params grid, each an ordinary run.

The project is loaded, and its code archive, environment image, data snapshot and limits are resolved, built and
hashed once for the whole sweep (harness.runs.context); every point's params are merged and checked before
anything is built, so a bad value is one config error, not N failed runs. Each run is then executed exactly as
`harness run` executes one (harness.runs.runner.execute), with ``sweep: {id, index, size}`` in its record, so
show, rebuild, diff, ls and the UI need nothing new. An executor (harness.runs.executor) decides where and how
many at a time.

Core code: it reports through :class:`SweepEvents` and raises HarnessError; it never prints or exits.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.docker.interface import Engine
from harness.errors import INTERRUPTED_EXIT_CODE, MAX_FAILED_EXIT_CODE
from harness.project.params import Params
from harness.project.sweepgrid import Grid, build_grid
from harness.runs.context import RunContext, load_project, prepare
from harness.runs.executor import Executor, LocalExecutor, Outcome, Task, TaskReporter
from harness.runs.inputs import Inputs, RunRequest
from harness.runs.runner import RunResult, execute
from harness.runs.schema import RunRecord, Sweep
from harness.storage.storelock import adding_objects

SWEEP_ID_BYTES = 4  # 8 hex digits


@dataclass(frozen=True)
class SweepRequest:
    run: RunRequest  # what every run shares: project, commit, configs, limits, command (its overrides are unused)
    axes: tuple[str, ...] = ()  # -p K=a,b,c
    jobs: int = 1  # runs at once


class SweepEvents(Protocol):
    def progress(self, message: str) -> None:
        """Before the runs: what is being prepared."""
        ...

    def planned(self, sweep_id: str, grid: Grid, jobs: int) -> None: ...
    def started(self, task: Task, run_id: str) -> None: ...
    def finished(self, task: Task, outcome: Outcome, counts: Counts) -> None: ...
    def note(self, task: Task, message: str) -> None: ...


@dataclass
class Counts:
    """The sweep's progress line: how many runs are done (any way), running, failed."""

    size: int
    done: int = 0
    running: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def line(self) -> str:
        return f"{self.done}/{self.size} done, {self.running} running, {self.failed} failed"


@dataclass(frozen=True)
class SweepResult:
    id: str
    grid: Grid
    outcomes: tuple[Outcome, ...]
    interrupted: bool

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def exit_code(self) -> int:
        """130 when the sweep was stopped; else the number of failed runs (0: all succeeded), at most 99."""
        if self.interrupted:
            return INTERRUPTED_EXIT_CODE
        return min(self.failed, MAX_FAILED_EXIT_CODE)

    def to_dict(self) -> dict[str, Any]:
        points = self.grid.points()
        return {
            "sweep": self.id,
            "size": self.grid.size,
            "axes": self.grid.to_dict()["axes"],
            "interrupted": self.interrupted,
            "succeeded": self.count("succeeded"),
            "failed": self.failed,
            "interrupted_runs": self.count("interrupted"),
            "not_started": self.count("not started"),
            "exit_code": self.exit_code,
            "runs": [o.to_dict() | {"params": dict(points[o.index])} for o in self.outcomes],
        }


@dataclass(frozen=True)
class SweepPlan:
    """A sweep ready to run: its id, its grid, the prepared context every run shares and each run's params. An
    executor turns a task into a run with :meth:`start`, wherever that run executes."""

    id: str
    grid: Grid
    context: RunContext
    params: tuple[Params, ...]  # by task index
    jobs: int

    def tasks(self) -> list[Task]:
        return [Task(index, point) for index, point in enumerate(self.grid.points())]

    def start(self, task: Task) -> tuple[Inputs, RunRecord]:
        """The run of ``task``: what its container gets and its first record (plain JSON, with its sweep)."""
        where: Sweep = {"id": self.id, "index": task.index, "size": self.grid.size}
        return self.context.start(self.params[task.index], sweep=where)


ExecutorFactory = Callable[[SweepPlan, Engine, Callable[[], Engine]], Executor]
"""Makes the executor of a plan, given the engine the plan was prepared on and a way to connect more."""


def local_executor(plan: SweepPlan, control: Engine, connect_engine: Callable[[], Engine]) -> Executor:
    """Runs on this machine's engine, ``plan.jobs`` at a time, each with its own connection."""
    engines = [connect_engine() for _ in range(plan.jobs)]

    def run_one(task: Task, engine: Engine, reporter: TaskReporter, stopped: Callable[[], bool]) -> RunResult:
        inputs, record = plan.start(task)
        return execute(inputs, record, engine, reporter, stopped)

    return LocalExecutor(control, engines, run_one)


def sweep(
    request: SweepRequest,
    events: SweepEvents,
    connect_engine: Callable[[], Engine] | None = None,
    executor_for: ExecutorFactory = local_executor,
) -> SweepResult:
    if connect_engine is None:
        from harness.docker.engine import connect

        connect_engine = connect
    project = load_project(request.run)
    grid = build_grid(project.sweep_block, project.config.params_file, request.axes)
    points = grid.points()
    params = tuple(project.params_for(request.run, point) for point in points)  # every point checked now,
    for each in params:  # and the command each one fills in
        project.command_for(request.run, each)
    with adding_objects(project.layout.store, events.progress):
        control = connect_engine()
        jobs = max(1, min(request.jobs, len(points)))
        context = prepare(project, request.run, control, events.progress, at_once=jobs)
        plan = SweepPlan(secrets.token_hex(SWEEP_ID_BYTES), grid, context, params, jobs)
        executor = executor_for(plan, control, connect_engine)
        events.planned(plan.id, grid, jobs)
        tasks = plan.tasks()
        outcomes = executor.run_all(tasks, _Counting(events, Counts(len(tasks))))
    # Only a stopped sweep leaves a run interrupted or not started: its runs' threads see no Ctrl-C of their own.
    stopped = any(o.status in ("interrupted", "not started") for o in outcomes)
    return SweepResult(plan.id, grid, tuple(outcomes), stopped)


class _Counting:
    """The executor's events, counted for the progress line, passed on."""

    def __init__(self, events: SweepEvents, counts: Counts) -> None:
        self.events, self.counts = events, counts
        self.started_tasks: set[int] = set()

    def started(self, task: Task, run_id: str) -> None:
        with self.counts._lock:
            self.counts.running += 1
            self.started_tasks.add(task.index)
        self.events.started(task, run_id)

    def finished(self, task: Task, outcome: Outcome) -> None:
        with self.counts._lock:
            if task.index in self.started_tasks:
                self.counts.running -= 1
            self.counts.done += 1
            self.counts.failed += outcome.status == "failed"
        self.events.finished(task, outcome, self.counts)

    def note(self, task: Task, message: str) -> None:
        self.events.note(task, message)
