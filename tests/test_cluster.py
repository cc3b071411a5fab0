"""`harness sweep --cluster`: a real Dask scheduler and two real workers on loopback, each worker a "machine" of
its own (its own HARNESS_HOME and HARNESS_CACHE, a working directory that is no project), sharing only the Docker
engine and Debian's docker-registry on loopback. The project is the session's probe project (tests/projects.py):
a few seconds a run, where the bikes example would cost a minute a run for nothing more to check."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.task import run_task, sweep_tag
from harness.remote.client import connect
from harness.remote.reference import parse
from tests.projects import cli_env, harness, valid_record
from tests.registry import Registry

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DASK = str(Path(sys.executable).parent / "dask")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """`dask scheduler` and `dask worker` processes, each in its own process group, stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"tcp://127.0.0.1:{_port()}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.homes: dict[str, dict[str, str]] = {}
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], {})

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        cwd = self.root / name
        cwd.mkdir(parents=True)
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the process holds it
        self.processes[name] = subprocess.Popen(
            argv, cwd=cwd, env=cli_env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def add_worker(self, name: str) -> None:
        """A worker with one thread and no nanny (so killing its process kills the worker), stores of its own."""
        home = {"HARNESS_HOME": str(self.root / name / "home"), "HARNESS_CACHE": str(self.root / name / "cache")}
        self.homes[name] = home
        argv = [DASK, "worker", self.address, "--name", name, "--nworkers", "1", "--nthreads", "1", "--no-nanny"]
        self._start(name, [*argv, "--no-dashboard"], home)

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path / "cluster")
    try:
        started.add_worker("w1")
        started.add_worker("w2")
        started.wait_for_workers(2)
        yield started
    finally:
        started.stop()
        for home in started.homes.values():  # a killed worker's run: its container is removed, it is interrupted
            harness(started.root, "ls", env=cli_env(**home))


def _sweep_records(project: Path, sweep_id: str) -> list[dict]:
    listed = harness(project, "ls", "--where", f'sweep == "{sweep_id}"', "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    records = []
    for row in rows:
        shown = harness(project, "show", row["id"], "--json")
        assert shown.returncode == 0, shown.stderr
        records.append(valid_record(json.loads(shown.stdout)))
    return sorted(records, key=lambda r: r["sweep"]["index"])


def test_a_sweep_on_a_dask_cluster(probe_project: Path, registry: Registry, cluster: Cluster) -> None:
    remote = f"{registry.host}/team/probe"
    swept = harness(
        probe_project, "sweep", "-p", "scale=1,2,3,4", "-p", "sleep=1", "--cluster", cluster.address,
        "--remote", remote, "--json", timeout=240,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stdout + swept.stderr + cluster.log("w1") + cluster.log("w2")
    result = json.loads(swept.stdout)
    assert result["succeeded"] == 4 and result["size"] == 4
    assert "4/4 done, 0 running, 0 failed" in swept.stderr  # the progress line
    assert re.search(r"run [0-9a-f]+ started: scale=", swept.stderr)  # as the workers start them

    # Four records on the submitting side, one per point, each run on a worker, and both workers used.
    records = _sweep_records(probe_project, result["sweep"])
    assert [r["sweep"]["index"] for r in records] == [0, 1, 2, 3]
    assert [r["metrics"]["total"] for r in records] == [10, 20, 30, 40]
    assert {r["sweep"]["worker"] for r in records} == {"w1", "w2"}
    assert all(r["status"] == "succeeded" for r in records)
    # Each worker kept its runs in its own store, and had nothing of the project but what it pulled.
    for name in ("w1", "w2"):
        runs = Path(cluster.homes[name]["HARNESS_HOME"]) / "runs"
        ran = {r["id"] for r in records if r["sweep"]["worker"] == name}
        assert ran <= {p.name for p in runs.iterdir()}

    shown = harness(probe_project, "show", records[0]["id"])
    assert f"run 1 of 4  on worker {records[0]['sweep']['worker']}" in shown.stdout, shown.stdout

    # Each is rebuilt here, from this machine's stores, bit for bit.
    for record in records:
        rebuilt = harness(probe_project, "rebuild", record["id"], "--json")
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert json.loads(rebuilt.stdout)["identical"]

    # The remote holds each (sweep, index) once, under its own tag, as the run the submitting side pulled.
    client = connect(parse(remote))
    for record in records:
        tagged = client.manifest(sweep_tag(result["sweep"], record["sweep"]["index"]))
        assert tagged is not None and client.manifest(f"run-{record['id']}") == tagged

    # A task that runs again for an index the remote holds (its worker died after pushing, or Dask retried it)
    # returns that run, runs nothing and pushes nothing.
    tags_before = set(client.tags())
    first = records[0]
    again = run_task({"remote": remote, "bundle": "never-fetched", "record": {"sweep": first["sweep"]}})
    assert again["again"] and again["run"] == first["id"] and again["status"] == "succeeded"
    assert set(client.tags()) == tags_before

    # Ctrl-C stops the sweep: the workers kill the containers of the runs going, which are recorded interrupted,
    # pushed, and pulled back here before the sweep exits: nothing it started is left only on a worker.
    homes = [Path(cluster.homes[name]["HARNESS_HOME"]) / "runs" for name in ("w1", "w2")]
    known = {p.name for runs in homes if runs.is_dir() for p in runs.iterdir()}
    stopping = _sweep_in_background(probe_project, cluster, remote, "scale=1,2", "sleep=60")
    _wait_for_a_run(stopping, homes, known)
    time.sleep(1)  # the worker's "started" event reaches the sweep
    started = time.monotonic()
    stopping.send_signal(signal.SIGINT)
    out, err = stopping.communicate(timeout=60)
    assert stopping.returncode == 130, out + err
    stopped = json.loads(out)
    assert stopped["interrupted"] and stopped["interrupted_runs"] >= 1, stopped
    cut = [r["run"] for r in stopped["runs"] if r["status"] == "interrupted"]
    assert all(_status(homes, run_id) == "interrupted" for run_id in cut), [_status(homes, r) for r in cut]
    local = [probe_project / ".harness" / "runs"]
    assert [_status(local, run_id) for run_id in cut] == ["interrupted"] * len(cut), err
    assert time.monotonic() - started < 40  # not the 60 s the runs would have slept

    # A worker killed in the middle of a run loses no run: its task is run again on the other worker.
    w1_runs = homes[0]
    before = {p.name for p in w1_runs.iterdir()}
    running = _sweep_in_background(probe_project, cluster, remote, "scale=5,6,7,8", "sleep=4")
    _wait_for_a_run(running, [w1_runs], before)
    cluster.kill("w1")
    out, err = running.communicate(timeout=240)
    assert running.returncode == 0, out + err + cluster.log("w2")
    second = json.loads(out)
    assert second["succeeded"] == 4, second
    records = _sweep_records(probe_project, second["sweep"])
    assert [r["sweep"]["index"] for r in records] == [0, 1, 2, 3]  # each once
    assert [r["metrics"]["total"] for r in records] == [50, 60, 70, 80]
    assert any(r["sweep"]["worker"] == "w2" for r in records)
    killed = {p.name for p in w1_runs.iterdir()} - before
    assert killed and not killed & {r["id"] for r in records}  # the run cut short is not the one recorded


def _sweep_in_background(project: Path, cluster: Cluster, remote: str, *axes: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "harness", "sweep", "--cluster", cluster.address, "--remote", remote, "--json"]
    for axis in axes:
        argv += ["-p", axis]
    return subprocess.Popen(argv, cwd=project, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_a_run(sweep: subprocess.Popen[str], stores: list[Path], before: set[str]) -> None:
    """Until one of the workers' stores has a run, not in ``before``, whose container is about to start."""
    deadline = time.monotonic() + 120
    while not any(_a_new_run_running(runs, before) for runs in stores):
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()
        time.sleep(0.2)


def _status(stores: list[Path], run_id: str) -> str | None:
    for runs in stores:
        try:
            return str(json.loads((runs / run_id / "record.json").read_text())["status"])
        except (OSError, ValueError):
            continue
    return None


def _a_new_run_running(runs: Path, before: set[str]) -> bool:
    for run in runs.iterdir() if runs.is_dir() else ():
        if run.name in before:
            continue
        try:
            record = json.loads((run / "record.json").read_text())
        except (OSError, ValueError):
            continue
        if record.get("status") == "running" and record.get("runtime"):
            return True
    return False


def test_cluster_without_distributed_says_what_to_install(probe_project: Path, tmp_path: Path) -> None:
    """Where `distributed` cannot be imported, --cluster names the extra to install, and exits as a usage error."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "distributed.py").write_text("raise ImportError('blocked by the test')\n")
    env = cli_env(PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    result = harness(
        probe_project, "sweep", "-p", "scale=1,2", "--cluster", "tcp://127.0.0.1:1", "--remote",
        "127.0.0.1:1/team/probe", env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install 'harness[dask]'" in result.stderr
    runs = probe_project / ".harness" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing was run
