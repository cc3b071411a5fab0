"""A second Docker engine, started by the tests, that only speaks TLS on a loopback port.

It has its own CA and its own --data-root, --exec-root and --pidfile under a temporary directory, no bridge and
no iptables rules, and the vfs storage driver (which needs no kernel overlay support). Nothing it does reaches
the machine's main engine: it is told apart from it by what it holds (the probe image below, loaded into it
alone). Certificates come from the openssl CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

# A static x86-64 Linux program, position independent (hand-assembled with GNU as, checked with objdump):
#     write(1, "out\n", 4); nanosleep({1 s}, NULL); write(2, "err\n", 4); exit(3)
# It lets a container on the TLS engine show that output streams as it is written, without any image to pull.
PROBE_CODE = bytes.fromhex(
    "b801000000bf01000000488d354b000000ba040000000f05"  # mov eax,1; mov edi,1; lea rsi,[out]; mov edx,4; syscall
    "b823000000488d3d2800000031f60f05"  # mov eax,35 (nanosleep); lea rdi,[ts]; xor esi,esi; syscall
    "b801000000bf02000000488d3527000000ba040000000f05"  # mov eax,1; mov edi,2; lea rsi,[err]; mov edx,4; syscall
    "b83c000000bf030000000f05"  # mov eax,60 (exit); mov edi,3; syscall
    "01000000000000000000000000000000"  # ts: 1 s, 0 ns
    "6f75740a6572720a"  # "out\n", "err\n"
)
PROBE_SLEEP_S = 1.0


def probe_elf() -> bytes:
    """PROBE_CODE as an ELF executable: one header, one loadable segment, code right after the headers."""
    base, header_size = 0x400000, 64 + 56
    size = header_size + len(PROBE_CODE)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little endian, ELF version 1, System V
    # executable, x86-64, version 1, entry, phoff, shoff, flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + header_size, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, R+X, whole file
    return ehdr + phdr + PROBE_CODE


def probe_archive(dest: Path) -> str:
    """A docker-archive of a one-layer image holding the probe at /probe; returns the image id."""

    def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "probe", probe_elf(), 0o755)
    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["/probe"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    image_id = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{image_id}.json", "RepoTags": None, "Layers": ["layer.tar"]}]
    with tarfile.open(dest, mode="w") as tar:
        add(tar, f"{image_id}.json", config)
        add(tar, "layer.tar", layer.getvalue())
        add(tar, "manifest.json", json.dumps(manifest).encode())
    return "sha256:" + image_id


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (P-256, valid one day); returns (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    _openssl(*("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"),
             *("-subj", f"/CN={name}", "-keyout", key, "-out", cert))  # fmt: skip
    return cert, key


def issue(ca: tuple[Path, Path], cert: Path, key: Path, name: str, extensions: str) -> None:
    """A certificate for ``name`` signed by ``ca``, with the given X.509 v3 extensions."""
    request, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
             "-keyout", key, "-out", request)  # fmt: skip
    ext.write_text(extensions + "\n")
    _openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "1",
             "-extfile", ext, "-out", cert)  # fmt: skip
    request.unlink()
    ext.unlink()


def client_dir(directory: Path, ca: tuple[Path, Path], trusted_ca: Path) -> Path:
    """A DOCKER_CERT_PATH: a client certificate from ``ca``, and ``trusted_ca`` as the CA to check the engine with."""
    directory.mkdir(parents=True, exist_ok=True)
    issue(ca, directory / "cert.pem", directory / "key.pem", "harness-test-client", "extendedKeyUsage=clientAuth")
    shutil.copyfile(trusted_ca, directory / "ca.pem")
    return directory


class TLSEngine:
    """dockerd with --tlsverify on 127.0.0.1:PORT; ``certs`` is a DOCKER_CERT_PATH that it accepts, ``ca`` the
    (certificate, key) of its CA, and ``probe`` the id of the probe image, which this engine alone holds."""

    def __init__(self) -> None:
        binary = shutil.which("dockerd")
        if binary is None or shutil.which("openssl") is None:
            pytest.fail("the TLS engine tests need dockerd and openssl (./scripts/setup installs them)", pytrace=False)
        # Short, because containerd's socket lives under --exec-root and a unix socket path has 107 bytes at most.
        self.root = Path(tempfile.mkdtemp(prefix="harness-dockerd-"))
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self._start(binary)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: str) -> None:
        started = time.monotonic()
        ca = make_ca(self.root / "ca", "harness-test-engine-ca")
        server = self.root / "server"
        server.mkdir()
        issue(ca, server / "cert.pem", server / "key.pem", "127.0.0.1",
              "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")  # fmt: skip
        self.certs = client_dir(self.root / "client", ca, ca[0])
        self.ca = ca
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = self.root / "daemon.json"
        config.write_text("{}")  # not the machine's /etc/docker/daemon.json (its data-root, its storage driver)
        self.log = self.root / "dockerd.log"
        argv = [
            binary,
            *("--config-file", str(config)),
            *("--data-root", str(self.root / "data")),
            *("--exec-root", str(self.root / "exec")),
            *("--pidfile", str(self.root / "dockerd.pid")),
            *("-H", f"tcp://127.0.0.1:{self.port}"),
            "--tlsverify",
            *("--tlscacert", str(ca[0])),
            *("--tlscert", str(server / "cert.pem")),
            *("--tlskey", str(server / "key.pem")),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--storage-driver=vfs",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"the TLS dockerd did not start: {self.log.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.05)
        self.startup_s = time.monotonic() - started
        self.probe_archive = self.root / "probe.tar"
        self.probe = probe_archive(self.probe_archive)
        self.cli("load", "--quiet", "--input", str(self.probe_archive))

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        context.load_cert_chain(str(self.certs / "cert.pem"), str(self.certs / "key.pem"))
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=2)
        try:
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def cli(self, *args: str) -> str:
        """The docker CLI against this engine only."""
        tls = ["--tlsverify", *(f"--tls{k}={self.certs / f}" for k, f in (("cacert", "ca.pem"),
               ("cert", "cert.pem"), ("key", "key.pem")))]  # fmt: skip
        done = subprocess.run(["docker", "-H", self.host, *tls, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
        return done.stdout

    def stop(self) -> None:
        """Stop dockerd (it stops its containerd), then delete everything it made; refuse to delete through a
        mount it left behind."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()  # dockerd starts its containerd with a parent-death signal
                    self.process.wait(timeout=10)
            self.process = None
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        left = [m for m in mounts if m.startswith(str(self.root))]
        if left:
            raise AssertionError(f"the TLS dockerd left mounts under {self.root}: {left}; not deleting it")
        shutil.rmtree(self.root, ignore_errors=True)
