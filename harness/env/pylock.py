"""PEP 751 ``pylock.toml``: read one as the lock of an image, and write one.

A pylock.toml may list many files per package (wheels for several platforms, an sdist) and packages guarded by
markers. Reading it *for a target* (CPython X.Y on a manylinux platform) keeps the packages whose markers hold
there and, for each, the one wheel pip would install there (wheeltags.py), as a `Lock`: the image build installs
exactly those files, offline, so a package with no wheel for the target, or a wheel with no sha256, is refused.

`harness lock` writes one only when the project's ``lock`` is named ``pylock.toml`` or ``pylock.<name>.toml``
(the names PEP 751 gives such files): one wheel per package, with its URL so other installers can use it, and a
``[tool.harness]`` table holding what harness.lock holds (target, requirements and their digest). A pylock.toml
without that table was made by another tool (uv export, pip lock, pdm): it is used as it is, never rewritten.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from harness.env.lockfile import LOCK_HEADER, LOCK_VERSION, PYTHON_RE, SHA256_RE, Lock, LockedPackage, canonical_name
from harness.env.lockfile import requirements_digest as digest_of_requirements
from harness.env.wheeltags import best_wheel, manylinux, marker_holds, target_environment
from harness.errors import EnvironmentBuildError
from harness.files import write_text_atomic

_SHOWN_FILES = 6


@dataclass(frozen=True)
class Pylock:
    """A pylock.toml read for one target."""

    lock: Lock
    created_by: str
    by_harness: bool  # it has a [tool.harness] table: `harness lock` wrote it and may rewrite it


def _error(path: Path | str, where: str, problem: str, hint: str | None = None) -> EnvironmentBuildError:
    name = PurePosixPath(str(path)).name
    return EnvironmentBuildError(
        f"{name}: {where}: {problem}",
        hint=hint or f"fix {name} with the tool that made it, or regenerate it for the image",
    )


def _target(python: str, platform: str) -> str:
    return f"CPython {python} on {platform}"


def read_pylock(
    text: str,
    path: Path | str,
    python: str,
    platform: str,
    *,
    pinned: Mapping[str, frozenset[str]] | None = None,
    pinned_in: str = "",
) -> Pylock:
    """The lock pylock.toml text means for CPython ``python`` on ``platform``; errors name the file and key.

    When the file has a ``[tool.harness]`` table its own target is used (check_lock_matches compares it with the
    recipe's). ``pinned`` (name -> sha256s, from the hashed requirements file ``pinned_in``) limits each package's
    wheels to the files those hashes allow.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _error(path, "syntax", str(exc)) from None

    version = doc.get("lock-version")
    if not isinstance(version, str):
        raise _error(path, "lock-version", "missing; not a PEP 751 lock file")
    if version.split(".")[0] != "1":
        raise _error(path, "lock-version", f"unsupported version {version!r}; this harness reads 1.x")
    created_by = str(doc.get("created-by", "?"))

    tool = doc.get("tool", {}).get("harness") if isinstance(doc.get("tool"), dict) else None
    requirements: tuple[str, ...] = ()
    if tool is not None:
        python, platform, requirements = _harness_table(tool, path, python, platform)

    requires = doc.get("requires-python")
    if requires is not None:
        try:
            fits = SpecifierSet(str(requires)).contains(python, prereleases=True)
        except InvalidSpecifier:
            raise _error(path, "requires-python", f"not a version specifier: {requires!r}") from None
        if not fits:
            raise _error(
                path,
                "requires-python",
                f"{requires!r} excludes the image's Python {python}",
                hint="lock for the image's Python, or choose a base whose Python the lock allows",
            )
    groups = doc.get("default-groups", [])
    environment = target_environment(python, platform, groups if isinstance(groups, list) else ())
    environments = doc.get("environments")
    if (
        isinstance(environments, list)
        and environments
        and not any(marker_holds(str(m), environment) for m in environments)
    ):
        raise _error(
            path,
            "environments",
            f"none of {environments} holds for {_target(python, platform)}",
            hint="the lock was made for other platforms: lock for the image's Python and platform",
        )

    raw_packages = doc.get("packages", [])
    if not isinstance(raw_packages, list):
        raise _error(path, "packages", "expected an array of tables ([[packages]])")
    packages: dict[str, LockedPackage] = {}
    for i, raw in enumerate(raw_packages):
        where = f"packages[{i}]"
        if not isinstance(raw, dict):
            raise _error(path, where, "expected a table")
        marker = raw.get("marker")
        if marker is not None and not marker_holds(str(marker), environment):
            continue  # for another platform, Python or group
        pkg = _package(raw, where, path, python, platform, pinned, pinned_in)
        if pkg.name in packages:
            raise _error(
                path,
                f"{where}.name",
                f"{pkg.name!r} is listed twice for {_target(python, platform)} "
                f"({packages[pkg.name].version} and {pkg.version})",
            )
        packages[pkg.name] = pkg

    lock = Lock(
        python=python,
        platform=platform,
        requirements=requirements,
        requirements_digest=digest_of_requirements(requirements),
        packages=tuple(sorted(packages.values(), key=lambda p: p.name)),
    )
    return Pylock(lock=lock, created_by=created_by, by_harness=tool is not None)


def _harness_table(tool: Any, path: Path | str, python: str, platform: str) -> tuple[str, str, tuple[str, ...]]:
    where = "tool.harness"
    if not isinstance(tool, dict):
        raise _error(path, where, "expected a table")
    if tool.get("version") != LOCK_VERSION:
        raise _error(path, f"{where}.version", f"unsupported version {tool.get('version')!r}; this harness reads 1")
    own_python, own_platform = tool.get("python"), tool.get("platform")
    if not isinstance(own_python, str) or not PYTHON_RE.match(own_python):
        raise _error(path, f"{where}.python", f"expected a version like '3.13', got {own_python!r}")
    if not isinstance(own_platform, str):
        raise _error(path, f"{where}.platform", f"expected a platform tag, got {own_platform!r}")
    reqs = tool.get("requirements")
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise _error(path, f"{where}.requirements", "expected an array of strings")
    if tool.get("requirements_digest") != digest_of_requirements(reqs):
        raise _error(path, f"{where}.requirements_digest", "does not match the requirements list (edited by hand?)")
    # The file's own target wins: check_lock_matches then compares it with the recipe and explains a mismatch.
    return own_python, own_platform, tuple(reqs)


def _package(
    raw: Mapping[str, Any],
    where: str,
    path: Path | str,
    python: str,
    platform: str,
    pinned: Mapping[str, frozenset[str]] | None,
    pinned_in: str,
) -> LockedPackage:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _error(path, f"{where}.name", "missing")
    name = canonical_name(name)
    version = raw.get("version")
    for kind in ("vcs", "directory", "archive"):
        if kind in raw:
            raise _error(
                path,
                where,
                f"{name} comes from a {kind}, not a wheel",
                hint="harness installs released wheels only: lock a released version of it",
            )
    wheels = raw.get("wheels", [])
    if not isinstance(wheels, list):
        raise _error(path, f"{where}.wheels", "expected an array of tables")
    by_filename: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for j, wheel in enumerate(wheels):
        if not isinstance(wheel, dict):
            raise _error(path, f"{where}.wheels[{j}]", "expected a table")
        filename = _wheel_filename(wheel, f"{where}.wheels[{j}]", path)
        by_filename[filename] = (j, wheel)
    if pinned is not None and name in pinned:
        fits = {f for f in by_filename if best_wheel([f], python, platform) is not None}
        allowed = {f: jw for f, jw in by_filename.items() if _sha256(jw[1]) in pinned[name]}
        if fits and not allowed.keys() & fits:
            shown = ", ".join(sorted(fits)[:_SHOWN_FILES])
            raise EnvironmentBuildError(
                f"{pinned_in} pins {name} {version or ''} with {len(pinned[name])} sha256 "
                f"hash{'es' if len(pinned[name]) != 1 else ''}, and none is of a "
                f"wheel for {_target(python, platform)} (the index has: {shown})",
                hint=f"regenerate {pinned_in} with the hashes of every file (uv export, pip-compile "
                "--generate-hashes), or drop the hashes and let `harness lock` pin the requirements",
            )
        by_filename = allowed
    chosen = best_wheel(by_filename, python, platform)
    if chosen is None:
        listed = sorted(by_filename)
        shown = ", ".join(listed[:_SHOWN_FILES])
        if len(listed) > _SHOWN_FILES:
            shown += f", ... ({len(listed)} in all)"
        has = f"it lists {shown}" if listed else ("only an sdist" if "sdist" in raw else "no wheels")
        raise _error(
            path,
            where,
            f"no wheel of {name}{f' {version}' if version else ''} for {_target(python, platform)} ({has})",
            hint="harness installs wheels only (no builds inside the image): lock a version that publishes a wheel "
            "for the image's Python and platform, or lock for the image (`harness lock`)",
        )
    j, wheel = by_filename[chosen]
    at = f"{where}.wheels[{j}]"
    hashes = wheel.get("hashes")
    sha256 = _sha256(wheel)
    if sha256 is None:
        others = ", ".join(sorted(hashes)) if isinstance(hashes, dict) and hashes else "none"
        raise _error(
            path,
            f"{at}.hashes.sha256",
            f"missing for {chosen} (hashes given: {others}); harness checks every wheel by its sha256",
            hint="regenerate the lock with sha256 hashes",
        )
    wheel_name, wheel_version, _build, _tags = parse_wheel_filename(chosen)
    if canonical_name(str(wheel_name)) != name:
        raise _error(path, f"{at}.name", f"{chosen} is not a wheel of {name}")
    if version is not None and not _same_version(str(version), wheel_version):
        raise _error(path, f"{where}.version", f"{version!r}, but the wheel {chosen} is version {wheel_version}")
    url = wheel.get("url")
    return LockedPackage(
        name=name,
        version=str(version) if version is not None else str(wheel_version),
        filename=chosen,
        sha256=sha256,
        url=str(url) if isinstance(url, str) else None,
    )


def _sha256(wheel: Mapping[str, Any]) -> str | None:
    hashes = wheel.get("hashes")
    value = hashes.get("sha256") if isinstance(hashes, dict) else None
    return value.lower() if isinstance(value, str) and SHA256_RE.match(value.lower()) else None


def _same_version(version: str, wheel_version: Version) -> bool:
    try:
        return Version(version) == wheel_version
    except InvalidVersion:
        return False


def _wheel_filename(wheel: Mapping[str, Any], where: str, path: Path | str) -> str:
    """A wheel's file name: its ``name`` key, else the last part of its url or path (PEP 751)."""
    name = wheel.get("name")
    if not isinstance(name, str):
        source = wheel.get("url") or wheel.get("path")
        if not isinstance(source, str) or not source:
            raise _error(path, where, "a wheel needs a name, url or path")
        name = unquote(PurePosixPath(urlsplit(source).path).name)
    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename:
        raise _error(path, f"{where}.name", f"{name!r} is not a wheel file name") from None
    return name


# ---------------------------------------------------------------------------------------------------------
# writing


def format_pylock(lock: Lock) -> str:
    """A single-target PEP 751 file for ``lock``: one wheel per package, and harness's own record in [tool.harness].

    Written by hand rather than with tomlkit so the layout is fixed: the same lock gives the same bytes.
    """
    target = manylinux(lock.platform)
    machine = f"platform_machine == '{target[1]}' and " if target else ""
    environment = (
        f"sys_platform == 'linux' and {machine}python_version == '{lock.python}' and implementation_name == 'cpython'"
    )
    lines = [
        f"# {LOCK_HEADER}",
        f"# for CPython {lock.python} on {lock.platform}: one wheel per package, the one the image installs",
        'lock-version = "1.0"',
        'created-by = "harness"',
        f"requires-python = {_str(f'=={lock.python}.*')}",
        f"environments = [{_str(environment)}]",
    ]
    for pkg in sorted(lock.packages, key=lambda p: p.name):
        if pkg.url is None:
            raise EnvironmentBuildError(f"{pkg.name}: no URL known for {pkg.filename}; cannot write a pylock.toml")
        wheel = f"{{ name = {_str(pkg.filename)}, url = {_str(pkg.url)}, hashes = {{ sha256 = {_str(pkg.sha256)} }} }}"
        lines += ["", "[[packages]]", f"name = {_str(pkg.name)}", f"version = {_str(pkg.version)}"]
        lines.append(f"wheels = [{wheel}]")
    lines += [
        "",
        "[tool.harness]",
        f"version = {LOCK_VERSION}",
        f"python = {_str(lock.python)}",
        f"platform = {_str(lock.platform)}",
        "requirements = [" + ", ".join(_str(r) for r in lock.requirements) + "]",
        f"requirements_digest = {_str(lock.requirements_digest)}",
    ]
    return "\n".join(lines) + "\n"


def _str(value: str) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML accepts)."""
    return json.dumps(value, ensure_ascii=False)


def write_pylock(path: Path, lock: Lock) -> None:
    """Write atomically: a reader never sees half a lock."""
    write_text_atomic(path, format_pylock(lock))
