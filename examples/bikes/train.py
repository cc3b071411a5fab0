"""Fit an hourly bike-rental model and write metrics, predictions and a plot.

Runs inside the harness container (Python 3.11, numpy and matplotlib only). Everything it reads and
writes is named by environment variables that harness sets, with the container defaults:

    HARNESS_PARAMS   /harness/params.json   the run's params (model, test_days, lags), read through
                                            harness_params so that harness can tell which were never read
    HARNESS_DATA     /data                  data root; the CSV is the file <root>/hours
    HARNESS_OUTPUTS  /outputs               metrics.json, predictions.csv, predictions.png

Models:
    baseline           the training mean of the same hour of the week
    linear_regression  least squares on lagged counts, hour-of-day and day-of-week one-hots and weather
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("baseline", "linear_regression")
DEFAULTS: dict[str, Any] = {"model": "baseline", "test_days": 28, "lags": [1, 24, 168]}


def log(message: str) -> None:
    print(f"[train] {message}", flush=True)


def load_params() -> Mapping[str, Any]:
    """The run's params. Inside harness through its helper, which notes each param this code reads, so a run
    with a param the code ignores (say -p oversample=true) is flagged; outside harness (no helper on the path)
    straight from the JSON file."""
    try:
        import harness_params
    except ImportError:
        path = Path(os.environ.get("HARNESS_PARAMS", "/harness/params.json"))
        return dict(json.loads(path.read_text(encoding="utf-8")))
    return harness_params.load()


def param(params: Mapping[str, Any], key: str) -> Any:
    # Not params.get(key, default) on a merged dict: copying the params into a dict would read every one.
    return params[key] if key in params else DEFAULTS[key]


def load_hours(path: Path) -> dict[str, np.ndarray]:
    stamps: list[datetime] = []
    temperature: list[float] = []
    precipitation: list[float] = []
    holiday: list[int] = []
    count: list[float] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            stamps.append(datetime.fromisoformat(row["timestamp"]))
            temperature.append(float(row["temperature_c"]))
            precipitation.append(float(row["precipitation_mm"]))
            holiday.append(int(row["is_holiday"]))
            count.append(float(row["count"]))
    return {
        "timestamp": np.array([s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in stamps]),
        "hour": np.array([s.hour for s in stamps]),
        "weekday": np.array([s.weekday() for s in stamps]),
        "temperature": np.array(temperature),
        "precipitation": np.array(precipitation),
        "holiday": np.array(holiday, dtype=float),
        "count": np.array(count),
    }


def baseline(data: dict[str, np.ndarray], n_train: int) -> np.ndarray:
    """Predict every hour with the training mean of its hour of the week (168 buckets)."""
    how = data["weekday"] * 24 + data["hour"]
    sums = np.bincount(how[:n_train], weights=data["count"][:n_train], minlength=168)
    counts = np.bincount(how[:n_train], minlength=168)
    means = sums / np.maximum(counts, 1)
    return means[how]


def features(data: dict[str, np.ndarray], lags: list[int]) -> np.ndarray:
    n = len(data["count"])
    columns = [np.ones(n)]
    for lag in lags:
        # Rows before the largest lag get a placeholder; they are excluded from fitting and scoring.
        lagged = np.zeros(n)
        lagged[lag:] = data["count"][:-lag]
        columns.append(lagged)
    # One-hots drop the first level: with the intercept, a full set would be collinear.
    columns += [(data["hour"] == h).astype(float) for h in range(1, 24)]
    columns += [(data["weekday"] == d).astype(float) for d in range(1, 7)]
    temp = data["temperature"]
    columns += [temp, temp**2, data["precipitation"], (data["precipitation"] > 0).astype(float), data["holiday"]]
    return np.column_stack(columns)


def linear_regression(data: dict[str, np.ndarray], n_train: int, lags: list[int]) -> np.ndarray:
    first = max(lags)
    x = features(data, lags)
    coef, *_ = np.linalg.lstsq(x[first:n_train], data["count"][first:n_train], rcond=None)
    # Counts cannot be negative; a linear model can dip below zero at night.
    return np.maximum(x @ coef, 0.0)


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual - predicted) ** 2)))


def write_plot(path: Path, stamps: np.ndarray, actual: np.ndarray, predicted: np.ndarray, title: str) -> None:
    # Matplotlib caches fonts under MPLCONFIGDIR; the container's root filesystem is read-only and /tmp is
    # the writable tmpfs, so point it there unless harness already did. Must happen before the import.
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(actual))
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot(hours, actual, color="0.35", linewidth=0.9, label="actual")
    ax.plot(hours, predicted, color="tab:orange", linewidth=1.1, label="predicted")
    ticks = hours[::24]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(s)[5:10] for s in stamps[::24]], rotation=90, fontsize=7)
    ax.set_ylabel("rentals per hour")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    # No "Software" text chunk (it carries the matplotlib version) and a fixed dpi: same bytes every run.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main() -> int:
    started = time.perf_counter()
    params = load_params()
    model = param(params, "model")
    if model not in MODELS:
        print(f"train.py: unknown model {model!r}; expected one of: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    test_days = int(param(params, "test_days"))
    raw_lags = param(params, "lags")
    lags = sorted({int(lag) for lag in raw_lags})
    if not lags or lags[0] < 1:
        print(f"train.py: lags must be positive hour counts, got {raw_lags!r}", file=sys.stderr)
        return 2

    data_path = Path(os.environ.get("HARNESS_DATA", "/data")) / "hours"
    outputs = Path(os.environ.get("HARNESS_OUTPUTS", "/outputs"))
    outputs.mkdir(parents=True, exist_ok=True)

    data = load_hours(data_path)
    n = len(data["count"])
    n_test = test_days * 24
    n_train = n - n_test
    if n_train <= 168 + max(lags):
        print(f"train.py: test_days={test_days} leaves too little training data ({n} hours)", file=sys.stderr)
        return 2
    log(f"loaded {n} hours from {data_path}; training on {n_train}, holding out the last {test_days} days")

    if model == "baseline":
        predicted = baseline(data, n_train)
        first = 0
    else:
        log(f"fitting least squares with lags {lags}")
        predicted = linear_regression(data, n_train, lags)
        first = max(lags)  # the first hours have no lagged values

    actual = data["count"]
    # Numbers only: harness indexes metrics for `harness ls`; the model name is already in the params.
    metrics = {
        # Rounded so that the last bits of floating point do not make two equal runs look different.
        "rmse_train": round(rmse(actual[first:n_train], predicted[first:n_train]), 4),
        "rmse_test": round(rmse(actual[n_train:], predicted[n_train:]), 4),
        "n_train": n_train - first,
        "n_test": n_test,
    }
    (outputs / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log(f"rmse train {metrics['rmse_train']:.2f}, test {metrics['rmse_test']:.2f}")

    with (outputs / "predictions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["timestamp", "actual", "predicted"])
        for stamp, a, p in zip(data["timestamp"][n_train:], actual[n_train:], predicted[n_train:], strict=True):
            writer.writerow([stamp, int(a), f"{p:.1f}"])

    write_plot(
        outputs / "predictions.png",
        data["timestamp"][n_train:],
        actual[n_train:],
        predicted[n_train:],
        f"{model}: last {test_days} days held out (test RMSE {metrics['rmse_test']:.1f})",
    )
    log(f"wrote metrics.json, predictions.csv, predictions.png to {outputs} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
