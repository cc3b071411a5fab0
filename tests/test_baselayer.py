"""The base layer is the same bytes whoever builds it: root (mmdebstrap's root mode) or a user in the docker group
(unshare mode), whether or not SOURCE_DATE_EPOCH reached the packages' byte-compiling scripts."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.env import baselayer
from harness.env.environment import Environment
from harness.env.lockfile import Lock, write_lock
from harness.env.recipe import load_recipe
from tests.projects import make_repo

REPO = Path(__file__).resolve().parent.parent
USER = "harness-test-user"

# py_compile's two headers for one stdlib module, then the base layer's normalizer run over /usr: the timestamp
# file must come out byte for byte as the hash-checked one, and a hash-checked file must be left as it is.
_PROBE = """import py_compile, subprocess, sys, importlib.util as u
src = '/usr/lib/python3.11/json/encoder.py'
pyc = u.cache_from_source(src)
py_compile.compile(src, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
want = open(pyc, 'rb').read()
py_compile.compile(src, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
before = open(pyc, 'rb').read()
subprocess.run([sys.executable, '-I', '-c', sys.argv[1]], check=True)
after = open(pyc, 'rb').read()
subprocess.run([sys.executable, '-I', '-c', sys.argv[1]], check=True)
print(before[4:8] != want[4:8], after == want, open(pyc, 'rb').read() == want)
"""


def test_a_timestamp_pyc_becomes_the_hash_checked_one_and_a_hash_checked_one_is_left(tiny_env: Environment) -> None:
    base = tiny_env.base["image_id"]
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "0", base, "python3", "-c", _PROBE]
        + [baselayer._NORMALIZE_PYC],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]


def test_the_mode_is_pinned_and_not_in_the_layers_history() -> None:
    assert baselayer.mmdebstrap_mode() == ("root" if os.geteuid() == 0 else "unshare")
    recipe_command = " ".join(baselayer.mmdebstrap_command(load_recipe("bookworm", REPO), "rootfs.tar"))
    assert "--mode" not in recipe_command and "python3 -I -c" in recipe_command


@pytest.fixture()
def docker_user() -> Iterator[str]:
    """A non-root user in the docker group, made for this test and removed after it (with a subuid range, as
    Debian's useradd gives one)."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root; this test checks root's build against a docker-group user's")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--groups", "docker", USER], check=True, capture_output=True)
    try:
        yield USER
    finally:
        subprocess.run(["userdel", "--remove", USER], check=False, capture_output=True)


def _python_for(user: str) -> str:
    """An interpreter with harness installed that ``user`` may run: this one, else the Debian-Python venv that
    scripts/setup makes when this one is not /usr/bin/python3 (a pyenv build under /root is private to root)."""
    for python in (sys.executable, str(REPO / ".venv-system" / "bin" / "python")):
        if (
            subprocess.run(
                ["runuser", "-u", user, "--", python, "-c", "import harness"], capture_output=True, check=False
            ).returncode
            == 0
        ):
            return python
    pytest.fail(f"{user} can run no Python with harness installed; run ./scripts/setup (it makes .venv-system)")


def _as_user(user: str, cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pwd.getpwnam(user).pw_dir, "HARNESS_CACHE": str(cache)}
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()), _python_for(user)]
        + ["-m", "harness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_root_and_a_docker_group_user_build_one_image_id(
    docker_user: str, tiny_env: Environment, tiny_lock: Lock
) -> None:
    # A directory the user can reach (pytest's tmp_path is private to root), removed afterwards.
    top = Path(tempfile.mkdtemp(prefix="harness-user-"))
    try:
        top.chmod(0o755)
        project, cache = top / "project", top / "cache"
        project.mkdir()
        write_lock(project / "harness.lock", tiny_lock)
        config = 'base = "bookworm"\nlock = "harness.lock"\nrequirements = "requirements.txt"\ncommand = ["true"]\n'
        make_repo(project, {"harness.toml": config, "requirements.txt": "\n".join(tiny_lock.requirements) + "\n"})
        shutil.chown(top, docker_user)
        subprocess.run(["chown", "-R", docker_user, str(project)], check=True)

        built = _as_user(docker_user, project, cache, "env", "build", "--json")
        assert built.returncode == 0, built.stderr
        assert json.loads(built.stdout)["image_id"] == tiny_env.image_id  # root built the session's tiny_env

        verified = _as_user(docker_user, project, cache, "env", "verify", "--json")
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["ok"] is True
    finally:
        shutil.rmtree(top, ignore_errors=True)
