"""Where a sweep's runs execute: the :class:`Executor` interface, and :class:`LocalExecutor`, which drives up to N
containers at once on this machine's engine, one thread each.

An executor gets the sweep's tasks (an index into the grid and the point's params) and reports each run as it
starts and ends through :class:`Events`. It runs every task whatever the others did: a failed run is one outcome
among the rest. A KeyboardInterrupt (Ctrl-C, or SIGTERM through the CLI) in the calling thread stops the sweep:
no task starts after it, every running container is killed and its run recorded interrupted, and
:meth:`Executor.run_all` returns (it does not raise) once nothing of the sweep runs any more.

What a run is stays outside: LocalExecutor calls a ``run_one`` it is given (harness.runs.sweep.local_executor
binds it to the sweep's plan: ``plan.start(task)`` then runner.execute). The cluster executor
(harness.cluster.executor) is another ``ExecutorFactory`` (harness.runs.sweep) returning an object with the same
``run_all`` over the same tasks: it publishes the objects the plan's runs share to a remote once, submits one Dask
task per point carrying the run's first record (plain JSON, every input by digest), and pulls each record here as
its run ends, telling ``events`` as it goes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.docker.interface import Engine
from harness.errors import HarnessError
from harness.runs.runner import RunResult, container_name

Point = tuple[tuple[str, Any], ...]
STOP_POLL_S = 0.2  # how often a stopping sweep kills the containers of runs still going
WAIT_POLL_S = 0.05  # how often a sweep looks whether its workers are done


@dataclass(frozen=True)
class Task:
    index: int  # in the grid
    point: Point  # the swept params: (dotted key, value) per axis

    def describe(self) -> str:
        return " ".join(f"{key}={_short(value)}" for key, value in self.point)


@dataclass(frozen=True)
class Outcome:
    index: int
    run_id: str | None  # None: never started (the sweep was stopped first), or failed before it had an id
    status: str  # succeeded | failed | interrupted | not started
    exit_code: int | None
    error: str | None = None  # harness's message when the run could not be run or finished

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "run": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "error": self.error,
        }


class Events(Protocol):
    """What an executor reports, from any of its threads."""

    def started(self, task: Task, run_id: str) -> None: ...
    def finished(self, task: Task, outcome: Outcome) -> None: ...
    def note(self, task: Task, message: str) -> None: ...


class Executor(Protocol):
    def run_all(self, tasks: Sequence[Task], events: Events) -> list[Outcome]:
        """Run every task, ``events`` told as each starts and ends; the outcomes in task order. Returns, never
        raises, after a KeyboardInterrupt: the runs it stopped are interrupted, the rest not started."""
        ...


class TaskReporter:
    """A run's Reporter inside a sweep: its container's output goes to its log only (N runs at once would
    interleave on the terminal); its progress lines and its start go to the sweep's events."""

    def __init__(self, task: Task, events: Events, on_start: Callable[[str], None]) -> None:
        self.task, self.events, self.on_start = task, events, on_start

    def progress(self, message: str) -> None:
        if not message.startswith("running "):  # every run says it; the sweep's own lines say more
            self.events.note(self.task, message)

    def output(self, stream: str, chunk: bytes) -> None:
        pass

    def started(self, run_id: str) -> None:
        self.on_start(run_id)
        self.events.started(self.task, run_id)


RunOne = Callable[[Task, Engine, TaskReporter, Callable[[], bool]], RunResult]
"""Run one task to its final record on ``engine``: (task, engine, reporter, stopped)."""


class LocalExecutor:
    """Up to ``len(engines)`` runs at once, a thread each with its own connection to the engine (a streamed
    attach holds its connection for the whole run); ``control``, another connection, kills containers when the
    sweep is stopped."""

    def __init__(self, control: Engine, engines: Sequence[Engine], run_one: RunOne) -> None:
        if not engines:
            raise ValueError("an executor needs at least one engine")
        self.control = control
        self.engines = list(engines)
        self.run_one = run_one

    def run_all(self, tasks: Sequence[Task], events: Events) -> list[Outcome]:
        todo: queue.SimpleQueue[Task] = queue.SimpleQueue()
        for task in tasks:
            todo.put(task)
        stop = threading.Event()
        lock = threading.Lock()
        running: dict[int, str] = {}  # task index -> run id, while its run goes on
        outcomes: dict[int, Outcome] = {}

        def work(engine: Engine, done: threading.Event) -> None:
            try:
                while not stop.is_set():
                    try:
                        task = todo.get_nowait()
                    except queue.Empty:
                        return
                    outcome = self._one(task, engine, events, stop, lock, running)
                    with lock:
                        running.pop(task.index, None)
                        outcomes[task.index] = outcome
                    events.finished(task, outcome)
            finally:
                done.set()

        workers = self.engines[: max(1, len(tasks))]
        finished = [threading.Event() for _ in workers]
        threads = [
            threading.Thread(target=work, args=(engine, done), name=f"harness-sweep-{n}", daemon=True)
            for n, (engine, done) in enumerate(zip(workers, finished, strict=True))
        ]
        try:
            for thread in threads:
                thread.start()
            _wait_all(finished)
        except KeyboardInterrupt:
            stop.set()
            self._stop(finished, lock, running)
        return [outcomes.get(t.index) or Outcome(t.index, None, "not started", None) for t in tasks]

    def _one(
        self,
        task: Task,
        engine: Engine,
        events: Events,
        stop: threading.Event,
        lock: threading.Lock,
        running: dict[int, str],
    ) -> Outcome:
        ids: list[str] = []

        def on_start(run_id: str) -> None:
            ids.append(run_id)
            with lock:
                running[task.index] = run_id

        reporter = TaskReporter(task, events, on_start)
        try:
            record = self.run_one(task, engine, reporter, stop.is_set).record
        except HarnessError as exc:  # recorded failed (or interrupted) by the run itself, when it had a record
            status = "interrupted" if stop.is_set() else "failed"
            return Outcome(task.index, ids[0] if ids else None, status, None, exc.message)
        except Exception as exc:  # a bug must not cost the other runs; the run's record says failed
            return Outcome(task.index, ids[0] if ids else None, "failed", None, f"{type(exc).__name__}: {exc}")
        return Outcome(task.index, record["id"], record["status"], record["exit_code"], _message(record))

    def _stop(self, finished: list[threading.Event], lock: threading.Lock, running: dict[int, str]) -> None:
        """Kill the containers of the runs still going until every thread is done. A run between its last check
        of ``stop`` and its container's start is caught by the next round."""
        engine = self.control
        while not all(done.is_set() for done in finished):
            try:
                with lock:
                    ids = list(running.values())
                for run_id in ids:
                    with contextlib.suppress(HarnessError):
                        engine.kill(container_name(run_id))
                time.sleep(STOP_POLL_S)
            except KeyboardInterrupt:
                continue  # Ctrl-C again: stopping is what is being done already


def _wait_all(finished: list[threading.Event]) -> None:
    """Until every worker is done. Not Thread.join: on CPython 3.11 a Ctrl-C landing inside join() can mark a
    thread that is still running as stopped (the bpo-45274 fix releases the lock the running thread holds), and the
    sweep then returns with a container still up. A flag read between sleeps has nothing to corrupt."""
    while not all(done.is_set() for done in finished):
        time.sleep(WAIT_POLL_S)


def _message(record: Any) -> str | None:
    error = record.get("error")
    return str(error.get("message")) if isinstance(error, dict) and error.get("message") else None


def _short(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
