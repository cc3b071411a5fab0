"""Resolving requirements into a lock with uv, and bringing the locked wheels into the cache with the host's pip.

The lock is for the image's platform and Python, not the host's. `resolve` runs ``uv pip compile`` with
``--python-version``/``--python-platform``, ``--only-binary :all:`` and ``--format pylock.toml``: uv evaluates
environment markers for the target (a 3.11 or macOS host locks correctly for CPython 3.13 on Linux, which pip cannot:
it evaluates markers against the host, pypa/pip#11010) and lists, per package, the wheels that fit the target with
their URLs and sha256. pylock.py then picks the one wheel the image installs, by the target's tag order
(wheeltags.py), so a lock made anywhere names the same files.

`fetch_wheels` brings those exact files into the shared wheel cache (``<cache>/wheels/<sha256>/<filename>``) with
``pip download --require-hashes``, checking every byte again itself.

Each tool is driven through one small interface, `UvRunner` (argv in, stdout out, `UvError`) and `PipRunner` (argv
in, `PipError` out), so tests can count or fake calls without patching internals.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.digests import CHUNK
from harness.env.lockfile import (
    DEFAULT_PLATFORM,
    DEFAULT_PYTHON,
    PYTHON_RE,
    Lock,
    LockedPackage,
    canonical_name,
)
from harness.env.lockinputs import Requirements
from harness.env.wheeltags import compatible_platforms, manylinux
from harness.errors import ConfigError, EnvironmentBuildError

__all__ = ["compatible_platforms"]  # re-exported: the target's platform tags, also used by fetch_wheels

PipRunner = Callable[[list[str]], None]
UvRunner = Callable[[list[str]], str]
Progress = Callable[[str], None]

# The manylinux glibc versions this uv accepts in --python-platform (`uv pip compile --help`), newest last. A target
# with a newer glibc (trixie: 2.41) is resolved as the newest listed: uv then offers every wheel up to that glibc, and
# the image runs them all; only a wheel built for exactly the newer glibc would be missed.
UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
UV_MACHINES = ("x86_64", "aarch64")


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


class UvError(EnvironmentBuildError):
    """uv exited non-zero; `output` holds what it printed."""

    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-20:])
        super().__init__(
            f"uv {' '.join(args[:2])} failed (exit {returncode}):\n{tail}",
            hint="check the requirements and that the package index is reachable (uv reads UV_INDEX_URL, "
            "UV_DEFAULT_INDEX and SSL_CERT_FILE)",
        )
        self.uv_args = list(args)
        self.returncode = returncode
        self.output = output


def run_pip(args: list[str]) -> None:
    """The default `PipRunner`: the host's pip, quiet, no prompts, no version-check chatter."""
    argv = [sys.executable, "-m", "pip", *args]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise PipError(args, proc.returncode, proc.stdout + proc.stderr)


def uv_binary() -> str:
    """The uv executable that the `uv` package installed next to this Python."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise EnvironmentBuildError(
            "uv is not installed in harness's Python environment; `harness lock` resolves with it",
            hint=f"{sys.executable} -m pip install uv",
        ) from None
    try:
        return str(find_uv_bin())
    except FileNotFoundError as exc:
        raise EnvironmentBuildError(f"the uv package is installed but its binary is missing: {exc}") from None


def run_uv(args: list[str]) -> str:
    """The default `UvRunner`: the packaged uv binary, no colour, no progress, never downloading a Python."""
    env = dict(os.environ, NO_COLOR="1", UV_NO_PROGRESS="1", UV_PYTHON_DOWNLOADS="never")
    proc = subprocess.run([uv_binary(), *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise UvError(args, proc.returncode, proc.stdout + proc.stderr)
    return proc.stdout


def uv_platform(platform: str) -> str:
    """The ``--python-platform`` value for a manylinux platform tag: ``manylinux_2_36_x86_64`` ->
    ``x86_64-manylinux_2_36``; a glibc newer than uv knows is clamped to the newest it knows (see UV_MANYLINUX)."""
    target = manylinux(platform)
    usable = [m for m in UV_MANYLINUX if target is not None and m <= target[0]]
    if target is None or target[1] not in UV_MACHINES or not usable:
        raise ConfigError(
            f"platform: cannot resolve for {platform!r}: harness locks for manylinux platforms with glibc 2.17 or "
            f"newer on {' or '.join(UV_MACHINES)} (such as 'manylinux_2_36_x86_64')",
            hint="set the recipe's platform to the manylinux tag of its glibc and machine",
        )
    return f"{target[1]}-manylinux_2_{usable[-1]}"


def _target_args(python: str, platform: str) -> list[str]:
    """pip's options for the target, used to download (never to resolve: pip evaluates markers on the host)."""
    if not PYTHON_RE.match(python):
        raise ConfigError(f"python: expected a version like '3.11', got {python!r}")
    args = ["--only-binary=:all:"]
    for tag in compatible_platforms(platform):
        args += ["--platform", tag]
    # --abi explicitly: pip's default is the host interpreter's ABI, which may be another Python.
    args += ["--python-version", python, "--implementation", "cp", "--abi", "cp" + python.replace(".", "")]
    return args


def uv_compile_args(requirements_file: Path, python: str, platform: str) -> list[str]:
    if not PYTHON_RE.match(python):
        raise ConfigError(f"python: expected a version like '3.11', got {python!r}")
    return [
        "pip", "compile",
        # The lock is a function of the requirements and the target: no uv.toml or [tool.uv] of the project or the
        # user (sources, constraints, exclude-newer) may change it behind the requirements' back.
        "--no-config",
        "--python-version", python,
        "--python-platform", uv_platform(platform),
        "--only-binary", ":all:",  # the image build installs wheels and builds nothing
        "--generate-hashes",
        "--format", "pylock.toml",
        "--no-header", "--quiet",
        # The interpreter uv runs under is irrelevant to the result (no builds); naming this one stops uv from
        # searching for, or downloading, another.
        "--python", sys.executable,
        str(requirements_file),
    ]  # fmt: skip


def _no_wheel_error(requirement: str, listed: Sequence[str], python: str, platform: str) -> EnvironmentBuildError:
    """A wheels-only resolve found no wheel of ``requirement`` for the target; ``listed``: versions that have one."""
    # Suggest final releases only: a pre-release is rarely what a lock should pin.
    finals = [v for v in listed if re.fullmatch(r"\d+(\.\d+)*(\.post\d+)?", v)]
    what = f"no wheel of {requirement} for CPython {python} on {platform}"
    if finals:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        hint = (
            f"versions with such wheels: {', '.join(finals[-8:])}; pin one (e.g. `{name}=={finals[-1]}`) "
            "in the requirements and run `harness lock` again"
        )
    else:
        hint = (
            "harness installs wheels only (no builds inside the image); choose a version that publishes "
            "manylinux wheels for this Python, or a different package"
        )
    return EnvironmentBuildError(f"{what} (only source distributions, or nothing, match)", hint=hint)


def versions_with_wheels(name: str, python: str, platform: str, pip: PipRunner | None = None) -> list[str]:
    """The versions of ``name`` that have a wheel for the target, oldest first, as pip's index query lists them.

    Only for explaining a failed resolve: pip prints them when no version matches, and no version matches ``===``
    an impossible string. Nothing is downloaded. [] when pip cannot tell.
    """
    runner = pip or run_pip
    with tempfile.TemporaryDirectory(prefix="harness-versions-") as tmp:
        args = ["download", "--no-deps", "--quiet", "-d", tmp, *_target_args(python, platform), f"{name}===0+none"]
        try:
            runner(args)
        except PipError as exc:
            versions = re.search(r"\(from versions: ([^)]*)\)", exc.output)
            if versions and versions[1].strip() != "none":
                return [v.strip() for v in versions[1].split(",") if v.strip()]
    return []


def _explain_uv_error(
    exc: UvError, requirements: Sequence[str], python: str, platform: str, pip: PipRunner | None
) -> EnvironmentBuildError | None:
    """uv's "no usable wheels" as harness's no-wheel error naming versions that have wheels; None if it is not that."""
    output = exc.output
    needed = re.search(r"Wheels are required for `([^`]+)`", output) or re.search(
        r"Because (?:only )?([A-Za-z0-9][A-Za-z0-9._-]*)\S* (?:has|have) no (?:usable )?wheels", output
    )
    if needed is None:
        return None
    name = canonical_name(needed[1])
    # Name the package as the user wrote it, if it is one of theirs (it may be a dependency of one).
    mine = [r for r in requirements if canonical_name(re.split(r"[<>=!~;\[ @]", r.strip(), maxsplit=1)[0]) == name]
    requirement = mine[0].split(";")[0].strip() if mine else name
    return _no_wheel_error(requirement, versions_with_wheels(name, python, platform, pip), python, platform)


def resolve(
    requirements: Sequence[str] | Requirements,
    python: str = DEFAULT_PYTHON,
    platform: str = DEFAULT_PLATFORM,
    *,
    uv: UvRunner | None = None,
    pip: PipRunner | None = None,
) -> Lock:
    """Resolve requirements to exact wheels for (python, platform) with uv; download nothing.

    ``requirements`` is a list of requirement strings or a `Requirements` from lockinputs.py; a pinned one (with
    hashes) is used as it is: uv only finds the files of the pinned versions, and each locked wheel must be one of
    the files the pins allow.
    """
    from harness.env.pylock import read_pylock

    if isinstance(requirements, Requirements):
        reqs = requirements
    else:
        reqs = Requirements("requirements", "requirements", tuple(requirements))
    for req in reqs.lines:
        # Written to a requirements file, where a leading dash would be read as a pip option.
        if not req.strip() or req.lstrip().startswith("-"):
            raise ConfigError(f"requirements: {req!r} is not a requirement", hint="use `name==version` lines")
    if not reqs.lines:
        # Standard library only: nothing to resolve.
        return Lock(python, platform, (), reqs.digest, ())
    runner = uv or run_uv
    with tempfile.TemporaryDirectory(prefix="harness-lock-") as tmp:
        infile = Path(tmp) / "requirements.in"
        infile.write_text("".join(f"{r}\n" for r in reqs.lines), encoding="utf-8")
        try:
            text = runner(uv_compile_args(infile, python, platform))
        except UvError as exc:
            explained = _explain_uv_error(exc, reqs.lines, python, platform, pip)
            if explained is not None:
                raise explained from exc
            raise
    pinned = reqs.hashes if reqs.kind == "pinned" else None
    resolved = read_pylock(text, "uv's resolution", python, platform, pinned=pinned, pinned_in=reqs.source).lock
    if pinned is not None:
        extra = [p for p in resolved.packages if p.name not in pinned]
        if extra:
            names = ", ".join(f"{p.name} {p.version}" for p in extra)
            raise ConfigError(
                f"{reqs.source} pins its requirements with hashes but not all that CPython {python} on {platform} "
                f"needs: {names}",
                "regenerate it so it lists every dependency for Linux (uv export, pip-compile --generate-hashes), "
                "or drop the hashes and let `harness lock` pin them",
            )
    return Lock(
        python=python,
        platform=platform,
        requirements=reqs.lines,
        requirements_digest=reqs.digest,
        packages=resolved.packages,
    )


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
