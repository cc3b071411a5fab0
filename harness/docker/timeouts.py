"""How long harness waits for the Docker engine to answer a request, and what it says when the engine does not.

A socket that accepts connections and never answers (a hung dockerd, a proxy in front of a dead engine) holds
harness for as long as a request may wait, which was 600 s. Each ordinary request (connecting, inspect, create,
start, kill, remove, list, tag...) gets ``HARNESS_DOCKER_TIMEOUT`` seconds, 30 by default: far more than a healthy
engine takes (milliseconds), short enough that a hang is noticed. What legitimately stays silent for long (a
container's output and its exit, an image build, a load, save, push or pull) is never bounded by it:
harness/docker/engine.py sends those through a client without a timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.errors import ConfigError, EngineUnavailable

ENV_TIMEOUT = "HARNESS_DOCKER_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0


def request_timeout(environ: Mapping[str, str]) -> float:
    """Seconds an ordinary request may wait for the engine: HARNESS_DOCKER_TIMEOUT, else the default."""
    raw = environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{ENV_TIMEOUT} is {raw!r}: not a positive number of seconds",
            f"set {ENV_TIMEOUT} to how many seconds a Docker request may take (e.g. 60; the default is "
            f"{DEFAULT_TIMEOUT_S:g}), or unset it",
        )
    return seconds


def not_answering(where: str, what: str, seconds: float) -> EngineUnavailable:
    """The error for an engine that took longer than ``seconds`` to answer while harness was doing ``what``."""
    return EngineUnavailable(
        f"the Docker engine at {where} did not answer within {seconds:g} s ({ENV_TIMEOUT}) during {what}",
        "is the engine hung? check it with `systemctl status docker` and `docker info` (`sudo systemctl restart "
        f"docker` restarts it); if it is only slow, raise {ENV_TIMEOUT} (seconds, default {DEFAULT_TIMEOUT_S:g})",
    )
