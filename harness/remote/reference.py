"""Where runs travel to: an OCI repository reference (``registry.example:5000/team/bikes``), and which one applies.

The remote is ``--remote REF``, else ``HARNESS_REMOTE``, else ``remote`` in the project's config. A reference is
a registry host (with an optional port) and a repository path, as ``docker push`` takes them; a tag or digest is
refused, since harness names what it pushes itself (``run-<id>``, ``env-<key>``). A host without a dot, a colon or
``localhost`` is not a registry for docker either (``team/bikes`` means Docker Hub there); harness asks for the
host to be named instead of guessing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, UsageError
from harness.paths import ENV_HOME, Layout

ENV_REMOTE = "HARNESS_REMOTE"

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$")
_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Reference:
    """An OCI repository: ``registry`` (host[:port]) and ``repository`` (the path below it)."""

    registry: str
    repository: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def host(self) -> str:
        return self.registry.partition(":")[0]

    @property
    def loopback(self) -> bool:
        """Docker talks plain http to a registry on 127.0.0.0/8 or localhost; so does harness, when it has no TLS."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse(text: str, named_by: str = "--remote") -> Reference:
    ref = text.strip()
    for scheme in ("oci://", "docker://", "https://", "http://"):
        ref = ref.removeprefix(scheme)
    example = "for example 127.0.0.1:5000/team/bikes or registry.example/team/bikes"
    registry, _, repository = ref.partition("/")
    if "@" in repository or ":" in repository:
        raise UsageError(
            f"{named_by}: {text!r} names a tag or digest; a remote is a repository",
            f"leave the tag out: harness tags each run itself (run-<id>); {example}",
        )
    if not repository or not _HOST.match(registry):
        raise UsageError(f"{named_by}: {text!r} is not an OCI repository reference", example)
    if "." not in registry and ":" not in registry and registry != "localhost":
        raise UsageError(
            f"{named_by}: {text!r} does not name a registry host ({registry!r} would be a Docker Hub namespace)",
            f"name the registry: docker.io/{ref} for Docker Hub, or {example}",
        )
    if not _PATH.match(repository):
        raise UsageError(
            f"{named_by}: repository {repository!r} is not a valid OCI repository name",
            "lowercase letters, digits and separators (. _ - /) only",
        )
    return Reference(registry, repository)


def resolve(given: str | None, project_dir: Path) -> Reference:
    """The remote to use: ``given`` (--remote), else HARNESS_REMOTE, else the project config's ``remote``."""
    if given:
        return parse(given)
    env = os.environ.get(ENV_REMOTE, "").strip()
    if env:
        return parse(env, ENV_REMOTE)
    from harness.project.config import load_config

    try:
        config = load_config(project_dir.resolve())
    except ConfigError:
        config = None
    if config is not None and config.remote:
        return parse(config.remote, config.key("remote"))
    raise UsageError(
        "no remote given",
        f'pass --remote REF (e.g. 127.0.0.1:5000/team/bikes), set {ENV_REMOTE}, or set remote = "REF" in the '
        "project's config",
    )


def store_layout(project_dir: Path) -> Layout:
    """The stores a remote command reads and fills: the project's, or, on a machine that has only what it pulled
    (no project, no git repository), the one ``HARNESS_HOME`` names (harness.project.config.project_layout)."""
    from harness.project.config import project_layout

    try:
        return project_layout(project_dir)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.message}, and {ENV_HOME} is not set: there is no store to use",
            f"run this in the project's directory (or -C DIR), or set {ENV_HOME} to a directory for the runs you "
            "pull or import",
        ) from None
