"""What the rest of harness knows of a container engine: the :class:`Engine` protocol and the values it takes.

The one implementation is :class:`harness.docker.engine.DockerEngine`, made by :func:`harness.docker.engine.connect`,
the one place a connection to Docker is made. Importing this module imports no Docker client, so code that only
describes containers (a run's mounts and settings) never loads one. Tests put a fake behind the protocol only for
failures the real engine cannot produce on demand (an engine that dies half way through a run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from harness.errors import HarnessError

OutputSink = Callable[[str, bytes], None]
"""Receives ("stdout" | "stderr", chunk) as a container writes it."""

LineSink = Callable[[str], None]
"""Receives a build's output, one line at a time."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "target": self.target, "read_only": self.read_only}


@dataclass(frozen=True)
class ContainerLimits:
    """What the engine enforces on a container; None is no limit. Memory is RAM alone: memory plus swap is set
    to the same number, so a container cannot swap. ``oom_score_adj`` makes the kernel, out of memory on the
    whole host, kill the container's processes before the user's other work."""

    pids: int | None = None
    memory: int | None = None  # bytes
    cpus: float | None = None
    oom_score_adj: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"pids": self.pids, "memory": self.memory, "cpus": self.cpus, "oom_score_adj": self.oom_score_adj}


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
    limits: ContainerLimits = ContainerLimits()

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
            "limits": self.limits.to_dict(),
        }


class ContainerVanished(HarnessError):
    """The container was removed by someone else while it ran."""


class ContainerInterrupted(HarnessError):
    """Raised after a KeyboardInterrupt stopped and removed the container."""

    exit_code = 130


class BuildFailed(HarnessError):
    """``docker build`` stopped: the engine's words, and the step it stopped at as the builder counts them."""

    def __init__(self, message: str, reason: str, step: int | None, step_text: str, tail: tuple[str, ...]) -> None:
        super().__init__(message)
        self.reason = reason  # the engine's own error
        self.step = step  # 1-based, as in the builder's "Step N/M"; None if it failed before the first step
        self.step_text = step_text  # "RUN make" as the builder printed it
        self.tail = tail  # the last lines of the build's output


class Engine(Protocol):
    """A connected container engine: images in and out, and containers run to completion."""

    def version(self) -> dict[str, str]:
        """engine_version, api_version, os, kernel."""
        ...

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """The engine's description of an image (its ``Id``, ``RepoTags``, ...), or None if it has none."""
        ...

    def has_image(self, image_id: str) -> bool: ...

    def load_image(self, archive: Path) -> list[str]:
        """``docker load`` an archive; what the engine reported loading (ids or tags)."""
        ...

    def tag_image(self, image_id: str, repository: str, tag: str) -> None: ...

    def remove_image(self, ref: str) -> None: ...

    def save_image(self, ref: str) -> Iterator[bytes]:
        """``docker save`` as it streams; a stream cut short is an error, never a short archive."""
        ...

    def pull_image(self, ref: str) -> None: ...

    def build_image(
        self,
        context: IO[bytes],
        dockerfile: str,
        labels: dict[str, str],
        tag: str,
        network: str = "none",
        progress: LineSink | None = None,
    ) -> str:
        """``docker build`` with the classic builder from a tar build context holding ``dockerfile``: FROM images
        the engine has are not pulled again; RUN steps get ``network`` ("none", "host", "bridge"); intermediate
        containers are removed, even on failure. Each output line goes to ``progress``. Returns the image id,
        tagged ``tag``; a failure raises :class:`BuildFailed`."""
        ...

    def push_image(self, ref: str) -> None: ...

    def run(self, spec: ContainerSpec, sink: OutputSink | None = None, keep: bool = False) -> tuple[int, str]:
        """Run to completion, streaming output to ``sink``; (exit code, container id). The container is removed
        unless ``keep``. A KeyboardInterrupt removes it and raises :class:`ContainerInterrupted`."""
        ...

    def remove(self, container_id: str) -> None: ...

    def containers(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The containers the engine has, running or not (all, or those carrying every one of ``labels``): each
        its ``id``, ``name``, ``image_id``, ``state`` and ``labels``."""
        ...

    def images(self, repository: str) -> list[dict[str, Any]]:
        """The images with a tag in ``repository``: each its ``id``, ``tags`` and ``size`` in bytes."""
        ...

    def untag_image(self, ref: str) -> None:
        """``docker rmi ref`` without force: the image goes with its last tag, unless a container uses it."""
        ...

    def kill(self, container: str) -> None:
        """SIGKILL a running container (by id or name); one that is no longer running is left as it is."""
        ...

    def oom_killed(self, container_id: str) -> bool:
        """Whether the kernel killed a process of this (stopped, kept) container for want of memory. A container
        removed, or being removed, by someone else raises :class:`ContainerVanished`."""
        ...

    def resources(self) -> dict[str, int]:
        """``memory`` (bytes) and ``cpus`` of the engine's host, as ``docker info`` reports them."""
        ...

    def export_path(self, container_id: str, path: str, dest: IO[bytes]) -> None:
        """Write ``path`` of a stopped container to ``dest`` as a tar stream."""
        ...

    def read_file(self, container_id: str, path: str) -> bytes: ...
