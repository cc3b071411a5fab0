"""The git work of a `harness run`, old implementation next to the current one: Repository.open, resolve, changes,
export_tree and three read_file calls (config, lock, params, as load_project reads them), on examples/bikes copied
into a fresh git repository.

Each sample is a fresh Python process that imports vcs.py and does the work twice: the first round includes
importing what the module imports on first use (GitPython, which also runs `git version`), the second shows the
calls alone. Old and new alternate, N samples each; medians and min-max. The old implementation is harness/vcs.py
as of --old (default: the last commit that ran the git command directly), loaded from git; the new one is
harness/project/vcs.py.
Usage: python bench/vcs.py [--n 11] [--old REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, compile_harness  # bench/ is on sys.path when a script in it runs

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
STEPS = ("open", "resolve", "read_file x3", "changes", "export_tree")


def make_project(root: Path) -> None:
    shutil.copytree(REPO / "examples" / "bikes", root)
    (root / ".gitignore").write_text(".harness/\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "bench"], cwd=root, check=True)


def child(module_file: Path, project: Path) -> None:
    """One sample: time each step of the git work, twice, in this fresh process."""
    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("harness._bench_vcs", module_file)
    assert spec is not None and spec.loader is not None
    vcs = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vcs)
    rounds = [{"import vcs.py": time.perf_counter() - start}]
    for _ in range(2):
        times: dict[str, float] = {}
        t = time.perf_counter()
        repo = vcs.Repository.open(project)
        times["open"] = time.perf_counter() - t
        t = time.perf_counter()
        info = repo.resolve("HEAD")
        times["resolve"] = time.perf_counter() - t
        t = time.perf_counter()
        for name in ("harness.toml", "harness.lock", "params.yaml"):
            assert repo.read_file(info.commit, name)
        times["read_file x3"] = time.perf_counter() - t
        t = time.perf_counter()
        assert repo.changes(exclude=[project / ".harness"]) == []
        times["changes"] = time.perf_counter() - t
        t = time.perf_counter()
        with tempfile.TemporaryFile() as fh:
            repo.export_tree(info.tree, fh)
        times["export_tree"] = time.perf_counter() - t
        if hasattr(repo, "close"):
            repo.close()
        rounds.append(times)
    print(json.dumps(rounds))


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms ({min(samples) * 1000:.1f}-{max(samples) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=11)
    parser.add_argument("--old", default="42e3317", help="commit whose harness/vcs.py is the old implementation")
    parser.add_argument("--child", nargs=2, metavar=("MODULE", "PROJECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return
    compile_harness()
    work = Path(tempfile.mkdtemp(prefix="harness-bench-vcs-"))
    try:
        project = work / "bikes"
        make_project(project)
        old = work / "vcs_old.py"
        old.write_bytes(
            subprocess.run(
                ["git", "show", f"{args.old}:harness/vcs.py"], cwd=REPO, capture_output=True, check=True
            ).stdout
        )
        modules = {"old": old, "new": REPO / "harness" / "project" / "vcs.py"}
        results: dict[str, list[list[dict[str, float]]]] = {"old": [], "new": []}
        for _ in range(args.n):
            for name, module in modules.items():
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(module), str(project)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[name].append(json.loads(done.stdout))
    finally:
        shutil.rmtree(work)
    print(f"median (min-max) of {args.n} fresh processes each; old = harness/vcs.py at {args.old}")
    print(f"{'':28}{'old (git command)':>30}{'new (GitPython)':>30}")
    for label, index in (("first round, in a fresh process", 1), ("second round, same process", 2)):
        print(label)
        rows = [(step, [[s[index][step] for s in results[n]] for n in modules]) for step in STEPS]
        if index == 1:
            rows.insert(0, ("import vcs.py", [[s[0]["import vcs.py"] for s in results[n]] for n in modules]))
        rows.append(
            (
                "total",
                [
                    [sum(s[index].values()) + (s[0]["import vcs.py"] if index == 1 else 0) for s in results[n]]
                    for n in modules
                ],
            )
        )
        for step, (old_t, new_t) in rows:
            print(f"  {step:26}{summary(old_t):>30}{summary(new_t):>30}")


if __name__ == "__main__":
    main()
