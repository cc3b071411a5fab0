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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from harness.docker.engine import connect
from harness.docker.interface import ContainerInterrupted, ContainerSpec, Engine, Mount
from harness.env import images, lockfile
from harness.env.environment import Environment
from harness.env.projectlock import read_project_lock
from harness.env.recipe import Recipe, load_recipe
from harness.errors import INTERRUPTED_EXIT_CODE, CodeError, ConfigError, DirtyTreeError, HarnessError
from harness.files import make_dirs, make_file, withheld
from harness.paths import Layout, in_ci
from harness.project import codebase, codepaths
from harness.project.command import Filled, fill
from harness.project.config import ProjectConfig, find_config_file, parse_config
from harness.project.limitconfig import parse_limit_options
from harness.project.params import (
    MAX_ENV_TOTAL,
    MAX_ENV_VALUE,
    Params,
    layered,
    load_defaults,
    load_named_configs,
    merge_params,
    write_defaults_file,
)
from harness.project.projectfiles import CommittedFiles
from harness.project.vcs import Change, CommitInfo, Repository
from harness.runs import mlflowstore, ownership, schema, tracking
from harness.runs.hostinfo import host_facts
from harness.runs.limited import limit_failure, run_limited
from harness.runs.limits import Limits, capacity_soon, resolve
from harness.runs.logcap import CappedLog
from harness.runs.records import Records, RunPaths
from harness.runs.schema import SCHEMA, RunRecord
from harness.storage import datasets, snapshot
from harness.storage.outputs import store_outputs
from harness.storage.store import Store
from harness.storage.storelock import adding_objects

NOBODY = "65534:65534"
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
MAX_LISTED_CHANGES = 20


class Reporter(Protocol):
    def progress(self, message: str) -> None: ...
    def output(self, stream: str, chunk: bytes) -> None: ...
    def started(self, run_id: str) -> None: ...


@dataclass(frozen=True)
class RunRequest:
    project_dir: Path
    rev: str = "HEAD"
    allow_dirty: bool = False
    configs: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    name: str | None = None
    command: tuple[str, ...] | None = None
    rehash: bool = False  # read every data file, trusting no cached hash
    limits: tuple[str, ...] = ()  # --limit KEY=VALUE


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


@dataclass(frozen=True)
class Project:
    """A project at one commit: what the run will compute, fully resolved, before anything runs."""

    layout: Layout
    repo: Repository
    commit: CommitInfo
    config: ProjectConfig
    params: Params
    recipe: Recipe
    lock: lockfile.Lock
    changes: tuple[Change, ...]  # non-empty only for a dirty run
    command: Filled  # the argv as run: the configured command with its {placeholders} filled, or the one given


def load_project(request: RunRequest) -> Project:
    config_file = find_config_file(request.project_dir.resolve())
    root = config_file.parent
    layout = Layout.for_project(root)
    repo = Repository.open(root)
    commit = repo.resolve(request.rev)
    changes = _check_clean(repo, commit, request, layout)

    def committed(rel: str, what: str) -> str:
        if changes:
            path = root / rel
            if not path.is_file():
                raise ConfigError(f"{what} {rel} does not exist in {root}")
            return path.read_text(encoding="utf-8")
        text = repo.read_file(commit.commit, rel)
        if text is None:
            raise ConfigError(
                f"{what} {rel} is not in commit {commit.commit[:12]}",
                f"commit it (`git add {rel} && git commit`): harness runs only what is committed",
            )
        return text

    config = parse_config(committed(config_file.name, "config file"), config_file, root)
    named = {}
    if config.params_file:
        named = load_named_configs(committed(config.params_file, "params file"), config.params_file)
    defaults = config.params
    if config.defaults_file:
        from_file = load_defaults(committed(config.defaults_file, "defaults file"), config.defaults_file)
        defaults = layered(from_file, config.params)
    params = merge_params(defaults, named, request.configs, request.overrides, config.params_file)
    # A project recipe (images/<base>.toml), or a Dockerfile and the files it copies, come from the commit being
    # run, like the config and the lock; a dirty run reads the working tree, which is what it runs.
    recipe_reader = None if changes else (lambda rel: repo.read_file(commit.commit, rel))
    files = None if changes else CommittedFiles(repo, commit.commit)
    recipe = load_recipe(config.base, root, read=recipe_reader, files=files, build_network=config.build_network)
    lock = read_project_lock(config, recipe, committed)
    if request.command:  # given after `--`: run untouched
        command = Filled(tuple(request.command), ())
    else:
        command = fill(config.command, params.values, f"{config.file.name}: {config.key('command')}")
    return Project(layout, repo, commit, config, params, recipe, lock, tuple(changes), command)


def _check_clean(repo: Repository, commit: CommitInfo, request: RunRequest, layout: Layout) -> list[Change]:
    if request.allow_dirty and not commit.is_head:
        raise CodeError(
            f"--allow-dirty runs the working tree, which is based on HEAD, not {request.rev}",
            f"drop --allow-dirty to run {request.rev} exactly as committed, or check it out first",
        )
    if not commit.is_head:
        return []  # another commit runs exactly as committed; the working tree plays no part
    changes = repo.changes(exclude=[layout.store])
    if not changes:
        return []
    listed = "\n".join(f"  {c.status:10} {c.path}" for c in changes[:MAX_LISTED_CHANGES])
    more = f"\n  ... and {len(changes) - MAX_LISTED_CHANGES} more" if len(changes) > MAX_LISTED_CHANGES else ""
    if request.allow_dirty and in_ci():
        raise DirtyTreeError(
            f"the working tree has uncommitted changes, and CI never runs a dirty tree:\n{listed}{more}",
            "commit the changes in the pipeline before `harness run`, or fix the step that modifies the checkout",
        )
    if not request.allow_dirty:
        raise DirtyTreeError(
            f"the working tree has uncommitted changes:\n{listed}{more}",
            "commit them (`git add -A && git commit`), add them to .gitignore, or run with --allow-dirty to run "
            "the working tree as it is (the diff is stored and the run is marked dirty)",
        )
    return changes


@dataclass(frozen=True)
class Inputs:
    """Everything the container needs, resolved: from a project at a commit (run) or from a record (rebuild)."""

    layout: Layout
    command: tuple[str, ...]
    params: Params
    commit_time: int  # SOURCE_DATE_EPOCH
    threads: int
    extra_env: dict[str, str]
    archive: str  # code archive object
    patch: str | None  # dirty-run patch manifest object
    data: snapshot.Snapshot
    image_id: str
    helper: str  # the params helper module's object: what `import harness_params` ran
    limits: Limits
    defaults_file: str | None = None  # a flat params file in the code, rewritten with the run's params
    code_paths: dict[str, str] = field(default_factory=dict)  # [paths]: links in /code to /data or /outputs
    metrics_files: tuple[str, ...] = ()  # outputs read as metrics besides metrics.json(l)
    mlflow: bool = False  # the environment has mlflow: point it at a store of harness's own (mlflowstore.py)


def run(request: RunRequest, reporter: Reporter, engine: Engine | None = None) -> RunResult:
    project = load_project(request)
    # Until the record names them, the objects this run stores are referenced by nothing: `harness gc` waits.
    with adding_objects(project.layout.store, reporter.progress):
        return _run_project(project, reporter, engine, request)


def _run_project(project: Project, reporter: Reporter, engine: Engine | None, request: RunRequest) -> RunResult:
    options = parse_limit_options(request.limits)
    layout = project.layout
    store = Store(layout.objects)
    engine = engine or connect()
    capacity = capacity_soon(engine, layout.store)
    host = host_facts(engine.version())

    # The code before the environment: code that cannot be run (a submodule) is refused before any image is built.
    reporter.progress("hashing code")
    archive = codebase.archive_tree(project.repo, project.commit.tree, store, layout.store / "code")
    patch = codebase.capture_dirty(project.repo, list(project.changes), store) if project.changes else None

    environment = images.ensure_environment(project.recipe, project.lock, layout, engine, reporter.progress)

    data = snapshot.snapshot_roots(
        {d.name: d.path for d in project.config.data},
        store,
        layout.stat_cache,
        progress=_byte_progress(reporter, "snapshotting data"),
        rehash=request.rehash,
    )
    config = project.config
    run_limits = resolve(config.limits, options, capacity(), f"{config.file.name}: {config.key('limits')}")
    mlflow = mlflowstore.uses_mlflow(p.name for p in project.lock.packages)
    if mlflow and run_limits.sources.get("state") == "default":
        # MLflow's store holds the artifacts and models that become outputs: the outputs limit holds it.
        run_limits = replace(run_limits, values={**run_limits.values, "state": run_limits["outputs"]})
    record = _initial_record(request, project, environment, archive, patch, data, host)
    # The lock itself, so a rebuild can rebuild the image from the recipe if its archive is gone.
    record["environment"]["lock_object"] = store.put_json(project.lock.to_dict())
    inputs = Inputs(
        layout=layout,
        command=tuple(record["command"]),
        params=project.params,
        commit_time=project.commit.time,
        threads=project.config.threads,
        extra_env=project.config.env,
        archive=archive,
        patch=patch.manifest if patch else None,
        data=data,
        image_id=environment.image_id,
        helper=tracking.store_helper(store),
        limits=run_limits,
        defaults_file=config.defaults_file,
        code_paths=config.paths,
        metrics_files=config.metrics,
        mlflow=mlflow,
    )
    return execute(inputs, record, engine, reporter)


def execute(inputs: Inputs, record: RunRecord, engine: Engine, reporter: Reporter) -> RunResult:
    """Allocate a run, record it, run the container, collect outputs and metrics, finish the record.

    The run is owned by this process from allocation to its final record (ownership.py): if the process dies,
    the next harness command notices and records the run as interrupted (recovery.py)."""
    records = Records(inputs.layout.runs, inputs.layout.index)
    paths = records.allocate()
    with ownership.hold(paths.root):
        return _execute(inputs, record, engine, reporter, records, paths)


def _execute(
    inputs: Inputs, record: RunRecord, engine: Engine, reporter: Reporter, records: Records, paths: RunPaths
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
                ended = run_limited(engine, spec, sink, inputs.limits, paths.outputs, work / "state")
                record["status"] = "succeeded" if ended.exit_code == 0 else "failed"
                record["exit_code"] = ended.exit_code
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


def _initial_record(
    request: RunRequest,
    project: Project,
    environment: Environment,
    archive: str,
    patch: codebase.DirtyPatch | None,
    data: snapshot.Snapshot,
    host: dict[str, Any],
) -> RunRecord:
    config = project.config
    commit = project.commit
    name = request.name or "+".join((config.name, *project.params.configs))
    return {
        "schema": SCHEMA,
        "id": None,
        "name": name,
        "status": "running",
        "exit_code": None,
        "started_at": None,
        "finished_at": None,
        "duration_s": None,
        "command": list(project.command.argv),
        # As written, and the params its placeholders took (counted as read): a rebuild runs the recorded argv.
        "command_template": None if request.command else list(config.command),
        "command_params": list(project.command.params),
        "params": project.params.values,
        "params_digest": project.params.digest,
        "params_sources": project.params.sources,
        "configs": list(project.params.configs),
        "code": {
            "commit": commit.commit,
            "tree": commit.tree,
            "dirty": patch is not None,
            "patch": patch.manifest if patch else None,
            "diff": patch.diff if patch else None,
            "changes": [{"path": c.path, "status": c.status} for c in patch.changes] if patch else [],
            "branch": commit.branch,
            "remote": commit.remote,
            "subject": commit.subject,
            "committed_at": _iso(commit.time),
            "committed_at_epoch": commit.time,
            "project_path": project.repo.subdir,
            "archive": archive,
        },
        # The environment, data and host sections come from lower layers as plain dicts of these shapes.
        "environment": cast(
            schema.Environment, environment.to_record() | {"recipe": config.base, "lock_file": config.lock}
        ),
        "data": cast(
            schema.Data,
            data.to_dict()
            | {"mount": "/data", "sources": {d.name: d.configured for d in config.data}, "read_only": True},
        ),
        "outputs": {"manifest": None, "files": {}, "bytes": 0},
        "metrics": {},
        "host": cast(schema.Host, host),
        "config": config.to_dict(),
        "rebuild_of": None,
    }


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
        name=f"harness-{paths.id}",
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
    record["outputs"] = {
        "manifest": outputs.digest,
        "files": {e.path: e.sha256 for e in outputs.entries if e.kind == "file" and e.sha256},
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
    found = tracking.read_metrics(
        paths.outputs, record["outputs"]["files"], tuple(record["config"].get("metrics") or ())
    )
    record["metrics"] = found.metrics
    if harvested is not None:
        # The files the code wrote itself win over what it logged to MLflow under the same name.
        record["metrics"] = {**harvested[0]["metrics"], **found.metrics}
        if found.steps is None and "mlflow/metrics.jsonl" in record["outputs"]["files"]:
            record["metrics_steps"] = harvested[0].get("steps", 0)
            record["metrics_steps_object"] = record["outputs"]["files"]["mlflow/metrics.jsonl"]
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


def _byte_progress(reporter: Reporter, label: str) -> Callable[[int, int], None]:
    state = {"last": 0.0, "start": time.monotonic()}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        # Only long work gets progress lines; at most two a second.
        if now - state["start"] < 1.0 or (now - state["last"] < 0.5 and done < total):
            return
        state["last"] = now
        pct = 100 * done / total if total else 100
        reporter.progress(f"{label}: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB ({pct:.0f}%)")

    return report


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
