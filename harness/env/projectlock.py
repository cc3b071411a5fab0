"""The project's lock as a run and `harness env` read it: harness.lock or a pylock.toml, checked against the
requirements it was resolved from (a requirements file, one pinned with hashes, or pyproject.toml's dependencies).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from harness.env import lockfile, lockinputs
from harness.env.pinnedbase import resolve_archived
from harness.env.recipe import Recipe
from harness.errors import ConfigError, EnvironmentBuildError
from harness.paths import Layout
from harness.project.config import ProjectConfig

FileReader = Callable[[str, str], str]  # (project-relative path, what it is) -> text; raises ConfigError if absent


def made_by_harness(text: str) -> bool:
    """A pylock.toml that `harness lock` wrote has its [tool.harness] table; an unreadable one counts as ours to
    replace only if it says so, so a user's broken file is reported, not overwritten."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    tool = doc.get("tool")
    return isinstance(tool, dict) and "harness" in tool


def foreign_pylock_error(config: ProjectConfig, lock_path: Path) -> ConfigError:
    try:
        made_by = str(tomllib.loads(lock_path.read_text(encoding="utf-8")).get("created-by", "another tool"))
    except (OSError, tomllib.TOMLDecodeError):
        made_by = "another tool"
    return ConfigError(
        f"{config.lock} was made by {made_by}, not by `harness lock`, and {config.key('requirements')} is set too: "
        f"harness will not overwrite {config.lock}, and cannot tell whether it is current with {config.requirements}",
        f"either remove {config.key('requirements')} and keep {config.lock} up to date with {made_by} (harness "
        f"then installs it as it is), or set {config.key('lock')} to another file for `harness lock` to write",
    )


def read_project_lock(config: ProjectConfig, recipe: Recipe, read: FileReader | None = None) -> lockfile.Lock:
    """The project's lock, checked against its requirements: what `harness run` and `harness env` build from.

    ``read`` reads a project file (the commit being run); without it the working tree is read, and a requirements
    file absent from it is not checked.
    """

    def working_tree(rel: str, what: str) -> str:
        path = config.root / rel
        if not path.is_file():
            raise ConfigError(f"{what} {rel} does not exist in {config.root}")
        return path.read_text(encoding="utf-8")

    reader = read or working_tree
    lock = parse_project_lock(config, recipe, reader(config.lock, "lock file"))
    if config.requirements and (read is not None or (config.root / config.requirements).is_file()):
        check_lock_current(lock, reader(config.requirements, "requirements file"), config.requirements)
    return lock


def parse_project_lock(config: ProjectConfig, recipe: Recipe, text: str) -> lockfile.Lock:
    """harness.lock, or a pylock.toml read for the recipe's Python and platform (its own, if harness wrote it)."""
    if not lockfile.is_pylock(config.lock):
        return lockfile.parse_lock(text, Path(config.lock))
    by_harness = made_by_harness(text)
    if config.requirements and not by_harness:
        raise foreign_pylock_error(config, config.root / config.lock)
    if recipe.archived and not recipe.python and not by_harness:
        recipe = resolve_archived(recipe, Layout.for_project(config.root)) or recipe
        if not recipe.python:
            made = "pulled" if recipe.pinned is not None else "built"
            raise EnvironmentBuildError(
                f"{config.lock} is read for the image's Python and platform, which base {recipe.name} tells only "
                f"once it has been {made}",
                hint="run `harness lock` once: it asks the image, archives it, and checks the lock against it",
            )
    from harness.env.pylock import read_pylock  # packaging's tags and markers: only for a PEP 751 lock

    return read_pylock(text, Path(config.lock), recipe.python, recipe.platform).lock


def check_lock_current(lock: lockfile.Lock, requirements_text: str | None, requirements_name: str | None) -> None:
    """Refuse a lock that was resolved from other requirements than the ones committed now (of any kind:
    a requirements file, one pinned with hashes, or pyproject.toml's dependencies; see lockinputs.py)."""
    if requirements_text is None or requirements_name is None:
        return
    lockinputs.check_current(lock, lockinputs.parse_input(requirements_text, requirements_name))
