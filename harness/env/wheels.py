"""Resolving requirements into a lock, and bringing the locked wheels into the cache, with the host's pip.

The lock is for the image's platform and Python, not the host's: `resolve` runs the host's pip with
``--platform``/``--python-version``/``--implementation``/``--abi`` and ``--only-binary=:all:``, so a lock
made on a laptop names the same wheels the Debian image will install. `fetch_wheels` brings those exact
files into the shared wheel cache (``<cache>/wheels/<sha256>/<filename>``), checking every byte.

pip is the only resolver and downloader; it is driven through one small interface, `PipRunner`
(argv in, `PipError` out), so tests can count or fake pip calls without patching internals.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from harness.digests import CHUNK
from harness.env.lockfile import (
    DEFAULT_PLATFORM,
    DEFAULT_PYTHON,
    PYTHON_RE,
    SHA256_RE,
    Lock,
    LockedPackage,
    canonical_name,
    requirements_digest,
)
from harness.errors import ConfigError, EnvironmentBuildError

PipRunner = Callable[[list[str]], None]
Progress = Callable[[str], None]

_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_([a-z0-9_]+)$")
# PEP 600 legacy aliases: a glibc version that also has a pre-PEP-600 name.
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


class PipError(EnvironmentBuildError):
    """pip exited non-zero; `output` holds what it printed, for callers that explain the failure."""

    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-12:])
        super().__init__(
            f"pip {' '.join(args[:1])} failed (exit {returncode}):\n{tail}",
            hint="check the package index is reachable; re-run with -v to see the full pip command",
        )
        self.pip_args = list(args)
        self.returncode = returncode
        self.output = output


def run_pip(args: list[str]) -> None:
    """The default `PipRunner`: the host's pip, quiet, no prompts, no version-check chatter."""
    argv = [sys.executable, "-m", "pip", *args]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise PipError(args, proc.returncode, proc.stdout + proc.stderr)


def compatible_platforms(platform: str) -> list[str]:
    """The platform tag and every older manylinux tag it can run, newest first.

    pip 23 expands only legacy names (manylinux2014) and newer pips expand ``manylinux_x_y`` but drop tags
    newer than the HOST's glibc; listing them ourselves makes the choice of wheels independent of the
    host, which is the whole point of a lock for the image.
    """
    match = _MANYLINUX_RE.match(platform)
    if not match:
        return [platform]
    major, minor, arch = int(match[1]), int(match[2]), match[3]
    if major != 2:
        return [platform]
    # PEP 600: x86 wheels go back to glibc 2.5 (manylinux1); other arches start at 2.17.
    oldest = 5 if arch in ("x86_64", "i686") else 17
    tags: list[str] = []
    for m in range(minor, oldest - 1, -1):
        tags.append(f"manylinux_2_{m}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((2, m))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    return tags


def _target_args(python: str, platform: str) -> list[str]:
    if not PYTHON_RE.match(python):
        raise ConfigError(f"python: expected a version like '3.11', got {python!r}")
    args = ["--only-binary=:all:"]
    for tag in compatible_platforms(platform):
        args += ["--platform", tag]
    # --abi explicitly: pip's default is the host interpreter's ABI, which may be another Python.
    args += ["--python-version", python, "--implementation", "cp", "--abi", "cp" + python.replace(".", "")]
    return args


def _platform_machine(platform: str) -> str | None:
    match = _MANYLINUX_RE.match(platform)
    return match[3] if match else None


def _check_marker_environment(report: Mapping[str, Any], python: str, platform: str) -> None:
    """pip evaluates environment markers against the host, whatever --platform says (pypa/pip#11010).

    A host that differs from the target could silently drop or add dependencies, so refuse it.
    """
    env = report.get("environment") or {}
    expected = {"python_version": python, "sys_platform": "linux", "implementation_name": "cpython"}
    machine = _platform_machine(platform)
    if machine:
        expected["platform_machine"] = machine
    differ = [f"{k}={env.get(k)!r} (target {v!r})" for k, v in expected.items() if env.get(k) != v]
    if differ:
        raise EnvironmentBuildError(
            "cannot lock for the image from this host: pip evaluates dependency markers against the host, "
            "and here " + ", ".join(differ),
            hint=f"run `harness lock` with CPython {python} on Linux {machine or ''} (for example in CI)",
        )


def _no_wheel_error(output: str, python: str, platform: str) -> EnvironmentBuildError | None:
    """Explain pip's "No matching distribution" for a wheels-only resolve, or None if it is not that."""
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if not missing:
        return None
    requirement = missing[1]
    versions = re.search(r"\(from versions: ([^)]*)\)", output)
    listed = [v.strip() for v in versions[1].split(",")] if versions else []
    # Suggest final releases only: a pre-release is rarely what a lock should pin.
    listed = [v for v in listed if re.fullmatch(r"\d+(\.\d+)*(\.post\d+)?", v)]
    what = f"no wheel of {requirement} for CPython {python} on {platform}"
    if listed:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        hint = (
            f"versions with such wheels: {', '.join(listed[-8:])}; pin one (e.g. `{name}=={listed[-1]}`) "
            "in the requirements and run `harness lock` again"
        )
    else:
        hint = (
            "harness installs wheels only (no builds inside the image); choose a version that publishes "
            "manylinux wheels for this Python, or a different package"
        )
    return EnvironmentBuildError(f"{what} (only source distributions, or nothing, match)", hint=hint)


def resolve(
    requirements: Sequence[str],
    python: str = DEFAULT_PYTHON,
    platform: str = DEFAULT_PLATFORM,
    *,
    pip: PipRunner | None = None,
) -> Lock:
    """Resolve requirements to exact wheels for (python, platform) with the host's pip; download nothing."""
    runner = pip or run_pip
    for req in requirements:
        # Passed as argv, so a leading dash would be read as a pip option.
        if not req.strip() or req.lstrip().startswith("-"):
            raise ConfigError(f"requirements: {req!r} is not a requirement", hint="use `name==version` lines")
    if not requirements:
        # Standard library only: nothing to resolve (and pip refuses to resolve nothing).
        return Lock(python, platform, (), requirements_digest([]), ())
    with tempfile.TemporaryDirectory(prefix="harness-lock-") as tmp:
        report_path = Path(tmp) / "report.json"
        args = [
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report_path),
            *_target_args(python, platform),
            "--target", str(Path(tmp) / "target"),
            *requirements,
        ]  # fmt: skip
        try:
            runner(args)
        except PipError as exc:
            explained = _no_wheel_error(exc.output, python, platform)
            if explained is not None:
                raise explained from exc
            raise
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EnvironmentBuildError(
                f"pip wrote no readable install report ({exc})",
                hint="harness needs pip >= 23.0 on the host: `python -m pip install -U pip`",
            ) from exc
    _check_marker_environment(report, python, platform)
    packages = [_package_from_report(item) for item in report.get("install", [])]
    return Lock(
        python=python,
        platform=platform,
        requirements=tuple(requirements),
        requirements_digest=requirements_digest(requirements),
        packages=tuple(sorted(packages, key=lambda p: p.name)),
    )


def _package_from_report(item: Mapping[str, Any]) -> LockedPackage:
    metadata = item.get("metadata", {})
    name = canonical_name(str(metadata.get("name", "?")))
    info = item.get("download_info", {})
    url = str(info.get("url", ""))
    filename = unquote(Path(urlsplit(url).path).name)
    archive = info.get("archive_info")
    if archive is None or not filename.endswith(".whl"):
        raise EnvironmentBuildError(
            f"{name}: resolved to {url or 'a local path'}, which is not a wheel from the index",
            hint="harness locks wheels from the package index only; require a released version of it",
        )
    hashes = archive.get("hashes") or {}
    sha256 = hashes.get("sha256")
    if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
        sha256 = archive["hash"].split("=", 1)[1]  # pip < 23 wrote only the legacy "hash" field
    if not sha256 or not SHA256_RE.match(sha256):
        raise EnvironmentBuildError(
            f"{name}: the index gave no sha256 for {filename}",
            hint="use an index that publishes sha256 hashes (PEP 503)",
        )
    return LockedPackage(name=name, version=str(metadata["version"]), filename=filename, sha256=sha256)


# ---------------------------------------------------------------------------------------------------------
# the wheel cache


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_wheel_path(wheel_cache: Path, package: LockedPackage) -> Path:
    return wheel_cache / package.sha256 / package.filename


def _parse_hash_mismatches(output: str) -> dict[str, str]:
    """pip's "THESE PACKAGES DO NOT MATCH THE HASHES" block -> {canonical name: hash it got}."""
    got: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        head = re.match(r"^\s+([A-Za-z0-9][A-Za-z0-9._-]*)==\S+ from ", line)
        if head:
            current = canonical_name(head[1])
            continue
        found = re.match(r"^\s+Got\s+([0-9a-f]{64})\s*$", line)
        if found and current is not None:
            got[current] = found[1]
    return got


def _mismatch_error(pkg: LockedPackage, got: str) -> EnvironmentBuildError:
    return EnvironmentBuildError(
        f"{pkg.name} {pkg.version}: {pkg.filename} does not match the lock\n"
        f"  expected sha256 {pkg.sha256}\n"
        f"  got sha256      {got}\n"
        "nothing was installed; the mismatching download was deleted and the wheel cache was not changed",
        hint="if the lock is wrong (edited, or the wheel was re-published), re-resolve with `harness lock`; "
        "otherwise the index or a proxy served other bytes: do not use them",
    )


def fetch_wheels(
    packages: Sequence[LockedPackage],
    wheel_cache: Path,
    progress: Progress | None = None,
    *,
    python: str = DEFAULT_PYTHON,
    platform: str = DEFAULT_PLATFORM,
    pip: PipRunner | None = None,
) -> dict[str, Path]:
    """Make every locked wheel present and verified in the cache; return name -> cached path.

    Hits (file present and its sha256 re-checked) cost no pip call. All misses go to ONE `pip download`
    with ``--require-hashes``; each file is then hashed again here before it is moved into the cache, so the
    cache holds only bytes that match a lock. Cached files are read-only.
    """
    runner = pip or run_pip
    say = progress or (lambda _message: None)
    result: dict[str, Path] = {}
    missing: list[LockedPackage] = []
    for pkg in packages:
        target = cached_wheel_path(wheel_cache, pkg)
        if target.is_file():
            if file_sha256(target) == pkg.sha256:
                result[pkg.name] = target
                continue
            # A corrupt cache entry: the cache is ours, not the user's, so replacing it loses nothing.
            target.unlink()
        missing.append(pkg)
    if not missing:
        say(f"wheels: all {len(result)} in the cache")
        return result

    names = ", ".join(f"{p.name} {p.version}" for p in missing)
    say(f"wheels: {len(result)} in the cache, downloading {len(missing)}: {names}")
    wheel_cache.mkdir(parents=True, exist_ok=True)
    # The download directory lives inside the cache so the final move is a same-filesystem rename.
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=wheel_cache))
    try:
        requirements = tmp / "requirements.txt"
        requirements.write_text(
            "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in missing), encoding="utf-8"
        )
        dest = tmp / "wheels"
        args = [
            "download", "--no-deps", "--quiet", "--progress-bar", "off", "--require-hashes",
            *_target_args(python, platform),
            "-d", str(dest), "-r", str(requirements),
        ]  # fmt: skip
        try:
            runner(args)
        except PipError as exc:
            by_name = {p.name: p for p in missing}
            for name, got in _parse_hash_mismatches(exc.output).items():
                if name in by_name:
                    raise _mismatch_error(by_name[name], got) from exc
            raise
        # Verify every file before caching any, so a failure leaves the cache exactly as it was.
        for pkg in missing:
            downloaded = dest / pkg.filename
            if not downloaded.is_file():
                present = sorted(p.name for p in dest.iterdir()) if dest.is_dir() else []
                raise EnvironmentBuildError(
                    f"{pkg.name} {pkg.version}: pip did not download {pkg.filename} "
                    f"(got: {', '.join(present) or 'nothing'}); nothing was installed or cached",
                    hint="the lock may be for another platform or Python; re-resolve with `harness lock`",
                )
            got = file_sha256(downloaded)
            if got != pkg.sha256:
                raise _mismatch_error(pkg, got)
        for pkg in missing:
            downloaded = dest / pkg.filename
            target = cached_wheel_path(wheel_cache, pkg)
            target.parent.mkdir(exist_ok=True)
            downloaded.chmod(0o444)
            os.replace(downloaded, target)
            result[pkg.name] = target
            say(f"wheels: cached {pkg.filename}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
