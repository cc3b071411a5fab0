"""The registry, through ``oras`` (oras-py, the OCI Registry As Storage client): the only importer of it.

oras gives the registry's login (docker's config.json: ``auths``, ``credsStore``, ``credHelpers``; Basic auth or
the token flow of Docker Hub, GHCR, GitLab, Harbor) and the requests made under it. It is imported when a
registry first asks for a login: its import (jsonschema with it) costs 0.3 s and more, which a registry that asks
for none, and a push that has nothing to send, need not spend; until then requests are plain ``requests``.
On top of it this module adds what harness needs and oras 0.2 does not do:
- exact manifest bytes: oras would re-serialize a manifest, which changes its digest; an image manifest must keep
  the digest recorded in the run;
- streaming blob uploads (oras reads a whole blob into memory for a monolithic upload) and downloads from an
  offset (HTTP Range), so an interrupted pull of a large object resumes;
- errors in harness's form: an unreachable registry, an untrusted certificate, a refused login, named as such.
  oras retries every failed request five times with sleeps of 3 to 83 s (two minutes for a refused
  connection); harness calls the request without that retry and retries only a dropped connection, briefly.
  oras sets no timeout either: every request, through oras or not, gets TIMEOUT (a hung registry is an error).
- a token per scope: oras keeps one bearer token and, when the registry answers it with a 401, sends the same
  token again; a registry asks for a scope per request (``repository:team/x:pull``, then ``...:pull,push``), and
  the token got when the login was proved on ``/v2/`` grants none, so every request was refused. On that 401 a new
  token is asked for the scope the registry names (also what renews an expired token).

Which scheme: https, verified against the system's CAs (``REQUESTS_CA_BUNDLE`` replaces them), or against
``/etc/docker/certs.d/<host:port>/ca.crt`` when docker has one for the registry. A registry on a loopback address
is spoken to over plain http unless it speaks TLS, as docker does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from harness.errors import HarnessError, NotFound, RemoteError
from harness.remote.reference import Reference

if TYPE_CHECKING:
    import logging

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join(
    [
        MEDIA_OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
CHUNK = 1 << 20
# (connect, read) seconds for every request to the registry, the login's and the token service's included: a
# registry that stops answering is an error, never a hang. A read waits for the next bytes, not the whole body.
TIMEOUT = (30, 600)
_CERTS_D = Path("/etc/docker/certs.d")
_ATTEMPTS = 3


def docker_config() -> Path:
    """docker's config.json, where `docker login` keeps logins (DOCKER_CONFIG moves it, as for docker)."""
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base).expanduser() if base else Path.home() / ".docker") / "config.json"


class Registry:
    """One OCI repository, connected: the requests harness makes of it. Make one with :func:`connect`."""

    def __init__(self, ref: Reference, session: Any, scheme: str, verify: bool | str) -> None:
        self.ref = ref
        self._session = session  # plain requests, until the registry asks for a login
        self._oras: Any = None  # oras.provider.Registry, once it has
        self._scheme = scheme
        self._verify = verify
        self._auth: dict[str, str] = {}  # a Basic header sent with every request (no 401 round trip, no re-sent body)
        self._bearer = False  # the token flow: a 401 asks for a new token
        self._stored = False  # docker had a login stored for the registry
        self.requests = 0  # made so far, for tests and the benchmark

    def login(self, challenge: str) -> None:
        """Log in as docker would (its config.json and credential helpers, through oras), for Basic or token
        auth as the registry's challenge asks, and prove the login with one request."""
        import logging

        import oras.provider

        logging.getLogger("oras.logger").addFilter(_no_oras_errors)  # added once: the same function each time
        backend = "basic" if challenge.lower().startswith("basic") else "token"
        registry = oras.provider.Registry(
            hostname=self.ref.registry, insecure=self._scheme == "http", tls_verify=self._verify, auth_backend=backend
        )
        timed(registry.session)  # oras sets no timeout; its auth asks the token service through this session too
        config = docker_config()
        container = registry.get_container(str(self.ref))
        registry.auth.load_configs(container, configs=[str(config)] if config.is_file() else [])
        basic = getattr(registry.auth, "_basic_auth", None)
        self._stored = bool(basic)
        if backend == "basic":
            if not basic:
                raise _no_login(self.ref)
            self._auth = {"Authorization": f"Basic {basic}"}
        self._bearer = backend == "token"  # with no login stored, oras asks for an anonymous token (public images)
        self._oras = registry
        if basic:  # a stored login: prove it now, with a clear error, rather than in the middle of a transfer
            response = self._request("GET", f"{self._scheme}://{self.ref.registry}/v2/")
            if response.status_code != 200:
                raise self._refused(_errors(response))

    # -- plumbing -----------------------------------------------------------------------------------------
    def _url(self, tail: str) -> str:
        return f"{self._scheme}://{self.ref.registry}/v2/{self.ref.repository}/{tail}"

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> Any:
        if self._oras is None:
            return self._session.request(method, url, headers=headers, **kwargs)
        request = type(self._oras).do_request.__wrapped__  # without oras's five slow retries (see the docstring)
        response = request(self._oras, url, method, headers=headers, **kwargs)
        if response.status_code == 401 and self._bearer:  # a token without this scope (or expired): a new one
            headers, changed = self._oras.auth.authenticate_request(response, dict(headers), refresh=True)
            if changed:
                response = self._oras.session.request(method, url, headers=headers, verify=self._verify, **kwargs)
        return response

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        headers = {**self._auth, **kwargs.pop("headers", {})}
        for attempt in range(_ATTEMPTS):
            self.requests += 1
            try:
                response = self._send(method, url, dict(headers), **kwargs)
                if response.status_code == 401 and self._oras is None:  # a login only some paths ask for
                    self.login(response.headers.get("WWW-Authenticate", ""))
                    headers = {**self._auth, **headers}
                    response = self._send(method, url, dict(headers), **kwargs)
            except requests.exceptions.SSLError as exc:
                raise _untrusted(self.ref, exc) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                rewindable = not isinstance(kwargs.get("data"), _Body)
                if attempt + 1 < _ATTEMPTS and rewindable:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise _unreachable(self.ref, exc) from None
            except ValueError:  # oras: "Cannot respond to request for authentication." (no token was given)
                raise self._refused("its token service gave no token for this login") from None
            if response.status_code in (401, 403):
                raise self._refused(_errors(response))
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, detail: str) -> RemoteError:
        return _refused_login(self.ref, detail) if self._stored else _no_login(self.ref)

    def _check(self, response: Any, what: str) -> Any:
        if response.status_code >= 400:
            raise RemoteError(
                f"registry {self.ref.registry} refused {what}: HTTP {response.status_code} {_errors(response)}",
                "check the repository name and your permissions on it; nothing on this machine was changed",
            )
        return response

    # -- blobs ----------------------------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        response = self._request("HEAD", self._url(f"blobs/sha256:{digest}"))
        if response.status_code == 404:
            return False
        self._check(response, f"a look at blob sha256:{digest}")
        return True

    def upload(self, digest: str, size: int, source: IO[bytes] | bytes) -> None:
        """Upload one blob of known digest and size in two requests (POST, then PUT of the body, streamed)."""
        started = self._check(self._request("POST", self._url("blobs/uploads/")), "starting an upload")
        location = started.headers.get("Location", "")
        if not location.startswith("http"):
            location = f"{self._scheme}://{self.ref.registry}{location}"
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        body = source if isinstance(source, bytes) else _Body(source, size)
        response = self._request("PUT", f"{location}{sep}digest=sha256:{digest}", data=body, headers=headers)
        self._check(response, f"blob sha256:{digest} ({size} bytes)")

    @contextmanager
    def blob(self, digest: str, offset: int = 0) -> Iterator[tuple[Iterator[bytes], int]]:
        """The blob's bytes from ``offset`` on, as chunks, with the number of bytes to expect. NotFound when the
        registry does not have it."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._request("GET", self._url(f"blobs/sha256:{digest}"), headers=headers, stream=True)
        try:
            if response.status_code == 404:
                raise NotFound(
                    f"registry {self.ref} does not have blob sha256:{digest}",
                    "push the run again from the machine that has it (`harness push RUN`)",
                )
            self._check(response, f"blob sha256:{digest}")
            skip = offset if response.status_code != 206 else 0  # no range support: the whole blob, head dropped
            length = int(response.headers.get("Content-Length", "-1")) - skip
            yield _chunks(response, self.ref, skip), length
        finally:
            response.close()

    # -- manifests and tags --------------------------------------------------------------------------------
    def manifest(self, reference: str) -> tuple[bytes, str] | None:
        """(bytes, sha256 hex) of a manifest by tag or ``sha256:`` digest; None when there is none. When asked by
        digest, bytes that do not hash to it are refused."""
        response = self._request("GET", self._url(f"manifests/{reference}"), headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, f"manifest {reference}")
        data = response.content
        digest = hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and reference != f"sha256:{digest}":
            from harness.errors import StoreCorruption

            raise StoreCorruption(
                f"registry {self.ref} sent manifest {reference} whose bytes hash to sha256:{digest}: it was "
                "altered or truncated; nothing was used",
                "push the run again from a machine that has it; check the registry's storage",
            )
        return data, digest

    def put_manifest(self, reference: str, data: bytes, media_type: str = MEDIA_OCI_MANIFEST) -> None:
        response = self._request(
            "PUT", self._url(f"manifests/{reference}"), data=data, headers={"Content-Type": media_type}
        )
        self._check(response, f"manifest {reference}")

    def tags(self) -> list[str]:
        """Every tag of the repository (following the registry's pages); none for a repository not pushed yet."""
        found: list[str] = []
        url: str | None = self._url("tags/list?n=1000")
        while url:
            response = self._request("GET", url)
            if response.status_code == 404:
                return found
            self._check(response, "the list of tags")
            found += list(response.json().get("tags") or [])
            link = response.headers.get("Link", "")
            url = None
            if 'rel="next"' in link:
                tail = link.split(";")[0].strip("<> ")
                url = tail if tail.startswith("http") else f"{self._scheme}://{self.ref.registry}{tail}"
        return found


class _Body:
    """A file sent as the body of a request in 1 MiB pieces: urllib3 reads a file object 16 kB at a time, 65,000
    reads for 1 GB; an iterable with a length it sends as it comes, with a Content-Length."""

    def __init__(self, source: IO[bytes], size: int) -> None:
        self.source = source
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.source.read(CHUNK):
            yield chunk


def connect(ref: Reference) -> Registry:
    """Reach the registry (one request to ``/v2/``), pick http or https, and log in as docker would when it asks
    for a login (then, and only then, through oras: importing it and its jsonschema costs 0.3 s and more, which a
    push that has nothing to send would otherwise spend)."""
    import requests

    verify: bool | str = True
    ca = _CERTS_D / ref.registry / "ca.crt"
    if ca.is_file():
        verify = str(ca)
    # A loopback registry is asked over http first (docker asks over https first, which costs a TLS handshake
    # with a server that does not speak TLS); Go's server answers plain http on its TLS port with a 400 that says so.
    scheme = "http" if ref.loopback else "https"
    probe = _probe(ref, scheme, verify)
    if probe is None or (scheme == "http" and probe.status_code == 400 and "HTTPS" in probe.text):
        scheme = "https"
        probe = _probe(ref, scheme, verify)
    assert probe is not None
    session = timed(requests.Session())
    session.verify = verify
    client = Registry(ref, session, scheme, verify)
    if probe.status_code == 401:
        client.login(probe.headers.get("WWW-Authenticate", ""))
    return client


def timed(session: Any) -> Any:
    """``session`` (a requests.Session), each of its requests given TIMEOUT unless it names its own."""
    from requests import PreparedRequest, Response
    from requests.adapters import HTTPAdapter

    class Timed(HTTPAdapter):
        def send(
            self,
            request: PreparedRequest,
            stream: bool = False,
            timeout: Any = None,
            verify: bool | str = True,
            cert: Any = None,
            proxies: Any = None,
        ) -> Response:
            return super().send(request, stream, TIMEOUT if timeout is None else timeout, verify, cert, proxies)

    for prefix in ("https://", "http://"):
        session.mount(prefix, Timed())
    return session


def _probe(ref: Reference, scheme: str, verify: bool | str) -> Any:
    import requests

    try:
        return requests.get(f"{scheme}://{ref.registry}/v2/", timeout=30, verify=verify)
    except requests.exceptions.SSLError as exc:
        raise _untrusted(ref, exc) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        if ref.loopback and scheme == "http" and "Connection refused" not in str(exc):
            return None  # a TLS server that dropped a plain request: ask it over https
        raise _unreachable(ref, exc) from None


def _chunks(response: Any, ref: Reference, skip: int = 0) -> Iterator[bytes]:
    import requests

    try:
        for chunk in response.iter_content(chunk_size=CHUNK):
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            if chunk:
                yield chunk
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise _unreachable(ref, exc, during="a download") from None


def _errors(response: Any) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, Mapping)) or ""
    except (ValueError, AttributeError):
        return (response.text or "")[:200].strip()


def _untrusted(ref: Reference, exc: BaseException) -> RemoteError:
    reason = _reason(exc)
    return RemoteError(
        f"registry {ref.registry} presented a TLS certificate this machine does not trust: {reason}; nothing was sent",
        f"if you trust it, give its CA to harness as docker takes it: /etc/docker/certs.d/{ref.registry}/ca.crt, "
        "or a CA bundle in REQUESTS_CA_BUNDLE",
    )


def _unreachable(ref: Reference, exc: BaseException, during: str = "") -> RemoteError:
    where = f" during {during}" if during else ""
    return RemoteError(
        f"cannot reach registry {ref.registry}{where}: {_reason(exc)}",
        "check the address and that the registry is up; what was transferred and verified is kept, so running "
        "the same command again resumes",
    )


def _no_oras_errors(record: logging.LogRecord) -> bool:
    """Drop oras's error lines: harness names each failure itself, and oras's would mislead (on a refused token it
    prints "Please use basic auth with a username or password", when that is what was refused). Its warnings stay
    (a credential helper that is missing or failed)."""
    return record.levelno < 40  # logging.ERROR (logging is imported with oras, not before)


def _no_login(ref: Reference) -> RemoteError:
    return RemoteError(
        f"registry {ref.registry} asks for a login for {ref}, and docker has none stored for it ({docker_config()})",
        f"log in with `docker login {ref.registry}` (harness uses docker's logins and credential helpers)",
    )


def _refused_login(ref: Reference, detail: str) -> RemoteError:
    return RemoteError(
        f"registry {ref.registry} refused the login for {ref}" + (f": {detail}" if detail else ""),
        f"log in again with `docker login {ref.registry}` (a wrong password or user), or ask for access to the "
        "repository",
    )


def _reason(exc: BaseException) -> str:
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 6:
        text = str(current).strip()
        if text and text not in seen:
            seen.append(text)
        current = current.__cause__ or current.__context__
        if current is not None and current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
    message = seen[-1] if seen else type(exc).__name__
    for text in seen:
        found = re.search(r"certificate verify failed:?\s*([^(]*)", text)
        if found:
            return "certificate verify failed" + (f": {found.group(1).strip()}" if found.group(1).strip() else "")
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if any(marker in text for text in seen):
            return marker
    return message[:300]


def blob_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise HarnessError("the registry sent a document that is not JSON") from None


Progress = Callable[[int, int], None]
