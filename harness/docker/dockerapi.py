"""A minimal client for the Docker Engine HTTP API, over the engine's unix socket (or plain tcp).

Only harness/engine.py uses it. It replaces the docker SDK, whose import (requests, urllib3 and the SDK itself)
took about 0.1 s of every `harness run` (`python -X importtime -c "import docker"`), for the dozen endpoints
harness calls. Requests go to the unversioned paths, which the engine serves at its own API version.

DOCKER_HOST may be unix:///path or tcp://host:port. TLS (DOCKER_TLS_VERIFY) is refused with a clear error:
reach such an engine through an SSH tunnel to its socket instead.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import http.client
import json
import os
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from harness.errors import EngineUnavailable, HarnessError

DEFAULT_SOCKET = "/var/run/docker.sock"
T = TypeVar("T")
CHUNK = 1 << 16


class APIError(HarnessError):
    """The engine answered a request with an error status; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=CHUNK)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerAPI:
    """One HTTP connection per request: requests are few, and a streaming response owns its connection."""

    def __init__(self, host: str | None = None, timeout: float = 600) -> None:
        self.host = host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        self.timeout = timeout
        if os.environ.get("DOCKER_TLS_VERIFY"):
            raise EngineUnavailable(
                f"DOCKER_TLS_VERIFY is set for {self.host}, and harness speaks to the engine without TLS",
                "forward the engine's unix socket over SSH (ssh -L /tmp/docker.sock:/var/run/docker.sock HOST) "
                "and set DOCKER_HOST=unix:///tmp/docker.sock, with DOCKER_TLS_VERIFY unset",
            )
        url = urlsplit(self.host)
        if url.scheme not in ("unix", "tcp", "http"):
            raise EngineUnavailable(
                f"DOCKER_HOST={self.host}: harness supports unix:// and tcp:// engine addresses",
                "set DOCKER_HOST to unix:///var/run/docker.sock (the default) or tcp://HOST:PORT",
            )
        self._url = url

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._url.scheme == "unix":
            return _UnixConnection(self._url.path or DEFAULT_SOCKET, timeout)
        host, port = self._url.hostname or "localhost", self._url.port or 2375
        return http.client.HTTPConnection(host, port, timeout=timeout, blocksize=CHUNK)

    def open(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> http.client.HTTPResponse:
        """Send one request and return the response with its body unread; an error status raises APIError.

        ``body`` is a dict (sent as JSON), bytes, or a binary file (streamed). A ``stream`` request has no
        timeout: a container may run, or a pull take, as long as it needs."""
        query = "?" + urlencode({k: _param(v) for k, v in params.items() if v is not None}) if params else ""
        # One connection per request, closed by the engine after its answer: nothing stays open in between.
        sent: dict[str, str] = {"Host": "docker", "Connection": "close", **(headers or {})}
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if hasattr(body, "read"):
            sent["Content-Length"] = str(os.fstat(body.fileno()).st_size)
        conn = self._connection(None if stream else self.timeout)
        try:
            conn.request(method, path + query, body=body, headers=sent)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise EngineUnavailable(f"cannot reach the Docker engine at {self.host}: {_reason(exc)}") from None
        if response.status >= 400:
            raw = response.read()
            conn.close()
            raise APIError(response.status, _error_message(raw, response.status))
        return response

    def json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        response = self.open(method, path, params, body)
        with response, self.reading():
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def messages(self, response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        """The JSON objects of a progress stream (pull, push, load), as the engine sends them."""
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may straddle two reads
        buffer = ""
        with response, self.reading():
            while chunk := response.read1(CHUNK):
                buffer += text.decode(chunk)
                while True:
                    buffer = buffer.lstrip()
                    try:
                        message, end = decoder.raw_decode(buffer)
                    except json.JSONDecodeError:
                        break  # an incomplete object: wait for more bytes
                    buffer = buffer[end:]
                    if isinstance(message, dict):
                        yield message
            _check_complete(response)

    def chunks(self, response: http.client.HTTPResponse) -> Iterator[bytes]:
        with response, self.reading():
            while chunk := response.read1(CHUNK):
                yield chunk
            _check_complete(response)

    def guarded(self, items: Iterator[T]) -> Iterator[T]:
        """``items``, read under :meth:`reading`; what the caller does with each item is not guarded."""
        while True:
            with self.reading():
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around reading a response: a connection lost half-way (the engine restarted, say) is an
        EngineUnavailable naming the engine, not a traceback."""
        try:
            yield
        except (OSError, http.client.HTTPException) as exc:
            raise EngineUnavailable(
                f"lost the connection to the Docker engine at {self.host} while reading its answer: {_reason(exc)}",
                "check the engine with `docker info` (a restart drops every connection) and try again",
            ) from None


def _check_complete(response: http.client.HTTPResponse) -> None:
    """http.client ends a body that stops short of its Content-Length quietly; a cut stream must not pass for a
    whole one (a truncated image archive, say)."""
    if response.length:  # bytes still owed
        raise http.client.IncompleteRead(b"", response.length)


def registry_auth(image: str) -> str:
    """The X-Registry-Auth header for pulling or pushing ``image``: the credentials `docker login` stored for its
    registry (a credential helper, or an "auth" entry of ~/.docker/config.json, or $DOCKER_CONFIG's), or empty
    credentials, which an anonymous registry accepts and which the engine requires for a push."""
    host = _registry_of(image)
    config = _docker_config()
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    entry = _config_entry(config.get("auths") or {}, host)
    creds: dict[str, str] = {}
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode("utf-8", "replace").partition(":")
        creds = {"username": user, "password": password}
    elif entry.get("identitytoken"):
        creds = {"identitytoken": entry["identitytoken"]}
    elif helper:
        creds = _from_helper(str(helper), host)
    if creds:
        creds["serveraddress"] = host
    return base64.urlsafe_b64encode(json.dumps(creds).encode()).decode()


def _registry_of(image: str) -> str:
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "https://index.docker.io/v1/"  # Docker Hub, under the key `docker login` stores it


def _docker_config() -> dict[str, Any]:
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _config_entry(auths: dict[str, Any], host: str) -> dict[str, str]:
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
        if isinstance(auths.get(key), dict):
            return dict(auths[key])
    return {}


def _from_helper(helper: str, host: str) -> dict[str, str]:
    """docker-credential-<helper> get: the registry on stdin, {"Username", "Secret"} on stdout; nothing stored
    for this registry (or no such helper) means anonymous."""
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=host.encode(), capture_output=True, timeout=30, check=False
        )
        found = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    if not isinstance(found, dict) or not found.get("Secret"):
        return {}
    if found.get("Username") == "<token>":
        return {"identitytoken": str(found["Secret"])}
    return {"username": str(found.get("Username", "")), "password": str(found["Secret"])}


def demultiplex(raw: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """("stdout" | "stderr", bytes) frames of an attach stream without a TTY: an 8-byte header (stream type,
    three zero bytes, big-endian payload length), then the payload."""
    names = {0: "stdout", 1: "stdout", 2: "stderr"}
    while header := _read_exactly(raw, 8):
        kind, size = struct.unpack(">BxxxL", header)
        payload = _read_exactly(raw, size)
        if payload:
            yield names.get(kind, "stdout"), payload


def _read_exactly(raw: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    while size > 0:
        piece = raw.read(size)
        if not piece:
            break
        parts.append(piece)
        size -= len(piece)
    return b"".join(parts)


def path_of(template: str, *parts: str) -> str:
    """An API path with each part quoted as the docker CLI does: "/", ":" and "@" of image names stay as
    they are (the engine's routes take a name with slashes), anything else unusual is escaped."""
    return template.format(*(quote(p, safe="/:@") for p in parts))


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _error_message(raw: bytes, status: int) -> str:
    try:
        return str(json.loads(raw)["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace").strip() or f"HTTP {status}"


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
