"""MLflow inside a run: a tracking store of harness's own, harvested on the host after the run.

When the run's environment has mlflow (or mlflow-skinny), the container gets ``MLFLOW_TRACKING_URI`` pointing at a
file store under /harness/state (not /outputs: MLflow's bookkeeping is not the run's result), with what MLflow
needs to accept one, so code calling ``mlflow.start_run``, ``log_param``, ``log_metric(..., step=)``,
``log_artifact`` and ``log_model`` runs unchanged with no ``[env]`` lines (``[env]`` may still set its own).

After the run the store is read here, from MLflow's file-store layout (``<experiment>/<run>/meta.yaml``,
``params/``, ``metrics/`` lines of ``timestamp value step``, ``tags/``, ``artifacts/``; MLflow 3's logged models
under ``<experiment>/models/<id>/``), without importing mlflow:

- artifacts are copied into the outputs under their artifact paths, and a logged model under its name (``model/``),
  not under MLflow's random ids. An ``MLmodel`` file loses the lines that name ids and times (``run_id``,
  ``model_id``, ``model_uuid``, ``utc_time_created``, ``artifact_path``), so a deterministic training rebuilds
  identical; those values go to the record's ``mlflow`` section with the runs' ids, names, times and user tags;
- each metric's last value (highest step, then latest time, as MLflow shows it) joins the record's metrics, and
  the step histories are written to ``mlflow/metrics.jsonl`` in the outputs, one line per step;
- a logged param that differs from the value harness passed is a warning (the code changed it).

Several runs in one container (nested runs, a loop) go to ``mlflow/runs/<n>/`` in the order they started.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.flatten import flat

PACKAGES = {"mlflow", "mlflow-skinny"}
STORE_DIR = "mlruns"  # under the run's state directory
ENV = {
    "MLFLOW_TRACKING_URI": "file:///harness/state/mlruns",
    "MLFLOW_ALLOW_FILE_STORE": "true",  # MLflow 3 refuses a file store without it
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no network in a run anyway
    "USER": "harness",  # getpass.getuser() for the run's mlflow.user tag, whatever uid the run has
    "GIT_PYTHON_REFRESH": "quiet",  # mlflow imports GitPython for its source tags; the image has no git
}
MLMODEL_RUN_KEYS = ("run_id", "model_id", "model_uuid", "utc_time_created", "artifact_path")
SKIPPED_DIRS = {".trash", "models", ".git"}
MAX_VALUE = 64 * 1024  # bytes of a param, tag or meta.yaml read (MLflow's own limits are 6,000-8,000 characters)


def uses_mlflow(packages: Iterable[str]) -> bool:
    return any(name.lower().replace("_", "-") in PACKAGES for name in packages)


def harvest(state: Path, outputs: Path, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
    """Read the run's MLflow store (None if the code logged nothing) into outputs and a record section; returns
    the section and the warnings."""
    store = state / STORE_DIR
    if not _real_dir(store):
        return None
    runs = sorted(_runs(store), key=lambda r: (int(r["meta"].get("start_time") or 0), r["run_id"]))
    if not runs:
        return None
    models = _models(store)
    warnings: list[str] = []
    section: dict[str, Any] = {"runs": [], "params": {}, "metrics": {}}
    history: dict[int, dict[str, Any]] = {}
    passed = flat(params)
    for index, run in enumerate(runs, 1):
        prefix = "" if len(runs) == 1 else f"mlflow/runs/{index}/"
        meta = run["meta"]
        copied = _copy_tree(run["dir"] / "artifacts", outputs, prefix, warnings)
        run_models = []
        for model in models.get(run["run_id"], []):
            target = f"{prefix}{model['name']}"
            moved = _copy_tree(model["dir"] / "artifacts", outputs, target + "/", warnings)
            run_models.append(
                {"name": model["name"], "model_id": model["model_id"], "path": target, "files": len(moved)}
                | {"mlmodel": _strip_mlmodel(outputs / target / "MLmodel") if f"{target}/MLmodel" in moved else {}}
            )
        for path in copied:  # a model logged into the run's own artifacts (MLflow 2)
            if Path(path).name == "MLmodel":
                where = Path(path).parent.as_posix()
                run_models.append({"name": Path(where).name, "path": where, "mlmodel": _strip_mlmodel(outputs / path)})
        logged = _values(run["dir"] / "params")
        for key, value in logged.items():
            if key in passed and not _same(value, passed[key]):
                warnings.append(f"MLflow param {key}={value} was logged, but the run passed {key}={passed[key]!r}")
        metrics = _metrics(run["dir"] / "metrics")
        for name, points in metrics.items():
            key = prefix.replace("/", ".") + name  # mlflow.runs.2.loss for the second run
            section["metrics"][key] = max(points, key=lambda p: (p[2], p[0]))[1]
            for _ts, number, step in points:
                history.setdefault(step, {})[key] = number
        tags = _values(run["dir"] / "tags")
        section["params"].update({f"{prefix}{k}" if prefix else k: v for k, v in logged.items()})
        section["runs"].append(
            {
                "run_id": run["run_id"],
                "run_name": meta.get("run_name") or tags.get("mlflow.runName"),
                "experiment_id": str(meta.get("experiment_id")),
                "status": meta.get("status"),
                "start_time": meta.get("start_time"),
                "end_time": meta.get("end_time"),
                "user": tags.get("mlflow.user") or meta.get("user_id"),
                "tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
                "artifacts": copied,
                "models": run_models,
                "outputs_prefix": prefix,
            }
        )
    if history:
        lines = [json.dumps({"step": step, **history[step]}, sort_keys=True) for step in sorted(history)]
        text = "\n".join(lines) + "\n"
        if _write_new(outputs, "mlflow/metrics.jsonl", text.encode()):
            section["steps"] = len(lines)
        else:
            warnings.append("mlflow/metrics.jsonl exists in the outputs already: the step histories are not written")
    section["warnings"] = warnings
    return section, warnings


def _runs(store: Path) -> list[dict[str, Any]]:
    runs = []
    for experiment in sorted(p for p in store.iterdir() if _real_dir(p) and p.name not in SKIPPED_DIRS):
        for run in sorted(p for p in experiment.iterdir() if _real_dir(p) and p.name not in SKIPPED_DIRS):
            meta = _yaml(run / "meta.yaml")
            if meta.get("run_id") or _real_dir(run / "params") or _real_dir(run / "metrics"):
                runs.append({"dir": run, "run_id": str(meta.get("run_id") or run.name), "meta": meta})
    return runs


def _models(store: Path) -> dict[str, list[dict[str, Any]]]:
    """MLflow 3's logged models (``<experiment>/models/<id>``), by the run that logged them."""
    found: dict[str, list[dict[str, Any]]] = {}
    for models in sorted(p / "models" for p in store.iterdir() if _real_dir(p) and _real_dir(p / "models")):
        for model in sorted(p for p in models.iterdir() if _real_dir(p)):
            meta = _yaml(model / "meta.yaml")
            if not _real_dir(model / "artifacts"):
                continue
            entry = {"dir": model, "model_id": str(meta.get("model_id") or model.name), "name": str(meta.get("name"))}
            found.setdefault(str(meta.get("source_run_id")), []).append(entry)
    return found


def _copy_tree(source: Path, outputs: Path, prefix: str, warnings: list[str]) -> list[str]:
    """Copy ``source`` into ``outputs/prefix``; a path the code wrote itself is kept and named in a warning.

    The container wrote both trees and it may have left symlinks in them that lead anywhere on this host: nothing
    here follows one, in the store or in the outputs (a symlink, FIFO or device is named in a warning instead)."""
    copied: list[str] = []
    if not _real_dir(source):
        return copied
    for root, dirs, files in os.walk(source):  # never descends into a symlinked directory
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            path = Path(root) / name
            rel = prefix + path.relative_to(source).as_posix()
            data = _read(path)
            if data is None:
                warnings.append(f"MLflow artifact {rel} is not a regular file (a symlink?): not copied")
                continue
            if not _write_new(outputs, rel, data):
                warnings.append(f"MLflow artifact {rel} is also an output the code wrote: the code's file is kept")
                continue
            copied.append(rel)
    return copied


def _write_new(outputs: Path, rel: str, data: bytes) -> bool:
    """Write ``data`` to a new file ``outputs/rel``, making the directories on the way; False when the path or a
    directory on it exists as anything else (the code's own output, or a symlink the code left)."""
    directory = outputs
    for part in rel.split("/")[:-1]:
        directory = directory / part
        if not os.path.lexists(directory):
            directory.mkdir()
        elif not _real_dir(directory):
            return False
    try:
        fd = os.open(directory / rel.split("/")[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def _read(path: Path, limit: int | None = None) -> bytes | None:
    """A regular file's bytes (at most ``limit``), never through a symlink; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read() if limit is None else fh.read(limit)


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _strip_mlmodel(path: Path) -> dict[str, str]:
    """Drop the top-level lines of an MLmodel file that name ids and times; returns them."""
    data = _read(path)
    if data is None:
        return {}
    kept, dropped = [], {}
    for line in data.decode("utf-8", "replace").splitlines(keepends=True):
        key, sep, value = line.partition(":")
        if sep and key in MLMODEL_RUN_KEYS and not line[0].isspace():
            dropped[key] = value.strip().strip("'\"")
        else:
            kept.append(line)
    if dropped:
        path.write_text("".join(kept), encoding="utf-8")
    return dropped


def _values(directory: Path) -> dict[str, str]:
    """MLflow's one-file-per-key directories (params/, tags/); a key with '/' is a subdirectory."""
    out: dict[str, str] = {}
    if not _real_dir(directory):
        return out
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            data = _read(path, MAX_VALUE)
            if data is not None:
                out[path.relative_to(directory).as_posix()] = data.decode("utf-8", "replace")
    return dict(sorted(out.items()))


def _metrics(directory: Path) -> dict[str, list[tuple[int, float, int]]]:
    """metric -> distinct (timestamp, value, step) points (MLflow 3 writes a metric again when a model is logged)."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    if not _real_dir(directory):
        return out
    for root, _dirs, files in os.walk(directory):
        for name in sorted(files):
            path = Path(root) / name
            points: list[tuple[int, float, int]] = []
            data = _read(path)
            for line in (data or b"").decode("utf-8", "replace").splitlines():
                parts = line.split()
                if len(parts) < 3:
                    continue
                try:
                    point = (int(parts[0]), float(parts[1]), int(parts[2]))
                except ValueError:
                    continue
                if point not in points:
                    points.append(point)
            if points:
                out[path.relative_to(directory).as_posix()] = points
    return dict(sorted(out.items()))


def _same(logged: str, passed: Any) -> bool:
    if logged == (passed if isinstance(passed, str) else json.dumps(passed)) or logged == str(passed):
        return True
    if isinstance(passed, int | float) and not isinstance(passed, bool):
        try:
            return float(logged) == float(passed)
        except ValueError:
            return False
    return False


def _yaml(path: Path) -> dict[str, Any]:
    data = _read(path, MAX_VALUE)
    if data is None:
        return {}
    import yaml

    try:
        value = yaml.safe_load(data.decode("utf-8", "replace"))
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}
