"""Environment variable names and default locations, in one place.

Two stores:
- the project store (``HARNESS_HOME``, default ``<project>/.harness``): runs, the run index, data and output
  objects, code archives. It belongs to one project and is git-ignored.
- the cache (``HARNESS_CACHE``, default ``$XDG_CACHE_HOME/harness`` or ``~/.cache/harness``): wheels, base
  layers and image archives, which are large and shared by every project on the machine, the way Docker's own
  image store is shared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "HARNESS_HOME"
ENV_CACHE = "HARNESS_CACHE"
ENV_CI = "CI"

STORE_DIRNAME = ".harness"


def cache_root() -> Path:
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "harness").resolve()


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
