"""Cold environment build by harness next to a plain `docker build` of the same thing; and warm reuse.

The realistic case is the bikes example's lock (numpy, matplotlib and their dependencies, 11 wheels).

What both cold builds share, and what they do not:
- the base image: both start from the same `harness-base:<key>` image, already in Docker. For harness that means
  each trial's fresh HARNESS_CACHE gets the base record and the base layer/config/manifest objects copied in, so
  mmdebstrap is not run again (it would be for docker too: docker build does not bootstrap a base either);
- the wheels: both get the same already-downloaded, hash-checked wheel files (harness in its fresh cache's wheel
  directory, docker build in its context). Neither downloads anything;
- nothing else: harness writes the library layer, config, manifest and archive and `docker load`s the image;
  docker build (classic builder, DOCKER_BUILDKIT=0, --no-cache) COPYs the wheels and RUNs the same venv + pip +
  compileall steps. Before each trial the image of the other trial is removed.
The bench uses a recipe of its own (the default one with another SOURCE_DATE_EPOCH), so every image it removes
is its own and no image another test or user relies on is touched; it bootstraps that base once (about 20 s).

Warm reuse: `ensure_environment` in-process with the image present, median of --warm calls.

Usage: python bench/env_build.py [--n 3] [--warm 20] [--keep]
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from harness.docker.engine import connect  # noqa: E402
from harness.env.baselayer import BASE_REPOSITORY, base_key  # noqa: E402
from harness.env.images import ensure_environment  # noqa: E402
from harness.env.lockfile import PIP_INSTALLER, read_lock  # noqa: E402
from harness.env.recipe import load_recipe  # noqa: E402
from harness.env.wheels import cached_wheel_path  # noqa: E402
from harness.paths import Layout  # noqa: E402

BENCH_EPOCH = 1700000123  # not the default recipe's: the bench's images are its own
DOCKER_TAG = "harness-bench-docker:env"


def make_project(root: Path) -> Path:
    project = root / "bikes"
    project.mkdir(parents=True)
    for name in ("harness.lock", "requirements.txt"):
        shutil.copy(ROOT / "examples" / "bikes" / name, project / name)
    config = (ROOT / "examples" / "bikes" / "harness.toml").read_text()
    (project / "harness.toml").write_text(config.replace('base = "bookworm"', 'base = "benchbase"'))
    recipe = (ROOT / "images" / "bookworm.toml").read_text()
    (project / "images").mkdir()
    (project / "images" / "benchbase.toml").write_text(
        recipe.replace("source_date_epoch = 1700000000", f"source_date_epoch = {BENCH_EPOCH}")
    )
    return project


def harness_build(project: Path, cache: Path) -> tuple[float, dict]:
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    argv = [sys.executable, "-m", "harness", "env", "build", "--json", "-C", str(project)]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"harness env build failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def seed_cache(seed: Path, fresh: Path, base_record: Path) -> None:
    """A fresh cache holding only the base (record + objects) and the wheels, hard-linked from the seed cache."""
    (fresh / "images").mkdir(parents=True)
    shutil.copy(base_record, fresh / "images" / base_record.name)
    base = json.loads(base_record.read_bytes())
    for digest in (base["layer"]["digest"], base["config"], base["manifest"]):
        rel = Path("objects") / digest[:2] / digest[2:]
        (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(seed / rel, fresh / rel)
    shutil.copytree(seed / "wheels", fresh / "wheels", copy_function=os.link)


def docker_context(root: Path, project: Path, seed: Path, base_ref: str, epoch: int) -> Path:
    lock = read_lock(project / "harness.lock")
    ctx = root / "docker-context"
    (ctx / "wheels").mkdir(parents=True)
    for package in (*lock.packages, PIP_INSTALLER):
        os.link(cached_wheel_path(seed / "wheels", package), ctx / "wheels" / package.filename)
    lines = [f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in sorted(lock.packages, key=lambda p: p.name)]
    (ctx / "requirements.txt").write_text("".join(lines))
    (ctx / "Dockerfile").write_text(
        f"FROM {base_ref}\n"
        f"ENV PYTHONHASHSEED=0 SOURCE_DATE_EPOCH={epoch} LC_ALL=C.UTF-8 TZ=UTC\n"
        "COPY wheels /wheels\n"
        "COPY requirements.txt /req/requirements.txt\n"
        "RUN python3 -m venv --without-pip /opt/venv \\\n"
        f" && /opt/venv/bin/python /wheels/{PIP_INSTALLER.filename}/pip install --no-index --find-links /wheels \\\n"
        "    --no-compile --no-deps --require-hashes --no-cache-dir --disable-pip-version-check \\\n"
        "    --root-user-action=ignore --no-input --progress-bar off -r /req/requirements.txt \\\n"
        " && /opt/venv/bin/python -m compileall -q -j 1 --invalidation-mode unchecked-hash /opt/venv\n"
        'ENV PATH="/opt/venv/bin:$PATH" VIRTUAL_ENV=/opt/venv\n'
    )
    return ctx


def docker_build(ctx: Path) -> float:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    argv = ["docker", "build", "--no-cache", "--quiet", "-t", DOCKER_TAG, str(ctx)]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"docker build failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def rmi(ref: str) -> None:
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3, help="cold builds of each kind (interleaved)")
    parser.add_argument("--warm", type=int, default=20, help="warm ensure_environment calls")
    parser.add_argument("--keep", action="store_true", help="keep the bench's images and caches")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="harness-bench-env-"))
    project = make_project(root)
    seed = root / "seed-cache"
    recipe = load_recipe("benchbase", project)
    base_ref = f"{BASE_REPOSITORY}:{base_key(recipe)[:16]}"
    lock = read_lock(project / "harness.lock")
    print(f"bikes lock: {len(lock.packages)} packages ({', '.join(p.name for p in lock.packages)})")

    start = time.perf_counter()
    _, first = harness_build(project, seed)  # base (mmdebstrap) + wheel downloads + library layer, once
    print(f"setup: first build incl. mmdebstrap and wheel downloads: {time.perf_counter() - start:.1f} s")
    base_record = next((seed / "images").glob("base-*.json"))
    ctx = docker_context(root, project, seed, base_ref, recipe.source_date_epoch)
    engine = connect()

    harness_times: list[float] = []
    docker_times: list[float] = []
    try:
        for trial in range(args.n):
            rmi(DOCKER_TAG)
            rmi(first["image_id"])  # the bench's own image (its own recipe)
            fresh = root / f"cache-{trial}"
            seed_cache(seed, fresh, base_record)
            elapsed, result = harness_build(project, fresh)
            assert result["action"] == "built" and result["image_id"] == first["image_id"], result
            harness_times.append(elapsed)
            shutil.rmtree(fresh)
            rmi(first["image_id"])
            docker_times.append(docker_build(ctx))
            print(f"trial {trial + 1}: harness {harness_times[-1]:.1f} s, docker build {docker_times[-1]:.1f} s")
        rmi(DOCKER_TAG)

        # Warm: the image is present and recorded in the seed cache.
        layout = Layout(project=project, store=project / ".harness", cache=seed)
        ensure_environment(recipe, lock, layout, engine)  # loads it back if the last trial removed it
        warm = []
        for _ in range(args.warm):
            t0 = time.perf_counter()
            env = ensure_environment(recipe, lock, layout, engine)
            warm.append(time.perf_counter() - t0)
            assert not env.built and not env.loaded
    finally:
        if not args.keep:
            rmi(DOCKER_TAG)
            rmi(first["image_id"])
            rmi(base_ref)
            shutil.rmtree(root, ignore_errors=True)

    h, d, w = statistics.median(harness_times), statistics.median(docker_times), statistics.median(warm)
    print()
    print(f"image {first['image_id']} (manifest {first['manifest_digest']}), same in every harness trial")
    print(f"cold build, median of {args.n}: harness {h:.2f} s   docker build (classic) {d:.2f} s   ratio {h / d:.2f}")
    print("  (target ratio <= 1.0)")
    print(f"warm reuse, median of {args.warm}: ensure_environment {w * 1000:.1f} ms   (target < 50 ms)")


if __name__ == "__main__":
    main()
