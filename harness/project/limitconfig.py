"""Resource limits as a user writes them: the ``[limits]`` table of the config and ``harness run --limit KEY=VALUE``.

Values are parsed here, and a bad one is an error naming where it was written (``harness.toml: limits.memory``,
``--limit memory``). What a limit left unset becomes on a given host, and how each is enforced, is
harness/runs/limits.py's job.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, HarnessError, UsageError
from harness.units import parse_size

LimitValue = int | float | None  # bytes, a count or CPUs; None: no limit
NO_LIMIT = "none"
MIN_MEMORY = 6 << 20  # Docker refuses less ("Minimum memory limit allowed is 6MB")
MIN_CPUS = 0.01  # and fewer CPUs than this


@dataclass(frozen=True)
class LimitKey:
    kind: str  # "size", "count" or "cpus"
    meaning: str
    default: str  # in words, for --help, the README and hints
    example: str


KEYS: dict[str, LimitKey] = {
    "memory": LimitKey(
        "size",
        "the memory the run may use, swap off; a run that needs more is killed by the kernel (reason oom)",
        "the host's memory less a reserve (an eighth of it, at least 512 MiB, at most 4 GiB)",
        "8g",
    ),
    "cpus": LimitKey("cpus", "how many CPUs' worth of time the run may use (fractions allowed)", "all", "1.5"),
    "pids": LimitKey(
        "count", "processes and threads at once; past it, fork and thread creation fail inside the run", "4096", "8192"
    ),
    "outputs": LimitKey(
        "size",
        "what the run may write to /outputs; a run over it is stopped (reason outputs over limit)",
        "the free space on the store's disk when the run starts, less 5% of that disk (at least 1 GiB)",
        "20g",
    ),
    "state": LimitKey(
        "size",
        "what the run may write to /harness/state (harness's own: which params the code read)",
        "64m",
        "256m",
    ),
    "log": LimitKey(
        "size",
        "the size of log.txt; past it the log keeps its first and last halves and says how much was dropped",
        "64m",
        "1g",
    ),
}


def parse_limits_table(table: Mapping[str, Any], where: str) -> dict[str, LimitValue]:
    """The ``[limits]`` table of a config; ``where`` is its key path (``harness.toml: limits``)."""
    return {key: parse_limit(key, value, f"{where}.{key}", ConfigError) for key, value in table.items()}


def parse_limit_options(options: Iterable[str]) -> dict[str, LimitValue]:
    """``--limit KEY=VALUE`` options, the last one of a key winning; a bad one is a usage error naming it."""
    parsed: dict[str, LimitValue] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"--limit {option}: expected KEY=VALUE",
                f"for example --limit memory=8g; keys: {', '.join(KEYS)}",
            )
        parsed[key] = parse_limit(key, value.strip(), f"--limit {key}", UsageError)
    return parsed


def parse_limit(key: str, value: Any, where: str, error: type[HarnessError]) -> LimitValue:
    spec = KEYS.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, KEYS, n=1)
        raise error(
            f"{where}: unknown limit",
            (f"did you mean '{close[0]}'? " if close else "") + "limits: " + ", ".join(KEYS),
        )
    hint = f"{key} is {spec.meaning}; for example {spec.example}, or {NO_LIMIT!r} for no limit"
    hint += f" (default: {spec.default})"
    if isinstance(value, str) and value.strip().lower() == NO_LIMIT:
        return None
    try:
        if spec.kind == "size":
            size = parse_size(value)
            if key == "memory" and size < MIN_MEMORY:
                raise ValueError(f"{size} bytes is below the 6 MiB Docker allows at least")
            return size
        if spec.kind == "count":
            count = _number(value, int)
            if count < 1:
                raise ValueError(f"{count} is not a positive count")
            return count
        cpus = _number(value, float)
        if cpus < MIN_CPUS:
            raise ValueError(f"{cpus} is below the {MIN_CPUS} CPUs Docker allows at least")
        return int(cpus) if cpus == int(cpus) else cpus
    except (ValueError, TypeError) as exc:
        raise error(f"{where}: {exc}", hint) from None


def _number(value: Any, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{value!r} is not a number")
    if isinstance(value, float) and kind is int:
        raise ValueError(f"{value!r} is not a whole number")
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a {'whole ' if kind is int else ''}number") from None
