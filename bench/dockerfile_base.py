"""A Dockerfile base: its first build and archive, next to a plain `docker build`; then warm runs on it, next to
warm runs on a recipe base.

Setup (untimed): a recipe base of the bench's own (the default recipe with another SOURCE_DATE_EPOCH, so every
image the bench removes is its own; bootstrapped once with mmdebstrap, about 20 s) in a cache of the bench's own,
and two git projects with the same code and lock (six): one on that recipe, one on a Dockerfile.base that starts
FROM that recipe's base image, COPYs a committed file and RUNs a command.

Cold, --n trials: each commits a new version of the copied file (so a new key, and a build cache miss from the
COPY on), then times `harness env build` in a fresh process: docker build, docker save into the cache store, the
python3 probe, the library layer and its docker load. Its progress lines are timestamped to split that time.
Interleaved with it, a plain `docker build` (DOCKER_BUILDKIT=0, --no-cache, --network none as harness builds by
default) of the same Dockerfile and context.

Warm, --warm rounds: `harness run` on each project, alternating, everything present.

Usage: python bench/dockerfile_base.py [--n 3] [--warm 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compile_harness  # bench/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.docker.engine import connect  # noqa: E402
from harness.env.baselayer import ensure_base  # noqa: E402
from harness.env.dockerfile import load_dockerfile  # noqa: E402
from harness.env.lockfile import Lock, LockedPackage, requirements_digest, write_lock  # noqa: E402
from harness.env.recipe import BUILTIN_RECIPES, load_recipe  # noqa: E402
from harness.paths import Layout  # noqa: E402
from harness.project.projectfiles import WorkingTreeFiles  # noqa: E402
from harness.storage.store import Store  # noqa: E402

BENCH_EPOCH = 1700000321  # not the default recipe's: the bench's images are its own
DOCKER_TAG = "harness-bench-docker:dockerfile"
SIX = LockedPackage(
    name="six",
    version="1.16.0",
    filename="six-1.16.0-py2.py3-none-any.whl",
    sha256="8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
)
GIT = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
MAIN = (
    "import pathlib, six\np = pathlib.Path('/opt/greeting/greeting.txt')\nprint(p.read_text() if p.exists() else '')\n"
)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT}, check=True, capture_output=True)


def make_project(root: Path, base: str, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    lock = Lock("3.11", "manylinux_2_36_x86_64", ("six==1.16.0",), requirements_digest(("six==1.16.0",)), (SIX,))
    write_lock(root / "harness.lock", lock)
    config = f'name = "bench"\nbase = "{base}"\nlock = "harness.lock"\ncommand = ["python", "main.py"]\n'
    for rel, text in {"harness.toml": config, "main.py": MAIN, ".gitignore": ".harness/\n", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench")
    return root


def harness(project: Path, cache: Path, *args: str) -> tuple[float, list[tuple[float, str]], str]:
    """(seconds, timestamped stderr lines, stdout) of one harness command in a fresh process."""
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    lines = [(time.perf_counter() - start, line.rstrip("\n")) for line in proc.stderr]
    stdout = proc.stdout.read()
    code = proc.wait()
    elapsed = time.perf_counter() - start
    if code != 0:
        sys.exit(f"harness {' '.join(args)} failed ({code}):\n" + "\n".join(line for _, line in lines))
    return elapsed, lines, stdout


def at(lines: list[tuple[float, str]], text: str) -> float:
    return next(t for t, line in lines if text in line)


def docker_build(project: Path) -> float:
    argv = ["docker", "build", "--no-cache", "--force-rm", "--quiet", "--network", "none", "-f", "Dockerfile.base"]
    argv += ["-t", DOCKER_TAG, "."]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=project, env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"docker build failed:\n{proc.stderr.decode()}")
    return time.perf_counter() - start


def remove_labelled(label: str) -> None:
    listed = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter", f"label={label}"], capture_output=True)
    for image_id in sorted(set(listed.stdout.decode().split())):
        subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True, check=False)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3, help="cold builds of each kind (interleaved)")
    parser.add_argument("--warm", type=int, default=5, help="warm runs of each project (interleaved)")
    parser.add_argument("--keep", action="store_true", help="keep the bench's images and directories")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="harness-bench-dockerfile-"))
    cache = root / "cache"
    recipe_text = (BUILTIN_RECIPES / "bookworm.toml").read_text()
    recipe_text = recipe_text.replace("source_date_epoch = 1700000000", f"source_date_epoch = {BENCH_EPOCH}")
    on_recipe = make_project(root / "recipe", "benchbase", {"images/benchbase.toml": recipe_text})
    recipe = load_recipe("benchbase", on_recipe)
    engine = connect()
    layout = Layout(project=on_recipe, store=on_recipe / ".harness", cache=cache)
    start = time.perf_counter()
    base = ensure_base(recipe, layout, engine, Store(layout.cache_objects), lambda _message: None)
    print(f"setup: the bench's own recipe base {base.image_ref}: {time.perf_counter() - start:.1f} s")
    dockerfile = (
        f"FROM {base.image_ref}\nCOPY greeting.txt /opt/greeting/\n"
        "RUN cp /opt/greeting/greeting.txt /opt/greeting/copied.txt && python3 -c 'print(42)' > /opt/greeting/n\n"
    )
    on_dockerfile = make_project(
        root / "dockerfile", "Dockerfile.base", {"Dockerfile.base": dockerfile, "greeting.txt": "trial 0\n"}
    )
    keys: list[str] = []
    builds: list[float] = []
    phases: dict[str, list[float]] = {"docker build": [], "archive + probe": [], "library layer + load": []}
    plain: list[float] = []
    warm: dict[str, list[float]] = {"Dockerfile base": [], "recipe base": []}
    try:
        harness(on_recipe, cache, "env", "build")  # untimed: the recipe project's environment, and the wheels
        for trial in range(1, args.n + 1):
            (on_dockerfile / "greeting.txt").write_text(f"trial {trial} {time.time()}\n")
            git(on_dockerfile, "commit", "-q", "-am", f"trial {trial}")
            keys.append(load_dockerfile("Dockerfile.base", WorkingTreeFiles(on_dockerfile)).key)
            elapsed, lines, stdout = harness(on_dockerfile, cache, "env", "build", "--json")
            assert json.loads(stdout)["action"] == "built"
            built, archived, wheels = (at(lines, s) for s in ("building base image", "archiving base", "fetching"))
            builds.append(elapsed)
            phases["docker build"].append(archived - built)
            phases["archive + probe"].append(wheels - archived)
            phases["library layer + load"].append(elapsed - wheels)
            plain.append(docker_build(on_dockerfile))
            subprocess.run(["docker", "rmi", "-f", DOCKER_TAG], capture_output=True, check=False)
            print(
                f"trial {trial}: harness env build {builds[-1]:.2f} s (docker build {phases['docker build'][-1]:.2f}"
                f", archive + probe {phases['archive + probe'][-1]:.2f}), plain docker build {plain[-1]:.2f} s"
            )
        for project in (on_dockerfile, on_recipe):
            harness(project, cache, "run")  # untimed: loads nothing more afterwards
        for _ in range(args.warm):
            for name, project in (("Dockerfile base", on_dockerfile), ("recipe base", on_recipe)):
                elapsed, lines, _ = harness(project, cache, "run")
                assert not any("building" in line or "loading" in line for _, line in lines), lines
                warm[name].append(elapsed)
    finally:
        if not args.keep:
            for key in keys:
                remove_labelled(f"org.harness.base=sha256:{key}")  # the environments on a built base
                subprocess.run(["docker", "rmi", "-f", f"harness-base:dockerfile-{key[:16]}"], capture_output=True)
            remove_labelled(f"org.harness.base={base.key}")  # the recipe project's environment, then its base
            subprocess.run(["docker", "rmi", "-f", base.image_ref, DOCKER_TAG], capture_output=True, check=False)
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"first build + archive (harness env build, fresh process): {spread(builds)}")
    for name, values in phases.items():
        print(f"  {name:22} {spread(values)}")
    print(f"plain docker build --no-cache of the same Dockerfile: {spread(plain)}")
    for name, values in warm.items():
        print(f"warm harness run on a {name}: {spread(values)}")


if __name__ == "__main__":
    main()
