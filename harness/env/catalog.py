"""The environments a machine has: listing and finding recorded ones, and building the one a project needs.

Records live in the shared cache (``HARNESS_CACHE``): ``images/<key>.json`` per environment, ``images/base-<key>.json``
per base layer. Listing reads only those records and the sizes of the stored objects; the engine is asked (one
inspect per environment) only whether each image is present, and a missing engine makes that column unknown
instead of failing the listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.docker.engine import connect
from harness.docker.interface import Engine
from harness.env import images, lockfile
from harness.env.environment import Environment, Progress, check_lock_matches, environment_key, read_record
from harness.env.projectlock import read_project_lock
from harness.env.recipe import Recipe, load_recipe
from harness.errors import EngineUnavailable, NotFound
from harness.paths import Layout, cache_root
from harness.project.config import ProjectConfig, load_config
from harness.storage.store import Store


@dataclass(frozen=True)
class ProjectEnvironment:
    """What decides a project's environment, read from its working tree: recipe, lock and where they go."""

    config: ProjectConfig
    recipe: Recipe
    lock: lockfile.Lock
    layout: Layout

    @property
    def key(self) -> str:
        return environment_key(self.recipe, self.lock)

    @property
    def record_path(self) -> Path:
        return self.layout.images / f"{self.key}.json"


def project_environment(project_dir: Path) -> ProjectEnvironment:
    """The recipe and lock of the project at (or above) ``project_dir``, checked against each other."""
    config = load_config(project_dir.resolve())
    recipe = load_recipe(config.base, config.root, build_network=config.build_network)
    lock_path = config.root / config.lock
    if not lock_path.is_file():
        raise NotFound(
            f"{config.key('lock')}: {config.lock} does not exist in {config.root}",
            "run `harness lock` to resolve the requirements into it",
        )
    lock = read_project_lock(config, recipe)
    check_lock_matches(recipe, lock)
    return ProjectEnvironment(config, recipe, lock, Layout.for_project(config.root))


def build_project(project_dir: Path, engine: Engine, progress: Progress | None = None) -> dict[str, Any]:
    """Ensure the project's environment; the result says whether it was ``built``, ``loaded`` or ``reused``."""
    project = project_environment(project_dir)
    env = images.ensure_environment(project.recipe, project.lock, project.layout, engine, progress)
    action = "built" if env.built else "loaded" if env.loaded else "reused"
    return {"action": action, **env.to_dict()}


# -- the catalogue ----------------------------------------------------------------------------------------------


def cache_layout(project_dir: Path) -> Layout:
    """A layout for reading the shared cache; the project part is unused, so no config is required."""
    root = project_dir.resolve()
    return Layout(project=root, store=root / ".harness", cache=cache_root())


def recorded_environments(layout: Layout) -> list[Environment]:
    if not layout.images.is_dir():
        return []
    found = []
    for path in sorted(layout.images.glob("*.json")):
        if path.name.startswith("base-"):
            continue
        env = read_record(path)
        if env is not None:
            found.append(env)
    return found


def connect_quietly() -> Engine | None:
    """The engine, or None when it is not reachable (listing still works, presence is then unknown)."""
    try:
        return connect(timeout=10)
    except EngineUnavailable:
        return None


def summary(env: Environment, store: Store, engine: Engine | None) -> dict[str, Any]:
    present: bool | None = None
    if engine is not None:
        info = engine.inspect_image(env.image_id)
        present = info is not None
    stored = [store.path(d.removeprefix("sha256:")) for d in env.layers]
    return {
        "key": env.key,
        "image_id": env.image_id,
        "manifest_digest": env.manifest_digest,
        "image_ref": env.image_ref,
        "base": env.base.get("name"),
        "python": env.python,
        "packages": len(env.packages),
        "present": present,
        "stored": all(p.is_file() for p in stored),
        "size": sum(p.stat().st_size for p in stored if p.is_file()),
    }


def list_environments(layout: Layout, engine: Engine | None) -> list[dict[str, Any]]:
    store = Store(layout.cache_objects)
    return [summary(env, store, engine) for env in recorded_environments(layout)]


def find_environment(layout: Layout, query: str) -> Environment:
    """The one recorded environment whose key, image id, manifest digest or image ref matches ``query``.

    Keys and digests match by prefix (with or without ``sha256:``), the image ref exactly.
    """
    wanted = query.strip().removeprefix("sha256:").lower()
    envs = recorded_environments(layout)
    matches = []
    for env in envs:
        ids = (env.key, env.image_id.removeprefix("sha256:"), env.manifest_digest.removeprefix("sha256:"))
        if query == env.image_ref or (len(wanted) >= 4 and any(i.startswith(wanted) for i in ids)):
            matches.append(env)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(
            f"no recorded environment matches {query!r} in {layout.images}",
            "list them with `harness env ls` (keys, image ids and manifest digests match by prefix of 4+ digits)",
        )
    listed = ", ".join(env.key[:16] for env in matches)
    raise NotFound(f"{query!r} matches {len(matches)} environments ({listed})", "give more digits of the key")


def base_summary(base: dict[str, Any]) -> list[str]:
    """The base in a few lines for people: what it is made from, and how it is kept."""
    epoch = f"SOURCE_DATE_EPOCH {base.get('source_date_epoch')}"
    if base.get("dockerfile"):
        return [
            f"{base.get('name')}: Dockerfile {base['dockerfile']} (sha256:{str(base.get('dockerfile_digest'))[7:19]}, "
            f"context sha256:{str(base.get('context_digest'))[7:19]}), key {str(base.get('digest'))[7:23]}",
            f"built once and archived, not rebuildable bit for bit: image {base.get('image_id', '-')}, "
            f"{len(base.get('diff_ids', []))} layers, {epoch}",
        ]
    if base.get("pinned"):
        return [
            f"{base.get('name')}: registry image pinned by digest, pulled once and archived",
            f"image {base.get('image_id', '-')}, {len(base.get('diff_ids', []))} layers, {epoch}",
        ]
    return [
        f"{base.get('name')}: {base.get('suite')} ({base.get('variant')}), packages "
        f"{', '.join(base.get('packages', []))}, mirror {base.get('mirror') or 'mmdebstrap default'}",
        f"{epoch}, base image {base.get('image_id', '-')}",
    ]


def describe(env: Environment, layout: Layout, engine: Engine | None) -> dict[str, Any]:
    """One environment in full: the summary plus its base, its layers with sizes, and its packages."""
    store = Store(layout.cache_objects)
    layers = []
    for i, diff_id in enumerate(env.layers):
        path = store.path(diff_id.removeprefix("sha256:"))
        layers.append(
            {
                "diff_id": diff_id,
                # The library layer is the last; below it, one for a recipe, the image's own for an archived base.
                "role": "libraries" if i == len(env.layers) - 1 else "base",
                "stored": path.is_file(),
                "size": path.stat().st_size if path.is_file() else None,
            }
        )
    return {
        **summary(env, store, engine),
        "lock_digest": env.lock_digest,
        "base": dict(env.base),
        "base_summary": base_summary(env.base),
        "layers": layers,
        "package_list": [dict(p) for p in env.packages],
    }
