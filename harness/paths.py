"""Environment variable names and default locations, in one place.

Two stores:
- the project store (``HARNESS_HOME``, default ``<project>/.harness``): runs, the run index, data and output
  objects, code archives. It belongs to one project and is git-ignored.
- the cache (``HARNESS_CACHE``, default ``$XDG_CACHE_HOME/harness`` or ``~/.cache/harness``): wheels, base
  layers and image archives, which are large and shared by every project on the machine, the way Docker's own
  image store is shared. harness makes it 0700: image archives may hold project files (a Dockerfile base's COPY),
  and no other user may put a file in it whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "HARNESS_HOME"
ENV_CACHE = "HARNESS_CACHE"
ENV_CI = "CI"

STORE_DIRNAME = ".harness"


def cache_root() -> Path:
    """The cache directory; made 0700 if it does not exist (an existing one keeps its mode)."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        root = Path(explicit).expanduser().resolve()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = ((Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness").resolve()
    if not root.is_dir():
        with contextlib.suppress(OSError):  # the first write into it names the problem
            os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def store_root(project_root: Path) -> Path:
    explicit = os.environ.get(ENV_HOME)
    if explicit:
        return Path(explicit).expanduser().resolve()
    return project_root / STORE_DIRNAME


def in_ci() -> bool:
    return os.environ.get(ENV_CI, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Layout:
    """Where everything lives for one project."""

    project: Path
    store: Path
    cache: Path

    @classmethod
    def for_project(cls, project_root: Path) -> Layout:
        return cls(project=project_root, store=store_root(project_root), cache=cache_root())

    @property
    def objects(self) -> Path:
        return self.store / "objects"

    @property
    def runs(self) -> Path:
        return self.store / "runs"

    @property
    def index(self) -> Path:
        return self.store / "index.sqlite"

    @property
    def work(self) -> Path:
        """Per-run scratch trees (code, data, params) mounted into containers; removed after the run."""
        return self.store / "work"

    @property
    def stat_cache(self) -> Path:
        return self.store / "stat-cache.sqlite"

    @property
    def cache_objects(self) -> Path:
        return self.cache / "objects"

    @property
    def wheels(self) -> Path:
        return self.cache / "wheels"

    @property
    def images(self) -> Path:
        """One JSON file per built environment key: image id, digests, packages, archive object."""
        return self.cache / "images"

    @property
    def locks(self) -> Path:
        return self.cache / "locks"
