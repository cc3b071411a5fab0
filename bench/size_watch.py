"""What watching /outputs for its size limit costs, on a directory of 100,000 files (harness/runs/sizewatch.py).

Makes FILES files of 100 bytes in 100 directories, then, for SECONDS each, watches it (as a run's outputs are
watched) while: nothing is written; another process appends to a file in it (6.4 MB/s), far under its limit;
another process appends to a file beside it on the same disk (32 MB/s) while it is 1 MB under its limit, so that
every tick the disk grew by more than the room left: the worst case, where only walking tells (unless other
processes free as much on the same disk meanwhile). Prints the watcher's CPU (this process's,
whose main thread only sleeps) as a share of one CPU and how many walks it made; then how long after a write
took the directory over its limit the watch called back.
Usage: python bench/size_watch.py [--files 100000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.runs.sizewatch import SizeWatch, Watched, tree_size  # noqa: E402

WRITER = """
import sys, time
path, deadline, piece = sys.argv[1], time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
with open(path, "ab") as fh:
    while time.monotonic() < deadline:
        fh.write(b"x" * piece)  # every 10 ms
        fh.flush()
        time.sleep(0.01)
"""


def make_tree(root: Path, files: int) -> None:
    per_dir = max(1, files // 100)
    for d in range(-(-files // per_dir)):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(min(per_dir, files - d * per_dir)):
            (root / f"d{d}" / f"f{f}").write_bytes(b"x" * 100)


def watched_cpu(root: Path, limit: int, growing: Path | None, rate: int, seconds: float) -> tuple[float, int]:
    """The watcher's CPU share and its walks while ``growing`` (if any) grows by ``rate`` bytes a second."""
    argv = [sys.executable, "-c", WRITER if growing else "", str(growing), str(seconds), str(rate // 100)]
    writer = subprocess.Popen(argv)
    cpu = time.process_time()
    with SizeWatch([Watched("outputs", root, limit)], lambda w, s: None) as watch:
        cpu = time.process_time()  # not the first walk, made when the run starts (on an empty directory)
        if growing is None:
            time.sleep(seconds)
        writer.wait()
    if growing is not None:
        growing.unlink()
    return (time.process_time() - cpu) / seconds, watch.walks


def latency(root: Path, size: int, walk: float) -> float:
    """Seconds from a 2 MB write that takes ``root`` over its limit to the watch's call, the last walk long past."""
    crossed: list[float] = []
    with SizeWatch([Watched("outputs", root, size + (1 << 20))], lambda w, s: crossed.append(time.monotonic())):
        time.sleep(max(1.0, 12 * walk))
        (root / "over").write_bytes(b"x" * (2 << 20))
        wrote = time.monotonic()
        while not crossed and time.monotonic() < wrote + 60:
            time.sleep(0.01)
    (root / "over").unlink()
    return crossed[0] - wrote if crossed else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-bench-watch-") as tmp:
        root = Path(tmp) / "outputs"
        make_tree(root, args.files)
        start, cpu = time.perf_counter(), time.process_time()
        size = tree_size(root)
        walk = time.perf_counter() - start
        print(f"one walk of {args.files:,} files: {walk:.3f} s, {time.process_time() - cpu:.3f} s CPU")
        for growing, limit, rate, what in (
            (None, 1 << 40, 0, "nothing written"),
            (root / "growing", 1 << 40, 64 * 100_000, "6.4 MB/s written to it, far under its limit"),
            (Path(tmp) / "elsewhere", size + (1 << 20), 32_000_000, "32 MB/s written beside it, 1 MB under its limit"),
        ):
            share, walks = watched_cpu(root, limit, growing, rate, args.seconds)
            print(f"{what:50} watcher CPU {100 * share:5.1f}% of one CPU, {walks} walks in {args.seconds:g} s")
        print(f"a 2 MB write over the limit was caught after {latency(root, size, walk):.2f} s")
        empty = Path(tmp) / "empty"
        empty.mkdir()
        print(f"the same in an empty directory: {latency(empty, 0, 0.0):.2f} s")


if __name__ == "__main__":
    main()
