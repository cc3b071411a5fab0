"""One run of a sweep as a Dask task, on a worker: a machine with Docker and harness and nothing of the project.

:func:`run_task` is what the submitting side (executor.py) submits, one per point of the grid. It gets the run's
first record (plain JSON: params, command, and every input by digest) and the remote; it fetches the sweep's
bundle from the remote (bundle.py: code, data, lock, params helper, and the image, which the engine pulls by
manifest digest, or which comes into the cache and is loaded), each checked against its digest; runs it with
runner.execute, exactly as `harness run` does; pushes the sealed record and its outputs back to the remote; and
tags the run's manifest ``sweep-<id>-<index>`` too. It returns a small summary; the submitting side pulls the
record itself.

A task that runs again for the same (sweep, index), because its worker died after pushing, or Dask retried it,
finds that tag and returns the run already there: a run is never recorded twice on the remote.

The worker's stores: HARNESS_HOME (else ~/.local/share/harness/worker) and HARNESS_CACHE, as for `harness pull`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import file_lock
from harness.paths import ENV_HOME, Layout, cache_root

SWEEP_TAG_PREFIX = "sweep-"
STOP_POLL_S = 0.5


def sweep_tag(sweep_id: str, index: int) -> str:
    """The remote's tag for the run at ``index`` of sweep ``sweep_id``: the same manifest as its run-<id> tag."""
    return f"{SWEEP_TAG_PREFIX}{sweep_id}-{index}"


def started_topic(sweep_id: str) -> str:
    """The Dask event topic a task logs its run's id to when its container starts."""
    return f"harness-sweep-{sweep_id}"


def stop_event(sweep_id: str) -> str:
    """The name of the Dask Event the submitting side sets when the sweep is stopped (Ctrl-C)."""
    return f"harness-stop-{sweep_id}"


def worker_layout() -> Layout:
    home = os.environ.get(ENV_HOME)
    store = Path(home).expanduser() if home else Path.home() / ".local" / "share" / "harness" / "worker"
    store = store.resolve()
    return Layout(project=store.parent, store=store, cache=cache_root())


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one sweep task (``spec``: remote, bundle, record, limits, helper) and return its summary:
    {run, status, exit_code, error, worker, again}. Raises only when the run could not be begun or sent back."""
    from harness.remote.client import connect
    from harness.remote.reference import parse

    worker = _worker()
    ref = parse(str(spec["remote"]))
    registry = connect(ref)
    sweep = spec["record"]["sweep"]
    tag = sweep_tag(str(sweep["id"]), int(sweep["index"]))
    done = pushed_run(registry, tag, str(ref))
    if done is not None:
        return done | {"worker": worker.name, "again": True}
    layout = worker_layout()
    run_id, record = _run(spec, layout, registry, str(ref), worker)
    from harness.remote.artifact import run_tag
    from harness.remote.push import push_run

    push_run(layout, run_id, registry, _quiet)
    manifest = registry.manifest(run_tag(run_id))
    if manifest is None:
        raise HarnessError(f"run {run_id} was pushed to {ref} but its manifest is not there")
    registry.put_manifest(tag, manifest[0])
    return _summary(record) | {"worker": worker.name, "again": False}


class _Worker:
    def __init__(self) -> None:
        try:
            from distributed import get_worker

            self.dask: Any = get_worker()
        except (ImportError, ValueError):  # called outside a worker (a test, a debugger)
            self.dask = None
        self.name = str(self.dask.name if self.dask is not None else "local")
        if self.dask is not None and self.name.isdigit():  # unnamed: the number the nanny gave; the address says more
            self.name = str(self.dask.address)

    def log_started(self, sweep_id: str, index: int, run_id: str) -> None:
        if self.dask is not None:
            self.dask.log_event(started_topic(sweep_id), {"index": index, "run": run_id, "worker": self.name})

    def stopped(self, sweep_id: str) -> Callable[[], bool]:
        """Whether the submitting side stopped the sweep (its Dask Event), asked without waiting."""
        if self.dask is None:
            return lambda: False
        from distributed import Event

        event = Event(stop_event(sweep_id), client=self.dask.client)

        def check() -> bool:
            try:
                return bool(event.is_set())
            except Exception:  # the scheduler is gone: nobody to report to, let the run finish
                return False

        return check


def _worker() -> _Worker:
    return _Worker()


def _run(spec: dict[str, Any], layout: Layout, registry: Any, where: str, worker: _Worker) -> tuple[str, Any]:
    from harness.docker.engine import connect as connect_engine
    from harness.remote import bundle as bundles
    from harness.remote.travel import engine_pulls
    from harness.runs.hostinfo import host_facts
    from harness.runs.limits import capacity_soon
    from harness.runs.rebuild import recorded_inputs
    from harness.runs.runner import container_name, execute
    from harness.storage.storelock import adding_objects

    record = json.loads(json.dumps(spec["record"]))  # our own copy: execute fills it in
    sweep = record["sweep"]
    sweep_id, index = str(sweep["id"]), int(sweep["index"])
    sweep["worker"] = worker.name
    reporter = _Reporter(lambda run_id: worker.log_started(sweep_id, index, run_id))
    with adding_objects(layout.store):
        engine = connect_engine()
        capacity = capacity_soon(engine, layout.store)
        tag = str(spec["bundle"])
        # One fetch of a bundle at a time on this store: tasks in other threads (or worker processes sharing the
        # store) wait for it, then find every object there, rather than downloading the same blobs side by side.
        with file_lock(layout.store / "locks" / f"{tag}.lock", _quiet):
            bundles.fetch(layout, tag, registry, where, _quiet, partial(engine_pulls, engine, where, _quiet))
        record["host"] = host_facts(engine.version())  # where it ran: this machine, not the submitting one
        runtime = {"limits": spec["limits"], "params_helper": spec["helper"]}
        inputs = recorded_inputs(record, runtime, layout, engine, reporter, capacity())
        stopped = worker.stopped(sweep_id)
        watching = threading.Event()
        killer = threading.Thread(
            target=_kill_when_stopped, args=(engine, reporter, stopped, watching, container_name), daemon=True
        )
        killer.start()
        try:
            execute(inputs, record, engine, reporter, stopped)
        except HarnessError:
            if not record.get("id"):
                raise  # nothing was recorded: the task fails, and Dask tries it once more
            # the run is recorded failed (or interrupted): it travels back like any other
        finally:
            watching.set()
    return str(record["id"]), record


def _kill_when_stopped(
    engine: Any, reporter: _Reporter, stopped: Callable[[], bool], done: threading.Event, name: Callable[[str], str]
) -> None:
    """The sweep was stopped on the submitting side: kill this run's container, so the run ends interrupted."""
    while not done.wait(STOP_POLL_S):
        if reporter.run_id and stopped():
            with contextlib.suppress(HarnessError):
                engine.kill(name(reporter.run_id))
            return


class _Reporter:
    """A worker's run reporter: its output goes to the run's log only; its start is logged to the sweep's topic."""

    def __init__(self, on_start: Callable[[str], None]) -> None:
        self.on_start = on_start
        self.run_id: str | None = None

    def progress(self, message: str) -> None:
        pass

    def output(self, stream: str, chunk: bytes) -> None:
        pass

    def started(self, run_id: str) -> None:
        self.run_id = run_id
        self.on_start(run_id)


def _quiet(_message: str) -> None:
    pass


def pushed_run(registry: Any, tag: str, where: str) -> dict[str, Any] | None:
    """The summary of the run the remote holds under ``tag``, if any (its record fetched and checked)."""
    from harness.remote.artifact import RunManifest
    from harness.remote.pull import small_blob

    found = registry.manifest(tag)
    if found is None:
        return None
    manifest = RunManifest.parse(found[0], f"{where}:{tag}")
    record = json.loads(small_blob(registry, manifest.seal, f"the record under {tag}", where))
    return _summary(record)


def _summary(record: Any) -> dict[str, Any]:
    error = record.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return {"run": record["id"], "status": record["status"], "exit_code": record["exit_code"], "error": message}
