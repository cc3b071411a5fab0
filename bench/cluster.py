"""Per-run overhead of `harness sweep --cluster` (a warm Dask worker, the image already in its engine) next to the
same sweep run locally with `-j 1` (the baseline), side by side. Target: at most +0.5 s a run.

Starts Debian's docker-registry on loopback, a `dask scheduler` and one `dask worker` (one thread, no nanny, its own
HARNESS_HOME and HARNESS_CACHE: a machine with nothing of the project), on this machine's engine. One untimed sweep
each way warms both (the worker fetches the sweep's bundle once; the image is in the shared engine). Then, for
--rounds rounds, alternating which goes first: a local sweep of --runs runs and the same sweep on the cluster. The
overhead a run is (cluster - local) / runs: it holds the bundle check, the task's trip through the scheduler, the
worker's push of the record and outputs and this machine's pull of them, and, spread over the runs, the client's
connection. Usage: python bench/cluster.py [--rounds 3] [--runs 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import compile_harness  # bench/ is on sys.path when a script in it runs
from sweep import calibrate, make_project, timed

HERE = Path(__file__).resolve().parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not start")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="harness-bench-cluster-"))
    root = top / "proj"
    make_project(root, calibrate(0.2))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    processes: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], name: str, extra: dict[str, str] | None = None) -> None:
        (top / name).mkdir()
        log = open(top / f"{name}.log", "wb")  # noqa: SIM115 - the process holds it
        processes.append(
            subprocess.Popen(
                argv, cwd=top / name, env={**env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip

    try:
        port = _port()
        config = top / "registry.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {top / 'registry'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        start([shutil.which("docker-registry") or "docker-registry", "serve", str(config)], "registry-run")
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), "docker-registry")
        remote = f"127.0.0.1:{port}/bench/cluster"
        dask = str(Path(sys.executable).parent / "dask")
        scheduler_port = _port()
        address = f"tcp://127.0.0.1:{scheduler_port}"
        start([dask, "scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port), "--no-dashboard"], "sched")
        worker_env = {"HARNESS_HOME": str(top / "w1" / "home"), "HARNESS_CACHE": str(top / "w1" / "cache")}
        start(
            [dask, "worker", address, "--name", "w1", "--nthreads", "1", "--no-nanny", "--no-dashboard"],
            "w1",
            worker_env,
        )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)

        harness = [sys.executable, "-m", "harness"]
        values = ",".join(str(i) for i in range(args.runs))
        local = [[*harness, "sweep", "-p", f"i={values}", "-j", "1"]]
        cluster = [[*harness, "sweep", "-p", f"i={values}", "--cluster", address, "--remote", remote]]
        timed([[*harness, "sweep", "-p", "i=0"]], root, env)  # builds the environment: untimed
        timed([[*harness, "sweep", "-p", "i=0", "--cluster", address, "--remote", remote]], root, env)
        print(f"{os.cpu_count()} CPUs; {args.runs} runs a sweep; one worker, one thread; load {os.getloadavg()[0]:.1f}")
        local_times: list[float] = []
        cluster_times: list[float] = []
        for round_no in range(args.rounds):
            order = [("local", local), ("cluster", cluster)]
            if round_no % 2:
                order.reverse()
            got = {name: timed(argvs, root, env) for name, argvs in order}
            local_times.append(got["local"])
            cluster_times.append(got["cluster"])
            print(
                f"round {round_no + 1}: local -j 1 {got['local']:.2f} s, --cluster {got['cluster']:.2f} s, "
                f"overhead {(got['cluster'] - got['local']) / args.runs:+.2f} s a run"
            )
        per_run = [(c - q) / args.runs for c, q in zip(cluster_times, local_times, strict=True)]
        print(f"local sweep -j 1 (baseline): median {statistics.median(local_times):.2f} s")
        print(f"sweep --cluster:             median {statistics.median(cluster_times):.2f} s")
        print(
            f"overhead a run, per round (side by side): median {statistics.median(per_run):+.2f} s, min-max "
            f"{min(per_run):+.2f}-{max(per_run):+.2f} (target <= +0.5 s)"
        )
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
