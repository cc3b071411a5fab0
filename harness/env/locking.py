"""`harness lock`: resolve a project's requirements into a hash-pinned lock for its image's Python and platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.docker.engine import Engine
from harness.env import lockfile, wheels
from harness.env.environment import Progress
from harness.env.pinnedbase import resolve, resolve_archived
from harness.env.recipe import Recipe, load_recipe
from harness.errors import ConfigError, EngineUnavailable
from harness.paths import Layout
from harness.project.config import load_config


def lock_project(project_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Resolve the requirements for the base's Python and platform and write the lock; ``progress`` hears about
    the one slow step there can be, pulling and archiving a digest-pinned base on its first use."""
    config = load_config(project_dir)
    if not config.requirements:
        raise ConfigError(
            f"{config.file.name}: {config.key('requirements')}: missing; `harness lock` needs a requirements file",
            'add requirements = "requirements.txt" with one requirement per line',
        )
    requirements = lockfile.read_requirements(config.root / config.requirements)
    recipe = load_recipe(config.base, config.root)
    if recipe.pinned is not None:
        recipe = _resolve_pinned(recipe, config.root, progress or (lambda _message: None))
    lock_path = config.root / config.lock
    old = lockfile.read_lock(lock_path) if lock_path.is_file() else None
    new = wheels.resolve(requirements, recipe.python, recipe.platform)
    changes = lockfile.diff_locks(old, new)
    lockfile.write_lock(lock_path, new)
    return {
        "lock": str(lock_path),
        "python": new.python,
        "platform": new.platform,
        "digest": new.digest,
        "packages": [p.to_dict() for p in new.packages],
        "changes": changes,
    }


def _resolve_pinned(recipe: Recipe, root: Path, say: Progress) -> Recipe:
    """A registry image's Python and platform are known only from the image itself: read from its archive record,
    or, on first use, pulled, archived and asked (which needs the engine, and the registry, once)."""
    layout = Layout.for_project(root)
    resolved = resolve_archived(recipe, layout)
    if resolved is not None:
        return resolved
    try:
        engine = Engine.connect()
    except EngineUnavailable as exc:
        raise EngineUnavailable(
            f"{exc.message}; `harness lock` needs it once for base {recipe.pinned}: the image's own python3 is asked "
            f"for its version and platform, and the image is archived in {layout.cache} so later locks need no "
            "engine; the lock was not changed",
            exc.hint,
        ) from None
    return resolve(recipe, layout, engine, say)
