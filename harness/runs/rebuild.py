"""`harness rebuild RUN`: re-execute a run from its record and the stores alone, then compare.

Every input comes from the record: the image (present, else loaded from the cache's objects, else rebuilt from
the recorded recipe and lock and required to match), the code (the stored archive of the commit's tree, so a
commit that is gone from the repository still rebuilds), a dirty run's stored changes, the data snapshot, the
params, the command and the runtime settings, its resource limits included (harness/runs/limits.py). Everything
is checked before the run starts, so a missing or tampered object is named and never used.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from harness.docker.engine import connect
from harness.docker.interface import Engine
from harness.errors import INTERRUPTED_EXIT_CODE, EnvironmentBuildError, HarnessError, NotFound, StoreCorruption
from harness.paths import Layout
from harness.project import codebase
from harness.project.config import project_layout
from harness.project.params import Params
from harness.runs import mlflowstore, tracking
from harness.runs.compare import InputComparison, OutputComparison, compare_inputs, compare_outputs
from harness.runs.hostinfo import host_facts
from harness.runs.limits import Capacity, capacity_soon, from_record
from harness.runs.records import Records
from harness.runs.runner import Inputs, Reporter, execute
from harness.runs.schema import Code, Host, RunRecord
from harness.storage import snapshot
from harness.storage.store import Store
from harness.storage.storelock import adding_objects

if TYPE_CHECKING:
    from harness.env.environment import Environment
    from harness.env.recipe import Recipe

REBUILD_DIFFERS_EXIT_CODE = 1


@dataclass(frozen=True)
class RebuildResult:
    original: RunRecord
    record: RunRecord
    outputs: OutputComparison
    inputs: InputComparison

    @property
    def interrupted(self) -> bool:
        """Stopped before its container ended (Ctrl-C, SIGTERM): no verdict, whatever its outputs so far."""
        return self.record["status"] == "interrupted"

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return INTERRUPTED_EXIT_CODE
        return 0 if self.outputs.identical else REBUILD_DIFFERS_EXIT_CODE

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.original["id"],
            "rebuild": self.record["id"],
            "identical": None if self.interrupted else self.outputs.identical,
            "outputs": self.outputs.to_dict(),
            "inputs": self.inputs.to_dict(),
            "status": self.record["status"],
            "duration_s": self.record.get("duration_s"),
        }


def rebuild(
    project_dir: Path, ref: str, reporter: Reporter, engine: Engine | None = None, layout: Layout | None = None
) -> RebuildResult:
    """Re-execute run ``ref`` of the project's store (or of ``layout``'s: a store filled by `harness pull`)."""
    layout = layout or project_layout(project_dir)
    records = Records(layout.runs, layout.index)
    original = records.read(ref)
    if original["status"] == "running":
        raise HarnessError(f"run {original['id']} is still running", "rebuild it after it has finished")
    # A code archive exported again, and the new run's outputs, are referenced by nothing until its record names
    # them: `harness gc` waits.
    with adding_objects(layout.store, reporter.progress):
        return _rebuild(layout, original, reporter, engine)


def _rebuild(layout: Layout, original: RunRecord, reporter: Reporter, engine: Engine | None) -> RebuildResult:
    store = Store(layout.objects)
    engine = engine or connect()
    capacity = capacity_soon(engine, layout.store)

    reporter.progress(f"rebuilding run {original['id']} ({original.get('name')})")
    record = _new_record(original, host_facts(engine.version()))
    inputs = recorded_inputs(original, original.get("runtime") or {}, layout, engine, reporter, capacity())
    result = execute(inputs, record, engine, reporter)
    return RebuildResult(
        original=original,
        record=result.record,
        outputs=compare_outputs(original, result.record, store),
        inputs=compare_inputs(original, result.record, store),
    )


def recorded_inputs(
    record: RunRecord,
    runtime: Mapping[str, Any],
    layout: Layout,
    engine: Engine,
    reporter: Reporter,
    capacity: Capacity,
) -> Inputs:
    """What the container of the run ``record`` names gets, from the stores alone, each object checked, the image
    in the engine: a rebuild's (the original's record and runtime), or a run's that was begun elsewhere (a sweep's
    run on a cluster worker: its first record, and the limits and params helper it was given as ``runtime``)."""
    store = Store(layout.objects)
    archive, patch = _code(record, store, layout)
    data = _data(record, store)
    _environment(record, layout, store, engine, reporter)
    limits, notes = from_record(runtime.get("limits"), capacity)
    for note in notes:
        reporter.progress(note)
    config = record.get("config") or {}
    return Inputs(
        layout=layout,
        command=tuple(record["command"]),
        params=Params(
            values=record["params"],
            sources=record.get("params_sources") or {},
            configs=tuple(record.get("configs") or ()),
        ),
        commit_time=_commit_time(record),
        threads=int(runtime.get("threads") or config.get("threads") or 1),
        extra_env=dict(config.get("env") or {}),
        archive=archive,
        patch=patch,
        data=data,
        image_id=record["environment"]["image_id"],
        helper=_helper(runtime, store),
        limits=limits,
        defaults_file=config.get("defaults_file"),
        code_paths=dict(config.get("paths") or {}),
        mlflow=mlflowstore.uses_mlflow(p["name"] for p in record["environment"].get("packages") or []),
    )


def _new_record(original: RunRecord, host: dict[str, Any]) -> RunRecord:
    """The original's inputs; nothing it reported (outputs, metrics, times, errors, where it ran)."""
    record = copy.deepcopy(original)
    record.pop("runtime", None)
    record.pop("error", None)
    record.pop("metrics_error", None)
    record.pop("log", None)
    record.pop("sweep", None)  # a rebuild re-executes one run; it is no run of the sweep
    record["id"] = None
    record["status"] = "running"
    record["exit_code"] = None
    record["started_at"] = record["finished_at"] = None
    record["duration_s"] = None
    record["outputs"] = {"manifest": None, "files": {}, "bytes": 0}
    record["metrics"] = {}
    record["host"] = cast(Host, host)
    record["rebuild_of"] = original["id"]
    return record


def _commit_time(original: RunRecord) -> int:
    code = original["code"]
    if code.get("committed_at_epoch") is not None:
        return int(code["committed_at_epoch"])
    runtime: Mapping[str, Any] = original.get("runtime") or {}
    env = runtime.get("env") or {}
    if "SOURCE_DATE_EPOCH" in env:
        return int(env["SOURCE_DATE_EPOCH"])
    from datetime import datetime

    return int(datetime.fromisoformat(str(code["committed_at"]).replace("Z", "+00:00")).timestamp())


def _code(original: RunRecord, store: Store, layout: Layout) -> tuple[str, str | None]:
    code = original["code"]
    archive = code["archive"]
    if not store.has(archive):
        archive = _re_export(code, store, layout)
    _require(store, archive, f"the code archive of commit {code['commit'][:12]} (tree {code['tree'][:12]})")
    patch = code.get("patch")
    if patch:
        _require(store, patch, "the recorded uncommitted changes of this dirty run")
        for path, entry in store.read_json(patch)["files"].items():
            if "sha256" in entry:
                _require(store, entry["sha256"], f"the uncommitted version of {path}")
    return archive, patch


def _re_export(code: Code, store: Store, layout: Layout) -> str:
    """The archive object is gone: export the same tree again from the repository, if it still has it."""
    from harness.project.vcs import Repository

    try:
        repo = Repository.open(layout.project)
        return codebase.archive_tree(repo, code["tree"], store, layout.store / "code")
    except HarnessError:
        raise NotFound(
            f"the code of this run is gone: object {code['archive']} (the archive of tree {code['tree']}) is not in "
            f"the store, and the repository does not have commit {code['commit']}",
            f"fetch the commit back (`git fetch <remote> {code['commit']}`) or restore the store's objects/ "
            "from a backup, then rebuild again",
        ) from None


def _data(original: RunRecord, store: Store) -> snapshot.Snapshot:
    digest = original["data"]["snapshot"]
    data = snapshot.load_snapshot(store, digest)
    bad = snapshot.verify_snapshot(store, digest)
    if bad:
        sources = ", ".join(f"{k} = {v}" for k, v in (original["data"].get("sources") or {}).items())
        missing = [p for p in bad if not _object_present(store, data, p)]
        listed = "\n".join(f"  {p}{' (missing)' if p in missing else ' (bytes changed)'}" for p in bad[:20])
        error = StoreCorruption if len(missing) < len(bad) else NotFound
        raise error(
            f"data snapshot {digest[:12]} cannot be used; nothing was run. These files' objects are "
            f"missing or no longer match their hashes:\n{listed}",
            f"re-snapshot the original data ({sources or 'the paths the run used'}) with identical content to "
            "restore the objects (`harness run` or `harness data snapshot` does this); check the rest with "
            "`harness verify`",
        )
    return data


def _object_present(store: Store, data: snapshot.Snapshot, path: str) -> bool:
    for entry in data.entries:
        if entry.path == path and entry.sha256:
            return store.has(entry.sha256)
    return False


def _environment(original: RunRecord, layout: Layout, store: Store, engine: Engine, reporter: Reporter) -> None:
    env_section = original["environment"]
    image_id = env_section["image_id"]
    if engine.has_image(image_id):
        return
    # What loads or rebuilds an image is imported only when the engine lacks it: most rebuilds find it there.
    from harness.env import images, oci
    from harness.env.environment import Environment
    from harness.env.imageload import load_image
    from harness.env.lockfile import Lock

    env = Environment.from_dict(env_section)
    cache = Store(layout.cache_objects)
    recipe = _recipe(env.base)
    if not oci.missing_objects(cache, env.parts):
        reporter.progress(f"loading image {image_id[:19]} from the store")
        load_image(cache, env.parts, env.image_ref, layout, engine, recipe.source_date_epoch)
        if not engine.has_image(image_id):
            raise EnvironmentBuildError(f"loading the stored archive did not give image {image_id}")
        return
    if recipe.dockerfile is not None:
        _require_archived_base(recipe, env, layout, cache, original["code"]["commit"])
    lock_object = env_section.get("lock_object")
    if not lock_object or not store.has(lock_object):
        raise NotFound(
            f"image {image_id} is not in the engine, its archive is not in the cache ({layout.cache}), and the "
            "record has no stored lock to rebuild it from",
            "restore the cache (HARNESS_CACHE) from a backup, or load the image with `docker load`",
        )
    reporter.progress(f"image {image_id[:19]} is not stored; rebuilding it from recipe {recipe.name!r} and the lock")
    lock = Lock.from_dict(store.read_json(lock_object))
    rebuilt = images.ensure_environment(recipe, lock, layout, engine, reporter.progress)
    if rebuilt.image_id != image_id:
        raise EnvironmentBuildError(
            f"rebuilding the environment from its recipe gave image {rebuilt.image_id}, not the recorded {image_id}",
            "the Debian archive behind the recipe has moved on since the run (pin a snapshot mirror in the "
            "recipe to prevent this); restore the original image archive into the cache to rebuild bit for bit",
        )


def _require_archived_base(recipe: Recipe, env: Environment, layout: Layout, cache: Store, commit: str) -> None:
    """A Dockerfile base's image exists only as its archive: name what is missing of it, if anything, before
    anything is rebuilt (the library layer alone can be rebuilt on an intact archive)."""
    from harness.env.dockerfilebase import NOT_REBUILDABLE
    from harness.env.pinnedbase import read_archived, record_path

    archived = read_archived(recipe, layout)
    record = record_path(recipe, layout)
    if archived is None:
        missing = [f"its archive record {record}"]
    else:
        named = [("config", archived.parts.config_digest), ("manifest", archived.parts.manifest_digest)]
        named += [(f"layer {i} ({layer.diff_id})", layer.digest) for i, layer in enumerate(archived.layers)]
        missing = [f"its {what} (object {cache.path(digest)})" for what, digest in named if not cache.has(digest)]
    if not missing:
        return
    raise NotFound(
        f"image {env.image_id} is not in the engine, and its base, built from {recipe.dockerfile} (key "
        f"{recipe.dockerfile_key[:16]}), is not in the cache ({layout.cache}): missing {'; '.join(missing)}. "
        f"{NOT_REBUILDABLE[0].upper()}{NOT_REBUILDABLE[1:]}; nothing was run",
        "restore the cache (HARNESS_CACHE) from a machine that has the archive (`harness env build` there loads "
        f"it), or accept a new base: `harness run --commit {commit[:12]}` builds the Dockerfile anew and records a "
        "new run on a new image (compare the two with `harness diff`)",
    )


def _recipe(base: dict[str, Any]) -> Recipe:
    from harness.env.recipe import Recipe

    return Recipe(
        name=str(base.get("name", "recorded")),
        # A digest-pinned base (pinnedbase.py) records no suite, variant or packages.
        suite=str(base.get("suite", "")),
        variant=str(base.get("variant", "")),
        packages=tuple(base.get("packages", ())),
        python=str(base["python"]),
        platform=str(base["platform"]),
        architecture=str(base["architecture"]),
        source_date_epoch=int(base["source_date_epoch"]),
        mirror=base.get("mirror"),
        pinned=base.get("pinned"),
        pinned_layers=tuple(base.get("diff_ids", ())),
        # A Dockerfile base records its path and digests; it has no source to build from here, only its archive.
        dockerfile=base.get("dockerfile"),
        dockerfile_digest=str(base.get("dockerfile_digest", "")),
        context_digest=str(base.get("context_digest", "")),
    )


def _helper(runtime: Mapping[str, Any], store: Store) -> str:
    """The params helper the original run mounted; records from before it was recorded get today's."""
    recorded = runtime.get("params_helper")
    if not recorded:
        return tracking.store_helper(store)
    _require(store, recorded, "the params helper module (harness_params) of the run")
    return str(recorded)


def _require(store: Store, digest: str, what: str) -> None:
    if not store.has(digest):
        raise NotFound(
            f"{what} is missing from the store: object {digest}; nothing was run",
            "restore the store's objects/ from a backup, or re-run the original commit with `harness run`",
        )
    if not store.verify(digest):
        raise StoreCorruption(
            f"{what} was tampered with: object {digest} no longer matches its hash; nothing was run",
            "the object was kept for inspection; restore it from a backup or re-create it by running the commit "
            "again, then `harness verify`",
        )
