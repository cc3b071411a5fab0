"""What this tree costs against an earlier release, side by side in one run: `harness --help`, `harness ls --limit 50`
over 10,000 runs, and a warm `harness run` of `python -c pass` (next to `docker run` of the same image).

The earlier release is a git rev of this repository (--baseline, default: the commit before the move onto the Docker
SDK, GitPython and typer). Its `harness/` is exported with `git archive` into bench/out/release-<rev>, byte-compiled
like this tree, and run by the same interpreter with PYTHONPATH pointing at it, so both use the same libraries and
differ only in harness's own code. Every sample is a fresh process; the two trees alternate within each round.

Usage: python bench/release.py [--baseline REV] [--n 11] [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compile_harness, release_tree  # bench/ is on sys.path when a script in it runs
from ls import fake_runs, setup_harness
from run_overhead import make_project

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
BASELINE = "62c221e"  # main before the package layout and the Docker SDK, GitPython and typer (2026-11-29)


def export(rev: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True)
    return release_tree(rev, OUT / f"release-{sha.stdout.strip()}")


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed in {cwd}:\n{done.stderr.decode(errors='replace')}")
    return elapsed


def describe(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s ({min(times):.3f}-{max(times):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="git rev of the earlier release")
    parser.add_argument("--n", type=int, default=11, help="samples of each command per tree")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store that ls lists")
    args = parser.parse_args()

    compile_harness()
    old = export(args.baseline)
    base_env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
    trees = {"this tree": base_env, f"release {args.baseline}": {**base_env, "PYTHONPATH": str(old)}}
    harness = [sys.executable, "-m", "harness"]

    ls_project = OUT / f"release-ls-{args.runs}"
    if not (ls_project / "harness.toml").is_file():
        print(f"writing {args.runs} run records into {ls_project} (once)", file=sys.stderr)
        setup_harness(ls_project, fake_runs(args.runs))
    run_project = Path(tempfile.mkdtemp(prefix="harness-release-")) / "proj"
    make_project(run_project)
    first = subprocess.run([*harness, "run", "--json"], cwd=run_project, env=base_env, capture_output=True, text=True)
    if first.returncode != 0:
        sys.exit(first.stderr)
    image = json.loads(first.stdout)["environment"]["image_id"]
    docker = ["docker", "run", "--rm", "--network", "none", image, "python", "-c", "pass"]

    commands = {
        "harness --help": ([*harness, "--help"], run_project),
        f"harness ls --limit 50 ({args.runs} runs)": ([*harness, "ls", "--limit", "50"], ls_project),
        "warm harness run (python -c pass)": ([*harness, "run"], run_project),
    }
    times: dict[tuple[str, str], list[float]] = {}
    docker_times: list[float] = []
    for env in trees.values():  # one untimed round each: page cache, .pyc files, the image
        for argv, cwd in commands.values():
            timed(argv, cwd, env)
    for _ in range(args.n):
        for label, (argv, cwd) in commands.items():
            for name, env in trees.items():
                times.setdefault((label, name), []).append(timed(argv, cwd, env))
        docker_times.append(timed(docker, run_project, base_env))

    new_name, old_name = list(trees)
    print(f"medians of {args.n} fresh processes (min-max); {new_name} vs {old_name}")
    for label in commands:
        new, old_t = times[(label, new_name)], times[(label, old_name)]
        ratio = statistics.median(new) / statistics.median(old_t)
        print(f"{label:42} {describe(new):26} {describe(old_t):26} x{ratio:.2f}")
    print(f"{'docker run --rm --network none (same image)':42} {describe(docker_times)}")
    run_median = statistics.median(times[("warm harness run (python -c pass)", new_name)])
    print(f"warm run overhead over docker run: {run_median - statistics.median(docker_times):+.3f} s")


if __name__ == "__main__":
    main()
