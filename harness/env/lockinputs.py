"""What `harness lock` resolves: the project's requirements, in one of three kinds, told apart by the file.

- ``pyproject.toml`` (the file named so): its ``[project] dependencies``, and ``requires-python`` checked against
  the image's Python. Only ``[project]`` is read, so editing ``[tool.harness]`` or anything else in the same file
  never makes the lock look stale.
- a requirements file whose requirements carry ``--hash=sha256:`` options (``uv export``, ``uv pip compile
  --generate-hashes``, ``pip-compile --generate-hashes``): already pinned. It is used as it is: every requirement
  must be ``name==version`` with its hashes, the resolve may add nothing to it, and the wheel locked for each
  package must be one of the files it lists (the hashes are the pin, harness only picks which file fits the image).
- any other requirements file: one requirement per line (name, version specifier, markers), resolved by uv.

In every kind the lock records the requirement strings (without hashes) and their digest; `check_current` compares
them with the file again, and for a pinned file also that each locked wheel is still one the file allows.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.env.lockfile import Lock, canonical_name, parse_requirements, requirements_digest
from harness.errors import ConfigError

PYPROJECT = "pyproject.toml"
_HASH_RE = re.compile(r"\s--hash[=\s]\s*([A-Za-z0-9]+):([0-9A-Fa-f]+)")
_PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*===?\s*([^\s;,*]+)\s*(;.*)?$")


@dataclass(frozen=True)
class Requirements:
    """A project's requirements as `harness lock` resolves them."""

    source: str  # the file they came from, as the config names it (for messages)
    kind: str  # "pyproject", "pinned" or "requirements"
    lines: tuple[str, ...]  # requirement strings; for "pinned" without their --hash options
    hashes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # pinned: name -> sha256s
    requires_python: str | None = None  # pyproject: [project] requires-python

    @property
    def digest(self) -> str:
        return requirements_digest(self.lines)


def is_pyproject(name: str) -> bool:
    return PurePosixPath(name).name == PYPROJECT


def read_input(path: Path, name: str) -> Requirements:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (
            "add a [project] table with dependencies = [...] to it"
            if is_pyproject(name)
            else f"create {path} with one requirement per line, e.g. `numpy==1.26.4`"
        )
        raise ConfigError(f"{name}: requirements file not found", hint=hint) from None
    return parse_input(text, name)


def parse_input(text: str, name: str) -> Requirements:
    """The requirements in ``text`` (from the working tree or from a commit), whatever their kind."""
    if is_pyproject(name):
        return _pyproject(text, name)
    if _HASH_RE.search(_join_continuations(text)):
        return _pinned(text, name)
    return Requirements(name, "requirements", tuple(parse_requirements(text, name)))


def _pyproject(text: str, name: str) -> Requirements:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}", "fix the syntax at the position given") from None
    project = doc.get("project")
    if not isinstance(project, dict):
        raise ConfigError(
            f"{name}: no [project] table, so no dependencies to lock",
            "add [project] with name and dependencies = [...], or point requirements at a requirements file",
        )
    if "dependencies" in project.get("dynamic", []):
        raise ConfigError(
            f"{name}: project.dependencies is dynamic (computed by the build backend), so harness cannot read it",
            "list the dependencies in [project] dependencies, or point requirements at a requirements file",
        )
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) and d.strip() for d in deps):
        raise ConfigError(f"{name}: project.dependencies: expected an array of requirement strings")
    requires = project.get("requires-python")
    if requires is not None and not isinstance(requires, str):
        raise ConfigError(f"{name}: project.requires-python: expected a string, got {requires!r}")
    return Requirements(name, "pyproject", tuple(d.strip() for d in deps), requires_python=requires)


def _join_continuations(text: str) -> str:
    return re.sub(r"\\\r?\n", " ", text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, line) with backslash continuations joined, as pip reads them."""
    result: list[tuple[int, str]] = []
    start, parts = 0, list[str]()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not parts:
            start = lineno
        if raw.rstrip().endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        result.append((start, " ".join(parts)))
        parts = []
    if parts:
        result.append((start, " ".join(parts)))
    return result


def _pinned(text: str, name: str) -> Requirements:
    lines: list[str] = []
    hashes: dict[str, frozenset[str]] = {}
    unhashed: list[str] = []
    for lineno, raw in _logical_lines(text):
        line = "" if raw.lstrip().startswith("#") else raw.split(" #", 1)[0].strip()
        if not line:
            continue
        where = f"{name}:{lineno}"
        if line.startswith("-"):
            raise ConfigError(
                f"{where}: pip option {line.split()[0]!r} is not supported",
                "keep requirements and their --hash options only; for uv export use --no-emit-project and "
                "--no-editable, and leave index options to the environment (UV_INDEX_URL, PIP_INDEX_URL)",
            )
        found = _HASH_RE.findall(" " + line)
        spec = _HASH_RE.sub("", " " + line).strip()
        if re.search(r"\s--", " " + spec):
            raise ConfigError(f"{where}: only --hash options may follow a requirement, got {spec!r}")
        pin = _PIN_RE.match(spec)
        if not found:
            unhashed.append(spec)
            continue
        if pin is None:
            raise ConfigError(
                f"{where}: {spec!r} is not pinned to one version; a file with hashes must pin every requirement "
                "with ==",
                "regenerate it (uv export, pip-compile --generate-hashes), or drop the hashes and let `harness "
                "lock` pin the requirements",
            )
        sha256s = frozenset(value.lower() for algo, value in found if algo.lower() == "sha256")
        if not sha256s:
            raise ConfigError(f"{where}: {pin[1]} has no sha256 hash (harness checks wheels by sha256)")
        package = canonical_name(pin[1])
        if package in hashes:
            raise ConfigError(f"{where}: {package} is pinned twice")
        hashes[package] = sha256s
        lines.append(spec)
    if unhashed:
        raise ConfigError(
            f"{name}: some requirements have --hash options and these do not: {', '.join(unhashed[:5])}",
            "a pinned file pins every requirement with its hashes (as pip --require-hashes does); regenerate it",
        )
    return Requirements(name, "pinned", tuple(lines), hashes=hashes)


def check_current(lock: Lock, requirements: Requirements) -> None:
    """Refuse a lock that was resolved from other requirements than ``requirements``."""
    if requirements.digest != lock.requirements_digest:
        raise ConfigError(
            f"the lock is older than {requirements.source}: the requirements changed since `harness lock` ran",
            "run `harness lock`, commit the lock, and run again",
        )
    if requirements.kind == "pinned":
        for pkg in lock.packages:
            allowed = requirements.hashes.get(pkg.name)
            if allowed is None or pkg.sha256 not in allowed:
                raise ConfigError(
                    f"the lock is older than {requirements.source}: it no longer allows {pkg.filename} "
                    f"(sha256 {pkg.sha256[:16]}...) for {pkg.name} {pkg.version}",
                    "run `harness lock`, commit the lock, and run again",
                )
