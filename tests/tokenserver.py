"""A token server on loopback, for a registry with ``auth: token`` (the flow of Docker Hub, GHCR, GitLab, Harbor).

The registry answers 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; the client asks the
realm (this server) for a token with its login (HTTP Basic) and the scopes, and retries with ``Authorization:
Bearer <token>``. The token is a JWT signed RS256 by a self-signed certificate (openssl; ``cryptography`` is not
installed), which the registry trusts through ``rootcertbundle`` and finds through the header's ``x5c``
(distribution's registry/auth/token: x5c, then jwk, then kid; the chain is verified against the bundle; iss must be
the configured issuer, aud the service, and exp/nbf hold within 60 s of leeway).

As the hosted token servers do, a request with no login gets an anonymous token that grants nothing (a private
repository is then refused by the registry itself), and a wrong login gets a 401 from here.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.certs import self_signed

SERVICE = "harness-test-registry"
ISSUER = "harness-test-token-issuer"
LIFETIME = 300


@dataclass(frozen=True)
class Asked:
    """One request for a token: who asked (None: nobody logged in), for which scopes, and whether it was refused."""

    account: str | None
    scopes: tuple[str, ...]
    refused: bool


class TokenServer:
    """Issues registry tokens for one user and password, on 127.0.0.1, until stop()."""

    def __init__(self, root: Path, login: tuple[str, str]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = root / "token.key", root / "token.pem"
        self_signed(self.key, self.cert, "/CN=harness test token issuer")
        # The PEM body is the base64 of the DER: what x5c holds.
        pem = self.cert.read_text().splitlines()
        self._x5c = "".join(line for line in pem if line and not line.startswith("-----"))
        self._login = login
        self.asked: list[Asked] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path != "/token" or query.get("service") != [SERVICE]:
                    self._answer(400, {"details": f"unknown path or service: {self.path}"})
                    return
                login = self.headers.get("Authorization", "")
                account = server._account(login)
                scopes = tuple(scope for value in query.get("scope", []) for scope in value.split(" ") if scope)
                refused = bool(login) and account is None
                server._record(Asked(account, scopes, refused))
                if refused:
                    self._answer(401, {"details": "incorrect username or password"}, basic=True)
                    return
                granted = scopes if account is not None else ()  # anonymous: a token that grants nothing
                token = server._token(account or "", granted)
                self._answer(200, {"token": token, "access_token": token, "expires_in": LIFETIME})

            def _answer(self, status: int, body: dict[str, object], basic: bool = False) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if basic:
                    self.send_header("WWW-Authenticate", 'Basic realm="harness-test-token"')
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _record(self, asked: Asked) -> None:
        with self._lock:
            self.asked.append(asked)

    def _account(self, header: str) -> str | None:
        """The user an ``Authorization: Basic`` header proves, or None (no header, or a wrong login)."""
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return None
        return user if scheme.lower() == "basic" and (user, password) == self._login else None

    def _token(self, subject: str, scopes: tuple[str, ...]) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + LIFETIME,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [_access(scope) for scope in scopes],
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signed.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signed}.{_b64url(signature)}"

    def registry_config(self) -> str:
        """The ``auth:`` section of a docker-registry config that trusts this server's tokens."""
        return (
            f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {self.cert}\n"
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _access(scope: str) -> dict[str, object]:
    """``repository:team/probe:pull,push`` -> the token's grant of it. The name may hold colons (a registry host
    with a port, in some scopes); the type is before the first colon, the actions after the last."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return {"type": kind, "name": name, "actions": [action for action in actions.split(",") if action]}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
