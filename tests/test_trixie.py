"""The built-in trixie recipe (Debian 13: CPython 3.13, glibc 2.41), locked from this host whatever its Python,
built, and run: the lock's binary wheel is the one the image can load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.docker.interface import ContainerSpec, Engine
from harness.env.catalog import build_project
from harness.env.lockfile import read_lock
from tests.projects import harness, make_repo

pytestmark = [pytest.mark.slow, pytest.mark.docker]

CONFIG = """name = "trixie"
base = "trixie"
lock = "harness.lock"
requirements = "requirements.txt"
command = ["python", "main.py"]
"""
# A pure wheel, a binary wheel (PyYAML's C extension, libyaml bundled, loaded by the image's CPython 3.13 on its
# glibc), and two requirements whose markers hold only on an older Python or on macOS: neither may reach the lock.
REQUIREMENTS = """six==1.16.0
PyYAML==6.0.2
tomli==2.2.1; python_version < "3.12"
appnope==0.1.4; sys_platform == "darwin"
"""
PROBE = (
    "import json, os, sys, six, yaml;"
    "print(json.dumps({'python': list(sys.version_info[:2]), 'glibc': os.confstr('CS_GNU_LIBC_VERSION'),"
    "'six': six.__version__, 'yaml': yaml.__version__, 'libyaml': yaml.__with_libyaml__}))"
)


def test_trixie_locked_from_this_host_builds_and_runs(tmp_path: Path, harness_cache: Path, engine: Engine) -> None:
    project = tmp_path / "trixie"
    make_repo(project, {"harness.toml": CONFIG, "requirements.txt": REQUIREMENTS, "main.py": "print('hi')\n"})

    result = harness(project, "lock", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    lock = read_lock(project / "harness.lock")
    assert (lock.python, lock.platform) == ("3.13", "manylinux_2_41_x86_64")
    assert [p.name for p in lock.packages] == ["pyyaml", "six"]
    pyyaml = lock.package("pyyaml")
    assert pyyaml is not None and "-cp313-cp313-manylinux" in pyyaml.filename

    started = time.monotonic()
    env = build_project(project, engine, lambda message: print(f"[{time.monotonic() - started:6.1f}s] {message}"))
    print(f"trixie environment {env['action']} in {time.monotonic() - started:.1f} s")
    assert env["python"].startswith("3.13.")

    chunks: list[bytes] = []
    spec = ContainerSpec(image=env["image_ref"], command=("python", "-c", PROBE), network=False)
    code, _ = engine.run(spec, lambda _stream, chunk: chunks.append(chunk))
    assert code == 0, b"".join(chunks)
    assert json.loads(b"".join(chunks)) == {
        "python": [3, 13],
        "glibc": "glibc 2.41",
        "six": "1.16.0",
        "yaml": "6.0.2",
        "libyaml": True,
    }
