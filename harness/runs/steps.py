"""A run's step metrics as series: what `harness ui` draws and `harness plot` writes.

The steps are the run's ``metrics.jsonl`` output (one JSON object per line, harness/runs/tracking.py), read from
the store by the digest the record names, so what is drawn is what the run wrote. Each numeric leaf (nested
objects flattened to dotted names, as everywhere else) becomes a series; its x is the line's ``step`` when that is
a number, else the line's position among the steps (1, 2, ...). Values that are not finite numbers (text, null,
booleans, NaN, infinities) are left out of the series. A long series can be thinned to at most ``max_points``
points by keeping the lowest and the highest value of each bucket, so a spike survives the thinning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import NotFound
from harness.flatten import flat
from harness.runs.outputlist import all_files
from harness.runs.tracking import STEP_KEYS
from harness.storage.store import Store

STEPS_FILE = "metrics.jsonl"
MAX_ERRORS = 5  # unreadable lines named; the rest only counted


@dataclass(frozen=True)
class Series:
    """One metric over the steps: ``x`` and ``y`` of equal length, x in file order."""

    name: str
    x: list[float]
    y: list[float]
    points: int  # in the file, before any thinning

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "x": self.x, "y": self.y, "points": self.points}


@dataclass(frozen=True)
class Steps:
    """The step series of one run; ``source`` is the metrics.jsonl object (None: the run wrote no steps)."""

    run: str
    source: str | None
    lines: int = 0
    series: dict[str, Series] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "source": self.source,
            "lines": self.lines,
            "series": {name: s.to_dict() for name, s in sorted(self.series.items())},
            "errors": self.errors,
        }


def steps_object(record: Mapping[str, Any], store: Store) -> str | None:
    """The object id of the run's metrics.jsonl, or None when it wrote none."""
    named = record.get("metrics_steps_object")
    if isinstance(named, str):
        return named
    found = all_files(record.get("outputs") or {}, store).get(STEPS_FILE)
    return found if isinstance(found, str) else None


def read_steps(record: Mapping[str, Any], store: Store, max_points: int | None = None) -> Steps:
    """The step series of the run ``record`` describes. NotFound when its metrics.jsonl object is missing from
    the store; StoreCorruption when the object's bytes no longer match its digest."""
    run_id = str(record.get("id"))
    digest = steps_object(record, store)
    if digest is None:
        return Steps(run_id, None)
    try:
        data = store.read_bytes(digest)
    except NotFound:
        raise NotFound(
            f"run {run_id}: its {STEPS_FILE} (object {digest}) is not in the store at {store.root}",
            "`harness verify` checks the store against the records",
        ) from None
    return parse_steps(run_id, digest, data.decode("utf-8", errors="replace"), max_points)


def parse_steps(run_id: str, source: str | None, text: str, max_points: int | None = None) -> Steps:
    xs: dict[str, list[float]] = {}
    ys: dict[str, list[float]] = {}
    errors: list[str] = []
    bad = 0
    position = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            value, problem = None, str(exc)
        else:
            problem = "not a JSON object"
        if not isinstance(value, dict):
            bad += 1
            if len(errors) < MAX_ERRORS:
                errors.append(f"{STEPS_FILE} line {number}: {problem}")
            continue
        position += 1
        step = value.get(STEP_KEYS[0])
        x = float(step) if isinstance(step, int | float) and _finite(step) else float(position)
        for name, leaf in flat({k: v for k, v in value.items() if k not in STEP_KEYS}).items():
            if _finite(leaf):
                xs.setdefault(name, []).append(x)
                ys.setdefault(name, []).append(float(leaf))
    if bad > len(errors):
        errors.append(f"{bad - len(errors)} more unreadable lines")
    series = {}
    for name in xs:
        kept_x, kept_y = thin(xs[name], ys[name], max_points) if max_points else (xs[name], ys[name])
        series[name] = Series(name, kept_x, kept_y, len(xs[name]))
    return Steps(run_id, source, position, series, errors)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def thin(x: list[float], y: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points (at least 4): the first and last, and the lowest and highest y of each of
    the buckets in between, in file order."""
    n = len(x)
    if n <= max_points:
        return x, y
    max_points = max(4, max_points)
    buckets = (max_points - 2) // 2
    keep = {0, n - 1}
    size = (n - 2) / buckets
    for b in range(buckets):
        lo, hi = 1 + int(b * size), 1 + int((b + 1) * size)
        if hi <= lo:
            continue
        part = range(lo, min(hi, n - 1))
        if not part:
            continue
        keep.add(min(part, key=y.__getitem__))
        keep.add(max(part, key=y.__getitem__))
    chosen = sorted(keep)
    return [x[i] for i in chosen], [y[i] for i in chosen]


def differing_params(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dotted params whose values are not the same in all of ``records`` (absent counts as a value)."""
    flats = [flat(r.get("params") or {}) for r in records]
    names = sorted({k for f in flats for k in f})
    missing = object()
    return [k for k in names if len({json.dumps(f.get(k, missing), sort_keys=True, default=repr) for f in flats}) > 1]


def run_label(record: Mapping[str, Any], params: list[str]) -> str:
    """A legend entry: the run's name and id, and the values of ``params`` (those that differ between runs)."""
    values = flat(record.get("params") or {})
    shown = ", ".join(f"{k}={_text(values[k])}" for k in params if k in values)
    name = record.get("name") or ""
    return f"{name} {record.get('id')}".strip() + (f" ({shown})" if shown else "")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
