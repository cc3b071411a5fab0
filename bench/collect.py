"""Collecting a run's outputs (harness/storage/outputs.py store_outputs) next to a plain `cp -r` of the same tree,
and the peak disk that collecting one big output costs.

Many small files: FILES files of SIZE bytes (all different) in directories of 1,000, made once. Each round makes
a fresh copy of the tree as a run's outputs directory (untimed; owned by nobody when this runs as root, as a
container run as nobody leaves it), then times, in alternating order, `cp -r` of the tree to a new directory and
store_outputs on that outputs directory into a new store. Dirty pages are flushed (untimed) before each timed step,
and what the round wrote is deleted and flushed after it. Prints each round, the medians and spread, the ratio.

One big file: a BIG_MB output collected into a new store while a thread adds up, every 2 ms, the blocks allocated
to the files in the run directory and the store (st_blocks, each inode once; ext4 counts blocks reserved for
unwritten data too); the peak above the output itself is what collecting costs on disk. Measured with adoption
(the default) and with adoption turned off (every file copied into the store and replaced by a link to its object:
what harness did before), ROUNDS times each. (The filesystem's free space, statvfs, was tried first: other
processes writing and freeing on the same disk moved it by hundreds of MiB either way.)

Usage: python bench/collect.py [--files 100000] [--size 1000] [--rounds 3] [--big-mb 1024] [--dir /tmp] [--keep]
Quick check: python bench/collect.py --files 2000 --rounds 1 --big-mb 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import compile_harness  # bench/ is on sys.path when a script in it runs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.storage import adopt  # noqa: E402
from harness.storage.outputs import store_outputs  # noqa: E402
from harness.storage.store import Store  # noqa: E402

MB = 1 << 20
NOBODY = 65534


def make_tree(root: Path, files: int, size: int) -> None:
    blob = os.urandom(size)
    for i in range(files):
        sub = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:06d}.bin").write_bytes(i.to_bytes(8, "little") + blob[8:] if size >= 8 else blob)


def as_run_left_it(outputs: Path) -> None:
    if os.geteuid() == 0:  # harness as root runs the container as nobody: its files are nobody's
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(outputs)], check=True)


def remove(path: Path) -> None:
    if path.exists():
        for dirpath, _, _ in os.walk(path):
            os.chmod(dirpath, 0o755)  # outputs and stores are read-only once collected
        shutil.rmtree(path)
    os.sync()


def time_cp(src: Path, scratch: Path) -> float:
    """Seconds of `cp -r` of ``src`` to a new directory (kept until the round ends)."""
    os.sync()
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(scratch / "cp")], check=True)
    return time.perf_counter() - start


@contextmanager
def run_dir(src: Path, scratch: Path) -> Iterator[Path]:
    """runs/<id>/outputs holding a copy of ``src``, made untimed, as a container leaves it."""
    run = scratch / "run"
    run.mkdir()
    subprocess.run(["cp", "-r", str(src), str(run / "outputs")], check=True)
    as_run_left_it(run / "outputs")
    os.sync()
    try:
        yield run
    finally:
        remove(run)
        remove(scratch / "objects")


def time_collect(run: Path, scratch: Path) -> tuple[float, int]:
    """(seconds, files stored) of store_outputs on ``run``/outputs, into a new store."""
    os.sync()
    start = time.perf_counter()
    stored = store_outputs(run / "outputs", Store(scratch / "objects"), run / "skipped")
    return time.perf_counter() - start, stored.snapshot.files


def allocated(roots: list[Path]) -> int:
    """Bytes allocated to the files under ``roots`` (st_blocks, each inode once: a hardlink is not a copy)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:  # renamed or removed while we looked
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def peak_extra(big: Path, scratch: Path, adoption: bool) -> tuple[int, float]:
    """(peak bytes allocated in the run directory and the store above the output itself, seconds) while one big
    output is collected."""
    saved = adopt._LEASE
    if not adoption:
        adopt._LEASE = None  # nothing is claimed: every file is copied, as before adoption
    try:
        with run_dir(big, scratch) as run:
            roots = [run, scratch / "objects"]
            base = peak = allocated(roots)
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.wait(0.002):
                    peak = max(peak, allocated(roots))

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            try:
                store_outputs(run / "outputs", Store(scratch / "objects"), run / "skipped")
                took = time.perf_counter() - start
            finally:
                done.set()
                sampler.join()
            return max(peak, allocated(roots)) - base, took
    finally:
        adopt._LEASE = saved


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1000, help="bytes per small file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--keep", action="store_true", help="keep the source trees")
    args = parser.parse_args()
    compile_harness()
    root = Path(tempfile.mkdtemp(prefix="harness-bench-collect-", dir=args.dir))
    root.chmod(0o755)  # a project others may read: as the tests' default
    try:
        print(f"making {args.files:,} files of {args.size} bytes and one of {args.big_mb} MiB under {root} ...")
        small, big = root / "small", root / "big"
        make_tree(small, args.files, args.size)
        big.mkdir()
        with open(big / "model.bin", "wb") as fh:
            block = os.urandom(MB)
            for i in range(args.big_mb):
                fh.write(i.to_bytes(8, "little") + block[8:])
        os.sync()

        cp: list[float] = []
        collect: list[float] = []
        for r in range(args.rounds):
            # Both timed steps start from the same state: just after the untimed copy for store_outputs. (On the
            # 2-core VM's ext4, mounted with discard, a `cp -r` of the tree right after 100,000 files had been
            # deleted took 34-66 s, otherwise 3.6-6.9 s: timed apart, cp -r met the deletions and not the other.)
            with run_dir(small, root) as run:
                for step in ["cp", "collect"] if r % 2 == 0 else ["collect", "cp"]:
                    if step == "cp":
                        cp.append(time_cp(small, root))
                    else:
                        took, files = time_collect(run, root)
                        assert files == args.files, files
                        collect.append(took)
                remove(root / "cp")
            ratio = collect[-1] / cp[-1]
            print(f"round {r + 1}: cp -r {cp[-1]:.2f} s, store_outputs {collect[-1]:.2f} s, {ratio:.2f}x")
        print(f"\n{args.files:,} files of {args.size} bytes ({args.rounds} rounds):")
        print(f"  cp -r          {spread(cp)}")
        print(f"  store_outputs  {spread(collect)}")
        ratios = [c / p for c, p in zip(collect, cp, strict=True)]
        print(
            f"  ratio          {statistics.median(collect) / statistics.median(cp):.2f}x of the medians "
            f"(per round {min(ratios):.2f}x-{max(ratios):.2f}x); target <= 3x"
        )

        print(f"\none {args.big_mb} MiB output: disk allocated above the output itself while it is collected")
        for adoption in (True, False):
            label = "adopted (default)" if adoption else "copied (adoption off)"
            peaks, times = [], []
            for _ in range(args.rounds):
                extra, took = peak_extra(big, root, adoption)
                peaks.append(extra / MB)
                times.append(took)
            print(
                f"  {label:22} peak +{statistics.median(peaks):.0f} MiB (min {min(peaks):.0f}, max {max(peaks):.0f}),"
                f" {spread(times)}"
            )
    finally:
        if not args.keep:
            remove(root)


if __name__ == "__main__":
    main()
