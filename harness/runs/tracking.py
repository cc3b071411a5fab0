"""What a run reports back besides its output files: which params its code read, and its metrics.

Params read: harness ships a tiny helper module (harness/runs/incontainer/harness_params.py) that user code may
import as ``harness_params``. It is copied into the run's read-only /harness mount at /harness/lib, which is
put on PYTHONPATH, so the locked environment stays as it is; the helper writes the dotted keys the code read
to /harness/state/params_read.json, a writable mount that is not /outputs (outputs stay the user's). When the
code never loads it, nothing can be said: the record gets ``params_read: null``.

Metrics: ``metrics.json`` (a flat or nested object) and ``metrics.jsonl`` (one object per step, e.g.
``{"step": 3, "loss": 0.41}``) in the outputs. The record's ``metrics`` holds the last value of each key over
the steps, overridden by ``metrics.json``; the steps themselves stay in the output file, so the record only
counts them (``metrics_steps``) and names the file's object (``metrics_steps_object``).

Bounds: the record keeps the first MAX_METRIC_KEYS flattened keys and says so (``metrics_truncated``), since
every `harness ls` reads them; a file nested deeper than MAX_METRICS_DEPTH is not read (``metrics_error``). The
files stay in the outputs either way, and the run keeps its status.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.docker.interface import Mount
from harness.project.command import read_leaves
from harness.storage.store import Store

HELPER = Path(__file__).parent / "incontainer" / "harness_params.py"
LIB_TARGET = "/harness/lib"
STATE_TARGET = "/harness/state"
READ_FILE = "params_read.json"
STEP_KEYS = ("step",)  # the index of a step, not a metric
MAX_METRIC_KEYS = 10_000  # flattened keys a record keeps
MAX_METRICS_DEPTH = 32  # levels of nesting in metrics.json or a line of metrics.jsonl


def store_helper(store: Store) -> str:
    """This harness's params helper as a store object: what a run records and mounts."""
    return store.put_file(HELPER)[0]


def helper_mounts(helper: Path, harness_dir: Path, state_dir: Path, shared: bool) -> tuple[list[Mount], dict[str, str]]:
    """Put the helper module (``helper``: its store object, recorded as ``runtime.params_helper`` so that a
    rebuild runs the same helper even under a newer harness) into ``harness_dir`` (mounted read-only at
    /harness) and make ``state_dir`` the writable /harness/state; ``shared`` when the container runs as another
    user than harness (it must write there)."""
    lib = harness_dir / "lib"
    lib.mkdir()
    shutil.copyfile(helper, lib / HELPER.name)
    os.chmod(lib / HELPER.name, 0o644)
    os.chmod(lib, 0o755)
    (harness_dir / "state").mkdir(mode=0o755)  # the mount point inside the read-only /harness
    state_dir.mkdir()
    if shared:
        os.chmod(state_dir, 0o777)
    env = {"PYTHONPATH": LIB_TARGET, "HARNESS_PARAMS_READ": f"{STATE_TARGET}/{READ_FILE}"}
    return [Mount(state_dir, STATE_TARGET, read_only=False)], env


def with_pythonpath(env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """The configured env over ours, but a configured PYTHONPATH keeps the helper's directory on the path."""
    merged = {**env, **extra}
    if "PYTHONPATH" in extra and "PYTHONPATH" in env:
        merged["PYTHONPATH"] = f"{extra['PYTHONPATH']}:{env['PYTHONPATH']}"
    return merged


@dataclass(frozen=True)
class ParamsUsage:
    """The record's ``params_read`` and ``params_unread`` (dotted leaf keys), both None (no verdict) when the code
    never loaded the helper; ``error`` (``params_read_error``) when its note cannot be read."""

    read: list[str] | None = None
    unread: list[str] | None = None
    error: str | None = None


def params_usage(state_dir: Path, params: dict[str, Any], in_command: list[str] | tuple[str, ...] = ()) -> ParamsUsage:
    """What the code read: the helper's note, and the params the command's placeholders took (``in_command``).
    Either one gives a verdict: code that gets its params through its command line gets them nowhere else."""
    path = state_dir / READ_FILE
    read = read_leaves(params, in_command)
    if not path.is_file() and not in_command:
        return ParamsUsage()
    if path.is_file():
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
            read |= {str(k) for k in note["read"]}
        except (ValueError, KeyError, TypeError) as exc:
            return ParamsUsage(error=f"{READ_FILE}: {exc}")
    leaves = set(_leaves(params))
    return ParamsUsage(read=sorted(read & leaves), unread=sorted(leaves - read))


def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}")
    return out


@dataclass(frozen=True)
class Metrics:
    """The record's ``metrics``, and with a metrics.jsonl ``metrics_steps`` (its number of steps) and
    ``metrics_steps_object``; ``error`` (``metrics_error``) names the first unreadable line or file;
    ``truncated_from``: the number of flattened keys reported when that is more than the record keeps."""

    metrics: dict[str, Any]
    steps: int | None = None
    steps_object: str | None = None
    error: str | None = None
    truncated_from: int | None = None


def read_metrics(outputs: Path, files: dict[str, str], extra: tuple[str, ...] = ()) -> Metrics:
    """The metrics of a run from its outputs; ``files`` maps output paths to their object ids; ``extra``: other
    output files holding a JSON object of metrics (the config's ``metrics``, DVC's ``metrics:``), read after
    metrics.jsonl and before metrics.json."""
    metrics: dict[str, Any] = {}
    steps: int | None = None
    errors: list[str] = []
    steps_file = outputs / "metrics.jsonl"
    if steps_file.is_file():
        last: dict[str, Any] = {}
        count = 0
        with steps_file.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    step = _json_object(line)
                except ValueError as exc:
                    errors.append(f"outputs/metrics.jsonl line {number}: {exc}")
                    continue
                count += 1
                _deep_update(last, {k: v for k, v in step.items() if k not in STEP_KEYS})
        metrics = last
        steps = count
    for rel in extra:
        if rel in ("metrics.json", "metrics.jsonl") or not (outputs / rel).is_file():
            continue
        try:
            _deep_update(metrics, _json_object((outputs / rel).read_text(encoding="utf-8")))
        except ValueError as exc:
            errors.append(f"outputs/{rel}: {exc}")
    summary_file = outputs / "metrics.json"
    if summary_file.is_file():
        try:
            _deep_update(metrics, _json_object(summary_file.read_text(encoding="utf-8")))
        except ValueError as exc:
            errors.append(f"outputs/metrics.json: {exc}")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    kept, total = _first_keys(metrics, MAX_METRIC_KEYS)
    return Metrics(
        metrics=kept,
        steps=steps,
        steps_object=files.get("metrics.jsonl") if steps is not None else None,
        error=errors[0] + more if errors else None,
        truncated_from=total if total > MAX_METRIC_KEYS else None,
    )


def _json_object(text: str) -> dict[str, Any]:
    too_deep = ValueError(f"nested more than {MAX_METRICS_DEPTH} levels deep, so not read (it stays in the outputs)")
    try:
        value = json.loads(text)
    except RecursionError:  # the parser's own limit, far beyond ours
        raise too_deep from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_METRICS_DEPTH:
            raise too_deep
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


def _first_keys(values: dict[str, Any], limit: int) -> tuple[dict[str, Any], int]:
    """The first ``limit`` leaves of ``values`` (as harness.flatten counts them), nested as they were, and the
    number of leaves in all."""
    kept: dict[str, Any] = {}
    total = 0
    for key, value in values.items():
        if isinstance(value, dict) and value:
            part, count = _first_keys(value, max(0, limit - total))
            if part:
                kept[key] = part
            total += count
        else:
            if total < limit:
                kept[key] = value
            total += 1
    return kept, total


def _deep_update(target: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
