"""The only module that talks to Docker, through the Docker SDK for Python (``docker``).

Everything above this module speaks in :class:`ContainerSpec` and plain values. The SDK (with requests and urllib3,
about 0.1 s of imports) is imported inside :func:`connect` and the functions it serves, so
``import harness.docker.engine`` does not load it and commands that need no engine never pay for it.

Which engine, as the docker CLI decides: DOCKER_HOST, with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, read by the
SDK's ``kwargs_from_env`` (what ``docker.from_env()`` reads); without DOCKER_HOST, the current docker context
(harness/docker/context.py); else the local socket. The API version is negotiated with the engine.

How long to wait (harness/docker/timeouts.py): connecting and each ordinary request are bounded by
HARNESS_DOCKER_TIMEOUT (30 s by default), so a hung engine is an error within seconds, not a hang. What may stay
silent for hours goes through a second client, made on first use, that has no timeout: a container's output and
its exit, a build, a load, a save, a push and a pull.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from harness.docker.attach import CHUNK, demultiplex
from harness.docker.buildstream import follow_build
from harness.docker.context import current_context
from harness.docker.interface import (
    ContainerInterrupted,
    ContainerSpec,
    ContainerVanished,
    Engine,
    LineSink,
    OutputSink,
)
from harness.docker.timeouts import not_answering, request_timeout
from harness.errors import EngineUnavailable, HarnessError

T = TypeVar("T")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
KILLED = 137  # 128 + SIGKILL: the exit status of a container that `docker rm -f` or `docker kill` ended

_START_HINT = (
    "start the Docker engine (`sudo systemctl start docker`, or `./scripts/setup` which installs and starts "
    "Debian's docker.io) and check it with `docker info`; set DOCKER_HOST or DOCKER_CONTEXT if it listens elsewhere"
)
_LOST_HINT = "check the engine with `docker info` (a restart drops every connection) and try again"


def connect(timeout: float | None = None) -> Engine:
    """The engine DOCKER_HOST or the current docker context names, reachable and answering as Docker: the one
    place harness connects to Docker.

    ``timeout`` (seconds; by default HARNESS_DOCKER_TIMEOUT, else 30) bounds connecting and each ordinary
    request's wait for an answer. A caller that would rather carry on without the engine than wait passes its
    own, shorter one. A container's output and its wait, a build, a load, a save, a push and a pull have none."""
    seconds = request_timeout(os.environ) if timeout is None else timeout
    kwargs, where, tls_hint = _client_settings(os.environ)
    client = _client_class()
    try:
        # version="auto" asks the engine for its API version: the one request that proves it is there
        api = client(version="auto", timeout=seconds, **kwargs)
    except Exception as exc:  # DockerException around requests', urllib3's and the socket's errors
        raise _unreachable(exc, where, tls_hint, seconds) from None
    # The same engine, settings and negotiated version (so making it asks the engine nothing), no timeout.
    patient = functools.partial(client, version=api.api_version, timeout=None, **kwargs)
    return DockerEngine(api, where, patient, seconds)


class DockerEngine:
    """A connected Docker engine, through the Docker SDK: the implementation of :class:`Engine`. Make one with
    :func:`connect`.

    Two SDK clients: ``api`` with the request timeout for everything that should answer promptly, and one
    without a timeout, made by ``patient`` on first use, for what may legitimately stay silent for hours."""

    def __init__(
        self,
        api: Any,
        where: str = DEFAULT_SOCKET,
        patient: Callable[[], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._api = api  # docker.APIClient
        self._where = where
        self._make_patient = patient
        self._patient_api: Any = None
        self._patient_lock = threading.Lock()  # a sweep's runs share an engine from their threads
        self._timeout = timeout

    @property
    def _patient(self) -> Any:
        """The client without a timeout (docker.APIClient); ``api`` itself when none was given."""
        with self._patient_lock:
            if self._patient_api is None:
                self._patient_api = self._make_patient() if self._make_patient is not None else self._api
            return self._patient_api

    # -- facts --------------------------------------------------------------------------------------------
    def version(self) -> dict[str, str]:
        info = getattr(self._api, "answered", None)  # asked when connecting (_client_class)
        if info is None:
            with self._talking("asking the engine its version"):
                info = self._api.version()
        return {
            "engine_version": str(info.get("Version", "")),
            "api_version": str(info.get("ApiVersion", "")),
            "os": f"{info.get('Os', '')}/{info.get('Arch', '')}",
            "kernel": str(info.get("KernelVersion", "")),
        }

    def resources(self) -> dict[str, int]:
        with self._talking("asking the engine for its host's memory and CPUs"):
            info = self._api.info()
        return {"memory": int(info.get("MemTotal") or 0), "cpus": int(info.get("NCPU") or 0)}

    # -- images -------------------------------------------------------------------------------------------
    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        from docker.errors import NotFound

        with self._talking(f"docker image inspect {ref}"):
            try:
                return dict(self._api.inspect_image(ref))
            except NotFound:
                return None

    def has_image(self, image_id: str) -> bool:
        return self.inspect_image(image_id) is not None

    def load_image(self, archive: Path) -> list[str]:
        """``docker load`` an archive; returns what the engine reported loading (ids or tags)."""
        what = f"docker load of {archive}"
        loaded: list[str] = []
        with open(archive, "rb") as fh, self._talking(what):
            # The engine answers a load only once it has read the archive, and then reports progress: no timeout.
            for message in self._patient.load_image(fh, quiet=False):
                if "error" in message:
                    raise HarnessError(
                        f"{what} failed: {message['error']}",
                        "the archive was kept; run `harness env verify` to check it",
                    )
                stream = str(message.get("stream", "")).strip()
                for prefix in ("Loaded image ID: ", "Loaded image: "):
                    if stream.startswith(prefix):
                        loaded.append(stream[len(prefix) :])
        return loaded

    def tag_image(self, image_id: str, repository: str, tag: str) -> None:
        with self._talking(f"docker tag {image_id} {repository}:{tag}"):
            self._api.tag(image_id, repository, tag)

    def remove_image(self, ref: str) -> None:
        from docker.errors import NotFound

        with self._talking(f"docker rmi {ref}"), contextlib.suppress(NotFound):
            self._api.remove_image(ref, force=True)

    def save_image(self, ref: str) -> Iterator[bytes]:
        """``docker save ref`` as it streams; a stream that ends short is an EngineUnavailable, not a short file."""
        what = f"docker save {ref}"
        with self._talking(what):
            chunks = self._patient.get_image(ref, chunk_size=CHUNK)
        return self._guarded(chunks, what)

    def pull_image(self, ref: str) -> None:
        """``docker pull ref``; raises HarnessError with the engine's reason (registry down, unknown digest)."""
        name, tag = split_reference(ref)
        what = f"docker pull {ref}"
        with self._talking(what):
            patient = self._reload_logins()
            self._follow(patient.pull(name, tag=tag, stream=True, decode=True), what)

    def build_image(
        self,
        context: IO[bytes],
        dockerfile: str,
        labels: dict[str, str],
        tag: str,
        network: str = "none",
        progress: LineSink | None = None,
    ) -> str:
        """``docker build`` (classic builder) of a tar context; returns the image id. Errors arrive in the stream,
        after the step that failed: raised as BuildFailed with that step and the engine's words."""
        what = f"docker build of {dockerfile}"
        with self._talking(what):
            # No timeout: a RUN step may stay silent for longer than any request should.
            messages = self._patient.build(
                fileobj=context,
                custom_context=True,
                dockerfile=dockerfile,
                tag=tag,
                pull=False,
                rm=True,
                forcerm=True,
                labels=dict(labels),
                network_mode=network,
                decode=True,
            )
        return follow_build(self._guarded(messages, what), what, progress)

    def push_image(self, ref: str) -> None:
        """``docker push ref`` (a tagged image); raises HarnessError with the engine's reason."""
        name, tag = split_reference(ref)
        what = f"docker push {ref}"
        with self._talking(what):
            patient = self._reload_logins()
            self._follow(patient.push(name, tag=tag, stream=True, decode=True), what)

    def _reload_logins(self) -> Any:
        """The client for a pull or a push (no timeout: a layer's upload may report nothing for minutes), with
        the logins read again.

        The SDK reads config.json (`auths`, `credsStore`, `credHelpers`) once, when the client is made, and keeps
        it while it holds any login: read it again so a `docker login` since then counts, as it does for the
        docker CLI. Credential helpers are asked by the SDK per pull or push."""
        patient = self._patient
        patient.reload_config()
        return patient

    @staticmethod
    def _follow(messages: Iterator[dict[str, Any]], what: str) -> None:
        # Errors during the transfer arrive as messages in the stream, not as an HTTP status.
        for message in messages:
            if "error" in message:
                raise HarnessError(f"{what} failed: {message['error']}")

    # -- containers ---------------------------------------------------------------------------------------
    def _create(self, spec: ContainerSpec) -> str:
        from docker.types import Mount as DockerMount

        api = self._api
        limits = spec.limits
        host_config = api.create_host_config(
            pids_limit=limits.pids,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,  # memory + swap = memory: no swap
            nano_cpus=round(limits.cpus * 1e9) if limits.cpus else None,
            oom_score_adj=limits.oom_score_adj or None,
            # Mounts, not Binds: a bind is one "source:target:mode" string, so a path holding ":" (a project in
            # "pro:ject") was "invalid volume specification"; a Mount names each part. It also never creates a
            # missing source directory on the host, as a bind would.
            mounts=[
                DockerMount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
                for m in spec.mounts
            ],
            tmpfs=dict(spec.tmpfs),
            network_mode="bridge" if spec.network else "none",
            read_only=spec.read_only_root,
            cap_drop=["ALL"] if spec.drop_capabilities else None,
            security_opt=["no-new-privileges"],
            auto_remove=False,
        )
        created = api.create_container(
            image=spec.image,
            command=list(spec.command),
            environment=dict(spec.env),
            working_dir=spec.workdir,
            user=spec.user or "",
            hostname=spec.hostname,
            labels=dict(spec.labels),
            network_disabled=not spec.network,
            host_config=host_config,
            name=spec.name,
            tty=False,
            stdin_open=False,
        )
        return str(created["Id"])

    def run(self, spec: ContainerSpec, sink: OutputSink | None = None, keep: bool = False) -> tuple[int, str]:
        """Run to completion, streaming output to ``sink``; returns (exit code, container id).

        The container is removed afterwards unless ``keep`` (the caller then calls :meth:`remove`).
        A KeyboardInterrupt kills and removes the container and raises :class:`ContainerInterrupted`.
        """
        from docker.errors import ImageNotFound, NotFound

        with self._talking("creating the container"):
            try:
                container_id = self._create(spec)
            except ImageNotFound:
                raise HarnessError(f"image {spec.image} is not present in the Docker engine") from None
        what = f"running container {container_id[:12]}"
        try:
            with self._talking(what):
                # Attach before starting (with the logs so far), so no output is lost however fast the command is.
                # The output and the exit through the client without a timeout: a run may last days.
                attached = self._patient.attach_socket(container_id, {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1})
            try:
                with self._talking(what):
                    self._api.start(container_id)
                for stream, chunk in self._guarded(demultiplex(attached), what):
                    if sink is not None:
                        sink(stream, chunk)
            finally:
                _close_attached(attached)
            with self._talking(what):
                try:
                    code = int(self._patient.wait(container_id).get("StatusCode", 1))
                except NotFound:
                    raise _vanished(container_id) from None
        except KeyboardInterrupt:
            self.remove(container_id)
            raise ContainerInterrupted(
                "interrupted: the container was stopped and removed",
                "the run was recorded as interrupted with its log so far",
            ) from None
        except BaseException:
            self.remove(container_id)
            raise
        if not keep and not self._remove_own(container_id) and code == KILLED:
            # Killed, and gone before harness removed it: someone else's `docker rm -f` ended the run.
            raise _vanished(container_id)
        return code, container_id

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(HarnessError):
            self._remove_own(container_id)

    def kill(self, container: str) -> None:
        from docker.errors import APIError, NotFound

        with self._talking(f"docker kill {container[:19]}"):
            try:
                self._api.kill(container)
            except NotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:  # "container ... is not running"
                    raise

    def oom_killed(self, container_id: str) -> bool:
        from docker.errors import NotFound

        with self._talking(f"docker inspect {container_id[:12]}"):
            try:
                state = self._api.inspect_container(container_id).get("State") or {}
            except NotFound:
                raise _vanished(container_id) from None
        if state.get("Status") in ("removing", "dead"):  # a `docker rm -f` from outside: it killed the container
            raise _vanished(container_id)
        return bool(state.get("OOMKilled"))

    def _remove_own(self, container_id: str) -> bool:
        """Remove the container; False when it was already gone or being removed by someone else."""
        from docker.errors import APIError, NotFound

        with self._talking(f"docker rm -f {container_id[:12]}"):
            try:
                self._api.remove_container(container_id, force=True)
            except NotFound:
                return False
            except APIError as exc:
                if exc.status_code == 409:  # "removal of container ... is already in progress"
                    return False
                raise
        return True

    def containers(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The containers the engine has, running or not (all of them, or those carrying every one of ``labels``):
        each its ``id``, ``name``, ``image_id``, ``state`` ("running", "exited", "created", ...) and ``labels``."""
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]} if labels else None
        with self._talking("listing containers"):
            found = self._api.containers(all=True, filters=filters)
        return [
            {
                "id": str(c["Id"]),
                "name": str((c.get("Names") or ["/"])[0]).lstrip("/"),
                "image_id": str(c.get("ImageID") or ""),
                "state": str(c.get("State") or ""),
                "labels": dict(c.get("Labels") or {}),
            }
            for c in found
        ]

    def images(self, repository: str) -> list[dict[str, Any]]:
        """The images with a tag in ``repository``: each its ``id``, ``tags`` (every repository's) and ``size``."""
        with self._talking(f"listing the images of {repository}"):
            found = self._api.images(name=repository)
        return [
            {
                "id": str(i["Id"]),
                "tags": [str(t) for t in i.get("RepoTags") or [] if t != "<none>:<none>"],
                "size": int(i.get("Size") or 0),
            }
            for i in found
        ]

    def untag_image(self, ref: str) -> None:
        """``docker rmi ref``, not forced: the tag goes, and with its last tag the image, unless a container uses
        it (then a HarnessError with the engine's words, and nothing is removed)."""
        with self._talking(f"docker rmi {ref}"):
            self._api.remove_image(ref, force=False)

    def export_path(self, container_id: str, path: str, dest: IO[bytes]) -> None:
        """Write ``path`` of a (stopped) container to ``dest`` as the engine's tar stream."""
        what = f"copying {path} out of container {container_id[:12]}"
        with self._talking(what):
            chunks, _stat = self._api.get_archive(container_id, path, chunk_size=CHUNK)
        for chunk in self._guarded(chunks, what):
            dest.write(chunk)

    def read_file(self, container_id: str, path: str) -> bytes:
        buf = io.BytesIO()
        self.export_path(container_id, path, buf)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise HarnessError(f"{path} is not a file in container {container_id[:12]}")
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    # -- errors -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Around SDK calls. The engine refusing is a HarnessError saying what failed and the engine's reason; a
        connection that breaks, a stream that ends short, or a request the engine leaves unanswered past the
        timeout is an EngineUnavailable naming the engine."""
        from docker.errors import APIError, DockerException

        try:
            yield
        except APIError as exc:
            raise HarnessError(f"{what} failed: {exc.explanation or exc}") from None
        except _broken_connection() as exc:
            if self._timeout is not None and _timed_out(_chain(exc)):
                raise not_answering(self._where, what, self._timeout) from None
            raise EngineUnavailable(
                f"lost the connection to the Docker engine at {self._where} during {what}: {_reason(exc)}", _LOST_HINT
            ) from None
        except DockerException as exc:
            raise HarnessError(f"{what} failed: {exc}") from None

    def _guarded(self, items: Iterator[T], what: str) -> Iterator[T]:
        """``items``, each read under :meth:`_talking`; what the caller does with an item is not blamed on the
        engine (a full disk while writing a saved image is the disk's error)."""
        while True:
            with self._talking(what):
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item


def split_reference(ref: str) -> tuple[str, str]:
    """(name, tag or digest) of an image reference; "latest" when it has neither, as `docker pull` does (the
    API would otherwise pull every tag). A registry's port is not a tag: host:5000/repo is (host:5000/repo,
    latest)."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    head, _, last = ref.rpartition("/")
    if ":" in last:
        repo, _, tag = last.partition(":")
        return f"{head}/{repo}" if head else repo, tag
    return ref, "latest"


@functools.cache
def _broken_connection() -> tuple[type[BaseException], ...]:
    """What the SDK's layers raise when a connection fails or a response is cut short: requests' errors (its
    ChunkedEncodingError for a short body), urllib3's and http.client's that escape them on raw reads, the
    SDK's own for a cut JSON stream, and the socket's."""
    import http.client

    import requests.exceptions
    import urllib3.exceptions
    from docker.errors import StreamParseError

    return (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        StreamParseError,
        OSError,
    )


def _timed_out(chain: list[BaseException]) -> bool:
    """Whether an error (as :func:`_chain` lists it) is a request that waited past the timeout: requests' and
    urllib3's timeouts, or the socket's own (socket.timeout, a TimeoutError without an errno; one with ETIMEDOUT
    is the kernel giving up on a connection, which is a lost connection). urllib3's NewConnectionError (a refused
    connection) subclasses its ConnectTimeoutError and is not one."""
    import requests.exceptions
    import urllib3.exceptions

    def timed_out(error: BaseException) -> bool:
        if isinstance(error, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(error, TimeoutError):
            return error.errno is None
        return isinstance(error, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError))

    return any(timed_out(error) for error in chain)


@functools.cache
def _client_class() -> Any:
    """docker.APIClient that keeps the CA its TLS settings name, and the engine's answer to /version.

    requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace a session's CA (its merge_environment_settings
    prefers the environment to ``Session.verify``: docker/docker-py#2433), so DOCKER_CERT_PATH's ca.pem would be
    ignored wherever those are set, as on machines that point Python at the system's CA bundle.

    ``answered`` is the last /version answer: connecting with version="auto" asks it, and the engine's facts for
    a record (:meth:`DockerEngine.version`) are that same answer, not a second request."""
    from docker import APIClient

    class Client(APIClient):  # type: ignore[misc]
        answered: dict[str, Any] | None = None

        def version(self, api_version: bool = True) -> Any:
            answer = super().version(api_version)
            self.answered = answer
            return answer

        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.verify is not True:  # a CA file from the TLS settings, or verification turned off
                merged["verify"] = self.verify
            return merged

    return Client


def _client_settings(environ: Mapping[str, str]) -> tuple[dict[str, Any], str, str]:
    """(docker.APIClient keyword arguments, the engine's address for messages, a hint for TLS failures)."""
    from docker.tls import TLSConfig
    from docker.utils import kwargs_from_env

    host = environ.get("DOCKER_HOST")
    if host:
        _check_scheme(host, "DOCKER_HOST")
        cert_dir = Path(environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
        tls_hint = (
            f"DOCKER_CERT_PATH ({cert_dir}) must hold ca.pem (the CA that signed the engine's certificate), and "
            "cert.pem and key.pem (a client certificate the engine accepts); check them with `docker version`"
        )
        from docker.errors import TLSParameterError

        try:
            # TLS settings apply to DOCKER_HOST only, as for the docker CLI
            return kwargs_from_env(environment=environ), f"{host} (DOCKER_HOST)", tls_hint
        except TLSParameterError:
            missing = [name for name in ("ca.pem", "cert.pem", "key.pem") if not (cert_dir / name).is_file()]
            raise EngineUnavailable(
                f"DOCKER_TLS_VERIFY or DOCKER_CERT_PATH asks for TLS to {host}, and {cert_dir} lacks "
                + ", ".join(missing),
                tls_hint,
            ) from None
    context = current_context(environ)
    if context is None or context.host is None:
        where = DEFAULT_SOCKET if context is None else f"{DEFAULT_SOCKET} (docker context {context.name})"
        return {"base_url": DEFAULT_SOCKET}, where, _START_HINT
    _check_scheme(context.host, f"docker context {context.name}")
    where = f"{context.host} (docker context {context.name}, {context.chosen_by})"
    tls_hint = (
        f"the TLS files of docker context {context.name} ({context.tls_dir or 'none'}) must hold the CA that "
        f"signed the engine's certificate and a client certificate it accepts; check with "
        f"`docker --context {context.name} version`"
    )
    if not context.tls:
        return {"base_url": context.host}, where, tls_hint
    client_cert = (str(context.cert), str(context.key)) if context.cert and context.key else None
    tls = TLSConfig(
        client_cert=client_cert,
        ca_cert=str(context.ca) if context.ca else None,
        verify=not context.skip_tls_verify,
    )
    return {"base_url": context.host, "tls": tls}, where, tls_hint


def _check_scheme(host: str, named_by: str) -> None:
    # The SDK reaches ssh:// only through paramiko (not a dependency) or by running ssh with its own socket
    # type, which the attach reader here has not been tested with.
    if host.startswith("ssh://"):
        raise EngineUnavailable(
            f"{named_by} is {host}: harness talks to Docker engines over unix:// and tcp:// (TLS included)",
            "forward the engine's socket over SSH (ssh -NL /tmp/docker.sock:/var/run/docker.sock HOST) and set "
            "DOCKER_HOST=unix:///tmp/docker.sock",
        )


def _unreachable(exc: BaseException, where: str, tls_hint: str, timeout: float) -> EngineUnavailable:
    import ssl

    from docker.errors import APIError

    chain = _chain(exc)
    if _timed_out(chain):
        return not_answering(where, "the first request (asking its API version)", timeout)
    answered = next((e for e in chain if isinstance(e, APIError)), None)
    if answered is not None:
        reason = answered.explanation or str(answered)
        return EngineUnavailable(
            f"the Docker engine at {where} answered: {reason}",
            "check that it is a Docker engine and how harness reaches it with `docker version`; one that speaks "
            "TLS needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or a docker context with its TLS files",
        )
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return EngineUnavailable(f"cannot reach the Docker engine at {where}: TLS: {_reason(exc)}", tls_hint)
    return EngineUnavailable(f"cannot reach the Docker engine at {where}: {_reason(exc)}", _START_HINT)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps, breadth first: the SDK, requests and urllib3 each wrap the socket's error, in
    ``args``, ``reason`` or ``__cause__``."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        if current.__cause__ is not None:  # not __context__: what was being handled when it was raised
            todo.append(current.__cause__)
    return found


def _reason(exc: BaseException) -> str:
    """The innermost error's words ("Connection refused"), not a wrapper's repr of the whole chain."""
    chain = _chain(exc)  # by depth, so the innermost come last
    for error in reversed(chain):
        if isinstance(error, OSError) and error.strerror:
            words = str(error.strerror)
            return words.rsplit(" (_ssl.c:", 1)[0] if words.endswith(")") else words  # not OpenSSL's line number
    return str(chain[-1]) or type(chain[-1]).__name__


def _vanished(container_id: str) -> ContainerVanished:
    return ContainerVanished(
        f"container {container_id[:12]} was removed while it ran (a `docker rm -f`, a prune or an engine restart "
        "from outside harness); the output up to then was kept",
        "run again; if a script on this machine removes containers, have it leave those labelled org.harness.* alone",
    )


def _close_attached(sock: Any) -> None:
    """Close an attach socket's HTTP response, and with it the connection. Closing the socket alone leaves the
    response holding it open until garbage collection, which then fails noisily flushing a closed file; the
    SDK keeps the response on the socket for this (``_get_raw_response_socket``)."""
    response = getattr(sock, "_response", None)
    with contextlib.suppress(OSError):
        (response or sock).close()
