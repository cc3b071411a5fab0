"""Builders for real git projects used by the tests."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

# This test session's own: image ids are a function of their inputs, so two sessions on one engine (or a user's
# project locking the same wheels) would share every image, and a test that removes one would pull it from under
# the others. A version exclusion no release matches makes the requirements, so the lock digest, so the environment
# key and image id, this session's alone, and changes nothing that is installed.
SESSION = secrets.randbelow(10**9)


def session_owned(requirement: str) -> str:
    """``requirement`` with an exclusion that matches no release of it and names this session."""
    return f"{requirement},!=0.0.{SESSION}"


GIT_ENV = {
    "GIT_AUTHOR_NAME": "harness-tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "harness-tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


PROBE_CONFIG = """
name = "probe"
base = "bookworm"
lock = "harness.lock"
requirements = "requirements.txt"
command = ["python", "main.py"]
params_file = "params.yaml"

[data]
numbers = "data/numbers"

[params]
scale = 1
exit = 0
sleep = 0
"""

PROBE_MAIN = r"""
import json, os, pathlib, socket, sys, time

params = json.load(open(os.environ["HARNESS_PARAMS"]))
out = pathlib.Path(os.environ["HARNESS_OUTPUTS"])
values = [int(x) for x in pathlib.Path("/data/numbers/values.txt").read_text().split()]


def can_write(path):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        return True
    except OSError:
        return False


import six  # from the locked environment

probe = {
    "uid": os.getuid(),
    "hostname": socket.gethostname(),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "write_code": can_write("/code/new.txt"),
    "write_data": can_write("/data/numbers/values.txt"),
    "write_root": can_write("/etc/x"),
    "code_files": sorted(p.name for p in pathlib.Path("/code").iterdir()),
    "env": {k: os.environ.get(k) for k in ("TZ", "PYTHONHASHSEED", "SOURCE_DATE_EPOCH", "OMP_NUM_THREADS",
                                              "HARNESS_PARAM_SCALE", "LC_ALL")},
    "six": six.__version__,
    "python": sys.executable,
}
print("probe ran", flush=True)
print("to stderr", file=sys.stderr, flush=True)
(out / "probe.json").write_text(json.dumps(probe, sort_keys=True))
(out / "sub").mkdir()
(out / "sub" / "total.txt").write_text(str(sum(values) * params["scale"]))
(out / "metrics.json").write_text(json.dumps({"total": sum(values) * params["scale"], "nested": {"n": len(values)}}))
time.sleep(params["sleep"])
sys.exit(params["exit"])
"""


def git(cwd: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=check, capture_output=True, text=True).stdout


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def settle(root: Path) -> None:
    """Wait until no file under root is in the stat cache's racy window any more, as for data written a while
    ago: a snapshot may then trust what it hashes."""
    import time

    from harness.storage.snapshot import RACY_COARSE_NS, RACY_FINE_NS

    stamps = [getattr(p.lstat(), f) for p in [root, *root.rglob("*")] for f in ("st_mtime_ns", "st_ctime_ns")]
    until = max(ns + (RACY_FINE_NS if ns % 1_000_000_000 else RACY_COARSE_NS) for ns in stamps)
    while time.time_ns() <= until:
        time.sleep(0.02)


def make_repo(root: Path, files: dict[str, str | bytes], message: str = "first") -> str:
    root.mkdir(parents=True, exist_ok=True)
    write_files(root, files)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def valid_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record, after checking it against the published JSON Schema of harness.run/1 (every error listed)."""
    import jsonschema

    from harness.runs.schema import JSON_SCHEMA

    validator = jsonschema.Draft202012Validator(json.loads(JSON_SCHEMA.read_text(encoding="utf-8")))
    errors = [f"{'.'.join(map(str, e.path)) or '(record)'}: {e.message}" for e in validator.iter_errors(record)]
    assert not errors, "record does not match harness.run/1:\n" + "\n".join(errors)
    return record


def unseal(root: Path, run_id: str) -> None:
    """Make a run's record look like one written before harness sealed records: no seal in the store, and no
    index (the next command rebuilds it, holding no seal for this run)."""
    store = root / ".harness"
    (store / "seals" / run_id).unlink()
    for suffix in ("", "-wal", "-shm"):
        (store / f"index.sqlite{suffix}").unlink(missing_ok=True)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a harness subprocess: outside CI unless a test says otherwise."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS", "GITLAB_CI")}
    env.update(GIT_ENV)
    env.update(extra)
    return env


def harness(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_probe_project(root: Path, lock: Any) -> Path:
    """A small real project: reads data and params, probes its sandbox, writes outputs and metrics.
    ``lock`` is a harness.lockfile.Lock for an environment holding six."""
    from harness.env.lockfile import write_lock

    root.mkdir(parents=True)
    write_lock(root / "harness.lock", lock)
    make_repo(
        root,
        {
            "harness.toml": PROBE_CONFIG,
            "main.py": PROBE_MAIN,
            "requirements.txt": "\n".join(lock.requirements) + "\n",
            "params.yaml": "double:\n  scale: 2\nfail:\n  exit: 3\n",
            ".gitignore": ".harness/\ndata/\n*.local\n",
        },
    )
    (root / "data" / "numbers").mkdir(parents=True)
    (root / "data" / "numbers" / "values.txt").write_text("1 2 3 4\n")
    return root


def make_bikes_repo(root: Path) -> Path:
    """examples/bikes in its own git repository at ``root``, as the README tells a user to run it; its lock names
    this session (session_owned), so its environment image is this session's own and a test may remove it."""
    import dataclasses
    import shutil

    from harness.env.lockfile import read_lock, requirements_digest, write_lock

    examples = Path(__file__).resolve().parent.parent / "examples"
    shutil.copytree(examples / "bikes", root, ignore=shutil.ignore_patterns("__pycache__", ".harness"))
    lock = read_lock(root / "harness.lock")
    owned = tuple(session_owned(r) for r in lock.requirements)
    (root / "requirements.txt").write_text("".join(f"{r}\n" for r in owned))
    write_lock(
        root / "harness.lock",
        dataclasses.replace(lock, requirements=owned, requirements_digest=requirements_digest(owned)),
    )
    make_repo(root, {".gitignore": ".harness/\n"}, message="bikes example")
    return root
