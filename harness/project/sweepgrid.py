"""A sweep's grid: which params each run of a sweep gets.

Axes come from the params file's ``sweep:`` block (in the file's order) and from ``-p K=a,b,c`` (in the order
given; a ``-p`` for a key the block names replaces that axis where it stands). The grid is their cross product,
the last axis changing fastest, so run ``index`` is a fixed function of the axes.

How values are written: a ``-p`` value is the items of a YAML flow sequence without its brackets, read by the
same YAML rules (and bounds) as ``harness run -p``: ``lr=0.001,0.01`` is two numbers, ``name="a,b",c`` two strings
(a comma inside quotes is a literal comma), ``layers=[64,64],[128]`` two lists, and ``lr=0.1`` one value. In the
block each key maps to the list of its values (``lr: [0.001, 0.01]``; a list value inside it:
``layers: [[64, 64], [128]]``; a scalar is one value); nested mappings name nested params (``model: {depth:
[3, 5]}`` is ``model.depth``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.project.params import SWEEP_KEY, parse_list

MAX_RUNS = 10_000  # runs in one sweep: a grid past this is almost always a typo (a value list pasted twice)
Point = tuple[tuple[str, Any], ...]  # (dotted key, value) for every axis, in axis order

_EXAMPLE = "-p lr=0.001,0.01,0.1 -p depth=3,5"


@dataclass(frozen=True)
class Axis:
    key: str  # dotted
    values: tuple[Any, ...]
    source: str  # "-p" or the params file's name

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "values": list(self.values), "source": self.source}


@dataclass(frozen=True)
class Grid:
    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        return math.prod(len(a.values) for a in self.axes)

    def points(self) -> list[Point]:
        """Every run's swept params, in index order."""
        keys = [a.key for a in self.axes]
        return [tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*(a.values for a in self.axes))]

    def to_dict(self) -> dict[str, Any]:
        return {"axes": [a.to_dict() for a in self.axes], "size": self.size}


def build_grid(block: Any, params_file: str | None, items: Sequence[str]) -> Grid:
    """The grid of a params file's sweep block (None: none) and ``-p`` items; a ConfigError naming the item or the
    key for anything that is not an axis, and for a grid of no runs or more than MAX_RUNS."""
    axes: dict[str, Axis] = {}
    if block is not None:
        where = f"{params_file}: {SWEEP_KEY}"
        if not isinstance(block, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping of params to lists of values",
                f"for example:\n{SWEEP_KEY}:\n  lr: [0.001, 0.01, 0.1]\n  depth: [3, 5]",
            )
        for key, values in _leaves(block, where):
            axes[key] = Axis(key, values, params_file or "params file")
    for item in items:
        axis = parse_axis(item)
        axes[axis.key] = axis  # replaces the block's axis in its place (a dict keeps the first position)
    if not axes:
        raise ConfigError(
            "nothing to sweep: no -p K=a,b,... given and no sweep block in the params file",
            f"for example: harness sweep {_EXAMPLE}",
        )
    grid = Grid(tuple(axes.values()))
    for axis in grid.axes:
        if not axis.values:
            raise ConfigError(
                f"sweep axis {axis.key} ({axis.source}) has no values: the sweep would have no runs",
                f"give at least one value, for example {_EXAMPLE}",
            )
    if grid.size > MAX_RUNS:
        sizes = " x ".join(f"{len(a.values)} ({a.key})" for a in grid.axes)
        raise ConfigError(
            f"the sweep has {grid.size:,} runs ({sizes}), more than the {MAX_RUNS:,} one sweep may have",
            "sweep fewer values, or split the grid into several sweeps",
        )
    return grid


def parse_axis(item: str) -> Axis:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"-p {item!r}: expected key=value[,value...]", f"for example {_EXAMPLE}")
    return Axis(key, tuple(parse_list(raw, f"-p {key}")), "-p")


def _leaves(block: Mapping[Any, Any], where: str, prefix: str = "") -> list[tuple[str, tuple[Any, ...]]]:
    found: list[tuple[str, tuple[Any, ...]]] = []
    for raw_key, value in block.items():
        key = f"{prefix}{raw_key}"
        if not str(raw_key) or any(not part for part in key.split(".")):
            raise ConfigError(f"{where}: {key!r} is not a param name", "use names like lr or model.depth")
        if isinstance(value, Mapping):
            if not value:
                raise ConfigError(f"{where}.{key}: an empty mapping names no param to sweep")
            found += _leaves(value, where, key + ".")
        elif isinstance(value, list):
            found.append((key, tuple(value)))
        else:
            found.append((key, (value,)))
    return found
