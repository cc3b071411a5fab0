"""One run, start to finish: code -> environment -> data -> container -> record.

Core code: it reports through a :class:`Reporter` and raises :class:`HarnessError`; it never prints or exits.
Everything that decides what the run computes is read from the commit being run (config, params file, lock);
only data comes from the working tree, and it is snapshotted by content.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, cast

from harness.docker.engine import connect
from harness.docker.interface import ContainerInterrupted, ContainerSpec, Engine, Mount
from harness.errors import INTERRUPTED_EXIT_CODE, HarnessError
from harness.files import make_dirs, make_file, withheld
from harness.paths import Layout
from harness.project import codebase, codepaths
from harness.project.params import MAX_ENV_TOTAL, MAX_ENV_VALUE, write_defaults_file
from harness.runs import mlflowstore, outputlist, ownership, schema, tracking
from harness.runs.inputs import MAX_LISTED_CHANGES, Inputs, RunRequest
from harness.runs.limited import limit_failure, run_limited
from harness.runs.logcap import CappedLog
from harness.runs.records import Records, RunPaths
from harness.runs.schema import RunRecord
from harness.storage import datasets, snapshot
from harness.storage.outputs import store_outputs
from harness.storage.store import Store
from harness.storage.storelock import adding_objects

__all__ = ["Inputs", "Reporter", "RunRequest", "RunResult", "container_name", "execute", "run"]

NOBODY = "65534:65534"
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
Stopped = Callable[[], bool]
"""Whether the run's caller has been asked to stop (a sweep's Ctrl-C): checked before the container starts, and
after it ends, to record a container the caller killed as interrupted rather than failed."""


class Reporter(Protocol):
    def progress(self, message: str) -> None: ...
    def output(self, stream: str, chunk: bytes) -> None: ...
    def started(self, run_id: str) -> None: ...


@dataclass(frozen=True)
class RunResult:
    record: RunRecord

    @property
    def exit_code(self) -> int:
        if self.record["status"] == "interrupted" or self.record["exit_code"] is None:
            return INTERRUPTED_EXIT_CODE
        if self.record["status"] == "failed" and self.record["exit_code"] == 0:
            return 1  # it exited 0, over a limit found when it ended
        return self.record["exit_code"]


def run(request: RunRequest, reporter: Reporter, engine: Engine | None = None) -> RunResult:
    # Resolving a project and building its image: not what a rebuild, which executes recorded inputs, imports.
    from harness.runs.context import load_project, prepare

    project = load_project(request)
    # Until the record names them, the objects this run stores are referenced by nothing: `harness gc` waits.
    with adding_objects(project.layout.store, reporter.progress):
        engine = engine or connect()
        context = prepare(project, request, engine, reporter.progress)
        inputs, record = context.start(project.params)
        return execute(inputs, record, engine, reporter)


def execute(
    inputs: Inputs, record: RunRecord, engine: Engine, reporter: Reporter, stopped: Stopped | None = None
) -> RunResult:
    """Allocate a run, record it, run the container, collect outputs and metrics, finish the record.

    The run is owned by this process from allocation to its final record (ownership.py): if the process dies,
    the next harness command notices and records the run as interrupted (recovery.py). The container is named
    ``harness-<run id>``: a caller that runs several at once stops one with ``engine.kill`` by that name, after
    making ``stopped`` true, and the run is recorded interrupted."""
    records = Records(inputs.layout.runs, inputs.layout.index)
    paths = records.allocate()
    with ownership.hold(paths.root):
        return _execute(inputs, record, engine, reporter, records, paths, stopped or _never)


def container_name(run_id: str) -> str:
    return f"harness-{run_id}"


def _never() -> bool:
    return False


def _execute(
    inputs: Inputs,
    record: RunRecord,
    engine: Engine,
    reporter: Reporter,
    records: Records,
    paths: RunPaths,
    stopped: Stopped,
) -> RunResult:
    layout = inputs.layout
    store = Store(layout.objects)
    started = time.time()
    record["id"] = paths.id
    record["process"] = cast(schema.Process, ownership.this_process())
    datasets.register(layout, inputs.data, record["data"].get("sources", {}), origin=paths.id)  # for `data ls`
    record["started_at"] = _iso(started)
    records.write(record)

    work = layout.work / paths.id
    try:
        spec, rewritten = _prepare(inputs, paths, work, store)
        record["runtime"] = _runtime(spec, inputs)
        if rewritten:
            record["runtime"]["defaults_file_written"] = str(inputs.defaults_file)
        records.write(record)
        if omitted := record["runtime"].get("params_env_omitted"):
            reporter.progress(
                f"warning: params too long for an environment variable (over {MAX_ENV_VALUE // 1024} KiB, or "
                f"{MAX_ENV_TOTAL // 1024} KiB for all): {', '.join(omitted)}; no HARNESS_PARAM_* for them, "
                "the code finds them in /harness/params.json"
            )
        # Only now: a run that fails while its inputs are checked and laid out never "started".
        reporter.started(paths.id)
        reporter.progress(f"running {' '.join(spec.command)}")
        make_file(paths.log)  # no more open than the run's directory
        with open(paths.log, "r+b") as log_file:
            log = CappedLog(log_file, inputs.limits.size("log"))

            def sink(stream: str, chunk: bytes) -> None:
                log.write(chunk)
                reporter.output(stream, chunk)

            ended = None
            try:
                if stopped():
                    raise ContainerInterrupted("interrupted before its container started")
                ended = run_limited(engine, spec, sink, inputs.limits, paths.outputs, work / "state")
                record["status"] = "succeeded" if ended.exit_code == 0 else "failed"
                record["exit_code"] = ended.exit_code
                if ended.exit_code != 0 and stopped():
                    ended = None  # killed by its caller, not ended by its code or a limit
                    raise ContainerInterrupted("interrupted: the container was stopped and removed")
            except ContainerInterrupted:
                record["status"] = "interrupted"
                record["exit_code"] = None
            finally:
                log.close()
                record["log"] = {"bytes": log.total, "dropped": log.dropped}
        _collect(record, paths, store, layout, reporter)
        if ended is not None and (error := limit_failure(ended, inputs.limits, record["outputs"]["bytes"])):
            record["status"] = "failed"
            record["error"] = error
    except BaseException as exc:
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.setdefault("exit_code", None)
        record["error"] = (
            cast(schema.Error, exc.to_dict())
            if isinstance(exc, HarnessError)
            else {"error": type(exc).__name__, "message": str(exc)}
        )
        _finish(record, started, records)
        raise
    finally:
        snapshot.remove_materialized(work)  # code, data and params: read-only trees of store hardlinks
    _finish(record, started, records)
    return RunResult(record)


def _prepare(inputs: Inputs, paths: RunPaths, work: Path, store: Store) -> tuple[ContainerSpec, bool]:
    """The container's spec, and whether the run's params were written over the code's defaults file."""
    make_dirs(work.parent)
    work.mkdir(0o777 & ~withheld(work.parent))
    user = None if os.getuid() != 0 else NOBODY
    codebase.materialize_code(store, inputs.archive, work / "code", inputs.patch)
    rewritten = bool(inputs.defaults_file) and write_defaults_file(
        work / "code", str(inputs.defaults_file), inputs.params.values
    )
    mounts = [Mount(work / "code", "/code")]
    if inputs.data.entries:
        # The container's nobody cannot read objects only their owner may (a private store): those are copied.
        snapshot.materialize(store, inputs.data.digest, work / "data", shared=user == NOBODY)
        mounts.append(Mount(work / "data", "/data"))
    (work / "harness").mkdir()
    (work / "harness" / "params.json").write_text(json.dumps(inputs.params.values, indent=2, sort_keys=True))
    for path in (work / "harness", work / "harness" / "params.json"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    mounts.append(Mount(work / "harness", "/harness"))
    paths.outputs.mkdir(0o777 & ~withheld(paths.root))
    codepaths.place(work / "code", paths.outputs, inputs.code_paths, shared=user == NOBODY)
    if user == NOBODY:
        os.chmod(paths.outputs, 0o777)  # the container's unprivileged user writes here
    mounts.append(Mount(paths.outputs, "/outputs", read_only=False))
    helper_mounts, helper_env = tracking.helper_mounts(
        store.require(inputs.helper), work / "harness", work / "state", shared=user == NOBODY
    )
    mounts += helper_mounts
    uid_gid = user or f"{os.getuid()}:{os.getgid()}"
    threads = str(inputs.threads)
    env = {
        "HOME": "/tmp",
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "SOURCE_DATE_EPOCH": str(inputs.commit_time),
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "HARNESS_RUN_ID": paths.id,
        "HARNESS_CODE": "/code",
        "HARNESS_DATA": "/data",
        "HARNESS_OUTPUTS": "/outputs",
        "HARNESS_PARAMS": "/harness/params.json",
        **{var: threads for var in THREAD_VARS},
        **inputs.params.env(),
        **helper_env,
        **(mlflowstore.ENV if inputs.mlflow else {}),
    }
    env = tracking.with_pythonpath(env, inputs.extra_env)
    spec = ContainerSpec(
        image=inputs.image_id,
        command=inputs.command,
        env=env,
        mounts=tuple(mounts),
        workdir="/code",
        user=uid_gid,
        labels=ownership.labels(paths.id, inputs.layout.store),
        name=container_name(paths.id),
        limits=inputs.limits.container(),
    )
    return spec, rewritten


def _runtime(spec: ContainerSpec, inputs: Inputs) -> schema.Runtime:
    described = spec.to_dict()
    runtime: schema.Runtime = {
        "user": described["user"],
        "network": described["network"],
        "read_only_root": described["read_only_root"],
        "cap_drop": described["cap_drop"],
        "security_opt": described["security_opt"],
        "hostname": described["hostname"],
        "workdir": described["workdir"],
        "tmpfs": described["tmpfs"],
        "mounts": [{"target": m["target"], "read_only": m["read_only"]} for m in described["mounts"]],
        "env": described["env"],
        "threads": inputs.threads,
        "params_helper": inputs.helper,
        "limits": inputs.limits.to_record(),
    }
    if omitted := inputs.params.env_omitted():
        runtime["params_env_omitted"] = omitted
    return runtime


def _collect(record: RunRecord, paths: RunPaths, store: Store, layout: Layout, reporter: Reporter) -> None:
    record.pop("mlflow", None)
    harvested = mlflowstore.harvest(layout.work / paths.id / "state", paths.outputs, record["params"])
    if harvested is not None:
        record["mlflow"] = harvested[0]
        for warning in harvested[1]:
            reporter.progress(f"warning: {warning}")
    stored = store_outputs(paths.outputs, store, paths.root / "skipped")
    outputs = stored.snapshot
    files = {e.path: e.sha256 for e in outputs.entries if e.kind == "file" and e.sha256}
    first, count = outputlist.listed(outputs)
    record["outputs"] = {
        "manifest": outputs.digest,
        "files": first,  # all of them when there are at most outputlist.MAX_LISTED
        "file_count": count,
        "bytes": outputs.bytes,
        "read_only": True,
        "skipped": [cast(schema.SkippedOutput, s.to_dict()) for s in stored.skipped],
    }
    if stored.skipped:
        # The run keeps its own status: one output a record cannot hold must not cost it the others.
        listed = "; ".join(f"{s.path}: {s.reason}" for s in stored.skipped[:MAX_LISTED_CHANGES])
        more = (
            f"; and {len(stored.skipped) - MAX_LISTED_CHANGES} more" if len(stored.skipped) > MAX_LISTED_CHANGES else ""
        )
        reporter.progress(
            f"warning: {len(stored.skipped)} output(s) not recorded, moved to {paths.root / 'skipped'}: {listed}{more}"
        )
    # A rebuild starts from a copy of the original record: what this run reports replaces all of it.
    record.pop("metrics_error", None)
    record.pop("metrics_steps", None)
    record.pop("metrics_steps_object", None)
    record.pop("metrics_truncated", None)
    record.pop("params_read_error", None)
    found = tracking.read_metrics(paths.outputs, files, tuple(record["config"].get("metrics") or ()))
    record["metrics"] = found.metrics
    if harvested is not None:
        # The files the code wrote itself win over what it logged to MLflow under the same name.
        record["metrics"] = {**harvested[0]["metrics"], **found.metrics}
        if found.steps is None and "mlflow/metrics.jsonl" in files:
            record["metrics_steps"] = harvested[0].get("steps", 0)
            record["metrics_steps_object"] = files["mlflow/metrics.jsonl"]
    if found.truncated_from is not None:
        record["metrics_truncated"] = {"kept": tracking.MAX_METRIC_KEYS, "total": found.truncated_from}
    if found.steps is not None:
        record["metrics_steps"] = found.steps
        record["metrics_steps_object"] = found.steps_object
    if found.error is not None:
        record["metrics_error"] = found.error
    usage = tracking.params_usage(
        layout.work / paths.id / "state", record["params"], record.get("command_params") or []
    )
    record["params_read"] = usage.read
    record["params_unread"] = usage.unread
    if usage.error is not None:
        record["params_read_error"] = usage.error


def _finish(record: RunRecord, started: float, records: Records) -> None:
    finished = time.time()
    record["finished_at"] = _iso(finished)
    record["duration_s"] = round(finished - started, 3)
    records.write(record)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
