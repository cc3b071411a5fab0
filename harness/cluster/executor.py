"""`harness sweep --cluster ADDRESS`: a sweep's runs as Dask tasks, on workers that share only the remote.

The submitting side (this module) publishes the sweep's shared inputs to the remote once (bundle.py: code, data,
lock, params helper, environment image), then submits one task per point of the grid (task.run_task) under a
fixed key, ``harness-sweep-<id>-<index>``, with ``retries=1``: a task whose worker died is run again by the
scheduler on another worker, and one that raised is tried once more. As each run ends, its sealed record and
outputs are pulled from the remote into this machine's store (checked against their digests, as `harness pull`),
so `harness ls` shows the sweep while it goes on, and the sweep's events say done/running/failed.

A run is never recorded twice: a task run again for the same (sweep, index) finds the run the remote holds under
``sweep-<id>-<index>`` and returns it. Ctrl-C cancels the futures and sets the sweep's Dask Event, which makes
each worker kill its running container; the run is recorded interrupted there and pushed back, and the sweep
waits for those runs (up to RETURN_WAIT_S; Ctrl-C again stops waiting) and pulls each, so a stopped sweep leaves
no run it started only on a worker. One that does not come back in time is named, with the command that pulls it.

`distributed` is an optional extra (``pip install 'harness[dask]'``); only this package imports it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.docker.interface import Engine
from harness.errors import HarnessError, UsageError
from harness.remote.reference import Reference
from harness.runs.executor import Events, Outcome, Task
from harness.runs.sweep import ExecutorFactory, SweepPlan

INSTALL_HINT = "pip install 'harness[dask]'  (distributed, Dask's scheduler, workers and client)"
CONNECT_TIMEOUT_S = 20
RETURN_WAIT_S = 30  # after Ctrl-C: how long the sweep waits for the runs it stopped to come back from their workers
RETURN_POLL_S = 0.5


def require_distributed() -> None:
    """UsageError (exit 2) naming what to install when `distributed` is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError(
            "--cluster submits runs through Dask, and Dask's `distributed` is not installed",
            f"install it: {INSTALL_HINT}; every worker needs it too, with harness and Docker",
        ) from None


def cluster_executor(address: str, remote: Reference, say: Callable[[str], None]) -> ExecutorFactory:
    """The executor factory of a sweep on the Dask scheduler at ``address``, through the remote ``remote``."""
    require_distributed()

    def factory(plan: SweepPlan, control: Engine, connect_engine: Callable[[], Engine]) -> ClusterExecutor:
        from harness.remote import bundle as bundles
        from harness.remote.client import connect

        client = _client(address)
        try:
            registry = connect(remote)
            context = plan.context
            shared = bundles.Bundle(
                archive=context.archive,
                patch=context.patch.manifest if context.patch else None,
                lock=context.lock_object,
                helper=context.helper,
                snapshot=context.data.digest,
                image=context.environment.parts,
                env_key=context.environment.key,
            )
            bundles.publish(context.project.layout, shared, registry, say, control)
        except BaseException:
            client.close()
            raise
        return ClusterExecutor(plan, client, registry, remote, shared.tag)

    return factory


def _client(address: str) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise HarnessError(
            f"cannot reach the Dask scheduler at {address}: {exc}; nothing was run",
            "start one (`dask scheduler`, then `dask worker ADDRESS` on each machine), or give --cluster the "
            "address it prints (tcp://HOST:8786)",
        ) from None


class ClusterExecutor:
    """Runs a plan's tasks on a Dask cluster; pulls each finished run into this machine's store."""

    def __init__(self, plan: SweepPlan, client: Any, registry: Any, remote: Reference, bundle: str) -> None:
        self.plan, self.client, self.registry, self.remote, self.bundle = plan, client, registry, remote, bundle
        self._lock = threading.Lock()
        self._started: dict[int, str] = {}  # task index -> run id, as the workers report them
        self._finished: set[int] = set()

    def spec(self, task: Task) -> dict[str, Any]:
        """What a worker gets for ``task``: plain JSON (the run's first record names every input by digest)."""
        inputs, record = self.plan.start(task)
        return {
            "remote": str(self.remote),
            "bundle": self.bundle,
            "record": record,
            "limits": inputs.limits.to_record(),
            "helper": inputs.helper,
        }

    def run_all(self, tasks: Sequence[Task], events: Events) -> list[Outcome]:
        from distributed import as_completed

        from harness.cluster.task import run_task, started_topic

        by_index = {t.index: t for t in tasks}
        outcomes: dict[int, Outcome] = {}

        def on_started(event: Any) -> None:
            message = event[1] if isinstance(event, tuple) else event
            index, run_id = int(message["index"]), str(message["run"])
            with self._lock:
                if index in self._finished or index in self._started or index not in by_index:
                    return
                self._started[index] = run_id
            events.started(by_index[index], run_id)

        topic = started_topic(self.plan.id)
        self.client.subscribe_topic(topic, on_started)
        futures: dict[Any, Task] = {}
        try:
            try:
                for task in tasks:
                    key = f"harness-sweep-{self.plan.id}-{task.index}"
                    future = self.client.submit(run_task, self.spec(task), key=key, retries=1, pure=False)
                    futures[future] = task
                for future in as_completed(list(futures), loop=self.client.loop):
                    task = futures[future]
                    outcome = self._finish(task, future)
                    with self._lock:
                        self._finished.add(task.index)
                    outcomes[task.index] = outcome
                    events.finished(task, outcome)
            except KeyboardInterrupt:
                self._stop(list(futures))
                self._bring_back(tasks, outcomes, events)
        finally:
            try:
                self.client.unsubscribe_topic(topic)
            finally:
                self.client.close()
        return [outcomes.get(t.index) or self._unfinished(t) for t in tasks]

    def _finish(self, task: Task, future: Any) -> Outcome:
        try:
            summary = future.result()
        except Exception as exc:  # the task raised twice, or its workers kept dying (KilledWorker)
            message = exc.message if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
            return Outcome(task.index, self._started.get(task.index), "failed", None, message)
        return self._outcome(task, summary)

    def _outcome(self, task: Task, summary: dict[str, Any]) -> Outcome:
        """A task's run, pulled here, as its summary ({run, status, exit_code, error, worker}) tells it."""
        run_id = str(summary["run"])
        try:
            self._pull(run_id)
        except HarnessError as exc:
            return Outcome(
                task.index,
                run_id,
                "failed",
                None,
                f"ran on {summary.get('worker') or 'its worker'}, but pulling it failed: {exc}",
            )
        return Outcome(task.index, run_id, str(summary["status"]), summary.get("exit_code"), summary.get("error"))

    def _pull(self, run_id: str) -> None:
        from harness.remote.pull import pull_run

        pull_run(self.plan.context.project.layout, run_id, self.registry, str(self.remote), _quiet)

    def _unfinished(self, task: Task) -> Outcome:
        run_id = self._started.get(task.index)
        if run_id is None:
            return Outcome(task.index, None, "not started", None)
        return Outcome(
            task.index,
            run_id,
            "interrupted",
            None,
            f"the sweep was stopped; its worker records the run interrupted and pushes it to {self.remote}: "
            f"`harness pull {run_id} --remote {self.remote}` brings it here",
        )

    def _bring_back(self, tasks: Sequence[Task], outcomes: dict[int, Outcome], events: Events) -> None:
        """After Ctrl-C, the runs that had started: each worker kills its container, records the run interrupted
        and pushes it, tagged with its place in the sweep, in a second or two. Pull each as it arrives, for up to
        RETURN_WAIT_S; Ctrl-C again stops waiting, and what has not come back stays on the remote."""
        from harness.cluster.task import pushed_run, sweep_tag

        waiting = [t for t in tasks if t.index in self._started and t.index not in outcomes]
        deadline = time.monotonic() + RETURN_WAIT_S
        try:
            while waiting and time.monotonic() < deadline:
                for task in list(waiting):
                    summary = pushed_run(self.registry, sweep_tag(self.plan.id, task.index), str(self.remote))
                    if summary is None:
                        continue
                    waiting.remove(task)
                    outcomes[task.index] = outcome = self._outcome(task, summary)
                    events.finished(task, outcome)
                if waiting:
                    time.sleep(RETURN_POLL_S)
        except KeyboardInterrupt:
            pass  # Ctrl-C again: the rest stay on the remote, named with how to pull them (_unfinished)
        except HarnessError as exc:  # the remote stopped answering: the same
            for task in waiting:
                events.note(task, f"not brought back from {self.remote}: {exc.message}")

    def _stop(self, futures: list[Any]) -> None:
        """Ctrl-C: no task starts any more, and each worker kills the container of the run it has going."""
        from distributed import Event

        from harness.cluster.task import stop_event

        while True:
            try:
                Event(stop_event(self.plan.id), client=self.client).set()
                self.client.cancel(futures)
                return
            except KeyboardInterrupt:
                continue  # Ctrl-C again: stopping is what is being done already


def _quiet(_message: str) -> None:
    pass
