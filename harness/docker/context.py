"""The docker context the docker CLI would use when DOCKER_HOST is unset; plain file reading, no SDK.

The context is the one DOCKER_CONTEXT names, else ``currentContext`` in ``$DOCKER_CONFIG/config.json``
(``~/.docker/config.json``), else ``default`` (the local socket). Its endpoint is read from the CLI's store:
``contexts/meta/<sha256 of name>/meta.json`` and ``contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem``
under the same config directory. harness/docker/engine.py turns the answer into a Docker SDK client.

Why not docker-py's own context support (docker/context/, 7.x), checked against 7.2.0:
- it finds the store through ``find_config_file()``: with ``$DOCKER_CONFIG`` holding contexts but no
  config.json, which is what ``docker context create`` leaves, it reads ~/.docker instead (or ./contexts);
- a context it cannot find becomes the default socket, silently (``kwargs_from_context`` returns ``{}``);
- a context gets TLS only when ca, cert and key are all present, so a CA-only or skip-verify context is
  reached without TLS;
- before 7.2, ``from_env`` ignores contexts and ``ContextAPI.get_context`` ignores DOCKER_CONTEXT.
The CLI's rule (cli/context/docker/load.go, ``tlsConfig``): TLS when the context has any TLS file or sets
SkipTLSVerify; its CA, when present, is the only one trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import EngineUnavailable

ENV_CONTEXT = "DOCKER_CONTEXT"
ENV_CONFIG = "DOCKER_CONFIG"
DEFAULT = "default"


@dataclass(frozen=True)
class ContextEndpoint:
    """The docker endpoint of a named context; ``host`` None means the local socket."""

    name: str
    chosen_by: str  # "DOCKER_CONTEXT" or "currentContext in <config.json>", for messages
    host: str | None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    skip_tls_verify: bool = False

    @property
    def tls(self) -> bool:
        return self.skip_tls_verify or any(p is not None for p in (self.ca, self.cert, self.key))

    @property
    def tls_dir(self) -> Path | None:
        found = self.ca or self.cert or self.key
        return found.parent if found else None


def config_dir(environ: Mapping[str, str]) -> Path:
    """The docker CLI's config directory: $DOCKER_CONFIG, else ~/.docker (never both)."""
    explicit = environ.get(ENV_CONFIG)
    return Path(explicit).expanduser() if explicit else Path.home() / ".docker"


def current_context(environ: Mapping[str, str]) -> ContextEndpoint | None:
    """The context DOCKER_CONTEXT or config.json's currentContext selects; None for ``default``.

    A selected context that does not exist, or whose metadata cannot be read, is an EngineUnavailable that
    names it: the docker CLI refuses it too, and falling back to the local socket would talk to another
    engine than the user chose."""
    root = config_dir(environ)
    name = environ.get(ENV_CONTEXT)
    chosen_by = ENV_CONTEXT
    if not name:
        config = root / "config.json"
        name = str(_read_json(config, f"fix or remove {config}").get("currentContext") or "") if config.exists() else ""
        chosen_by = f"currentContext in {config}"
    if not name or name == DEFAULT:
        return None
    ident = hashlib.sha256(name.encode()).hexdigest()
    meta = root / "contexts" / "meta" / ident / "meta.json"
    if not meta.exists():
        raise EngineUnavailable(
            f"docker context {name!r} ({chosen_by}) does not exist: no {meta}",
            f"list the contexts with `docker context ls` (they live under {root / 'contexts'}), or unset "
            f"{ENV_CONTEXT} / run `docker context use default` to use the local engine",
        )
    endpoint = (_read_json(meta, _RECREATE).get("Endpoints") or {}).get("docker") or {}
    if not isinstance(endpoint, dict):
        raise EngineUnavailable(f"docker context {name!r}: {meta} has no docker endpoint", _RECREATE)
    tls = root / "contexts" / "tls" / ident / "docker"

    def tls_file(stem: str) -> Path | None:
        path = tls / f"{stem}.pem"
        return path if path.is_file() else None

    return ContextEndpoint(
        name=name,
        chosen_by=chosen_by,
        host=str(endpoint["Host"]) if endpoint.get("Host") else None,
        ca=tls_file("ca"),
        cert=tls_file("cert"),
        key=tls_file("key"),
        skip_tls_verify=bool(endpoint.get("SkipTLSVerify", False)),
    )


_RECREATE = "recreate it with `docker context rm NAME` and `docker context create NAME --docker host=...`"


def _read_json(path: Path, hint: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"cannot read the docker CLI's {path}: {exc}", hint) from None
    if not isinstance(data, dict):
        raise EngineUnavailable(f"cannot read the docker CLI's {path}: not a JSON object", hint)
    return data
