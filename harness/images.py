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
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import oci
from .digests import canonical_json, sha256_json
from .engine import Engine
from .errors import ConfigError, EnvironmentBuildError, HarnessError
from .lockfile import Lock
from .paths import Layout
from .store import Store

Progress = Callable[[str], None]
RecipeReader = Callable[[str], str | None]  # project-relative path -> text, None if absent

FORMAT = "harness.env/1"  # bump when the build procedure changes what an image contains
ENV_REPOSITORY = "harness-env"
VENV = "/opt/venv"
RECIPES_DIR = "images"
BUILTIN_RECIPES = Path(__file__).parent / "recipes"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Recipe:
    """A base image recipe: what mmdebstrap bootstraps, and which Python and wheel platform that gives."""

    name: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    python: str
    platform: str
    architecture: str
    source_date_epoch: int
    mirror: str | None = None
    # A digest-pinned registry image used as the base instead of mmdebstrap (pinnedbase.py). Its python, platform,
    # architecture, epoch and diff ids are read from the image, so they are only known once it is resolved.
    pinned: str | None = None
    pinned_layers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.pinned is not None:
            from .pinnedbase import recipe_dict

            return recipe_dict(self)
        return {
            "name": self.name,
            "suite": self.suite,
            "variant": self.variant,
            "packages": list(self.packages),
            "python": self.python,
            "platform": self.platform,
            "architecture": self.architecture,
            "source_date_epoch": self.source_date_epoch,
            "mirror": self.mirror,
        }

    def base_inputs(self) -> dict[str, Any]:
        """What decides the base layer's bytes; python and platform only describe the result."""
        inputs = self.to_dict()
        for key in ("name", "python", "platform"):
            del inputs[key]
        return inputs


# key -> (types, description); the description is what a wrong value is told.
_RECIPE_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "suite": ((str,), "a Debian codename such as 'bookworm'"),
    "variant": ((str,), "an mmdebstrap variant such as 'apt'"),
    "packages": ((list,), "a list of Debian package names, including python3"),
    "python": ((str,), "the suite's CPython minor version, such as '3.11'"),
    "platform": ((str,), "a wheel platform tag such as 'manylinux_2_36_x86_64'"),
    "architecture": ((str,), "a Debian architecture such as 'amd64'"),
    "source_date_epoch": ((int,), "an integer Unix time"),
    "mirror": ((str,), "a Debian mirror URL"),
}
_OPTIONAL = {"mirror"}


def _recipe_dirs(project_root: Path) -> list[Path]:
    return [project_root / RECIPES_DIR, BUILTIN_RECIPES]


def known_recipes(project_root: Path) -> list[str]:
    names = {p.stem for d in _recipe_dirs(project_root) if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def load_recipe(base: str, project_root: Path, read: RecipeReader | None = None) -> Recipe:
    """The recipe named ``base``: ``<project>/images/<base>.toml`` first, then harness's built-in recipes.

    ``read`` reads a project file by its path relative to the project (``images/<base>.toml``), returning None
    when it is absent: a run passes one that reads the commit being run, so an uncommitted or later edit of a
    recipe cannot change the image. Without it the working tree is read.
    """
    from .pinnedbase import pinned_recipe

    pinned = pinned_recipe(base)  # a registry image reference, or None for a recipe name
    if pinned is not None:
        return pinned
    dirs = _recipe_dirs(project_root)
    if _NAME_RE.match(base) and read is not None:
        rel = f"{RECIPES_DIR}/{base}.toml"
        text = read(rel)
        if text is not None:
            return parse_recipe_text(base, text, Path(rel))
        dirs = dirs[1:]  # the working tree's images/ is not what is being run
    if _NAME_RE.match(base):
        for directory in dirs:
            path = directory / f"{base}.toml"
            if path.is_file():
                return parse_recipe(base, path)
    known = ", ".join(known_recipes(project_root)) or "none"
    looked = [*(["images/ in the commit being run"] if read is not None else []), *(str(d) for d in dirs)]
    raise ConfigError(
        f"tool.harness.base: no recipe named {base!r} (looked in {', '.join(looked)})",
        hint=f"known recipes: {known}; or add images/{base}.toml to the project (copy a built-in one) and commit it",
    )


def parse_recipe(name: str, path: Path) -> Recipe:
    return parse_recipe_text(name, path.read_text(encoding="utf-8"), path)


def parse_recipe_text(name: str, text: str, path: Path) -> Recipe:
    """Parse recipe TOML (from a file or from a commit); ``path`` is only where errors say it came from."""

    def error(where: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {where}: {problem}", hint="see images/bookworm.toml for a commented example")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error("syntax", str(exc)) from None
    for key in sorted(set(data) - set(_RECIPE_KEYS)):
        raise error(key, f"unknown key (known: {', '.join(_RECIPE_KEYS)})")
    for key, (types, description) in _RECIPE_KEYS.items():
        if key not in data:
            if key not in _OPTIONAL:
                raise error(key, f"missing; expected {description}")
            continue
        value = data[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise error(key, f"expected {description}, got {value!r}")
    packages = data["packages"]
    if not all(isinstance(p, str) and p for p in packages):
        raise error("packages", "expected a list of non-empty strings")
    if not any(re.fullmatch(r"python3(\.\d+)?", p) for p in packages):
        raise error("packages", "must include python3: the environment is a venv made with the suite's python3")
    if not re.fullmatch(r"3\.\d+", data["python"]):
        raise error("python", f"expected a version like '3.11', got {data['python']!r}")
    return Recipe(
        name=name,
        suite=data["suite"],
        variant=data["variant"],
        packages=tuple(packages),
        python=data["python"],
        platform=data["platform"],
        architecture=data["architecture"],
        source_date_epoch=int(data["source_date_epoch"]),
        mirror=data.get("mirror"),
    )


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Environment:
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
    from .lockfile import PIP_INSTALLER

    recipe_inputs = recipe.to_dict()
    del recipe_inputs["name"]  # a name is a label: the same recipe under another name is the same image
    if recipe.pinned is not None:
        from .pinnedbase import key_inputs

        recipe_inputs = key_inputs(recipe)  # the digest and diff ids, not the registry it was pulled from
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


def ensure_environment(
    recipe: Recipe, lock: Lock, layout: Layout, engine: Engine, progress: Progress | None = None
) -> Environment:
    """The image for (recipe, lock): reused if present, loaded from the cache store if stored, else built."""
    say = progress or (lambda _message: None)
    if recipe.pinned is not None:
        from .pinnedbase import resolve

        recipe = resolve(recipe, layout, engine, say)  # first use pulls and archives it; later, one record read
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

        from .envbuild import build_environment

        env = build_environment(recipe, lock, key, image_ref(key), layout, engine, store, say)
        write_record(record_path, env)
        return dataclasses.replace(env, built=True)


def check_lock_matches(recipe: Recipe, lock: Lock) -> None:
    if recipe.pinned is not None and not recipe.python:
        return  # not resolved yet: ensure_environment checks again once the image told its python and platform
    if (lock.python, lock.platform) != (recipe.python, recipe.platform):
        raise EnvironmentBuildError(
            f"the lock is for Python {lock.python} on {lock.platform}, but base recipe {recipe.name!r} has "
            f"Python {recipe.python} on {recipe.platform}",
            hint="re-resolve the lock for the base (`harness lock`), or choose a base that matches the lock",
        )


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


def load_image(store: Store, parts: oci.ImageParts, ref: str, layout: Layout, engine: Engine, epoch: int) -> None:
    """Assemble the archive of ``parts`` in a temp file, ``docker load`` it, check the id, tag it ``ref``."""
    tmp_dir = layout.cache / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="image-", suffix=".tar")
    archive = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            oci.write_archive(store, parts, [ref], fh, epoch)
        try:
            loaded = engine.load_image(archive)
        except HarnessError as exc:
            raise EnvironmentBuildError(
                f"docker load of image {ref} failed: {exc.message}",
                hint="the layers stay in the cache store; check `docker info` (disk space) and run again",
            ) from None
    finally:
        archive.unlink(missing_ok=True)
    # The classic store names the image from manifest.json; the containerd store reads only the OCI index, which
    # carries no name, and reports the id it loaded instead.
    got = "nothing"
    for candidate in (ref, *loaded):
        info = engine.inspect_image(candidate)
        if info is not None:
            got = str(info.get("Id"))
            break
    if got not in (parts.image_id, "sha256:" + parts.manifest_digest):
        raise EnvironmentBuildError(
            f"docker load of {ref} gave image {got}, expected {parts.image_id}",
            hint="the engine rewrote the image; the stored layers were kept. Report this with `docker version`",
        )
    repository, tag = ref.rsplit(":", 1)
    engine.tag_image(got, repository, tag)


# -- records and locks -----------------------------------------------------------------------------------------


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


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(canonical_json(value))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared by several users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: Path, say: Progress) -> Iterator[None]:
    """An exclusive fcntl lock; released by the kernel even if this process dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another harness process that is building the same image ({path.name})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
