"""A local sweep of 8 runs of a ~1 s CPU-bound command with `-j 2`, next to 8 sequential `harness run` of the same
command (the baseline): what a sweep saves on a 2-core machine. Target: at most 0.6x the sequential time.

The command does a fixed amount of work (a pure-Python loop, calibrated here to about 1 s of one core), so a
busy machine stretches both sides alike. Builds (or reuses) a tiny project's environment with one untimed run, then
times the two, alternating which goes first, for --rounds rounds, and prints each round, the medians with min-max
and the ratio. Usage: python bench/sweep.py [--rounds 3] [--runs 8] [--jobs 2] [--project DIR]
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
from run_overhead import GIT, SIX

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.env.lockfile import Lock, requirements_digest, write_lock  # noqa: E402

BUSY = "n = {n}\ntotal = 0\nfor i in range(n):\n    total += i * i\nprint(total)\n"


def calibrate(target_s: float = 1.0) -> int:
    """Loop iterations that take about ``target_s`` of one core in this interpreter (the image's Python is
    another build, so the command's time is about, not exactly, this)."""
    n = 1_000_000
    while True:
        start = time.process_time()
        exec(BUSY.format(n=n), {"print": lambda *_: None})
        took = time.process_time() - start
        if took > 0.2:
            return int(n * target_s / took)
        n *= 4


def make_project(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "busy.py").write_text(BUSY.format(n=n))
    (root / "harness.toml").write_text(
        'name = "bench-sweep"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["python", "busy.py"]\n'
    )
    (root / ".gitignore").write_text(".harness/\n")
    reqs = ("six==1.16.0",)
    write_lock(root / "harness.lock", Lock("3.11", "manylinux_2_36_x86_64", reqs, requirements_digest(reqs), (SIX,)))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "bench"], cwd=root, check=True)


def timed(argvs: list[list[str]], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min-max {min(values):.2f}-{max(values):.2f})"


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--project", type=Path, default=None)
    args = parser.parse_args()
    root = args.project or Path(tempfile.mkdtemp(prefix="harness-bench-")) / "proj"
    if not (root / "harness.toml").exists():
        make_project(root, calibrate())
    harness = [sys.executable, "-m", "harness"]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    first = subprocess.run([*harness, "run", "--json"], cwd=root, env=env, capture_output=True, text=True)
    if first.returncode != 0:
        sys.exit(first.stderr)
    one = json.loads(first.stdout)["duration_s"]
    sequential = [[*harness, "run"]] * args.runs
    values = ",".join(str(i) for i in range(args.runs))
    swept = [[*harness, "sweep", "-p", f"i={values}", "-j", str(args.jobs)]]
    print(f"{os.cpu_count()} CPUs; one warm run of the command: {one:.2f} s (its record's duration_s)")
    seq_times: list[float] = []
    sweep_times: list[float] = []
    for round_no in range(args.rounds):
        order = [("seq", sequential), ("sweep", swept)]
        if round_no % 2:
            order.reverse()
        got = {name: timed(argvs, root, env) for name, argvs in order}
        seq_times.append(got["seq"])
        sweep_times.append(got["sweep"])
        print(
            f"round {round_no + 1}: {args.runs} x harness run {got['seq']:.2f} s, "
            f"harness sweep -j {args.jobs} {got['sweep']:.2f} s, ratio {got['sweep'] / got['seq']:.2f}"
        )
    ratios = [s / q for s, q in zip(sweep_times, seq_times, strict=True)]
    print(f"{args.runs} sequential `harness run` (baseline): {spread(seq_times)}")
    print(f"`harness sweep -j {args.jobs}` of {args.runs} runs:       {spread(sweep_times)}")
    print(
        f"ratio sweep/sequential: {statistics.median(sweep_times) / statistics.median(seq_times):.2f} of the medians; "
        f"per round (side by side) median {statistics.median(ratios):.2f}, min-max {min(ratios):.2f}-{max(ratios):.2f}"
        " (target <= 0.6)"
    )


if __name__ == "__main__":
    main()
