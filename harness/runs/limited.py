"""A run's container under its limits: the engine holds it to pids, memory and CPUs, a watch to the sizes of
/outputs and /harness/state; afterwards, which limit (if any) stopped it, as the record's error."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from harness.docker.engine import KILLED
from harness.docker.interface import ContainerSpec, Engine, OutputSink
from harness.errors import HarnessError
from harness.runs import schema
from harness.runs.limits import Limits, oom_error, over_limit_error
from harness.runs.sizewatch import SizeWatch, Watched, tree_size


@dataclass(frozen=True)
class Ended:
    exit_code: int
    oom_killed: bool  # the kernel killed a process of it for want of memory
    over: tuple[Watched, int] | None  # the directory the watch found over its limit, and its size
    state: Path


def run_limited(
    engine: Engine, spec: ContainerSpec, sink: OutputSink, limits: Limits, outputs: Path, state: Path
) -> Ended:
    """Run the container (``spec`` carries the engine's limits) while ``outputs`` and ``state`` are watched; one
    over its limit gets the container killed."""
    watched = [
        Watched(key, path, limit)
        for key, path in (("outputs", outputs), ("state", state))
        if (limit := limits.size(key)) is not None
    ]
    name = spec.name or ""

    def stop(_watched: Watched, _size: int) -> None:
        with contextlib.suppress(HarnessError):  # it has ended already, or the engine is gone: the run says which
            engine.kill(name)

    with SizeWatch(watched, stop) as watch:
        exit_code, container_id = engine.run(spec, sink, keep=True)
    try:
        oom = exit_code != 0 and engine.oom_killed(container_id)
    finally:
        engine.remove(container_id)
    return Ended(exit_code, oom, watch.over, state)


def limit_failure(ended: Ended, limits: Limits, outputs_bytes: int) -> schema.Error | None:
    """The record's error when a limit stopped the run: the reason and the setting to raise. A run found over a
    size limit when it ended (``outputs_bytes``: what its record holds), before the watch caught it, fails the
    same way: whether a limit holds does not depend on timing."""
    if ended.oom_killed:
        return oom_error(limits)
    if ended.over is not None:
        key, size = ended.over[0].key, ended.over[1]
        return over_limit_error(key, size, limits, stopped=ended.exit_code == KILLED)
    outputs, state = limits.size("outputs"), limits.size("state")
    if outputs is not None and outputs_bytes > outputs:
        return over_limit_error("outputs", outputs_bytes, limits, stopped=False)
    if state is not None and (size := tree_size(ended.state)) > state:
        return over_limit_error("state", size, limits, stopped=False)
    return None
