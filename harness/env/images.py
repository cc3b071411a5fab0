"""Environments: base recipe + lock -> deterministic layers -> an image whose id is a function of its inputs.

    recipe (images/<name>.toml) --mmdebstrap--> base layer    (cached per base key: base-<key>.json)
    lock (harness.lock) + base  --pip, offline--> /opt/venv layer
    config + manifest (oci.py)  --docker load--> image, tagged harness-env:<key[:16]>

Every piece is an object in the cache store, so an image that was removed from the engine is loaded back with the
same id and without a build. `ensure_environment` tries, in order: the recorded image in the engine (no work), the
stored objects (one `docker load`), a build under a per-key file lock (two runs never build the same key twice).
"""

from __future__ import annotations

import dataclasses

from harness.docker.interface import Engine
from harness.env import oci
from harness.env.build import build_environment
from harness.env.environment import (
    Environment,
    Progress,
    check_lock_matches,
    environment_key,
    image_ref,
    read_record,
    write_record,
)
from harness.env.imageload import load_image
from harness.env.lockfile import Lock
from harness.env.pinnedbase import resolve
from harness.env.recipe import Recipe
from harness.files import file_lock
from harness.paths import Layout
from harness.storage.store import Store


def ensure_environment(
    recipe: Recipe, lock: Lock, layout: Layout, engine: Engine, progress: Progress | None = None
) -> Environment:
    """The image for (recipe, lock): reused if present, loaded from the cache store if stored, else built."""
    say = progress or (lambda _message: None)
    if recipe.archived:
        recipe = resolve(recipe, layout, engine, say)  # first use pulls or builds and archives; later, a record read
    check_lock_matches(recipe, lock)
    key = environment_key(recipe, lock)
    record_path = layout.images / f"{key}.json"

    found = _present(read_record(record_path), recipe, engine)
    if found is not None:
        return found
    store = Store(layout.cache_objects)
    with file_lock(layout.locks / f"{key}.lock", say):
        # Another process may have built or loaded it while we waited for the lock.
        record = read_record(record_path)
        found = _present(record, recipe, engine)
        if found is not None:
            return found
        if record is not None and not oci.missing_objects(store, record.parts):
            say(f"loading environment {record.image_ref} from the cache")
            load_image(store, record.parts, record.image_ref, layout, engine, recipe.source_date_epoch)
            return dataclasses.replace(_renamed(record, recipe), loaded=True)

        env = build_environment(recipe, lock, key, image_ref(key), layout, engine, store, say)
        write_record(record_path, env)
        return dataclasses.replace(env, built=True)


def _renamed(env: Environment, recipe: Recipe) -> Environment:
    # The record may have been written under another recipe name with identical contents.
    return dataclasses.replace(env, base={**env.base, "name": recipe.name})


def _present(record: Environment | None, recipe: Recipe, engine: Engine) -> Environment | None:
    """The recorded environment if the engine has its image (tagged), else None. One engine call when present."""
    if record is None:
        return None
    ids = (record.image_id, record.manifest_digest)
    info = engine.inspect_image(record.image_id) or engine.inspect_image(record.image_ref)
    if info is None or info.get("Id") not in ids:
        return None
    if record.image_ref not in (info.get("RepoTags") or []):
        repository, tag = record.image_ref.rsplit(":", 1)
        engine.tag_image(str(info["Id"]), repository, tag)
    return _renamed(record, recipe)
