"""The only module that talks to Docker, through the engine's HTTP API (harness/docker/dockerapi.py).

Everything above this module speaks in :class:`ContainerSpec` and plain values.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.docker.dockerapi import APIError, DockerAPI, demultiplex, path_of, registry_auth
from harness.errors import EngineUnavailable, HarnessError

OutputSink = Callable[[str, bytes], None]
"""Receives ("stdout" | "stderr", chunk) as a container writes it."""

_START_HINT = (
    "start the Docker engine (`sudo systemctl start docker`, or `./scripts/setup` which installs and starts "
    "Debian's docker.io) and check it with `docker info`; set DOCKER_HOST if it listens elsewhere"
)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "target": self.target, "read_only": self.read_only}


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that decides how a container runs. The hermetic settings are the defaults."""

    image: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    tmpfs: dict[str, str] = field(default_factory=lambda: {"/tmp": "rw,nosuid,nodev,size=1g"})
    workdir: str = "/"
    user: str | None = None
    hostname: str = "harness"
    network: bool = False
    read_only_root: bool = True
    drop_capabilities: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": list(self.command),
            "env": dict(sorted(self.env.items())),
            "mounts": [m.to_dict() for m in self.mounts],
            "tmpfs": dict(self.tmpfs),
            "workdir": self.workdir,
            "user": self.user,
            "hostname": self.hostname,
            "network": "bridge" if self.network else "none",
            "read_only_root": self.read_only_root,
            "cap_drop": ["ALL"] if self.drop_capabilities else [],
            "security_opt": ["no-new-privileges"],
        }


class ContainerInterrupted(HarnessError):
    """Raised after a KeyboardInterrupt stopped and removed the container."""

    exit_code = 130


class Engine:
    """A connected Docker engine."""

    def __init__(self, api: DockerAPI) -> None:
        self._api = api

    @classmethod
    def connect(cls, timeout: int = 600) -> Engine:
        api = DockerAPI(timeout=timeout)
        try:
            with api.open("GET", "/_ping") as response:
                response.read()
        except EngineUnavailable as exc:
            raise EngineUnavailable(exc.message, _START_HINT) from None
        except APIError as exc:
            raise EngineUnavailable(f"the Docker engine at {api.host} answered: {exc.message}", _START_HINT) from None
        return cls(api)

    # -- facts --------------------------------------------------------------------------------------------
    def version(self) -> dict[str, str]:
        info = self._api.json("GET", "/version")
        return {
            "engine_version": str(info.get("Version", "")),
            "api_version": str(info.get("ApiVersion", "")),
            "os": f"{info.get('Os', '')}/{info.get('Arch', '')}",
            "kernel": str(info.get("KernelVersion", "")),
        }

    # -- images -------------------------------------------------------------------------------------------
    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        try:
            return dict(self._api.json("GET", path_of("/images/{}/json", ref)))
        except APIError as exc:
            if exc.status == 404:
                return None
            raise

    def has_image(self, image_id: str) -> bool:
        return self.inspect_image(image_id) is not None

    def load_image(self, archive: Path) -> list[str]:
        """``docker load`` an archive; returns what the engine reported loading (ids or tags)."""
        loaded: list[str] = []
        try:
            with open(archive, "rb") as fh:
                response = self._api.open(
                    "POST", "/images/load", {"quiet": False}, fh, {"Content-Type": "application/x-tar"}, stream=True
                )
                for message in self._api.messages(response):
                    if "error" in message:
                        raise HarnessError(
                            f"docker load of {archive} failed: {message['error']}",
                            "the archive was kept; run `harness env verify` to check it",
                        )
                    stream = str(message.get("stream", "")).strip()
                    for prefix in ("Loaded image ID: ", "Loaded image: "):
                        if stream.startswith(prefix):
                            loaded.append(stream[len(prefix) :])
        except APIError as exc:
            raise HarnessError(f"docker load of {archive} failed: {exc.message}") from None
        return loaded

    def tag_image(self, image_id: str, repository: str, tag: str) -> None:
        self._api.json("POST", path_of("/images/{}/tag", image_id), {"repo": repository, "tag": tag})

    def remove_image(self, ref: str) -> None:
        try:
            self._api.json("DELETE", path_of("/images/{}", ref), {"force": True})
        except APIError as exc:
            if exc.status != 404:
                raise

    def save_image(self, ref: str) -> Iterator[bytes]:
        return self._api.chunks(self._api.open("GET", path_of("/images/{}/get", ref), stream=True))

    def pull_image(self, ref: str) -> None:
        """``docker pull ref``; raises HarnessError with the engine's reason (registry down, unknown digest)."""
        name, tag = split_reference(ref)
        self._progress_stream("pull", ref, "POST", "/images/create", {"fromImage": name, "tag": tag})

    def push_image(self, ref: str) -> None:
        """``docker push ref`` (a tagged image); raises HarnessError with the engine's reason."""
        name, tag = split_reference(ref)
        self._progress_stream("push", ref, "POST", path_of("/images/{}/push", name), {"tag": tag})

    def _progress_stream(self, verb: str, ref: str, method: str, path: str, params: dict[str, Any]) -> None:
        auth = {"X-Registry-Auth": registry_auth(ref)}  # what `docker login` stored, else anonymous
        try:
            # Errors during the transfer arrive as messages in the stream, not as an HTTP status.
            response = self._api.open(method, path, params, headers=auth, stream=True)
            for message in self._api.messages(response):
                if "error" in message:
                    raise HarnessError(f"docker {verb} {ref} failed: {message['error']}")
        except APIError as exc:
            raise HarnessError(f"docker {verb} {ref} failed: {exc.message}") from None

    # -- containers ---------------------------------------------------------------------------------------
    def _create(self, spec: ContainerSpec) -> str:
        host_config = {
            "Binds": [f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts],
            "Tmpfs": dict(spec.tmpfs),
            "NetworkMode": "bridge" if spec.network else "none",
            "ReadonlyRootfs": spec.read_only_root,
            "CapDrop": ["ALL"] if spec.drop_capabilities else None,
            "SecurityOpt": ["no-new-privileges"],
            "AutoRemove": False,
        }
        body = {
            "Image": spec.image,
            "Cmd": list(spec.command),
            "Env": [f"{k}={v}" for k, v in spec.env.items()],
            "WorkingDir": spec.workdir,
            "User": spec.user or "",
            "Hostname": spec.hostname,
            "Labels": dict(spec.labels),
            "NetworkDisabled": not spec.network,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "OpenStdin": False,
            "HostConfig": host_config,
        }
        created = self._api.json("POST", "/containers/create", {"name": spec.name}, body)
        return str(created["Id"])

    def run(self, spec: ContainerSpec, sink: OutputSink | None = None, keep: bool = False) -> tuple[int, str]:
        """Run to completion, streaming output to ``sink``; returns (exit code, container id).

        The container is removed afterwards unless ``keep`` (the caller then calls :meth:`remove`).
        A KeyboardInterrupt kills and removes the container and raises :class:`ContainerInterrupted`.
        """
        try:
            container_id = self._create(spec)
        except APIError as exc:
            if exc.status == 404:
                raise HarnessError(f"image {spec.image} is not present in the Docker engine") from None
            raise HarnessError(f"could not create the container: {exc.message}") from None
        try:
            # Attach before starting (with the logs so far), so no output is lost however fast the command is.
            params = {"stream": True, "stdout": True, "stderr": True, "logs": True}
            attached = self._api.open("POST", path_of("/containers/{}/attach", container_id), params, stream=True)
            with attached:
                self._api.json("POST", path_of("/containers/{}/start", container_id))
                for stream, chunk in self._api.guarded(demultiplex(attached)):
                    if sink is not None:
                        sink(stream, chunk)
            waited = self._api.open("POST", path_of("/containers/{}/wait", container_id), stream=True)
            with waited:
                code = int(json.loads(waited.read()).get("StatusCode", 1))
        except KeyboardInterrupt:
            self.remove(container_id)
            raise ContainerInterrupted(
                "interrupted: the container was stopped and removed",
                "the run was recorded as interrupted with its log so far",
            ) from None
        except BaseException:
            self.remove(container_id)
            raise
        if not keep:
            self.remove(container_id)
        return code, container_id

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(HarnessError):
            self._api.json("DELETE", path_of("/containers/{}", container_id), {"force": True})

    def export_path(self, container_id: str, path: str, dest: IO[bytes]) -> None:
        """Write ``path`` of a (stopped) container to ``dest`` as the engine's tar stream."""
        response = self._api.open("GET", path_of("/containers/{}/archive", container_id), {"path": path}, stream=True)
        for chunk in self._api.chunks(response):
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
