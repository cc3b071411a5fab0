"""HARNESS_DOCKER_TIMEOUT (harness/docker/timeouts.py): an engine that accepts and never answers is exit 106 within
seconds, while what legitimately stays silent for long (a running container, a build, a save, a load) is never
cut by it. A hung engine is a unix socket of the test's own; everything else is the real engine."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.docker.engine import connect
from harness.docker.interface import Engine
from harness.docker.timeouts import DEFAULT_TIMEOUT_S, ENV_TIMEOUT, request_timeout
from harness.env.environment import Environment
from harness.errors import ConfigError, EngineUnavailable
from tests.fake_engine import FakeEngine
from tests.projects import SESSION, cli_env, harness, valid_record

HUNG_HINT = "systemctl status docker"


@pytest.fixture()
def hung(tmp_path: Path) -> Iterator[FakeEngine]:
    server = FakeEngine(tmp_path / "hung.sock", version=False)
    try:
        yield server
    finally:
        server.close()


def test_the_timeout_is_read_from_the_environment_and_checked() -> None:
    assert request_timeout({}) == DEFAULT_TIMEOUT_S == 30
    assert request_timeout({ENV_TIMEOUT: " 2.5 "}) == 2.5
    for bad in ("soon", "0", "-1", "inf", "nan"):
        with pytest.raises(ConfigError, match=f"{ENV_TIMEOUT} is '{bad}': not a positive number") as refused:
            request_timeout({ENV_TIMEOUT: bad})
        assert refused.value.hint and "unset it" in refused.value.hint


def test_connecting_to_a_hung_engine_gives_up_after_the_timeout(
    hung: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", hung.host)
    monkeypatch.setenv(ENV_TIMEOUT, "1")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as failed:
        connect()
    assert time.monotonic() - started < 5
    assert failed.value.message == (
        f"the Docker engine at {hung.host} (DOCKER_HOST) did not answer within 1 s ({ENV_TIMEOUT}) during "
        "the first request (asking its API version)"
    )
    assert failed.value.hint and HUNG_HINT in failed.value.hint and ENV_TIMEOUT in failed.value.hint
    # a caller's own timeout wins over the environment's
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="did not answer within 0.5 s"):
        connect(timeout=0.5)
    assert time.monotonic() - started < 3


def test_an_engine_that_hangs_after_connecting_is_named_with_what_harness_was_doing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeEngine(tmp_path / "half.sock", reset=False)
    monkeypatch.setenv("DOCKER_HOST", server.host)
    monkeypatch.setenv(ENV_TIMEOUT, "1")
    try:
        engine = connect()
        for call, doing in (
            (lambda: engine.containers(), "listing containers"),
            (lambda: engine.inspect_image("base:1"), "docker image inspect base:1"),
            (lambda: engine.kill("c1"), "docker kill c1"),
        ):
            started = time.monotonic()
            with pytest.raises(
                EngineUnavailable, match=f"did not answer within 1 s \\({ENV_TIMEOUT}\\) during {doing}"
            ):
                call()
            assert time.monotonic() - started < 5
    finally:
        server.close()


@pytest.mark.docker
def test_harness_run_against_a_hung_engine_exits_106_within_seconds(probe_project: Path, hung: FakeEngine) -> None:
    started = time.monotonic()
    result = harness(probe_project, "run", env=cli_env(DOCKER_HOST=hung.host, **{ENV_TIMEOUT: "1"}), timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 106, result.stderr
    assert f"did not answer within 1 s ({ENV_TIMEOUT})" in result.stderr and hung.host in result.stderr
    assert "hint:" in result.stderr and HUNG_HINT in result.stderr and f"raise {ENV_TIMEOUT}" in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 10, f"took {took:.1f} s"
    assert json.loads(harness(probe_project, "ls", "--json").stdout) == [], "nothing was run or recorded"

    bad = harness(probe_project, "run", env=cli_env(DOCKER_HOST=hung.host, **{ENV_TIMEOUT: "soon"}), timeout=60)
    assert bad.returncode == 101 and f"{ENV_TIMEOUT} is 'soon'" in bad.stderr


@pytest.mark.docker
def test_a_run_longer_than_the_timeout_runs_to_its_end(probe_project: Path) -> None:
    """The container is silent for 3 s after its first lines, with a 1 s request timeout."""
    env = cli_env(**{ENV_TIMEOUT: "1"})
    result = harness(probe_project, "run", "--json", "-p", "sleep=3", env=env)
    assert result.returncode == 0, result.stderr
    record = valid_record(json.loads(result.stdout))
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["duration_s"] >= 3


@pytest.mark.docker
def test_builds_saves_and_loads_are_not_cut_by_the_timeout(tiny_env: Environment, tmp_path: Path) -> None:
    """Through the client without a timeout: `docker save` of a 200 MB image starts its stream after ~1.4 s here
    (through the client with the request timeout it is an EngineUnavailable); the RUN step is silent for 2 s; a
    load answers once it has read the whole archive."""
    engine: Engine = connect(timeout=0.5)

    archive = tmp_path / "image.tar"
    with open(archive, "wb") as fh:
        for chunk in engine.save_image(tiny_env.image_id):
            fh.write(chunk)
    assert engine.load_image(archive) == [tiny_env.image_id]

    dockerfile = f"FROM {tiny_env.image_id}\nRUN sleep 2\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    tag = f"harness-test-slow-build:{SESSION}"
    try:
        built = engine.build_image(context, "Dockerfile", {"org.harness.test": "timeouts"}, tag)
        assert engine.has_image(built)
    finally:
        engine.remove_image(tag)
