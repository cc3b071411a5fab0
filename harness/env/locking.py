"""`harness lock`: resolve a project's requirements into a hash-pinned lock for its image's Python and platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.docker.engine import connect
from harness.env import lockfile, lockinputs, pylock, wheels
from harness.env.environment import Progress
from harness.env.pinnedbase import resolve, resolve_archived
from harness.env.projectlock import foreign_pylock_error, made_by_harness, parse_project_lock
from harness.env.recipe import Recipe, load_recipe
from harness.errors import ConfigError, EngineUnavailable
from harness.paths import Layout
from harness.project.config import load_config


def lock_project(project_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Resolve the requirements for the base's Python and platform and write the lock; ``progress`` hears about
    the one slow step there can be, pulling or building and archiving a pinned or Dockerfile base on first use.

    The lock is written in the format its name says: ``pylock.toml``/``pylock.<name>.toml`` as PEP 751, anything
    else as harness.lock. A pylock.toml that another tool made is never overwritten: with no requirements
    configured it is checked for the image and reported, unchanged.
    """
    config = load_config(project_dir)
    lock_path = config.root / config.lock
    as_pylock = lockfile.is_pylock(config.lock)
    foreign = as_pylock and lock_path.is_file() and not made_by_harness(lock_path.read_text(encoding="utf-8"))
    if not config.requirements and not foreign:
        raise ConfigError(
            f"{config.file.name}: {config.key('requirements')}: missing; `harness lock` needs the requirements",
            'add requirements = "requirements.txt" (one requirement per line, or a file pinned with --hash) or '
            'requirements = "pyproject.toml" (its [project] dependencies)',
        )
    recipe = load_recipe(config.base, config.root, build_network=config.build_network)
    if recipe.archived:
        recipe = _resolve_pinned(recipe, config.root, progress or (lambda _message: None))
    if foreign:
        if config.requirements:
            raise foreign_pylock_error(config, lock_path)
        current = pylock.read_pylock(lock_path.read_text(encoding="utf-8"), lock_path, recipe.python, recipe.platform)
        return _outcome(lock_path, current.lock, [], written=False)
    assert config.requirements is not None
    requirements = lockinputs.read_input(config.root / config.requirements, config.requirements)
    check_requires_python(requirements, recipe.python)
    old = parse_project_lock(config, recipe, lock_path.read_text(encoding="utf-8")) if lock_path.is_file() else None
    new = wheels.resolve(requirements, recipe.python, recipe.platform)
    changes = lockfile.diff_locks(old, new)
    if as_pylock:
        pylock.write_pylock(lock_path, new)
    else:
        lockfile.write_lock(lock_path, new)
    return _outcome(lock_path, new, changes, written=True)


def _outcome(path: Path, lock: lockfile.Lock, changes: list[str], *, written: bool) -> dict[str, Any]:
    return {
        "lock": str(path),
        "written": written,
        "python": lock.python,
        "platform": lock.platform,
        "digest": lock.digest,
        "packages": [p.to_dict() for p in lock.packages],
        "changes": changes,
    }


def check_requires_python(requirements: lockinputs.Requirements, python: str) -> None:
    """A pyproject's requires-python must admit the image's Python: uv would resolve for it regardless."""
    if requirements.requires_python is None:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        fits = SpecifierSet(requirements.requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        raise ConfigError(
            f"{requirements.source}: project.requires-python: not a version specifier: {requirements.requires_python!r}"
        ) from None
    if not fits:
        raise ConfigError(
            f"{requirements.source}: project.requires-python is {requirements.requires_python!r}, and the image's "
            f"Python is {python}",
            "choose a base with a Python the project supports, or widen requires-python",
        )


def _resolve_pinned(recipe: Recipe, root: Path, say: Progress) -> Recipe:
    """A registry image's or a Dockerfile's Python and platform are known only from the image itself: read from its
    archive record, or, on first use, pulled or built, archived and asked (which needs the engine once)."""
    layout = Layout.for_project(root)
    resolved = resolve_archived(recipe, layout)
    if resolved is not None:
        return resolved
    try:
        engine = connect()
    except EngineUnavailable as exc:
        raise EngineUnavailable(
            f"{exc.message}; `harness lock` needs it once for base {recipe.name}: the image's own python3 is asked "
            f"for its version and platform, and the image is archived in {layout.cache} so later locks need no "
            "engine; the lock was not changed",
            exc.hint,
        ) from None
    return resolve(recipe, layout, engine, say)
