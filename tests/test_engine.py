"""harness/docker/engine.py over harness/docker/dockerapi.py: the engine's HTTP API against the real Docker engine."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.docker.dockerapi import DockerAPI, demultiplex
from harness.docker.engine import ContainerSpec, Engine, split_reference
from harness.env.environment import Environment
from harness.errors import EngineUnavailable, HarnessError
from tests.registry import Registry

docker = pytest.mark.docker


class Trickle(io.RawIOBase):
    """Hands out a few bytes per read, as a socket may: frames must be reassembled across reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray) -> int:  # type: ignore[override]
        n = min(self.step, len(buf), len(self.data))
        buf[:n], self.data = self.data[:n], self.data[n:]
        return n


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(payload)) + payload


def test_demultiplex_reassembles_frames_split_anywhere() -> None:
    raw = frame(1, b"out one\n") + frame(2, b"err\n") + frame(1, b"x" * 70_000) + frame(0, b"") + frame(2, b"end")
    for step in (1, 3, 8, 4096):
        got = list(demultiplex(Trickle(raw, step)))
        assert got == [("stdout", b"out one\n"), ("stderr", b"err\n"), ("stdout", b"x" * 70_000), ("stderr", b"end")]


def test_image_references_split_like_docker() -> None:
    assert split_reference("127.0.0.1:5000/base@sha256:" + "a" * 64) == ("127.0.0.1:5000/base", "sha256:" + "a" * 64)
    assert split_reference("127.0.0.1:5000/base") == ("127.0.0.1:5000/base", "latest")
    assert split_reference("harness-env:abc") == ("harness-env", "abc")


def test_unreachable_or_unsupported_engines_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine") as missing:
        Engine.connect()
    assert missing.value.hint and "docker info" in missing.value.hint
    # a tcp port where nothing listens
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    with pytest.raises(EngineUnavailable, match="Connection refused"):
        Engine.connect()
    monkeypatch.setenv("DOCKER_HOST", "ssh://someone@somewhere")
    with pytest.raises(EngineUnavailable, match="unix:// and tcp://"):
        Engine.connect()
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(EngineUnavailable, match="DOCKER_TLS_VERIFY") as tls:
        DockerAPI()
    assert tls.value.hint and "ssh -L" in tls.value.hint


def test_a_server_that_is_not_docker_is_an_engine_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "fake.sock"
    body = b'{"message":"no daemon"}'
    server = _serve_once(
        path, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    with pytest.raises(EngineUnavailable, match="answered: no daemon"):
        Engine.connect()
    server.close()


def _serve_once(path: Path, answer: bytes) -> socket.socket:
    """A unix socket that answers one request with ``answer`` and then drops the connection (RST)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_connection_lost_half_way_is_an_engine_error(tmp_path: Path) -> None:
    """The engine restarting mid-stream: a real engine cannot be made to do that on demand, so a fake socket."""
    path = tmp_path / "engine.sock"
    server = _serve_once(path, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    api = DockerAPI(f"unix://{path}")
    response = api.open("GET", "/images/x/get", stream=True)
    with pytest.raises(EngineUnavailable, match="lost the connection to the Docker engine") as lost:
        b"".join(api.chunks(response))
    assert lost.value.hint and "docker info" in lost.value.hint
    server.close()

    # what the caller does with an item is not blamed on the engine
    def frames() -> Iterator[int]:
        yield 1

    with pytest.raises(ZeroDivisionError):
        for n in api.guarded(frames()):
            n / 0


@docker
def test_streams_exit_code_and_files(tiny_env: Environment, engine: Engine) -> None:
    script = (
        "import sys\n"
        "sys.stdout.write('o' * 200000); sys.stdout.flush()\n"
        "sys.stderr.write('problem\\n'); sys.stderr.flush()\n"
        "open('/tmp/x', 'w').write('kept')\n"
        "sys.exit(3)\n"
    )
    got: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def sink(stream: str, chunk: bytes) -> None:
        got[stream] += chunk

    spec = ContainerSpec(image=tiny_env.image_ref, command=("python", "-c", script), read_only_root=False)
    code, container = engine.run(spec, sink, keep=True)
    try:
        assert code == 3
        assert got == {"stdout": b"o" * 200000, "stderr": b"problem\n"}
        assert engine.read_file(container, "/etc/hostname").strip() == b"harness"
        with pytest.raises(HarnessError, match="not a file"):
            engine.read_file(container, "/etc")
    finally:
        engine.remove(container)
    engine.remove(container)  # removing twice is harmless


@docker
def test_missing_image_is_named(engine: Engine) -> None:
    assert engine.inspect_image("sha256:" + "0" * 64) is None
    spec = ContainerSpec(image="harness-test-no-such-image:1", command=("true",))
    with pytest.raises(HarnessError, match="harness-test-no-such-image:1 is not present"):
        engine.run(spec)
    engine.remove_image("harness-test-no-such-image:1")  # absent: nothing to do, no error
    assert engine.version()["engine_version"]


@docker
def test_pull_and_push_use_the_login_docker_stored(
    tmp_path: Path, tiny_env: Environment, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path / "registry", login=("ci", "s3cret"))
    ref = f"{registry.host}/harness-login:1"
    engine.tag_image(tiny_env.image_id, f"{registry.host}/harness-login", "1")
    try:
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-login"))
        with pytest.raises(HarnessError, match=f"docker push {ref} failed: .*no basic auth credentials"):
            engine.push_image(ref)

        # what `docker login` writes without a credential store
        logged_in = tmp_path / "login"
        logged_in.mkdir()
        auth = base64.b64encode(b"ci:s3cret").decode()
        (logged_in / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(logged_in))
        engine.push_image(ref)
        engine.remove_image(ref)
        engine.pull_image(ref)
        assert (engine.inspect_image(ref) or {})["Id"] == tiny_env.image_id

        # with a credential helper: docker-credential-<name> get, the registry on stdin
        helper_dir = tmp_path / "bin"
        helper_dir.mkdir()
        helper = helper_dir / "docker-credential-harnesstest"
        helper.write_text(
            "#!/bin/sh\nread host\n"
            f'[ "$host" = "{registry.host}" ] && echo \'{{"Username": "ci", "Secret": "s3cret"}}\' && exit 0\n'
            "echo 'credentials not found' && exit 1\n"
        )
        helper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{helper_dir}:{os.environ['PATH']}")
        (logged_in / "config.json").write_text(json.dumps({"credsStore": "harnesstest"}))
        engine.remove_image(ref)
        engine.pull_image(ref)
        assert (engine.inspect_image(ref) or {})["Id"] == tiny_env.image_id
    finally:
        engine.remove_image(ref)
        registry.stop()
