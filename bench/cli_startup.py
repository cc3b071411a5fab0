"""Start-up of the command line: harness on typer (this checkout) next to harness on argparse (--old-rev, the
last commit before typer), the same commands in fresh processes, interleaved.

Setup (not timed): the harness package of --old-rev is taken out with `git archive` into bench/out/cli-old and
byte-compiled like this checkout; the 10,000 run records of bench/ls.py are written (or reused) in
bench/out/ls-project-10000; a project with one small data file is made in a temp dir.

Timed, after --warmup untimed rounds, --repeat rounds, each command once per version per round:
  python -m harness --help
  python -m harness ls --limit 50              (on the 10,000 runs)
  python -m harness data snapshot data         (one 1 kB file, into a fresh store each time)
  python -c pass                               (the interpreter alone, for reference)
and `python -X importtime -m harness --help`: what importing the command line costs (harness.cli.main and all
it imports, typer's share of it), as medians of the same rounds.

Each version runs as `python -m harness` with PYTHONPATH set to its tree, so both use the same interpreter and
libraries. --python NAME=PATH adds the new code under another interpreter: e.g. a venv with typer 0.29, into
which this checkout is installed too (`pip install --no-deps -e .`, plus GitPython PyYAML tomlkit), so that its
interpreter starts like this one (an editable install's import hook costs every start about 15 ms here).

Usage: python bench/cli_startup.py [--repeat 9] [--warmup 1] [--runs 10000] [--old-rev 206f38d]
                                   [--python typer-0.29=/path/to/venv/bin/python]
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
from pathlib import Path

from common import REPO, compile_harness, release_tree  # bench/ is on sys.path when a script in it runs
from ls import fake_runs, setup_harness

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
CONFIG = 'name = "bench"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["true"]\n'


def old_tree(rev: str) -> Path:
    """The harness package as it was at ``rev``, byte-compiled, under bench/out/cli-old/<rev>."""
    return release_tree(rev, OUT / "cli-old" / rev)


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} in {cwd} exited {done.returncode}:\n{done.stderr}")
    return took, done.stderr


def import_times(stderr: str) -> dict[str, float]:
    """Cumulative import time in seconds of harness.cli.main and of typer, from -X importtime output."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if name in ("harness.cli.main", "typer") and name not in found:
            found[name] = int(cumulative) / 1e6
    return found


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} s [{min(values):.3f}-{max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--old-rev", default="206f38d", help="A commit whose CLI is on argparse.")
    parser.add_argument("--python", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()

    compile_harness()
    versions: dict[str, tuple[str, Path]] = {
        f"argparse ({args.old_rev})": (sys.executable, old_tree(args.old_rev)),
        "typer (this checkout)": (sys.executable, REPO),
    }
    for spec in args.python:
        name, _, python = spec.partition("=")
        versions[name] = (python, REPO)

    runs_project = OUT / f"ls-project-{args.runs}"
    setup_harness(runs_project, fake_runs(args.runs))
    scratch = Path(tempfile.mkdtemp(prefix="harness-cli-bench-"))
    data_project = scratch / "project"
    (data_project / "data").mkdir(parents=True)
    (data_project / "harness.toml").write_text(CONFIG)
    (data_project / "data" / "values.csv").write_bytes(b"x,y\n" * 256)

    commands = {
        "harness --help": (["--help"], scratch),
        f"harness ls --limit 50 ({args.runs:,} runs)": (["ls", "--limit", "50"], runs_project),
        "harness data snapshot data (1 kB file)": (["data", "snapshot", "data"], data_project),
        "python -c pass": (None, scratch),
    }
    times: dict[tuple[str, str], list[float]] = {}
    imports: dict[tuple[str, str], list[float]] = {}
    stores = 0
    try:
        for round_ in range(args.warmup + args.repeat):
            for label, (harness_args, cwd) in commands.items():
                for version, (python, tree) in versions.items():
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    if not label.startswith("harness ls"):  # ls reads the runs' own store
                        stores += 1
                        env["HARNESS_HOME"] = str(scratch / f"store-{stores}")  # a fresh store each time
                    argv = [python, "-c", "pass"] if harness_args is None else [python, "-m", "harness", *harness_args]
                    took, _ = run_once(argv, cwd, env)
                    if round_ >= args.warmup:
                        times.setdefault((label, version), []).append(took)
                    if label == "harness --help":
                        _, stderr = run_once([python, "-X", "importtime", "-m", "harness", "--help"], cwd, env)
                        if round_ >= args.warmup:
                            for name, seconds in import_times(stderr).items():
                                imports.setdefault((name, version), []).append(seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    names = list(versions)
    print(f"\nwall time of a fresh process: median [min-max] of {args.repeat} rounds, interleaved")
    width = max(len(label) for label in commands)
    print(f"  {'':{width}}  " + "  ".join(f"{name:28}" for name in names))
    for label in commands:
        cells = [spread(times[(label, name)]) for name in names]
        print(f"  {label:{width}}  " + "  ".join(f"{cell:28}" for cell in cells))
    print("\n`python -X importtime -m harness --help`, cumulative import time (median [min-max])")
    for module in ("harness.cli.main", "typer"):
        cells = [spread(imports.get((module, name), [])) for name in names]
        print(f"  {'import ' + module:{width}}  " + "  ".join(f"{cell:28}" for cell in cells))


if __name__ == "__main__":
    main()
