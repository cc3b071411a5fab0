"""What a run is asked for (:class:`RunRequest`, from `harness run` and `harness sweep`) and what its container
gets (:class:`Inputs`, resolved from a project at a commit by harness.runs.context, or from a record by
harness.runs.rebuild): plain data, so that executing a run (harness.runs.runner) needs nothing that resolves a
project or builds an image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.paths import Layout
from harness.project.params import Params
from harness.runs.limits import Limits
from harness.storage import snapshot

MAX_LISTED_CHANGES = 20  # uncommitted changes, or files left out of the outputs, named in a message


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
