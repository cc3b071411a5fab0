"""Data snapshots: `harness data snapshot` next to `dvc add` and a plain hashlib sha256 pass, on the same bytes.

Builds its own data under a temp dir (one 1 GB file; 10,000 files of 10 kB; a 5 GB file for peak memory),
installs DVC into its own venv (bench/out/venv, git-ignored), then measures side by side in one run:
- `dvc add` (a fresh `git init` + `dvc init` directory per repetition, data copied in untimed),
- `harness data snapshot` (a fresh project store per repetition),
- a plain single-threaded hashlib sha256 pass over the same files (a fresh interpreter, like the other two),
  and, for context, a plain copy of the same files (what storing them costs without hashing);
plus the re-snapshot of the unchanged 10,000 files (CLI wall time and the in-process snapshot call) and the
peak RSS of `harness data snapshot` on the 5 GB file (the child's ru_maxrss). Every figure is a wall-clock
median; the data stays in the page cache for all tools alike, and dirty pages are flushed (untimed) before
each command, so no tool pays for writeback of another's output. The data is deleted afterwards.

Usage: python bench/snapshot.py [--reps 3] [--warmup 1] [--big-mb 1024] [--small-count 10000] [--small-kb 10]
                                [--huge-mb 5120] [--dir /tmp] [--keep]
Quick check: python bench/snapshot.py --reps 1 --big-mb 64 --small-count 500 --huge-mb 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import compile_harness  # bench/ is on sys.path when a script in it runs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / "out" / "venv"
MB = 1_000_000
HASH_PASS = r"""
import hashlib, os, sys
for top in sys.argv[1:]:
    for dirpath, _, names in os.walk(top):
        for name in sorted(names):
            h = hashlib.sha256()
            with open(os.path.join(dirpath, name), "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
"""
COPY_PASS = r"""
import os, sys
src, dst = sys.argv[1], sys.argv[2]
for dirpath, _, names in os.walk(src):
    for name in sorted(names):
        out = os.path.join(dst, os.path.relpath(os.path.join(dirpath, name), src).replace(os.sep, "_"))
        with open(os.path.join(dirpath, name), "rb") as fh, open(out, "wb") as to:
            while chunk := fh.read(1 << 20):
                to.write(chunk)
"""
CONFIG = 'name = "bench"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["true"]\n'


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    # Untimed: flush what the previous command wrote, so no tool pays for another's dirty-page writeback.
    os.sync()
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def peak_rss_mb(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process, from wait4's rusage (ru_maxrss is in kB on Linux)."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024 / MB


def ensure_dvc() -> Path:
    dvc = VENV / "bin" / "dvc"
    if not dvc.exists():
        print(f"installing dvc into {VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "dvc"], check=True)
    return dvc


def write_random(path: Path, size: int) -> None:
    block = os.urandom(8 << 20)
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            n = min(left, len(block))
            # a counter in each block: no two blocks alike, in case a tool ever deduplicates below file level
            fh.write(left.to_bytes(8, "little") + block[8:n] if n >= 8 else block[:n])
            left -= n


def make_data(root: Path, big_mb: int, count: int, small_kb: int, huge_mb: int) -> dict[str, Path]:
    shapes = {"big": root / "big", "small": root / "small", "huge": root / "huge"}
    for d in shapes.values():
        d.mkdir(parents=True)
    write_random(shapes["big"] / "one.bin", big_mb * MB)
    write_random(shapes["huge"] / "five.bin", huge_mb * MB)
    blob = os.urandom(small_kb * 1000)
    for i in range(count):
        sub = shapes["small"] / f"d{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(i.to_bytes(8, "little") + blob[8:])
    return shapes


def harness_env(store: Path) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "HARNESS_HOME": str(store), "PYTHONPATH": pythonpath}


def new_project(scratch: Path) -> Path:
    project = Path(tempfile.mkdtemp(prefix="harness-", dir=scratch))
    (project / "harness.toml").write_text(CONFIG)
    return project


def time_harness(data: Path, scratch: Path) -> float:
    project = new_project(scratch)
    try:
        argv = [sys.executable, "-m", "harness", "data", "snapshot", str(data)]
        return run(argv, project, harness_env(project / "s"))
    finally:
        rmtree(project)


def time_dvc(dvc: Path, data: Path, scratch: Path) -> float:
    repo = Path(tempfile.mkdtemp(prefix="dvc-", dir=scratch))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    try:
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run([str(dvc), "init", "-q"], cwd=repo, check=True, env=env)
        target = repo / data.name
        shutil.copytree(data, target)  # untimed; dvc add moves the data into its cache
        return run([str(dvc), "add", "-q", data.name], repo, env)
    finally:
        rmtree(repo)


def time_hash(data: Path, scratch: Path) -> float:
    return run([sys.executable, "-c", HASH_PASS, str(data)], scratch)


def time_copy(data: Path, scratch: Path) -> float:
    """Not a target: the floor of storing a copy of every byte, the way the store writes (no hashing)."""
    dest = Path(tempfile.mkdtemp(prefix="copy-", dir=scratch))
    try:
        return run([sys.executable, "-c", COPY_PASS, str(data), str(dest)], scratch)
    finally:
        rmtree(dest)


def rmtree(path: Path) -> None:
    for dirpath, dirnames, _ in os.walk(path):  # stores and dvc caches hold read-only directories and files
        os.chmod(dirpath, 0o700)
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def median(fn: Callable[[], float], reps: int) -> float:
    return statistics.median(fn() for _ in range(reps))


def resnapshot(data: Path, scratch: Path, reps: int) -> tuple[float, float]:
    """(CLI wall seconds, in-process seconds) to snapshot the unchanged tree again, medians."""
    sys.path.insert(0, str(REPO))
    from harness.storage.snapshot import snapshot_roots
    from harness.storage.store import Store

    project = new_project(scratch)
    store, env = project / "s", harness_env(project / "s")
    argv = [sys.executable, "-m", "harness", "data", "snapshot", str(data)]
    try:
        run(argv, project, env)  # the first snapshot fills the store and the stat cache
        cli = median(lambda: run(argv, project, env), reps)

        def core() -> float:
            start = time.perf_counter()
            snapshot_roots({data.name: data}, Store(store / "objects"), store / "stat-cache.sqlite")
            return time.perf_counter() - start

        return cli, median(core, reps)
    finally:
        rmtree(project)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed rounds first: every tool then writes into memory the machine has already handed out (on a "
        "VM, first-touched guest pages make the first writes of a run much slower, for whichever tool is first)",
    )
    parser.add_argument("--big-mb", type=int, default=1000)
    parser.add_argument("--small-count", type=int, default=10_000)
    parser.add_argument("--small-kb", type=int, default=10)
    parser.add_argument("--huge-mb", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to build the data")
    parser.add_argument("--keep", action="store_true", help="keep the data afterwards")
    args = parser.parse_args()

    need = (args.big_mb * 3 + args.huge_mb * 2) * MB + args.small_count * args.small_kb * 1000 * 3
    free = shutil.disk_usage(args.dir).free
    if free < need * 1.2:
        raise SystemExit(f"{args.dir} has {free / 1e9:.1f} GB free; this needs about {need * 1.2 / 1e9:.1f} GB")
    dvc = ensure_dvc()
    dvc_version = subprocess.run([str(dvc), "--version"], capture_output=True, text=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="harness-bench-snapshot-", dir=args.dir))
    try:
        print(f"building data under {root} ...", file=sys.stderr)
        shapes = make_data(root / "data", args.big_mb, args.small_count, args.small_kb, args.huge_mb)
        scratch = root / "scratch"
        scratch.mkdir()
        labels = {
            "big": f"1 file of {args.big_mb} MB",
            "small": f"{args.small_count} files of {args.small_kb} kB",
        }
        results: dict[str, dict[str, float]] = {}
        spreads: dict[str, dict[str, tuple[float, float]]] = {}
        for shape in ("big", "small"):
            data = shapes[shape]
            print(f"timing {labels[shape]} ...", file=sys.stderr)
            times: dict[str, list[float]] = {"hash": [], "copy": [], "harness": [], "dvc": []}
            for rep in range(args.warmup + args.reps):  # interleaved, so drift hits all of them alike
                round_times = {
                    "hash": time_hash(data, scratch),
                    "copy": time_copy(data, scratch),
                    "harness": time_harness(data, scratch),
                    "dvc": time_dvc(dvc, data, scratch),
                }
                if rep >= args.warmup:
                    for k, v in round_times.items():
                        times[k].append(v)
            spreads[shape] = {k: (min(v), max(v)) for k, v in times.items()}
            results[shape] = {k: statistics.median(v) for k, v in times.items()}
        print("timing the unchanged re-snapshot and peak memory ...", file=sys.stderr)
        re_cli, re_core = resnapshot(shapes["small"], scratch, max(args.reps, 5))
        project = new_project(scratch)
        huge_s, huge_rss = peak_rss_mb(
            [sys.executable, "-m", "harness", "data", "snapshot", str(shapes["huge"])],
            project,
            harness_env(project / "s"),
        )
        rmtree(project)
    finally:
        if not args.keep:
            rmtree(root)

    print(f"\nharness data snapshot vs {dvc_version and 'dvc ' + dvc_version} vs hashlib sha256 (single thread)")
    print(
        f"medians of {args.reps} after {args.warmup} untimed round(s), wall clock, warm page cache, "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        f"{'shape':24} {'dvc add':>9} {'harness':>9} {'sha256':>9} {'copy':>9}   {'dvc/harness':>12}   "
        f"{'harness/sha256':>14}   {'harness/copy':>12}"
    )
    for shape, r in results.items():
        speedup, overhead = r["dvc"] / r["harness"], r["harness"] / r["hash"]
        print(
            f"{labels[shape]:24} {r['dvc']:8.2f}s {r['harness']:8.2f}s {r['hash']:8.2f}s {r['copy']:8.2f}s   "
            f"{speedup:11.1f}x   {overhead:13.2f}x   {r['harness'] / r['copy']:11.2f}x"
        )
    print("(copy: a plain read/write copy of the same files, no hashing -- not a target, the floor of storing them)")
    print("\nspread (min-max) of the timed rounds:")
    for shape, spread in spreads.items():
        ranges = "  ".join(f"{k} {lo:.2f}-{hi:.2f}s" for k, (lo, hi) in spread.items())
        print(f"  {labels[shape]:24} {ranges}")
    print("\ntargets:")
    for shape, r in results.items():
        speedup = r["dvc"] / r["harness"]
        print(f"  >=5x faster than dvc add, {labels[shape]}: {speedup:.1f}x  {verdict(speedup >= 5)}")
    overhead = results["big"]["harness"] / results["big"]["hash"]
    print(f"  <=1.3x the plain sha256 pass, {labels['big']}: {overhead:.2f}x  {verdict(overhead <= 1.3)}")
    print(
        f"  unchanged re-snapshot of {labels['small']} <0.1 s: in-process {re_core:.3f}s {verdict(re_core < 0.1)}; "
        f"CLI wall {re_cli:.3f}s {verdict(re_cli < 0.1)} (includes interpreter start and imports)"
    )
    print(
        f"  peak RSS <150 MB snapshotting {args.huge_mb} MB: {huge_rss:.0f} MB in {huge_s:.1f}s  "
        f"{verdict(huge_rss < 150)}"
    )


if __name__ == "__main__":
    main()
