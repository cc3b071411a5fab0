"""A harness killed with SIGKILL leaves nothing behind for long: the next command that opens the store notices the
run whose owner is gone, records it as interrupted, removes its container and work directory and says so once;
`harness gc` frees what nothing references and never touches a live run.

The kills are real (SIGKILL to a real `harness run` against the real engine) at three points, each reached
without a test hook inside harness:
- container running: the probe prints "probe ran" and sleeps;
- collecting outputs: the container writes many files and exits; harness then removes it and stores the files,
  which takes seconds; the kill lands when the container is gone and the record still says running;
- writing the record: the test holds the index's write lock (BEGIN EXCLUSIVE), so harness's final record write
  waits on it after record.json and the seal are written; the kill lands there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.docker.interface import Engine
from harness.env import oci
from harness.env.environment import Environment, write_record
from harness.env.imageload import load_image
from harness.errors import EngineUnavailable
from harness.files import write_atomic
from harness.paths import Layout
from harness.runs import ownership
from harness.runs.records import SCHEMA, Records
from harness.runs.recovery import DIED, recover
from harness.storage.store import Store
from tests.projects import cli_env, harness, valid_record

MANY = 30_000  # output files: storing them takes harness seconds, a wide window for the kill


class Running:
    """A `harness run` (or another command) in the background; its stdout and stderr lines collected as they
    come."""

    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None, command: str = "run") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness", command, *args],
            cwd=project,
            env=env or cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, ls=lines: ls.extend(iter(s.readline, "")), daemon=True).start()

    def wait_for(self, test: Callable[[], bool], what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            assert self.proc.poll() is None, f"harness ended before {what}: {''.join(self.err)}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {''.join(self.err)}"
            time.sleep(0.02)

    @property
    def run_id(self) -> str | None:
        for line in list(self.err):
            if line.startswith("harness: run ") and line.rstrip().endswith(" started"):
                return line.split()[2]
        return None

    def started(self) -> str:
        self.wait_for(lambda: self.run_id is not None, "the run to start")
        assert self.run_id is not None
        return self.run_id

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL


def _sleeping_run(project: Path) -> tuple[Running, str]:
    """A run whose container has started its probe and sleeps for two minutes: (the harness process, run id)."""
    run = Running(project, "-p", "sleep=120")
    run.wait_for(lambda: any("probe ran" in line for line in run.out), "the probe to run")
    return run, run.started()


def _containers(engine: Engine, project: Path, run_id: str) -> list[dict[str, Any]]:
    return engine.containers(ownership.labels(run_id, project / ".harness"))


def _record_file(project: Path, run_id: str) -> dict[str, Any]:
    return json.loads((project / ".harness" / "runs" / run_id / "record.json").read_text())


def _show(project: Path, run_id: str) -> dict[str, Any]:
    shown = harness(project, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return valid_record(json.loads(shown.stdout))


def _notices(stderr: str, run_id: str) -> list[str]:
    return [line for line in stderr.splitlines() if f"run {run_id} was interrupted" in line]


def _objects(project: Path) -> set[str]:
    root = project / ".harness" / "objects"
    fans = [f for f in root.iterdir() if len(f.name) == 2] if root.is_dir() else []
    return {f"{fan.name}{name}" for fan in fans for name in os.listdir(fan)}


def _assert_clean_and_usable(project: Path) -> None:
    verified = harness(project, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = harness(project, "run", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "succeeded"


@pytest.mark.docker
def test_a_harness_killed_while_its_container_runs_is_finished_by_the_next_command(
    probe_project: Path, engine: Engine
) -> None:
    run, run_id = _sleeping_run(probe_project)
    run.kill()
    # What a SIGKILL leaves: the container running on, the record running, the work directory in place.
    assert [c["state"] for c in _containers(engine, probe_project, run_id)] == ["running"]
    assert _record_file(probe_project, run_id)["status"] == "running"
    assert (probe_project / ".harness" / "work" / run_id).is_dir()

    listed = harness(probe_project, "ls")
    assert listed.returncode == 0, listed.stderr
    notices = _notices(listed.stderr, run_id)
    assert len(notices) == 1 and f"(pid {run.proc.pid})" in notices[0], listed.stderr
    assert "its container was removed" in notices[0]
    assert "INTERRUPTED" in next(line for line in listed.stdout.splitlines() if run_id in line)
    assert _containers(engine, probe_project, run_id) == []
    assert not (probe_project / ".harness" / "work" / run_id).exists()
    assert not (probe_project / ".harness" / "runs" / run_id / ownership.LOCK_NAME).exists()

    record = _show(probe_project, run_id)
    assert record["status"] == "interrupted" and record["exit_code"] is None
    assert record["error"]["error"] == DIED and f"pid {run.proc.pid}" in record["error"]["message"]
    assert "while the run was running" in record["error"]["message"]
    assert record["process"]["pid"] == run.proc.pid and record["finished_at"] is not None
    text = harness(probe_project, "show", run_id)
    assert "None s" not in text.stdout and "duration unknown" in text.stdout and DIED not in text.stderr
    assert _notices(text.stderr + harness(probe_project, "ls").stderr, run_id) == []  # said once
    assert "probe ran" in (probe_project / ".harness" / "runs" / run_id / "log.txt").read_text()
    # The rebuild re-executes it (its probe runs again) rather than refusing; stopped there, not slept out.
    rebuilt = Running(probe_project, run_id, command="rebuild")
    rebuilt.wait_for(lambda: any("probe ran" in line for line in rebuilt.out), "the rebuild's probe to run")
    rebuilt.proc.send_signal(signal.SIGINT)
    assert rebuilt.proc.wait(timeout=60) == 130, "".join(rebuilt.out + rebuilt.err)
    assert "still running" not in "".join(rebuilt.err)
    verdict = "".join(rebuilt.out)  # a stopped rebuild has no verdict: not DIFFERENT, and no blame on the code
    assert "INTERRUPTED before its container ended" in verdict and "DIFFERENT" not in verdict, verdict
    _assert_clean_and_usable(probe_project)


def _kill_while_collecting(project: Path, engine: Engine) -> str:
    """A run whose container wrote MANY files and exited, killed while harness stores them; its id."""
    writer = f"import pathlib\nfor i in range({MANY}): pathlib.Path(f'/outputs/f{{i}}.txt').write_text(str(i))\n"
    run = Running(project, "--", "python", "-c", writer)
    run_id = run.started()
    run.wait_for(lambda: _containers(engine, project, run_id) != [], "the container", timeout=60)
    before = len(_objects(project))  # the run's inputs are stored before its container starts
    run.wait_for(lambda: _containers(engine, project, run_id) == [], "the container to exit and be removed")
    run.wait_for(lambda: len(_objects(project)) > before + 100, "harness to store outputs")
    run.kill()
    outputs = project / ".harness" / "runs" / run_id / "outputs"
    assert _record_file(project, run_id)["status"] == "running", "the kill came after the outputs were recorded"
    assert len(os.listdir(outputs)) == MANY  # the container finished writing
    assert len(_objects(project)) < before + MANY, "the kill came after the outputs were stored"
    return run_id


@pytest.mark.docker
def test_a_harness_killed_while_collecting_outputs_is_finished_by_the_next_command(
    probe_project: Path, engine: Engine
) -> None:
    run_id = _kill_while_collecting(probe_project, engine)
    shown = harness(probe_project, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    notices = _notices(shown.stderr, run_id)
    assert len(notices) == 1 and "container" not in notices[0], shown.stderr  # no container was left
    record = valid_record(json.loads(shown.stdout))
    assert record["status"] == "interrupted" and record["error"]["error"] == DIED
    assert record["outputs"]["manifest"] is None  # no claim on the half-stored outputs directory
    assert not list((probe_project / ".harness" / "runs" / run_id).glob(".harness-replace*"))
    _assert_clean_and_usable(probe_project)


@pytest.mark.docker
def test_a_harness_killed_while_writing_the_record_leaves_the_record_it_sealed(
    probe_project: Path, engine: Engine
) -> None:
    """harness writes record.json, then its seal, then the index row. Killed at the last step (the test holds the
    index's write lock), the run had ended and its record is sealed: the next command brings the index up to date,
    and the run is what its record says, not interrupted."""
    index = probe_project / ".harness" / "index.sqlite"
    run = Running(probe_project, "-p", "sleep=2")
    run.wait_for(lambda: any("probe ran" in line for line in run.out), "the probe to run")
    run_id = run.started()
    blocker = sqlite3.connect(index, timeout=30, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        run.wait_for(lambda: _record_file(probe_project, run_id)["status"] != "running", "the final record")
        run.wait_for(lambda: (probe_project / ".harness" / "seals" / run_id).exists(), "the seal")
        time.sleep(0.5)
        assert run.proc.poll() is None  # waiting for the index
        run.kill()
        row = blocker.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert row == ("running",)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    listed = harness(probe_project, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert _notices(listed.stderr, run_id) == []
    assert next(r for r in json.loads(listed.stdout) if r["id"] == run_id)["status"] == "succeeded"
    assert _show(probe_project, run_id)["status"] == "succeeded"
    assert _containers(engine, probe_project, run_id) == []
    assert not (probe_project / ".harness" / "work" / run_id).exists()
    _assert_clean_and_usable(probe_project)


@pytest.mark.docker
def test_without_an_engine_the_run_is_still_marked_and_gc_removes_its_container_later(
    probe_project: Path, engine: Engine
) -> None:
    run, run_id = _sleeping_run(probe_project)
    run.kill()
    unreachable = cli_env(DOCKER_HOST=f"unix://{probe_project}/no-engine.sock")
    listed = harness(probe_project, "ls", env=unreachable)
    assert listed.returncode == 0, listed.stderr
    notices = _notices(listed.stderr, run_id)
    assert len(notices) == 1 and "could not be removed" in notices[0] and "harness gc" in notices[0]
    assert _record_file(probe_project, run_id)["status"] == "interrupted"
    assert len(_containers(engine, probe_project, run_id)) == 1  # left, as said

    collected = harness(probe_project, "gc")
    assert collected.returncode == 0, collected.stderr
    assert f"harness-{run_id}" in collected.stdout and "removed 1 container" in collected.stdout
    assert _containers(engine, probe_project, run_id) == []
    _assert_clean_and_usable(probe_project)


@pytest.mark.docker
def test_gc_dry_run_lists_what_nothing_references_and_gc_removes_exactly_that(
    probe_project: Path, engine: Engine, tiny_env: Any
) -> None:
    first = harness(probe_project, "run", "--json")
    assert first.returncode == 0, first.stderr
    kept = json.loads(first.stdout)
    run_id = _kill_while_collecting(probe_project, engine)
    assert harness(probe_project, "ls").returncode == 0  # recovers the killed run
    store = probe_project / ".harness"
    temp = store / "objects" / "tmp" / "t0" / "incoming-999999-1-1"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"half an object")
    stray = store / "runs" / "ffffff"  # allocated by a harness killed before its first record
    stray.mkdir()
    (stray / ownership.LOCK_NAME).write_text("{}")
    ours = _create_container(engine, tiny_env.image_id, ownership.labels("eeeeee", store))
    other_store = _create_container(engine, tiny_env.image_id, ownership.labels("eeeeee", store.parent / "other"))
    try:
        before = _objects(probe_project)
        dry = harness(probe_project, "gc", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        planned = json.loads(dry.stdout)
        assert _objects(probe_project) == before and temp.exists() and stray.exists()  # nothing removed
        assert planned["dry_run"] is True and planned["counts"]["object"] > 0 and planned["bytes"] > 0
        names = {i["kind"]: set() for i in planned["items"]}
        for item in planned["items"]:
            names[item["kind"]].add(item["name"])
        assert "objects/tmp/t0/incoming-999999-1-1" in names["temp"], names.get("temp")  # and what the kill left
        assert names["run"] == {"runs/ffffff"} and names["container"] == {ours}, names
        text = harness(probe_project, "gc", "--dry-run")
        assert "would remove" in text.stdout and "would free" in text.stdout

        done = harness(probe_project, "gc", "--json")
        assert done.returncode == 0, done.stderr
        removed = json.loads(done.stdout)
        assert {k: v for k, v in removed["counts"].items()} == planned["counts"]
        gone = {i["name"].replace("objects/", "").replace("/", "") for i in removed["items"] if i["kind"] == "object"}
        assert _objects(probe_project) == before - gone
        assert not temp.exists() and not stray.exists()
        assert engine.containers({ownership.RUN_LABEL: "eeeeee", ownership.STORE_LABEL: str(store)}) == []
        assert [c["name"] for c in engine.containers({ownership.STORE_LABEL: str(store.parent / "other")})] == [
            other_store
        ]
        # What the records name is all still there: verify is clean, the first run's outputs are intact.
        verified = harness(probe_project, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert set(kept["outputs"]["files"].values()) <= _objects(probe_project)
        again = json.loads(harness(probe_project, "gc", "--json").stdout)
        assert again["items"] == []
        assert (store / "runs" / run_id / "outputs").is_dir()  # outputs directories are never removed
    finally:
        for container in (ours, other_store):
            engine.remove(container)


def _create_container(engine: Engine, image: str, labels: dict[str, str]) -> str:
    """A stopped container with these labels, made through the SDK client the engine holds (tests only); its name
    is harness-test-<random>, which it returns."""
    api = engine._api  # type: ignore[attr-defined]
    name = f"harness-test-{secrets.token_hex(6)}"
    api.create_container(image=image, command=["true"], labels=labels, name=name)
    return name


@pytest.mark.docker
def test_gc_and_other_commands_leave_a_live_run_alone(probe_project: Path, engine: Engine) -> None:
    run, run_id = _sleeping_run(probe_project)
    try:
        listed = harness(probe_project, "ls")
        collected = harness(probe_project, "gc")
        assert collected.returncode == 0, collected.stderr
        assert "a run, a rebuild or a data snapshot is in progress" in collected.stdout
        assert _notices(listed.stderr + collected.stderr, run_id) == []
        assert [c["state"] for c in _containers(engine, probe_project, run_id)] == ["running"]
        assert (probe_project / ".harness" / "work" / run_id).is_dir()
        assert _record_file(probe_project, run_id)["status"] == "running"
    finally:
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=60) == 130
    record = _show(probe_project, run_id)
    assert record["status"] == "interrupted" and record.get("error", {}).get("error") != DIED


# -- the lock, without a container --------------------------------------------------------------------------------


def _layout(tmp_path: Path) -> Layout:
    return Layout(project=tmp_path, store=tmp_path / ".harness", cache=tmp_path / "cache")


def _running(records: Records, **extra: Any) -> str:
    run_id = records.allocate().id
    records.write({"schema": SCHEMA, "id": run_id, "name": "x", "status": "running", "exit_code": None, **extra})
    return run_id


def _no_engine() -> Engine:
    raise EngineUnavailable("no engine in this test")


def test_a_run_whose_owner_holds_its_lock_is_left_alone_and_recovered_once_it_is_released(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    records = Records(layout.runs, layout.index)
    run_id = _running(records)
    with ownership.hold(layout.runs / run_id):
        assert recover(layout, _no_engine) == []
        assert records.read(run_id)["status"] == "running"
    found = recover(layout, _no_engine)
    assert [f.run for f in found] == [run_id] and found[0].container == "left"
    assert records.read(run_id)["status"] == "interrupted"
    assert recover(layout, _no_engine) == []


def test_a_running_record_with_no_lock_counts_as_alive_only_while_its_recorded_process_is(tmp_path: Path) -> None:
    """The lock file gone (deleted by hand) with the recorded process alive: left alone; a record from a harness
    that kept no lock and recorded no process: recovered."""
    layout = _layout(tmp_path)
    records = Records(layout.runs, layout.index)
    alive = _running(records, process=ownership.this_process())
    legacy = _running(records)
    assert [f.run for f in recover(layout, _no_engine)] == [legacy]
    assert records.read(alive)["status"] == "running"


def test_a_record_made_final_but_not_sealed_when_harness_died_is_recorded_interrupted(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    records = Records(layout.runs, layout.index)
    run_id = _running(records)
    final = {"schema": SCHEMA, "id": run_id, "name": "x", "status": "succeeded", "exit_code": 0}
    write_atomic(layout.runs / run_id / "record.json", json.dumps(final).encode())  # the seal never came
    assert [f.run for f in recover(layout, _no_engine)] == [run_id]
    record = records.read(run_id)  # sealed now
    assert record["status"] == "interrupted" and record["exit_code"] == 0
    assert "after writing its record (succeeded) but before sealing it" in record["error"]["message"]
    assert (layout.store / "seals" / run_id).is_file()


@pytest.mark.docker
def test_gc_images_removes_only_an_environment_image_no_run_or_container_uses_and_the_cache_can_load_back(
    probe_project: Path, engine: Engine, tiny_env: Environment, env_layout: Layout, tmp_path: Path
) -> None:
    """Environment images are shared by every project on the engine, so this test gives the gc its own cache
    (HARNESS_CACHE) that knows two images: the session's, which a run of this store uses, and one made here (the
    same layers under another config, so another id), which nothing uses."""
    assert harness(probe_project, "run").returncode == 0
    cache = Layout(project=tmp_path, store=tmp_path / "unused", cache=tmp_path / "cache")
    session, private = Store(env_layout.cache_objects), Store(cache.cache_objects)
    for digest in (tiny_env.parts.config_digest, tiny_env.parts.manifest_digest, *tiny_env.parts.layers):
        target = private.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(session.path(digest), target)
    config = json.loads(session.read_bytes(tiny_env.parts.config_digest))
    config["config"]["Labels"]["org.harness.test"] = secrets.token_hex(8)
    layers = [oci.LayerRef(d, session.path(d).stat().st_size, "") for d in tiny_env.parts.layers]
    parts = oci.store_image(private, config, layers)
    ref = f"harness-env:gc-test-{secrets.token_hex(6)}"
    manifest = "sha256:" + parts.manifest_digest
    unused = dataclasses.replace(
        tiny_env, key="0" * 64, image_id=parts.image_id, manifest_digest=manifest, image_ref=ref
    )
    cache.images.mkdir(parents=True)
    write_record(cache.images / f"{tiny_env.key}.json", tiny_env)
    write_record(cache.images / f"{unused.key}.json", unused)
    load_image(private, parts, ref, cache, engine, 0)
    try:
        gc_env = cli_env(HARNESS_CACHE=str(cache.cache))
        dry = json.loads(harness(probe_project, "gc", "--images", "--dry-run", "--json", env=gc_env).stdout)
        assert [i["name"] for i in dry["items"] if i["kind"] == "image"] == [ref]
        assert any("shared by every project" in note for note in dry["notes"])
        assert engine.inspect_image(ref) is not None
        done = harness(probe_project, "gc", "--images", env=gc_env)
        assert done.returncode == 0, done.stderr
        assert ref in done.stdout and "removed 1 environment image" in done.stdout
        assert engine.inspect_image(ref) is None and engine.inspect_image(parts.image_id) is None
        assert engine.inspect_image(tiny_env.image_id) is not None  # this store's runs use it
    finally:
        if engine.inspect_image(ref) is not None:
            engine.remove_image(ref)
