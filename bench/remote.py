"""Runs that travel: `harness push` to a loopback registry next to `dvc push` of the same data to a local-directory
DVC remote; a second push of the same run; a rebuild on a "second machine" next to `docker pull` plus the run.

Builds its own project (data: one 1 GB file, or 10,000 files of 10 kB; command `python -c pass`) on a bench-owned
environment image (six, locked with a requirement that names this benchmark, so removing the image from the
engine disturbs nothing else; built once into bench/out/cache). Starts Debian's docker-registry on loopback.
Per round, interleaved:
- harness: a fresh repository in the registry holding the environment image already (an untimed push of a run
  without data), then the timed `harness push` of the data run: its data, code, outputs and record;
- dvc: a fresh `dvc init` repository with the same data added (untimed), then the timed `dvc push` to a fresh
  local directory remote;
- the second `harness push` of the same run (CLI wall time, and in-process push_run);
- for the one large file, the registry's own floor: `curl` uploading the same bytes as one blob (a POST, then one
  streamed PUT with the digest) to a fresh repository of the same registry, nothing else: what any client pays
  for the registry to receive, hash and store the blob;
- second machine, on a run of `python -c pass` with no data (so both sides get the image and run it): the env
  image removed from the engine, then `harness rebuild RUN --remote REF` in a fresh HARNESS_HOME and
  HARNESS_CACHE, next to `docker pull REF@<digest>` + `docker run --rm --network none IMAGE python -c pass`
  (the image removed before each), and next to the floor of a Python command on harness's stack doing that
  same engine work (bench/sdkfloor.py: typer and the Docker SDK imported, the same pull and run, nothing else).
Medians and min-max over the rounds; ratios against the named baselines.

Usage: python bench/remote.py [--rounds 3] [--big-mb 1024] [--small-count 10000] [--small-kb 10] [--dir /tmp]
Quick check: python bench/remote.py --rounds 1 --big-mb 64 --small-count 500
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
REPO = HERE.parent
sys.path.insert(0, str(REPO))
VENV = HERE / "out" / "venv"
CACHE = HERE / "out" / "cache"
MB = 1_000_000
CONFIG = """name = "bench"
base = "bookworm"
lock = "harness.lock"
command = ["python", "-c", "pass"]

[data]
d = "data"
"""


def ensure_dvc() -> Path:
    dvc = VENV / "bin" / "dvc"
    if not dvc.exists():
        print(f"installing dvc into {VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "dvc"], check=True)
    return dvc


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HARNESS_CACHE": str(CACHE), "GIT_CONFIG_NOSYSTEM": "1", **extra}


def harness(cwd: Path, *args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=environ or env(), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{result.stderr}")
    return result


def timed(argv: list[str], cwd: Path, environ: dict[str, str]) -> float:
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=environ, check=True, capture_output=True)
    return time.perf_counter() - started


def curl_upload(host: str, repository: str, path: Path) -> float:
    """Seconds for curl to upload ``path`` as one blob: POST for an upload URL, one streamed PUT with the digest
    (hashed beforehand, untimed, as harness's objects are hashed already)."""
    import hashlib

    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    head = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", f"http://{host}/v2/{repository}/blobs/uploads/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    location = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("location:"))
    if not location.startswith("http"):
        location = f"http://{host}{location}"
    url = f"{location}{'&' if '?' in location else '?'}digest=sha256:{digest}"
    status = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-T",
            str(path),
            "-H",
            "Content-Type: application/octet-stream",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if status != "201":
        raise SystemExit(f"curl upload of {path} to {host}/{repository}: HTTP {status}")
    return time.perf_counter() - started


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env=env(GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x"),
    )


def project(root: Path, data: Path | None) -> Path:
    from harness.env.lockfile import Lock, requirements_digest, write_lock
    from tests.conftest import SIX

    root.mkdir(parents=True)
    requirement = ("six==1.16.0,!=0.0.31337",)  # names this benchmark: its image is its own
    lock = Lock("3.11", "manylinux_2_36_x86_64", requirement, requirements_digest(requirement), (SIX,))
    write_lock(root / "harness.lock", lock)
    (root / "harness.toml").write_text(CONFIG if data else CONFIG.split("[data]")[0])
    (root / ".gitignore").write_text(".harness/\ndata\n")
    if data is not None:
        os.symlink(data, root / "data")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bench")
    return root


def make_data(root: Path, big_mb: int, count: int, small_kb: int) -> dict[str, Path]:
    big = root / "big"
    big.mkdir(parents=True)
    with open(big / "one.bin", "wb") as fh:
        for _ in range(big_mb):
            fh.write(os.urandom(MB))
    small = root / "small"
    small.mkdir()
    for i in range(count):
        (small / f"f{i:05d}.bin").write_bytes(os.urandom(small_kb * 1000))
    return {
        "one 1 GB file" if big_mb == 1024 else f"one {big_mb} MB file": big,
        f"{count} files of {small_kb} kB": small,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=10000)
    parser.add_argument("--small-kb", type=int, default=10)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--only-rebuild", action="store_true", help="only the second-machine rebuild")
    args = parser.parse_args()
    compile_harness()
    dvc = ensure_dvc()
    from tests.registry import Registry

    scratch = Path(tempfile.mkdtemp(prefix="harness-bench-remote-", dir=args.dir))
    registry = Registry(scratch / "registry")
    try:
        datasets = (
            {} if args.only_rebuild else make_data(scratch / "data", args.big_mb, args.small_count, args.small_kb)
        )
        warm = project(scratch / "warm", None)
        warm_id = json.loads(harness(warm, "run", "--json").stdout)["id"]
        results: dict[str, dict[str, list[float]]] = {}
        for label, data in ({} if args.only_rebuild else datasets).items():
            proj = project(scratch / f"p-{data.name}", data)
            record = json.loads(harness(proj, "run", "--json").stdout)
            run_id = record["id"]
            times: dict[str, list[float]] = {k: [] for k in ("harness", "dvc", "second", "second_core", "curl")}
            lone = sorted(data.iterdir())
            big_file = lone[0] if len(lone) == 1 else None
            for i in range(args.rounds):
                remote = f"{registry.host}/bench/{data.name}{i}"
                harness(warm, "push", warm_id, "--remote", remote)  # the image is there already
                times["harness"].append(
                    timed([sys.executable, "-m", "harness", "push", run_id, "--remote", remote], proj, env())
                )
                times["second"].append(
                    timed([sys.executable, "-m", "harness", "push", run_id, "--remote", remote], proj, env())
                )
                from harness.paths import Layout
                from harness.remote.client import connect
                from harness.remote.push import push_run
                from harness.remote.reference import parse

                os.environ["HARNESS_CACHE"] = str(CACHE)
                client = connect(parse(remote))
                started = time.perf_counter()
                push_run(Layout.for_project(proj), run_id, client, lambda _m: None)
                times["second_core"].append(time.perf_counter() - started)

                repo = scratch / f"dvc-{data.name}{i}"
                repo.mkdir()
                git(repo, "init", "-q")
                subprocess.run([str(dvc), "init", "-q"], cwd=repo, check=True, env=env())
                shutil.copytree(data, repo / "data")
                subprocess.run([str(dvc), "add", "-q", "data"], cwd=repo, check=True, env=env())
                subprocess.run(
                    [str(dvc), "remote", "add", "-d", "local", str(scratch / f"dvc-remote-{data.name}{i}")],
                    cwd=repo,
                    check=True,
                    env=env(),
                )
                times["dvc"].append(timed([str(dvc), "push", "-q"], repo, env()))
                shutil.rmtree(repo, ignore_errors=True)
                if big_file is not None:
                    times["curl"].append(curl_upload(registry.host, f"bench/floor{i}", big_file))
            results[label] = times
        warm_record = json.loads(harness(warm, "show", warm_id, "--json").stdout)
        results["rebuild"] = rebuild_rounds(warm, warm_id, warm_record, registry.host, scratch, args.rounds)

        print(f"\nharness push vs dvc push (local directory remote), {args.rounds} rounds, median (min-max)")
        for label, t in results.items():
            if label == "rebuild":
                continue
            ratio = statistics.median(t["harness"]) / statistics.median(t["dvc"])
            print(f"  {label}: harness {spread(t['harness'])}, dvc {spread(t['dvc'])}: ratio {ratio:.2f}")
            print(f"    second push: CLI {spread(t['second'])}, in-process {spread(t['second_core'])}")
            if t["curl"]:
                floor = statistics.median(t["curl"])
                print(
                    f"    the registry's floor, curl uploading the same blob: {spread(t['curl'])}: "
                    f"{floor / statistics.median(t['dvc']):.2f}x dvc push; harness push is "
                    f"{statistics.median(t['harness']) / floor:.2f}x it"
                )
        t = results["rebuild"]
        ratio = statistics.median(t["rebuild"]) / statistics.median(t["docker"])
        floor = statistics.median(t["floor"])
        print(
            f"  second machine: harness rebuild --remote {spread(t['rebuild'])}, docker pull + run "
            f"{spread(t['docker'])}: ratio {ratio:.2f}"
        )
        print(
            f"    the floor of a Python command on typer and the Docker SDK, the same pull and run "
            f"(bench/sdkfloor.py): {spread(t['floor'])}: {floor / statistics.median(t['docker']):.2f}x docker; "
            f"harness rebuild is {statistics.median(t['rebuild']) / floor:.2f}x it"
        )
    finally:
        registry.stop()
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def rebuild_rounds(proj: Path, run_id: str, record: dict, host: str, scratch: Path, rounds: int) -> dict:
    """A run of `python -c pass` with no data, so that both sides do the same work: get the image, run it."""
    remote = f"{host}/bench/rebuild"
    harness(proj, "push", run_id, "--remote", remote)
    image_id = record["environment"]["image_id"]
    digest = record["environment"]["manifest_digest"]
    times: dict[str, list[float]] = {"rebuild": [], "docker": [], "floor": []}
    for i in range(rounds):
        subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)
        machine = scratch / f"machine{i}"
        (machine / "cwd").mkdir(parents=True)
        environ = env(HARNESS_HOME=str(machine / "home"), HARNESS_CACHE=str(machine / "cache"))
        times["rebuild"].append(
            timed([sys.executable, "-m", "harness", "rebuild", run_id, "--remote", remote], machine / "cwd", environ)
        )
        shutil.rmtree(machine, ignore_errors=True)
        subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)
        started = time.perf_counter()
        subprocess.run(["docker", "pull", f"{remote}@{digest}"], check=True, capture_output=True)
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", f"{remote}@{digest}", "python3", "-c", "pass"],
            check=True,
            capture_output=True,
        )
        times["docker"].append(time.perf_counter() - started)
        subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)
        times["floor"].append(timed([sys.executable, str(HERE / "sdkfloor.py"), f"{remote}@{digest}"], proj, env()))
    subprocess.run(["docker", "image", "rm", "-f", image_id], check=False, capture_output=True)
    return times


if __name__ == "__main__":
    main()
