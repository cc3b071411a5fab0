"""Base recipes: what an environment image is built on.

A base is a recipe (``images/<name>.toml`` in the project, else a built-in one under harness/env/recipes/): a
Debian suite, mirror and packages that mmdebstrap bootstraps; or a digest-pinned registry image
(``host/repo@sha256:<64 hex>``); or a Dockerfile in the project (``Dockerfile.base``, dockerfile.py). The facts of
the last two (Python, platform, layers) are known only once the image is pulled or built and archived
(pinnedbase.py).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.env.dockerfile import DockerfileSource, dockerfile_key, is_dockerfile, load_dockerfile
from harness.errors import ConfigError, EnvironmentBuildError
from harness.paths import store_root
from harness.project.projectfiles import ProjectFiles, WorkingTreeFiles

RecipeReader = Callable[[str], str | None]  # project-relative path -> text, None if absent

RECIPES_DIR = "images"
BUILTIN_RECIPES = Path(__file__).parent / "recipes"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PINNED_RE = re.compile(r"^(?P<name>[^@\s]+)@sha256:(?P<digest>[0-9a-f]{64})$")
# Roughly docker's reference grammar: [host[:port]/]path[:tag][@digest]; "../x" or "a b" are not images.
_IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:\w[\w.-]*)?(@\S*)?$")
_DIGEST_HINT = "docker inspect --format '{{index .RepoDigests 0}}' IMAGE"


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
    pinned_layers: tuple[str, ...] = ()  # the diff ids of a pinned or Dockerfile base, once resolved
    # A Dockerfile in the project, built once and archived (dockerfilebase.py): its path, and the digests of its
    # bytes and of the context files it takes, which key it. The source (to build from) only when read from a
    # project; a recipe rebuilt from a run record has none, and can use only the archive.
    dockerfile: str | None = None
    dockerfile_digest: str = ""
    context_digest: str = ""
    dockerfile_source: DockerfileSource | None = field(default=None, compare=False, repr=False)

    @property
    def archived(self) -> bool:
        """A base that is fetched or built once and archived (pinned, Dockerfile), not bootstrapped by a recipe."""
        return self.pinned is not None or self.dockerfile is not None

    @property
    def dockerfile_key(self) -> str:
        return dockerfile_key(self.dockerfile_digest, self.context_digest)

    def to_dict(self) -> dict[str, Any]:
        if self.dockerfile is not None:
            return _dockerfile_dict(self)
        if self.pinned is not None:
            return _pinned_dict(self)
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


def load_recipe(
    base: str,
    project_root: Path,
    read: RecipeReader | None = None,
    files: ProjectFiles | None = None,
    build_network: str = "none",
) -> Recipe:
    """The recipe named ``base``: ``<project>/images/<base>.toml`` first, then harness's built-in recipes; or the
    Dockerfile ``base`` names (dockerfile.py), or a digest-pinned image.

    ``read`` reads a project file by its path relative to the project (``images/<base>.toml``), returning None
    when it is absent, and ``files`` lists and reads the project's files (a Dockerfile and what it copies): a run
    passes ones that read the commit being run, so an uncommitted or later edit cannot change the image. Without
    them the working tree is read. ``build_network`` is the network a Dockerfile's RUN steps get.
    """
    if is_dockerfile(base):
        files = files or WorkingTreeFiles(project_root, skip=[store_root(project_root)])
        source = load_dockerfile(base, files, build_network)
        return dockerfile_recipe(base, source)
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
        return ConfigError(
            f"{path}: {where}: {problem}", hint=f"see {BUILTIN_RECIPES / 'bookworm.toml'} for a commented example"
        )

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


def pinned_recipe(base: str) -> Recipe | None:
    """The unresolved Recipe for a digest-pinned reference; None for a recipe name; ConfigError for a tag."""
    if _PINNED_RE.match(base):
        blank: dict[str, Any] = {"suite": "", "variant": "", "packages": (), "python": "", "platform": ""}
        return Recipe(name=base, architecture="", source_date_epoch=0, pinned=base, **blank)
    if _IMAGE_RE.match(base) and any(c in base for c in "/:@"):
        # A tag can be moved to other bytes at any time, which would make the same config a different image.
        raise ConfigError(
            f"tool.harness.base: {base!r} names a registry image without a full sha256 digest; a base must be pinned "
            "by digest (repository@sha256:<64 lowercase hex>)",
            hint=f"pull it and print its pinned reference with `{_DIGEST_HINT}`, then use that as base",
        )
    return None


def dockerfile_recipe(name: str, source: DockerfileSource) -> Recipe:
    """The unresolved Recipe of a Dockerfile base: keyed by its digests, its image's facts not known yet."""
    blank: dict[str, Any] = {"suite": "", "variant": "", "packages": (), "python": "", "platform": ""}
    return Recipe(
        name=name,
        architecture="",
        source_date_epoch=0,
        dockerfile=source.path,
        dockerfile_digest=source.digest,
        context_digest=source.context_digest,
        dockerfile_source=source,
        **blank,
    )


def _dockerfile_dict(recipe: Recipe) -> dict[str, Any]:
    """Recipe.to_dict of a Dockerfile base: what keys it and what its archived image says about itself."""
    return {
        "name": recipe.name,
        "dockerfile": recipe.dockerfile,
        "dockerfile_digest": recipe.dockerfile_digest,
        "context_digest": recipe.context_digest,
        "digest": "sha256:" + recipe.dockerfile_key,
        "diff_ids": list(recipe.pinned_layers),
        "python": recipe.python,
        "platform": recipe.platform,
        "architecture": recipe.architecture,
        "source_date_epoch": recipe.source_date_epoch,
    }


def _pinned_dict(recipe: Recipe) -> dict[str, Any]:
    """Recipe.to_dict of a pinned base: no suite, variant or packages, the image's facts instead."""
    return {
        "name": recipe.name,
        "pinned": recipe.pinned,
        "diff_ids": list(recipe.pinned_layers),
        "python": recipe.python,
        "platform": recipe.platform,
        "architecture": recipe.architecture,
        "source_date_epoch": recipe.source_date_epoch,
    }


def key_inputs(recipe: Recipe) -> dict[str, Any]:
    """What decides the environment instead of a recipe: the digest (not where it was pulled from, nor where the
    Dockerfile is) and the diff ids of the image that was archived."""
    if not recipe.pinned_layers:
        raise EnvironmentBuildError(f"base {recipe.name!r} was not resolved before its key was asked for")
    inputs = recipe.to_dict()
    del inputs["name"]
    if recipe.dockerfile is not None:
        del inputs["dockerfile"]
        return inputs
    match = _PINNED_RE.match(recipe.pinned or "")
    if match is None:
        raise EnvironmentBuildError(f"base {recipe.pinned!r} is not a digest-pinned reference")
    inputs["pinned"] = "sha256:" + match["digest"]
    return inputs


def pinned_digest(ref: str) -> str:
    """The ``sha256:<hex>`` digest of a digest-pinned reference."""
    match = _PINNED_RE.match(ref)
    assert match is not None, ref
    return "sha256:" + match["digest"]
