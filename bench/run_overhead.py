"""Warm `harness run` of a trivial command next to `docker run --rm --network none` of the same image, and
`harness rebuild` of that run (no build needed) next to the run itself.

Builds (or reuses) a tiny project's environment first, then times both, interleaved, N times each, and prints
medians and the ratio. Usage: python bench/run_overhead.py [--n 15] [--project DIR]
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

from common import compile_harness  # bench/ is on sys.path when a script in it runs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.env.lockfile import Lock, LockedPackage, requirements_digest, write_lock  # noqa: E402

SIX = LockedPackage(
    "six",
    "1.16.0",
    "six-1.16.0-py2.py3-none-any.whl",
    "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
)
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]


def make_project(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "harness.toml").write_text(
        'name = "bench"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["python", "-c", "pass"]\n'
    )
    (root / ".gitignore").write_text(".harness/\n")
    reqs = ("six==1.16.0",)
    write_lock(root / "harness.lock", Lock("3.11", "manylinux_2_36_x86_64", reqs, requirements_digest(reqs), (SIX,)))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "bench"], cwd=root, check=True)


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--project", type=Path, default=None)
    args = parser.parse_args()
    root = args.project or Path(tempfile.mkdtemp(prefix="harness-bench-")) / "proj"
    if not (root / "harness.toml").exists():
        make_project(root)
    harness = [sys.executable, "-m", "harness"]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    first = subprocess.run([*harness, "run", "--json"], cwd=root, env=env, capture_output=True, text=True)
    if first.returncode != 0:
        sys.exit(first.stderr)
    image = json.loads(first.stdout)["environment"]["image_id"]
    docker = ["docker", "run", "--rm", "--network", "none", image, "python", "-c", "pass"]
    h_times, d_times = [], []
    for _ in range(args.n):
        h_times.append(timed([*harness, "run"], root))
        d_times.append(timed(docker, root))
    run_id = json.loads(first.stdout)["id"]
    r_times = [timed([*harness, "rebuild", run_id], root) for _ in range(args.n)]
    h, d, r = statistics.median(h_times), statistics.median(d_times), statistics.median(r_times)
    print(f"warm harness run (python -c pass), median of {args.n}: {h:.3f} s")
    print(f"docker run --rm --network none,     median of {args.n}: {d:.3f} s")
    print(f"ratio harness/docker: {h / d:.2f}  (overhead {h - d:+.3f} s per run)")
    print(f"harness rebuild of that run,        median of {args.n}: {r:.3f} s  ({r - h:+.3f} s vs the run itself)")


if __name__ == "__main__":
    main()
