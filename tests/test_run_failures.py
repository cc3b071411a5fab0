"""A run whose container goes away under it: removed by someone else (the real engine, on demand), or an engine
that dies half way through (a fake behind the Engine protocol: the shared engine cannot be killed for a test).
Either way the run is recorded as failed with the reason, its output so far is kept and its work tree removed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from harness.docker.interface import ContainerSpec, Engine, OutputSink
from harness.errors import EngineUnavailable, HarnessError
from harness.runs.runner import RunRequest, run
from tests.projects import valid_record


class Reporter:
    def __init__(self, on_start: Any = None) -> None:
        self.run_id: str | None = None
        self.on_start = on_start

    def progress(self, message: str) -> None:
        pass

    def output(self, stream: str, chunk: bytes) -> None:
        pass

    def started(self, run_id: str) -> None:
        self.run_id = run_id
        if self.on_start is not None:
            self.on_start(run_id)


class EngineDiesMidRun:
    """The real engine in everything, except that a run's container writes its first line and then the connection
    to the engine is lost, as when dockerd is restarted or crashes."""

    def __init__(self, real: Engine) -> None:
        self.real = real
        self.ran: list[ContainerSpec] = []

    def run(self, spec: ContainerSpec, sink: OutputSink | None = None, keep: bool = False) -> tuple[int, str]:
        self.ran.append(spec)
        if sink is not None:
            sink("stdout", b"epoch 1 of 10\n")
        raise EngineUnavailable(
            "lost the connection to the Docker engine at unix:///var/run/docker.sock during running container "
            "0123456789ab: Connection reset by peer",
            "check the engine with `docker info` (a restart drops every connection) and try again",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    # The protocol's other methods, spelled out for readers: all the real engine's.
    def export_path(self, container_id: str, path: str, dest: IO[bytes]) -> None:
        self.real.export_path(container_id, path, dest)

    def save_image(self, ref: str) -> Iterator[bytes]:
        return self.real.save_image(ref)


def _record(project: Path, run_id: str) -> dict[str, Any]:
    return valid_record(json.loads((project / ".harness" / "runs" / run_id / "record.json").read_text()))


def test_an_engine_that_dies_mid_run_leaves_a_failed_record_with_the_reason(
    probe_project: Path, engine: Engine
) -> None:
    fake = EngineDiesMidRun(engine)
    reporter = Reporter()
    with pytest.raises(EngineUnavailable, match="lost the connection"):
        run(RunRequest(project_dir=probe_project), reporter, engine=fake)  # type: ignore[arg-type]
    assert fake.ran and reporter.run_id is not None
    record = _record(probe_project, reporter.run_id)
    assert record["status"] == "failed" and record["exit_code"] is None
    assert record["error"]["error"] == "EngineUnavailable" and record["error"]["exit_code"] == 106
    assert "Connection reset" in record["error"]["message"] and "docker info" in record["error"]["hint"]
    assert record["finished_at"] is not None and record["runtime"]["network"] == "none"
    log = probe_project / ".harness" / "runs" / reporter.run_id / "log.txt"
    assert log.read_bytes() == b"epoch 1 of 10\n"  # what arrived before the engine went is kept
    assert not (probe_project / ".harness" / "work" / reporter.run_id).exists()


def test_a_container_removed_while_it_runs_is_named_and_the_run_recorded_failed(
    probe_project: Path, engine: Engine
) -> None:
    """`docker rm -f` from outside, as a cleanup script or `docker container prune -f` would do it."""

    def remove_soon(run_id: str) -> None:
        def remove() -> None:
            deadline = time.monotonic() + 30
            name = f"harness-{run_id}"
            while time.monotonic() < deadline:
                info = _container_running(engine, name)
                if info:
                    time.sleep(0.5)  # let it write its first lines
                    engine.remove(name)
                    return
                time.sleep(0.1)

        threading.Thread(target=remove, daemon=True).start()

    reporter = Reporter(on_start=remove_soon)
    started = time.monotonic()
    with pytest.raises(HarnessError) as caught:
        run(RunRequest(project_dir=probe_project, overrides=("sleep=60",)), reporter, engine=engine)
    assert time.monotonic() - started < 45, "harness waited for the removed container"
    assert reporter.run_id is not None
    record = _record(probe_project, reporter.run_id)
    assert record["status"] == "failed"
    assert "was removed while it ran" in caught.value.message, caught.value.message
    assert record["error"]["message"] == caught.value.message
    assert b"probe ran" in (probe_project / ".harness" / "runs" / reporter.run_id / "log.txt").read_bytes()
    assert not (probe_project / ".harness" / "work" / reporter.run_id).exists()


def _container_running(engine: Engine, name: str) -> bool:
    """Whether the named container exists and runs, through the docker SDK client the engine holds (tests only)."""
    api = engine._api
    try:
        return bool(api.inspect_container(name)["State"]["Running"])
    except Exception:
        return False
