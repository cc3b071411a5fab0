"""Debian's docker-registry on loopback, for tests that pull and push (no public registry is reachable)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.tokenserver import TokenServer


class Registry:
    """Debian's docker-registry serving on 127.0.0.1 (docker allows plain http to 127.0.0.0/8)."""

    def __init__(
        self, root: Path, login: tuple[str, str] | None = None, tls: TLS | None = None, token: TokenServer | None = None
    ) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.fail("docker-registry is not installed; run ./scripts/setup", pytrace=False)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        text = (
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{self.port}\n"
        )
        if tls is not None:  # https only, with a certificate signed by the test's own CA
            text += f"  tls:\n    certificate: {tls.cert}\n    key: {tls.key}\n"
        if login is not None:  # basic auth: the registry asks for this user and password (bcrypt in htpasswd)
            user, password = login
            (root / "htpasswd").write_text(f"{user}:{_bcrypt(password)}\n")
            text += f"auth:\n  htpasswd:\n    realm: harness-test\n    path: {root / 'htpasswd'}\n"
        elif token is not None:  # token auth: the registry sends clients to the token server for a signed JWT
            text += token.registry_config()
        self.tls = tls
        self.root = root
        config.write_text(text)
        self.log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [binary, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}", pytrace=False)
            time.sleep(0.1)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        """Where the registry keeps its blobs: data/docker/registry/v2/blobs/sha256/<ab>/<digest>/data."""
        return self.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"

    def blob_path(self, digest: str) -> Path:
        return self.data / digest[:2] / digest / "data"

    def _answers(self) -> bool:
        import ssl

        scheme = "https" if self.tls else "http"
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        try:
            with urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=1, context=context) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for a login
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
            self.log.close()


class TLS:
    """A CA of the test's own and a server certificate it signed for 127.0.0.1 (openssl)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = root / "ca.pem", root / "server.pem", root / "server.key"
        ca_key, csr, ext = root / "ca.key", root / "server.csr", root / "ext.cnf"
        ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
        self_signed(ca_key, self.ca, "/CN=harness test CA")
        for argv in (
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            [
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                self.ca,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-out",
                self.cert,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        ):
            subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)


def _bcrypt(password: str) -> str:
    """The registry's htpasswd takes bcrypt only: glibc's, through the crypt module (gone in Python 3.13, where
    apache2-utils' htpasswd is used instead)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            crypt = None  # type: ignore[assignment]
    if crypt is not None:
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if shutil.which("htpasswd") is None:
        pytest.fail("bcrypt needs the crypt module or htpasswd (apt-get install apache2-utils)", pytrace=False)
    line = subprocess.run(["htpasswd", "-nbB", "u", password], capture_output=True, text=True, check=True).stdout
    return line.strip().split(":", 1)[1]
