"""harness/docker/engine.py over the Docker SDK, against the real Docker engine, a second TLS engine the tests
start, and fake servers for what a real engine cannot be made to do on demand."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.docker.attach import demultiplex
from harness.docker.engine import connect, split_reference
from harness.docker.interface import ContainerSpec, Engine
from harness.env.environment import Environment
from harness.errors import EngineUnavailable, HarnessError
from tests.fake_engine import FakeEngine
from tests.registry import Registry
from tests.tls_engine import PROBE_SLEEP_S, TLSEngine, client_dir, make_ca

docker = pytest.mark.docker


class Trickle:
    """A socket that hands out a few bytes per recv, as a real one may: frames must be reassembled across reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def settimeout(self, _timeout: float | None) -> None:
        pass

    def recv(self, size: int) -> bytes:
        n = min(self.step, size)
        piece, self.data = self.data[:n], self.data[n:]
        return piece


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(payload)) + payload


def test_demultiplex_reassembles_frames_split_anywhere() -> None:
    raw = frame(1, b"out one\n") + frame(2, b"err\n") + frame(1, b"x" * 70_000) + frame(0, b"") + frame(2, b"end")
    for step in (1, 3, 8, 4096):
        got: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        order: list[str] = []
        for stream, piece in demultiplex(Trickle(raw, step)):
            got[stream] += piece
            if not order or order[-1] != stream:
                order.append(stream)
        assert got == {"stdout": b"out one\n" + b"x" * 70_000, "stderr": b"err\nend"}
        assert order == ["stdout", "stderr", "stdout", "stderr"]


def test_demultiplex_refuses_a_stream_cut_inside_a_frame() -> None:
    whole = frame(1, b"complete\n") + frame(2, b"cut short")
    for cut in (len(whole) - 3, len(frame(1, b"complete\n")) + 5):  # inside a payload, inside a header
        pieces = demultiplex(Trickle(whole[:cut], 4096))
        with pytest.raises(ConnectionError, match="ended inside a frame"):
            list(pieces)


def test_image_references_split_like_docker() -> None:
    assert split_reference("127.0.0.1:5000/base@sha256:" + "a" * 64) == ("127.0.0.1:5000/base", "sha256:" + "a" * 64)
    assert split_reference("127.0.0.1:5000/base") == ("127.0.0.1:5000/base", "latest")
    assert split_reference("harness-env:abc") == ("harness-env", "abc")


def test_unreachable_or_unsupported_engines_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine at unix://.*no.sock") as missing:
        connect()
    assert missing.value.hint and "docker info" in missing.value.hint
    # a tcp port where nothing listens
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    with pytest.raises(EngineUnavailable, match="Connection refused"):
        connect()
    monkeypatch.setenv("DOCKER_HOST", "ssh://someone@somewhere")
    with pytest.raises(EngineUnavailable, match="unix:// and tcp://") as ssh:
        connect()
    assert ssh.value.hint and "ssh -NL" in ssh.value.hint
    # TLS asked for, and the files it needs are not there
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "no-certs"))
    with pytest.raises(
        EngineUnavailable, match="asks for TLS to tcp://.*no-certs lacks ca.pem, cert.pem, key.pem"
    ) as tls:
        connect()
    assert tls.value.hint and "no-certs" in tls.value.hint and "ca.pem" in tls.value.hint


def test_a_docker_context_that_does_not_exist_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The docker CLI refuses it too; falling back to the local socket would reach another engine than chosen."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONTEXT", "nowhere")
    with pytest.raises(EngineUnavailable, match="docker context 'nowhere' \\(DOCKER_CONTEXT\\) does not exist") as gone:
        connect()
    assert gone.value.hint and "docker context ls" in gone.value.hint
    monkeypatch.delenv("DOCKER_CONTEXT")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    with pytest.raises(EngineUnavailable, match="'elsewhere' \\(currentContext in .*config.json\\) does not exist"):
        connect()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EngineUnavailable, match="cannot read the docker CLI's .*config.json"):
        connect()


def test_a_server_that_is_not_docker_is_an_engine_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "fake.sock"
    body = b'{"message":"no daemon"}'
    server = _serve_error(
        path, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    with pytest.raises(EngineUnavailable, match="answered: no daemon"):
        connect()
    server.close()


def _serve_error(path: Path, answer: bytes) -> socket.socket:
    """A unix socket that answers every request with ``answer``."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
def test_a_connection_lost_half_way_is_an_engine_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reset: bool
) -> None:
    """The engine restarting mid-stream, whether the connection is reset or closed cleanly short of the length it
    announced or of the chunk that ends the body: never a short file or a quietly incomplete pull."""
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
    answers = {
        "/images/short/get": head + b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000,
        "/images/chunked/get": head + b"Transfer-Encoding: chunked\r\n\r\n" + b"3e8\r\n" + b"x" * 1000 + b"\r\n",
        "/containers/c1/archive": head + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000,
        "/images/create": head
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"15\r\n"
        + b'{"status":"Pulling"}\n'
        + b"\r\n",
    }
    server = FakeEngine(tmp_path / "engine.sock", answers, reset=reset)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/engine.sock")
    engine = connect()
    for ref in ("short", "chunked"):
        with pytest.raises(EngineUnavailable, match="lost the connection to the Docker engine") as lost:
            b"".join(engine.save_image(ref))
        assert lost.value.hint and "docker info" in lost.value.hint
    with pytest.raises(EngineUnavailable, match="lost the connection .* during docker pull base:1"):
        engine.pull_image("base:1")

    # what the caller does with the bytes is not blamed on the engine
    class FullDisk:
        def write(self, _chunk: bytes) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        engine.export_path("c1", "/out", FullDisk())  # type: ignore[arg-type]
    server.close()


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
            f'echo "$1 $host" >> {tmp_path / "helper-calls"}\n'
            f'[ "$host" = "{registry.host}" ] && echo \'{{"Username": "ci", "Secret": "s3cret"}}\' && exit 0\n'
            "echo 'credentials not found' && exit 1\n"
        )
        helper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{helper_dir}:{os.environ['PATH']}")
        # the same engine, after `docker login` switched to the helper: config.json is read again, as the CLI would
        (logged_in / "config.json").write_text(json.dumps({"credsStore": "harnesstest"}))
        engine.remove_image(ref)
        engine.pull_image(ref)
        assert (engine.inspect_image(ref) or {})["Id"] == tiny_env.image_id
        assert (tmp_path / "helper-calls").read_text() == f"get {registry.host}\n"
    finally:
        engine.remove_image(ref)
        registry.stop()


# -- a second engine, reached over TLS -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_engine() -> Iterator[TLSEngine]:
    """A dockerd of the tests' own on a loopback TLS port (tests/tls_engine.py), stopped and deleted afterwards."""
    started = TLSEngine()
    try:
        yield started
    finally:
        started.stop()


def _docker_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Only ``env`` of the variables that choose an engine. REQUESTS_CA_BUNDLE is set as on machines that point
    Python at the system's CAs: requests would let it replace the engine's CA."""
    for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)


@docker
def test_a_tls_engine_named_by_docker_host(
    tls_engine: TLSEngine, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _docker_env(monkeypatch, DOCKER_HOST=tls_engine.host, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(tls_engine.certs))
    remote = connect()
    assert remote.version()["engine_version"]
    assert remote.load_image(tls_engine.probe_archive) == [tls_engine.probe]
    assert remote.has_image(tls_engine.probe) and not engine.has_image(tls_engine.probe)  # another engine

    # over TLS too, output reaches the sink as the container writes it: the probe writes, sleeps, writes again
    arrivals: list[tuple[float, str, bytes]] = []
    spec = ContainerSpec(image=tls_engine.probe, command=("/probe",))
    code, _ = remote.run(spec, lambda stream, chunk: arrivals.append((time.monotonic(), stream, chunk)))
    finished = time.monotonic()
    assert code == 3
    assert [(stream, chunk) for _, stream, chunk in arrivals] == [("stdout", b"out\n"), ("stderr", b"err\n")]
    assert finished - arrivals[0][0] > PROBE_SLEEP_S / 2, "the first line waited for the second"
    assert not tls_engine.cli("ps", "--all", "--quiet")  # removed


@docker
def test_a_tls_engine_chosen_by_docker_context(
    tls_engine: TLSEngine, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DOCKER_HOST unset: DOCKER_CONTEXT, else config.json's currentContext, as `docker context` writes them (and
    without a config.json, as `docker context create` leaves a fresh DOCKER_CONFIG)."""
    _docker_env(monkeypatch, DOCKER_CONFIG=str(tmp_path / "docker"))
    certs = tls_engine.certs
    endpoint = f"host={tls_engine.host},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},key={certs / 'key.pem'}"
    subprocess.run(
        ["docker", "context", "create", "harness-tls", "--docker", endpoint], check=True, capture_output=True
    )
    assert not (tmp_path / "docker" / "config.json").exists()

    monkeypatch.setenv("DOCKER_CONTEXT", "harness-tls")
    assert connect().has_image(tls_engine.probe)

    monkeypatch.delenv("DOCKER_CONTEXT")
    subprocess.run(["docker", "context", "use", "harness-tls"], check=True, capture_output=True)
    assert connect().has_image(tls_engine.probe)

    monkeypatch.setenv("DOCKER_CONTEXT", "default")  # overrides currentContext: the local engine
    assert not connect().has_image(tls_engine.probe)


@docker
def test_a_tls_engine_is_refused_with_the_wrong_certificates(
    tls_engine: TLSEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other_ca = make_ca(tmp_path / "other-ca", "harness-test-other-ca")
    # a client certificate the engine accepts, and a CA that did not sign the engine's certificate
    wrong_ca = client_dir(tmp_path / "wrong-ca", tls_engine.ca, other_ca[0])
    _docker_env(monkeypatch, DOCKER_HOST=tls_engine.host, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(wrong_ca))
    with pytest.raises(EngineUnavailable, match="TLS: .*certificate verify failed") as refused:
        connect()
    assert refused.value.hint and str(wrong_ca) in refused.value.hint

    # the engine's CA, and a client certificate it did not issue
    stranger = client_dir(tmp_path / "stranger", other_ca, tls_engine.ca[0])
    monkeypatch.setenv("DOCKER_CERT_PATH", str(stranger))
    with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine at tcp://127.0.0.1:.*TLS") as rejected:
        connect()
    assert rejected.value.hint and str(stranger) in rejected.value.hint

    # a docker context with the wrong CA is refused the same way
    _docker_env(monkeypatch, DOCKER_CONFIG=str(tmp_path / "docker"), DOCKER_CONTEXT="wrong-ca")
    endpoint = (
        f"host={tls_engine.host},ca={wrong_ca / 'ca.pem'},cert={wrong_ca / 'cert.pem'},key={wrong_ca / 'key.pem'}"
    )
    subprocess.run(["docker", "context", "create", "wrong-ca", "--docker", endpoint], check=True, capture_output=True)
    with pytest.raises(EngineUnavailable, match="docker context wrong-ca.*TLS: .*certificate verify failed") as ctx:
        connect()
    assert ctx.value.hint and "docker --context wrong-ca version" in ctx.value.hint
