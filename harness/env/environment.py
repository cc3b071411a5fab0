"""An environment: the image built from (recipe, lock), its key, and its record in the cache.

The key is the digest of every input of the image; the record (``images/<key>.json`` in the cache) holds the
image id, manifest digest, layers and packages, so a later run finds or reloads the image without a build.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.digests import sha256_json
from harness.env import oci
from harness.env.lockfile import PIP_INSTALLER, Lock
from harness.env.recipe import Recipe, key_inputs
from harness.errors import EnvironmentBuildError
from harness.files import write_json_atomic
from harness.urls import without_credentials

Progress = Callable[[str], None]

FORMAT = "harness.env/1"  # bump when the build procedure changes what an image contains
ENV_REPOSITORY = "harness-env"
VENV = "/opt/venv"


@dataclass(frozen=True)
class Environment:
    key: str
    image_id: str  # "sha256:" + sha256(config bytes): the id in the classic image store
    manifest_digest: str  # "sha256:" + sha256(OCI manifest bytes): the id in the containerd image store
    image_ref: str
    base: dict[str, Any]
    lock_digest: str
    python: str
    packages: tuple[dict[str, str], ...]
    layers: tuple[str, ...]  # diff ids, bottom first
    built: bool = False  # this call built the image
    loaded: bool = False  # this call loaded the image from the cache store (no build)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "image_id": self.image_id,
            "manifest_digest": self.manifest_digest,
            "image_ref": self.image_ref,
            "base": dict(self.base),
            "lock_digest": self.lock_digest,
            "python": self.python,
            "packages": [dict(p) for p in self.packages],
            "layers": list(self.layers),
        }

    def to_record(self) -> dict[str, Any]:
        """What a run record says: :meth:`to_dict` with a recipe's mirror without credentials (a private mirror's
        URL may hold them; the cache's own record, read back to find the image, keeps it as configured)."""
        recorded = self.to_dict()
        if recorded["base"].get("mirror"):
            recorded["base"]["mirror"] = without_credentials(str(recorded["base"]["mirror"]))
        return recorded

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Environment:
        return cls(
            key=str(data["key"]),
            image_id=str(data["image_id"]),
            manifest_digest=str(data["manifest_digest"]),
            image_ref=str(data["image_ref"]),
            base=dict(data["base"]),
            lock_digest=str(data["lock_digest"]),
            python=str(data["python"]),
            packages=tuple(dict(p) for p in data["packages"]),
            layers=tuple(str(layer) for layer in data["layers"]),
        )

    @property
    def parts(self) -> oci.ImageParts:
        return oci.ImageParts(
            config_digest=self.image_id.removeprefix("sha256:"),
            manifest_digest=self.manifest_digest.removeprefix("sha256:"),
            layers=tuple(layer.removeprefix("sha256:") for layer in self.layers),
        )


def environment_key(recipe: Recipe, lock: Lock) -> str:
    """sha256 of every input of the image: change any of them and the key (and the image) changes."""
    recipe_inputs = recipe.to_dict()
    del recipe_inputs["name"]  # a name is a label: the same recipe under another name is the same image
    if recipe.archived:
        recipe_inputs = key_inputs(recipe)  # digests and diff ids: not the registry, nor the Dockerfile's path
    return sha256_json(
        {
            "format": FORMAT,
            "recipe": recipe_inputs,
            "lock": lock.digest,
            "installer": PIP_INSTALLER.to_dict(),
            "venv": VENV,
        }
    )


def image_ref(key: str) -> str:
    return f"{ENV_REPOSITORY}:{key[:16]}"


def check_lock_matches(recipe: Recipe, lock: Lock) -> None:
    if recipe.archived and not recipe.python:
        return  # not resolved yet: ensure_environment checks again once the image told its python and platform
    if (lock.python, lock.platform) != (recipe.python, recipe.platform):
        raise EnvironmentBuildError(
            f"the lock is for Python {lock.python} on {lock.platform}, but base recipe {recipe.name!r} has "
            f"Python {recipe.python} on {recipe.platform}",
            hint="re-resolve the lock for the base (`harness lock`), or choose a base that matches the lock",
        )


def read_record(path: Path) -> Environment | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a damaged record is rebuilt from its inputs, it holds nothing else
    if data.get("format") != FORMAT:
        return None
    try:
        return Environment.from_dict(data)
    except (KeyError, TypeError):
        return None


def write_record(path: Path, env: Environment) -> None:
    write_json_atomic(path, {"format": FORMAT, **env.to_dict()})
