"""The only module that talks to Docker (through the docker SDK, imported lazily).

Everything above this module speaks in :class:`ContainerSpec` and plain values; nothing else imports docker.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import EngineUnavailable, HarnessError

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

    def __init__(self, client: Any) -> None:
        self._client = client
        self._api = client.api

    @classmethod
    def connect(cls, timeout: int = 600) -> Engine:
        try:
            import docker
            from docker.errors import DockerException
        except ImportError as exc:  # pragma: no cover - dependency missing
            raise EngineUnavailable(f"the docker SDK is not installed: {exc}", "pip install docker") from exc
        try:
            client = docker.from_env(timeout=timeout)
            client.ping()
        except DockerException as exc:
            raise EngineUnavailable(f"cannot reach the Docker engine: {_short(exc)}", _START_HINT) from None
        except Exception as exc:  # requests' connection errors surface in several types
            raise EngineUnavailable(f"cannot reach the Docker engine: {_short(exc)}", _START_HINT) from None
        return cls(client)

    # -- facts --------------------------------------------------------------------------------------------
    def version(self) -> dict[str, str]:
        info = self._api.version()
        return {
            "engine_version": str(info.get("Version", "")),
            "api_version": str(info.get("ApiVersion", "")),
            "os": f"{info.get('Os', '')}/{info.get('Arch', '')}",
            "kernel": str(info.get("KernelVersion", "")),
        }

    # -- images -------------------------------------------------------------------------------------------
    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        from docker.errors import ImageNotFound, NotFound

        try:
            return dict(self._api.inspect_image(ref))
        except (ImageNotFound, NotFound):
            return None

    def has_image(self, image_id: str) -> bool:
        return self.inspect_image(image_id) is not None

    def load_image(self, archive: Path) -> list[str]:
        """``docker load`` an archive; returns what the engine reported loading (ids or tags)."""
        from docker.errors import APIError

        loaded: list[str] = []
        try:
            with open(archive, "rb") as fh:
                for message in self._api.load_image(fh):
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
            raise HarnessError(f"docker load of {archive} failed: {_short(exc)}") from None
        return loaded

    def tag_image(self, image_id: str, repository: str, tag: str) -> None:
        self._api.tag(image_id, repository, tag)

    def remove_image(self, ref: str) -> None:
        from docker.errors import ImageNotFound, NotFound

        with contextlib.suppress(ImageNotFound, NotFound):
            self._api.remove_image(ref, force=True)

    def save_image(self, ref: str) -> Iterator[bytes]:
        return iter(self._api.get_image(ref))

    def pull_image(self, ref: str) -> None:
        """``docker pull ref``; raises HarnessError with the engine's reason (registry down, unknown digest)."""
        from docker.errors import APIError

        try:
            # Errors during the transfer arrive as messages in the stream, not as an HTTP status.
            for message in self._api.pull(ref, stream=True, decode=True):
                if "error" in message:
                    raise HarnessError(f"docker pull {ref} failed: {message['error']}")
        except APIError as exc:
            raise HarnessError(f"docker pull {ref} failed: {_short(exc)}") from None

    def push_image(self, ref: str) -> None:
        """``docker push ref`` (a tagged image); raises HarnessError with the engine's reason."""
        from docker.errors import APIError

        try:
            for message in self._api.push(ref, stream=True, decode=True):
                if "error" in message:
                    raise HarnessError(f"docker push {ref} failed: {message['error']}")
        except APIError as exc:
            raise HarnessError(f"docker push {ref} failed: {_short(exc)}") from None

    # -- containers ---------------------------------------------------------------------------------------
    def _create(self, spec: ContainerSpec) -> str:
        host_config = self._api.create_host_config(
            binds={str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
            tmpfs=dict(spec.tmpfs),
            network_mode="bridge" if spec.network else "none",
            read_only=spec.read_only_root,
            cap_drop=["ALL"] if spec.drop_capabilities else None,
            security_opt=["no-new-privileges"],
            auto_remove=False,
        )
        created = self._api.create_container(
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
            detach=True,
            tty=False,
            stdin_open=False,
        )
        return str(created["Id"])

    def run(self, spec: ContainerSpec, sink: OutputSink | None = None, keep: bool = False) -> tuple[int, str]:
        """Run to completion, streaming output to ``sink``; returns (exit code, container id).

        The container is removed afterwards unless ``keep`` (the caller then calls :meth:`remove`).
        A KeyboardInterrupt kills and removes the container and raises :class:`ContainerInterrupted`.
        """
        from docker.errors import APIError, ImageNotFound

        try:
            container_id = self._create(spec)
        except ImageNotFound:
            raise HarnessError(f"image {spec.image} is not present in the Docker engine") from None
        except APIError as exc:
            raise HarnessError(f"could not create the container: {_short(exc)}") from None
        try:
            stream = self._api.attach(container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
            self._api.start(container_id)
            for out, err in stream:
                if sink is not None:
                    if out:
                        sink("stdout", out)
                    if err:
                        sink("stderr", err)
            status = self._api.wait(container_id)
            code = int(status.get("StatusCode", 1))
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
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):
            self._api.remove_container(container_id, force=True)

    def export_path(self, container_id: str, path: str, dest: IO[bytes]) -> None:
        """Write ``path`` of a (stopped) container to ``dest`` as the engine's tar stream."""
        chunks, _stat = self._api.get_archive(container_id, path)
        for chunk in chunks:
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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
