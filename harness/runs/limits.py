"""A run's resource limits: the defaults that protect the host, what the config and ``--limit`` set, what a rebuild
takes from its record, and what a run stopped by one records.

The engine enforces pids, memory (swap off) and CPUs; harness/runs/sizewatch.py the sizes of /outputs and
/harness/state; harness/runs/logcap.py the size of log.txt. Every value is recorded in ``runtime.limits``, with
where it came from, and a rebuild runs under the recorded ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.docker.interface import ContainerLimits, Engine
from harness.errors import ConfigError, UsageError
from harness.project.limitconfig import KEYS, LimitValue
from harness.runs import schema
from harness.soon import soon
from harness.units import format_size

DEFAULT_PIDS = 4096
DEFAULT_STATE = 64 << 20
DEFAULT_LOG = 64 << 20
OOM_SCORE_ADJ = 500  # out of memory on the whole host, the kernel kills the run before the user's other work
GIB = 1 << 30

OOM = "oom"
OVER_LIMIT = "{key} over limit"


@dataclass(frozen=True)
class Capacity:
    """What the defaults are made from: the engine host's memory and CPUs, and the store's disk."""

    memory: int  # bytes; 0 when the engine did not say
    cpus: int  # 0 when the engine did not say
    disk_free: int  # bytes an unprivileged writer may still use on the disk holding the store
    disk_size: int

    @classmethod
    def of(cls, resources: Mapping[str, int], store: Path) -> Capacity:
        existing = next(p for p in (store, *store.parents) if p.exists())  # a first run makes the store later
        st = os.statvfs(existing)
        return cls(
            memory=int(resources.get("memory") or 0),
            cpus=int(resources.get("cpus") or 0),
            disk_free=st.f_bavail * st.f_frsize,
            disk_size=st.f_blocks * st.f_frsize,
        )

    def defaults(self) -> dict[str, LimitValue]:
        return {
            "memory": _mib(self.memory - min(max(self.memory // 8, 512 << 20), 4 * GIB)) if self.memory else None,
            "cpus": None,
            "pids": DEFAULT_PIDS,
            "outputs": _mib(max(0, self.disk_free - max(self.disk_size // 20, GIB))),
            "state": DEFAULT_STATE,
            "log": DEFAULT_LOG,
        }


def capacity_soon(engine: Engine, store: Path) -> Callable[[], Capacity]:
    """Ask the engine for its host's memory and CPUs in a thread: a `docker info` takes about 10 ms here, which
    the run's other preparations (environment, code, data) hide. The function returned waits for the answer."""
    resources = soon(engine.resources, "harness-engine-resources")
    return lambda: Capacity.of(resources(), store)


@dataclass(frozen=True)
class Limits:
    """Every limit of one run, resolved: bytes, counts, CPUs; None is no limit. ``sources`` says where each came
    from: "default", "config", "--limit" (or "recorded", for a record made before limits were recorded: none)."""

    values: dict[str, LimitValue]
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> LimitValue:
        return self.values.get(key)

    def size(self, key: str) -> int | None:
        """A size or count limit as an int; None: no limit."""
        return _int(self[key])

    def shared(self, runs: int) -> Limits:
        """The limits of each of ``runs`` runs going at once (a sweep's -j): the defaults made from the host's
        memory and disk (memory, outputs) are split between them, so together they stay within what one run may
        take; a limit the config or --limit set stays as set."""
        if runs <= 1:
            return self
        values = dict(self.values)
        for key in ("memory", "outputs"):
            value = _int(values.get(key))
            if self.sources.get(key, "default") == "default" and value is not None:
                values[key] = _mib(value // runs)
        return Limits(values, self.sources)

    def container(self) -> ContainerLimits:
        cpus = self["cpus"]
        return ContainerLimits(
            pids=_int(self["pids"]),
            memory=_int(self["memory"]),
            cpus=float(cpus) if cpus is not None else None,
            oom_score_adj=OOM_SCORE_ADJ,
        )

    def to_record(self) -> schema.Limits:
        return {
            "pids": _int(self["pids"]),
            "memory": _int(self["memory"]),
            "cpus": self["cpus"],
            "outputs": _int(self["outputs"]),
            "state": _int(self["state"]),
            "log": _int(self["log"]),
            "oom_score_adj": OOM_SCORE_ADJ,
            "sources": {key: self.sources.get(key, "default") for key in KEYS},
        }


def resolve(
    configured: Mapping[str, LimitValue], options: Mapping[str, LimitValue], host: Capacity, config_key: str = "limits"
) -> Limits:
    """The limits of a new run: ``--limit`` options over the config's ``[limits]`` (``config_key`` in messages)
    over the host's defaults."""
    values = host.defaults()
    sources = dict.fromkeys(KEYS, "default")
    for source, given in (("config", configured), ("--limit", options)):
        for key, value in given.items():
            values[key] = value
            sources[key] = source
    _check_cpus(values, host, sources, config_key)
    return Limits(values, sources)


def from_record(recorded: Mapping[str, Any] | None, host: Capacity) -> tuple[Limits, list[str]]:
    """The limits a rebuild runs under: the recorded ones, each of memory, CPUs and outputs no larger than this
    host can give (its default), so a rebuild on a smaller machine still protects it; notes say what a set limit
    became. A record made before limits were recorded gets this host's defaults, and a note saying so."""
    defaults = host.defaults()
    if not recorded:
        return Limits(defaults), [
            "the record holds no limits (it was made before harness recorded them): the rebuild runs under "
            "this host's defaults: " + describe(Limits(defaults))
        ]
    values: dict[str, LimitValue] = {key: recorded.get(key) for key in KEYS}
    sources = {key: str((recorded.get("sources") or {}).get(key, "default")) for key in KEYS}
    notes = []
    for key in ("memory", "outputs"):
        value, most = values[key], defaults[key]
        if most is not None and (value is None or value > most):
            values[key] = most
            if sources[key] != "default":  # a default is the host's: the disk's free space moves between runs
                notes.append(
                    f"limit {key}: the run had {_shown(key, value)}, this host gives at most {_shown(key, most)}: "
                    "using that"
                )
    limits = Limits(values, sources)
    before = limits["cpus"]
    checked = dict(values)
    _check_cpus(checked, host, sources, cap=True)
    if checked["cpus"] != before:
        notes.append(f"limit cpus: the run had {before}, this host has {host.cpus}: using {host.cpus}")
    return replace(limits, values=checked), notes


def _check_cpus(
    values: dict[str, LimitValue],
    host: Capacity,
    sources: Mapping[str, str],
    config_key: str = "limits",
    cap: bool = False,
) -> None:
    cpus = values.get("cpus")
    if cpus is None or not host.cpus or cpus <= host.cpus:
        return
    if cap:
        values["cpus"] = host.cpus
        return
    where = "--limit cpus" if sources.get("cpus") == "--limit" else f"{config_key}.cpus"
    error = UsageError if sources.get("cpus") == "--limit" else ConfigError
    raise error(
        f"{where}: {cpus} CPUs, and the engine's host has {host.cpus}",
        f"give at most {host.cpus}, or leave cpus unset to use them all",
    )


def describe(limits: Limits) -> str:
    """One line: "memory 20.6 GiB, cpus all, pids 4096, outputs 59 GiB, state 64 MiB, log 64 MiB"."""
    return ", ".join(f"{key} {_shown(key, limits[key])}" for key in KEYS)


def _shown(key: str, value: LimitValue) -> str:
    if value is None:
        return "all" if key == "cpus" else "no limit"
    return format_size(int(value)) if KEYS[key].kind == "size" else f"{value:g}"


def oom_error(limits: Limits) -> schema.Error:
    memory = limits["memory"]
    if memory is None:
        message = "the run ran out of memory: the kernel killed it (no memory limit was set: the host ran out)"
    else:
        message = f"the run ran out of memory: the kernel killed it at its memory limit of {_shown('memory', memory)}"
    return {
        "error": "LimitExceeded",
        "message": message,
        "hint": _raise_hint("memory", memory, limits.sources.get("memory")),
        "reason": OOM,
        "limit": "memory",
    }


def over_limit_error(key: str, size: int, limits: Limits, stopped: bool) -> schema.Error:
    where = {"outputs": "/outputs", "state": "/harness/state"}[key]
    limit = limits.size(key) or 0
    what = "the container was stopped" if stopped else "found when the run ended"
    kept = "; what it wrote was kept and recorded" if key == "outputs" else ""
    return {
        "error": "LimitExceeded",
        "message": f"the run wrote {_shown(key, size)} ({size:,} bytes) to {where}, over its {key} limit of "
        f"{_shown(key, limit)} ({limit:,} bytes): {what}{kept}",
        "hint": _raise_hint(key, limit, limits.sources.get(key)),
        "reason": OVER_LIMIT.format(key=key),
        "limit": key,
    }


def _raise_hint(key: str, value: LimitValue, source: str | None) -> str:
    bigger = KEYS[key].example if value is None else _bigger(key, int(value))
    default = f" (it was the default: {KEYS[key].default})" if source in (None, "default") else ""
    return (
        f'raise the {key} limit{default}: `harness run --limit {key}={bigger}`, or `{key} = "{bigger}"` under '
        "[limits] in the config"
    )


def _bigger(key: str, value: int) -> str:
    doubled = value * 2
    if KEYS[key].kind != "size":
        return str(doubled)
    for suffix, factor in (("g", GIB), ("m", 1 << 20), ("k", 1 << 10)):
        if doubled >= factor:
            return f"{-(-doubled // factor)}{suffix}"
    return str(doubled)


def _mib(size: int) -> int:
    """Down to whole MiB: the kernel would round a memory limit to its pages anyway."""
    return size & ~((1 << 20) - 1)


def _int(value: LimitValue) -> int | None:
    return None if value is None else int(value)
