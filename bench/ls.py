"""`harness ls` over 10,000 runs next to MLflow's `search_runs` over the same 10,000 runs.

Setup (not measured): writes N realistic run records (params, metrics, code, environment, outputs, host) into a
project store under bench/out/ls-project, and the same params and metrics as N MLflow runs in a SQLite backend
(bench/out/mlflow/mlflow.db) through MLflow's own client, installed in its own venv (bench/out/mlflow-venv).
Both are reused on the next invocation when they already hold N runs.

Measured: the wall time of a fresh process (median of --repeat, after one warm-up) doing
  harness:  python -m harness ls --limit 50               and  ls --where 'metrics.rmse_test < 40' --limit 50
  mlflow:   MlflowClient().search_runs(max_results=50, order_by start_time DESC), and with
            filter_string 'metrics.rmse_test < 40'; each prints one line per run (id, params, metrics)

Usage: python bench/ls.py [--runs 10000] [--repeat 5]
       (first: python -m venv bench/out/mlflow-venv && bench/out/mlflow-venv/bin/pip install mlflow)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import compile_harness  # bench/ is on sys.path when a script in it runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from harness.runs.records import SCHEMA, Records  # noqa: E402

OUT = HERE / "out"
MODELS = ("baseline", "linear_regression", "random_forest", "gradient_boosting")
PACKAGES = [
    ("numpy", "1.26.4"),
    ("pandas", "2.2.2"),
    ("scikit-learn", "1.5.1"),
    ("scipy", "1.13.1"),
    ("matplotlib", "3.9.1"),
    ("joblib", "1.4.2"),
    ("threadpoolctl", "3.5.0"),
    ("python-dateutil", "2.9.0"),
    ("pytz", "2024.1"),
    ("six", "1.16.0"),
    ("pillow", "10.4.0"),
    ("kiwisolver", "1.4.5"),
    ("cycler", "0.12.1"),
    ("fonttools", "4.53.1"),
    ("packaging", "24.1"),
    ("pyparsing", "3.1.2"),
]


def fake_runs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Params, metrics and facts of n runs, newest last; the same list feeds harness and MLflow."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    runs = []
    for i in range(n):
        model = rng.choice(MODELS)
        params = {
            "model": model,
            "test_days": rng.choice([14, 28]),
            "lags": rng.choice(["1,24", "1,24,168"]),
            "learning_rate": rng.choice([0.3, 0.1, 0.03, 0.01]),
            "max_depth": rng.randint(2, 12),
            "oversample": rng.random() < 0.3,
            "seed": rng.randint(0, 2**31),
        }
        base = {"baseline": 55.0, "linear_regression": 38.0, "random_forest": 33.0, "gradient_boosting": 31.0}[model]
        rmse_test = round(base + rng.gauss(0, 5), 4)
        metrics = {
            "rmse_train": round(rmse_test * rng.uniform(0.6, 0.95), 4),
            "rmse_test": rmse_test,
            "mae_test": round(rmse_test * 0.78, 4),
            "n_train": 8064 - params["test_days"] * 24,
            "n_test": params["test_days"] * 24,
        }
        runs.append(
            {
                "started": start + i * 37.0,
                "duration": round(rng.uniform(2, 60), 3),
                "params": params,
                "metrics": metrics,
                "failed": rng.random() < 0.03,
                "dirty": rng.random() < 0.02,
                "commit": f"{rng.getrandbits(160):040x}",
            }
        )
    return runs


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def harness_record(run_id: str, run: dict[str, Any]) -> dict[str, Any]:
    """A record shaped like runner._initial_record's, finished."""
    failed = run["failed"]
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    return {
        "schema": SCHEMA,
        "id": run_id,
        "name": "bikes+" + run["params"]["model"],
        "status": "failed" if failed else "succeeded",
        "exit_code": 1 if failed else 0,
        "started_at": _iso(run["started"]),
        "finished_at": _iso(run["started"] + run["duration"]),
        "duration_s": run["duration"],
        "command": ["python", "train.py"],
        "params": run["params"],
        "params_digest": digest,
        "params_sources": {k: "default" for k in run["params"]},
        "params_read": sorted(run["params"]),
        "params_unread": [],
        "configs": [run["params"]["model"]],
        "code": {
            "commit": run["commit"],
            "tree": run["commit"][::-1],
            "dirty": run["dirty"],
            "patch": None,
            "diff": None,
            "changes": [],
            "branch": "main",
            "remote": "git@example.com:team/bikes.git",
            "subject": "try another model",
            "committed_at": _iso(run["started"] - 600),
            "committed_at_epoch": int(run["started"] - 600),
            "project_path": "",
            "archive": digest,
        },
        "environment": {
            "image_id": "sha256:" + digest,
            "manifest_digest": "sha256:" + digest[::-1],
            "key": digest,
            "python": "3.11.2",
            "packages": [{"name": n, "version": v, "sha256": digest} for n, v in PACKAGES],
            "recipe": "bookworm",
            "lock_file": "harness.lock",
        },
        "data": {"snapshot": digest, "files": 1, "bytes": 812345, "mount": "/data", "read_only": True},
        "outputs": {
            "manifest": digest,
            "files": {"metrics.json": digest, "predictions.csv": digest, "predictions.png": digest},
            "bytes": 123456,
        },
        "metrics": {} if failed else run["metrics"],
        "host": {"engine_version": "20.10.24", "os": "linux", "cpu": "x86_64", "ci": None},
        "rebuild_of": None,
    }


def setup_harness(project: Path, runs: list[dict[str, Any]]) -> None:
    records = Records(project / ".harness" / "runs", project / ".harness" / "index.sqlite")
    done = (project / "harness.toml").is_file() and records.runs_dir.is_dir()
    if done and len(os.listdir(records.runs_dir)) == len(runs):
        return
    project.mkdir(parents=True, exist_ok=True)
    (project / "harness.toml").write_text('name = "bikes"\ncommand = ["python", "train.py"]\n')
    for i, run in enumerate(runs):
        run_id = f"{i:06x}"
        (records.runs_dir / run_id).mkdir(parents=True, exist_ok=True)
        record = harness_record(run_id, run)
        (records.runs_dir / run_id / "record.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    records.reindex()


MLFLOW_SETUP = r"""
import json, sys
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

uri, source = sys.argv[1], sys.argv[2]
client = MlflowClient(tracking_uri=uri)
exp = client.get_experiment_by_name("bikes") or client.get_experiment(client.create_experiment("bikes"))
for line in open(source):
    run = json.loads(line)
    ms = int(run["started"] * 1000)
    r = client.create_run(exp.experiment_id, start_time=ms, run_name="bikes+" + run["params"]["model"],
                          tags={"dirty": str(run["dirty"]).lower(), "commit": run["commit"]})
    metrics = {} if run["failed"] else run["metrics"]
    client.log_batch(r.info.run_id, params=[Param(k, str(v)) for k, v in run["params"].items()],
                     metrics=[Metric(k, float(v), ms, 0) for k, v in metrics.items()])
    client.set_terminated(r.info.run_id, "FAILED" if run["failed"] else "FINISHED",
                          end_time=ms + int(run["duration"] * 1000))
print(exp.experiment_id)
"""

MLFLOW_SEARCH = r"""
import sys, time
from mlflow import MlflowClient

uri, where = sys.argv[1], sys.argv[2]
client = MlflowClient(tracking_uri=uri)
exp = client.get_experiment_by_name("bikes")
started = time.perf_counter()
runs = client.search_runs([exp.experiment_id], filter_string=where, max_results=50,
                          order_by=["attributes.start_time DESC"])
for r in runs:
    print(r.info.run_id, r.info.status, r.data.params, r.data.metrics)
print(f"in-process {time.perf_counter() - started:.4f}", file=sys.stderr)
"""


def setup_mlflow(python: Path, db: Path, runs: list[dict[str, Any]]) -> float:
    uri = f"sqlite:///{db}"
    marker = db.with_suffix(".count")
    if db.is_file() and marker.is_file() and marker.read_text().strip() == str(len(runs)):
        return 0.0
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db, marker):
        stale.unlink(missing_ok=True)
    source = db.with_suffix(".jsonl")
    source.write_text("".join(json.dumps(r) + "\n" for r in runs))
    started = time.perf_counter()
    subprocess.run([str(python), "-c", MLFLOW_SETUP, uri, str(source)], check=True, stdout=subprocess.DEVNULL)
    marker.write_text(str(len(runs)))
    return time.perf_counter() - started


def timed(
    argv: list[str], cwd: Path, repeat: int, env: dict[str, str] | None = None
) -> tuple[float, int, float | None]:
    """Median wall time of a fresh process over ``repeat`` runs (after one warm-up), its output lines, and the
    median of the time it reports for the search itself (a stderr line "in-process SECONDS"), if any."""
    times, inner = [], []
    lines = 0
    for i in range(repeat + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True, env=env)
        if i:
            times.append(time.perf_counter() - start)
            inner += [float(x.split()[1]) for x in done.stderr.splitlines() if x.startswith("in-process ")]
        lines = len(done.stdout.splitlines())
    return statistics.median(times), lines, statistics.median(inner) if inner else None


def in_process(project: Path, where: str | None, repeat: int) -> float:
    """The same harness listing inside this process (index read, filter, render), without start-up."""
    from harness.cli.table import render_table
    from harness.runs.history import query_runs

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        rows, total = query_runs(project, where, None, 50)
        render_table(rows, False, total, where)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    compile_harness()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mlflow-python", type=Path, default=OUT / "mlflow-venv" / "bin" / "python")
    args = parser.parse_args()

    runs = fake_runs(args.runs)
    project = OUT / f"ls-project-{args.runs}"
    t0 = time.perf_counter()
    setup_harness(project, runs)
    print(f"setup: {args.runs} harness records in {project} ({time.perf_counter() - t0:.1f} s)")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    harness = [sys.executable, "-m", "harness", "ls", "--limit", "50"]
    where = "metrics.rmse_test < 40"
    results = [
        ("harness ls --limit 50", *timed(harness, project, args.repeat, env)[:2], in_process(project, None, 5)),
        (
            f"harness ls --where '{where}' --limit 50",
            *timed([*harness, "--where", where], project, args.repeat, env)[:2],
            in_process(project, where, 5),
        ),
    ]
    if args.mlflow_python.is_file():
        db = OUT / "mlflow" / f"mlflow-{args.runs}.db"
        took = setup_mlflow(args.mlflow_python, db, runs)
        print(f"setup: {args.runs} MLflow runs in {db} (sqlite backend){f' ({took:.0f} s)' if took else ''}")
        uri = f"sqlite:///{db}"
        search = [str(args.mlflow_python), "-c", MLFLOW_SEARCH, uri]
        menv = {**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
        results += [
            ("mlflow search_runs max_results=50", *timed([*search, ""], OUT, args.repeat, menv)),
            (f"mlflow search_runs '{where}' max_results=50", *timed([*search, where], OUT, args.repeat, menv)),
        ]
    else:
        print(f"MLflow not measured: no {args.mlflow_python} (see the usage line in this file's docstring)")
    print(f"\nfresh process wall time, median of {args.repeat} ({args.runs} runs in the store);")
    print("in brackets the listing alone, inside an already started process (median of 5)")
    for label, seconds, lines, inner in results:
        inside = f"[{inner:.3f} s]" if inner is not None else ""
        print(f"  {seconds:6.3f} s {inside:>9}  {label}  ({lines} lines of output)")


if __name__ == "__main__":
    main()
