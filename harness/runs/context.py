"""A project at one commit, resolved (:func:`load_project`), and everything its runs share prepared once
(:func:`prepare`): the code archive, the environment image, the data snapshot, the limits, the host's facts and
the params helper. One :class:`RunContext` serves one run (`harness run`) or every run of a sweep, which differ
only in their params (:meth:`RunContext.start`).

Core code: it reports progress through a callable and raises :class:`HarnessError`; it never prints or exits.
Everything that decides what a run computes is read from the commit being run (config, params file, lock); only
data comes from the working tree, and it is snapshotted by content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from harness.docker.interface import Engine
from harness.env import images, lockfile
from harness.env.environment import Environment
from harness.env.projectlock import read_project_lock
from harness.env.recipe import Recipe, load_recipe
from harness.errors import CodeError, ConfigError, DirtyTreeError
from harness.paths import Layout, in_ci
from harness.project import codebase
from harness.project.command import Filled, fill
from harness.project.config import ProjectConfig, find_config_file, parse_config
from harness.project.limitconfig import parse_limit_options
from harness.project.params import Params, layered, load_defaults, load_params_file, merge_params
from harness.project.projectfiles import CommittedFiles
from harness.project.vcs import Change, CommitInfo, Repository
from harness.runs import mlflowstore, schema, tracking
from harness.runs.hostinfo import host_facts
from harness.runs.inputs import MAX_LISTED_CHANGES, Inputs, RunRequest
from harness.runs.limits import Limits, capacity_soon, resolve
from harness.runs.schema import SCHEMA, RunRecord
from harness.storage import snapshot
from harness.storage.store import Store

Say = Callable[[str], None]


@dataclass(frozen=True)
class Project:
    """A project at one commit: what the run will compute, fully resolved, before anything runs."""

    layout: Layout
    repo: Repository
    commit: CommitInfo
    config: ProjectConfig
    params: Params  # the request's: defaults, configs, overrides (a sweep's runs each add their point)
    recipe: Recipe
    lock: lockfile.Lock
    changes: tuple[Change, ...]  # non-empty only for a dirty run
    command: Filled  # the argv as run: the configured command with its {placeholders} filled, or the one given
    defaults: dict[str, Any]  # the config's params over the defaults file's
    named: dict[str, dict[str, Any]]  # the params file's named configs
    sweep_block: Any  # the params file's sweep: block, None when it has none

    def params_for(self, request: RunRequest, swept: tuple[tuple[str, Any], ...] = ()) -> Params:
        """The request's params with one sweep point's values over them."""
        config = self.config
        return merge_params(self.defaults, self.named, request.configs, request.overrides, config.params_file, swept)

    def command_for(self, request: RunRequest, params: Params) -> Filled:
        """The argv these params run: the configured command's {placeholders} filled; one given after `--` as it
        is."""
        if request.command:
            return Filled(tuple(request.command), ())
        config = self.config
        return fill(config.command, params.values, f"{config.file.name}: {config.key('command')}")


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
    named: dict[str, dict[str, Any]] = {}
    sweep_block = None
    if config.params_file:
        named, sweep_block = load_params_file(committed(config.params_file, "params file"), config.params_file)
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
    return Project(
        layout, repo, commit, config, params, recipe, lock, tuple(changes), command, defaults, named, sweep_block
    )


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
class RunContext:
    """What every run of one project at one commit shares, resolved, built and hashed once: a sweep of N runs pays
    for the code archive, the image, the data snapshot and the limits once, not N times."""

    project: Project
    request: RunRequest
    archive: str  # the code archive object
    patch: codebase.DirtyPatch | None
    environment: Environment
    data: snapshot.Snapshot
    host: dict[str, Any]
    limits: Limits
    lock_object: str  # the lock itself, so a rebuild can rebuild the image from the recipe if its archive is gone
    helper: str  # the params helper module's object
    mlflow: bool  # the environment has mlflow

    def start(
        self, params: Params, name: str | None = None, sweep: schema.Sweep | None = None
    ) -> tuple[Inputs, RunRecord]:
        """One run of this context with these params: what its container gets and its first record. The params
        are the project's own (``project.params``) or one sweep point's (``project.params_for``)."""
        project = self.project
        config = project.config
        command = project.command if params is project.params else project.command_for(self.request, params)
        record = _initial_record(self, params, command, name)
        record["environment"]["lock_object"] = self.lock_object
        if sweep is not None:
            record["sweep"] = sweep
        inputs = Inputs(
            layout=project.layout,
            command=tuple(record["command"]),
            params=params,
            commit_time=project.commit.time,
            threads=project.config.threads,
            extra_env=project.config.env,
            archive=self.archive,
            patch=self.patch.manifest if self.patch else None,
            data=self.data,
            image_id=self.environment.image_id,
            helper=self.helper,
            limits=self.limits,
            defaults_file=config.defaults_file,
            code_paths=config.paths,
            metrics_files=config.metrics,
            mlflow=self.mlflow,
        )
        return inputs, record


def prepare(project: Project, request: RunRequest, engine: Engine, say: Say, at_once: int = 1) -> RunContext:
    """Resolve, build and hash what the project's runs share; ``at_once`` runs will go at the same time and share
    the host's default limits (Limits.shared). The caller holds the store's adding_objects lock: until a record
    names them, the objects stored here are referenced by nothing."""
    options = parse_limit_options(request.limits)
    layout = project.layout
    store = Store(layout.objects)
    capacity = capacity_soon(engine, layout.store)
    host = host_facts(engine.version())

    # The code before the environment: code that cannot be run (a submodule) is refused before any image is built.
    say("hashing code")
    archive = codebase.archive_tree(project.repo, project.commit.tree, store, layout.store / "code")
    patch = codebase.capture_dirty(project.repo, list(project.changes), store) if project.changes else None

    environment = images.ensure_environment(project.recipe, project.lock, layout, engine, say)

    data = snapshot.snapshot_roots(
        {d.name: d.path for d in project.config.data},
        store,
        layout.stat_cache,
        progress=_byte_progress(say, "snapshotting data"),
        rehash=request.rehash,
    )
    config = project.config
    run_limits = resolve(config.limits, options, capacity(), f"{config.file.name}: {config.key('limits')}")
    run_limits = run_limits.shared(at_once)
    mlflow = mlflowstore.uses_mlflow(p.name for p in project.lock.packages)
    if mlflow and run_limits.sources.get("state") == "default":
        # MLflow's store holds the artifacts and models that become outputs: the outputs limit holds it.
        run_limits = replace(run_limits, values={**run_limits.values, "state": run_limits["outputs"]})
    return RunContext(
        project=project,
        request=request,
        archive=archive,
        patch=patch,
        environment=environment,
        data=data,
        host=host,
        limits=run_limits,
        lock_object=store.put_json(project.lock.to_dict()),
        helper=tracking.store_helper(store),
        mlflow=mlflow,
    )


def _initial_record(context: RunContext, params: Params, command: Filled, name: str | None) -> RunRecord:
    project, request = context.project, context.request
    environment, archive, patch, data, host = (
        context.environment,
        context.archive,
        context.patch,
        context.data,
        context.host,
    )
    config = project.config
    commit = project.commit
    name = name or request.name or "+".join((config.name, *params.configs))
    return {
        "schema": SCHEMA,
        "id": None,
        "name": name,
        "status": "running",
        "exit_code": None,
        "started_at": None,
        "finished_at": None,
        "duration_s": None,
        "command": list(command.argv),
        # As written, and the params its placeholders took (counted as read): a rebuild runs the recorded argv.
        "command_template": None if request.command else list(config.command),
        "command_params": list(command.params),
        "params": params.values,
        "params_digest": params.digest,
        "params_sources": params.sources,
        "configs": list(params.configs),
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


def _byte_progress(say: Say, label: str) -> Callable[[int, int], None]:
    state = {"last": 0.0, "start": time.monotonic()}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        # Only long work gets progress lines; at most two a second.
        if now - state["start"] < 1.0 or (now - state["last"] < 0.5 and done < total):
            return
        state["last"] = now
        pct = 100 * done / total if total else 100
        say(f"{label}: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB ({pct:.0f}%)")

    return report


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
