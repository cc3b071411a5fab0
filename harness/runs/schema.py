"""The run record, schema ``harness.run/1``, as types: what `harness show RUN --json` prints and rebuild reads.

The same schema is published for other tools as JSON Schema in ``harness.run-1.schema.json`` beside this module;
tests check that the two agree and validate real records against it. Add fields freely; never rename or drop one
without bumping the schema (``SCHEMA``).

Records written by an older harness may lack fields added since (``NotRequired`` ones, and a few that readers
fetch with ``.get``); everything in a record is plain JSON.
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired[...] only from evaluated annotations.
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

SCHEMA = "harness.run/1"
STATUSES = ("running", "succeeded", "failed", "interrupted")
JSON_SCHEMA = Path(__file__).parent / "harness.run-1.schema.json"

Status = Literal["running", "succeeded", "failed", "interrupted"]


class Change(TypedDict):
    path: str
    status: str


class Code(TypedDict):
    commit: str
    tree: str  # of the project directory
    dirty: bool
    patch: str | None  # the dirty run's stored changes (manifest object)
    diff: str | None  # object of `git diff HEAD`, for people to read
    changes: list[Change]
    branch: str | None
    remote: str | None  # without credentials
    subject: str
    committed_at: str
    committed_at_epoch: int  # SOURCE_DATE_EPOCH
    project_path: str  # the project's directory inside the repository, "" at its root
    archive: str  # object: the tree as a tar


class Package(TypedDict):
    name: str
    version: str
    sha256: str  # of the wheel file installed


class Environment(TypedDict):
    key: str
    image_id: str
    manifest_digest: str
    image_ref: str
    base: dict[str, Any]  # a recipe's fields, or a pinned image's or a Dockerfile's digests and the image's facts
    lock_digest: str
    python: str
    packages: list[Package]
    layers: list[str]
    recipe: str
    lock_file: str
    lock_object: NotRequired[str]  # the lock itself, so a rebuild can rebuild the image


class Data(TypedDict):
    snapshot: str
    files: int
    bytes: int
    mount: str
    sources: dict[str, str]
    read_only: bool


class SkippedOutput(TypedDict):
    path: str  # relative to the outputs directory; a name that is not UTF-8 shown with \xNN escapes
    reason: str


class Outputs(TypedDict):
    manifest: str | None
    files: dict[str, str]  # path -> sha256: the first outputlist.MAX_LISTED by path (all: the manifest)
    file_count: NotRequired[int]  # every file recorded; absent in older records, which list every file
    bytes: int
    read_only: NotRequired[bool]  # stored read-only (0444/0555 files, 0755 directories); absent in older records
    skipped: NotRequired[list[SkippedOutput]]  # what the run wrote that the record cannot hold, and why


class RuntimeMount(TypedDict):
    target: str
    read_only: bool


class Limits(TypedDict):
    """What the run was held to; null is no limit. Sizes in bytes."""

    pids: int | None
    memory: int | None  # RAM; swap off
    cpus: float | None  # null: all the host's
    outputs: int | None
    state: int | None
    log: int | None
    oom_score_adj: int
    sources: dict[str, str]  # limit -> "default", "config" or "--limit"


class Runtime(TypedDict):
    user: str | None
    network: str
    read_only_root: bool
    cap_drop: list[str]
    security_opt: list[str]
    hostname: str
    workdir: str
    tmpfs: dict[str, str]
    mounts: list[RuntimeMount]
    env: dict[str, str]
    threads: int
    params_helper: str
    params_env_omitted: NotRequired[list[str]]  # dotted params too long for a HARNESS_PARAM_* variable
    limits: NotRequired[Limits]  # absent in records made before harness set limits
    defaults_file_written: NotRequired[str]  # the run's params written over this defaults file in its code


class MetricsTruncated(TypedDict):
    kept: int  # the first this many flattened keys, in the order the files gave them
    total: int  # flattened keys the run reported


class Host(TypedDict):
    engine_version: str | None
    engine_api: str | None
    os: str
    cpu: str
    cpus: int | None
    hostname: str
    harness_version: str
    ci: dict[str, Any] | None


class Process(TypedDict):
    """The harness process that ran the run: how a later harness tells that it died (runs/ownership.py)."""

    pid: int
    boot_id: str | None  # /proc/sys/kernel/random/boot_id: a reboot changes it
    hostname: str


class Error(TypedDict):
    error: str
    message: str
    hint: NotRequired[str | None]
    exit_code: NotRequired[int]
    reason: NotRequired[str]  # a limit stopped the run: "oom", "outputs over limit", "state over limit"
    limit: NotRequired[str]  # and which one: its key in [limits]


class Log(TypedDict):
    bytes: int  # what the container wrote to stdout and stderr
    dropped: int  # what log.txt does not hold: it keeps the head and the tail within the log limit


class Sweep(TypedDict):
    """The sweep a run belongs to (`harness sweep`): all its runs share the id; ``index`` is the run's place in the
    grid (0-based, the last axis changing fastest), ``size`` the number of runs in the grid."""

    id: str
    index: int
    size: int
    worker: NotRequired[str]  # the Dask worker that ran it (harness sweep --cluster): its name, else its address


class RunRecord(TypedDict):
    schema: str
    id: str | None  # None only before the run is allocated
    name: str
    status: Status
    exit_code: int | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    command: list[str]
    params: dict[str, Any]
    params_digest: str
    params_sources: dict[str, str]
    configs: list[str]
    code: Code
    environment: Environment
    data: Data
    outputs: Outputs
    metrics: dict[str, Any]
    host: Host
    config: dict[str, Any]
    rebuild_of: str | None
    runtime: NotRequired[Runtime]
    error: NotRequired[Error]
    process: NotRequired[Process]  # absent in records written before harness noticed dead runs
    log: NotRequired[Log]
    params_read: NotRequired[list[str] | None]
    params_unread: NotRequired[list[str] | None]
    params_read_error: NotRequired[str]
    metrics_steps: NotRequired[int]
    metrics_steps_object: NotRequired[str | None]
    metrics_error: NotRequired[str]
    metrics_truncated: NotRequired[MetricsTruncated]  # more metrics than the record keeps; all are in the files
    command_template: NotRequired[list[str] | None]  # the configured command as written ({placeholders}); None: given
    mlflow: NotRequired[dict[str, Any]]  # what the code logged to MLflow: runs' ids, times, tags; params; models
    command_params: NotRequired[list[str]]  # the dotted params its placeholders took, counted as read
    sweep: NotRequired[Sweep]  # absent for a run that is not part of a sweep (and for a rebuild)
