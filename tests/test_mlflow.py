"""A project written for MLflow (MLproject, python_env.yaml, mlflow.log_* calls) run unchanged under harness, with
real MLflow (mlflow-skinny) inside the image and none on the host. The image is built once for this module."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.projects import commit_all, harness, make_repo, session_owned, valid_record

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MLPROJECT = """
name: elastic
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
    command: "python train.py {alpha} {l1_ratio}"
"""
TRAIN = r"""
import sys
import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import ElasticNet

alpha, l1_ratio = float(sys.argv[1]), float(sys.argv[2])
l1_ratio = min(l1_ratio, 0.9)  # the code clamps what it was given
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3))
y = X @ np.array([1.0, 2.0, 3.0]) + rng.normal(size=200) * 0.1
with mlflow.start_run():
    mlflow.log_param("alpha", alpha)
    mlflow.log_param("l1_ratio", l1_ratio)
    mlflow.set_tag("team", "forecasting")
    model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=0, max_iter=3)
    for step in range(3):
        model.set_params(max_iter=step + 1).fit(X, y)
        mlflow.log_metric("train_rmse", float(np.sqrt(((model.predict(X) - y) ** 2).mean())), step=step)
    mlflow.log_metric("r2", float(model.score(X, y)))
    with open("/tmp/coef.txt", "w") as fh:
        fh.write(" ".join(f"{c:.6f}" for c in model.coef_) + "\n")
    mlflow.log_artifact("/tmp/coef.txt", artifact_path="report")
    mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
print("trained")
"""


@pytest.fixture(scope="module")
def mlflow_project(tmp_path_factory: pytest.TempPathFactory, harness_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("mlflow") / "elastic"
    packages = [session_owned("mlflow-skinny==3.17.2"), "scikit-learn==1.9.1", "pandas==3.1.1"]
    python_env = "python: '3.11'\nbuild_dependencies: [pip]\ndependencies:\n" + "".join(
        f"  - '{p}'\n" for p in packages
    )
    make_repo(root, {"MLproject": MLPROJECT, "python_env.yaml": python_env, "train.py": TRAIN})
    init = harness(root, "init", "--from", "MLproject")
    assert init.returncode == 0, init.stderr
    locked = harness(root, "lock")
    assert locked.returncode == 0, locked.stderr
    assert "mlflow-skinny" in (root / "harness.lock").read_text()
    commit_all(root, "harness config from MLproject")
    return root


def _record(root: Path, result: Any) -> dict[str, Any]:
    run_id = result.stderr.split("harness: run ", 1)[1].split()[0]
    shown = harness(root, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return valid_record(json.loads(shown.stdout))


def test_mlflow_logging_lands_in_the_record_and_the_outputs(mlflow_project: Path) -> None:
    result = harness(mlflow_project, "run", "-p", "alpha=0.05", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "warning  MLflow param" not in result.stderr
    record = _record(mlflow_project, result)
    assert record["command"] == ["python", "train.py", "0.05", "0.1"]
    assert record["params"] == {"alpha": 0.05, "l1_ratio": 0.1}
    assert record["params_read"] == ["alpha", "l1_ratio"] and record["params_unread"] == []
    assert set(record["metrics"]) == {"train_rmse", "r2"} and record["metrics_steps"] == 3
    files = record["outputs"]["files"]
    assert {"report/coef.txt", "model/MLmodel", "model/model.pkl", "mlflow/metrics.jsonl"} <= set(files)
    assert not [p for p in files if re.search(r"[0-9a-f]{32}|m-[0-9a-f]{32}", p)]  # no random ids in paths
    outputs = mlflow_project / ".harness" / "runs" / record["id"] / "outputs"
    steps = [json.loads(line) for line in (outputs / "mlflow" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2] and steps[-1]["train_rmse"] == record["metrics"]["train_rmse"]
    mlmodel = (outputs / "model" / "MLmodel").read_text()
    assert "run_id" not in mlmodel and "utc_time_created" not in mlmodel and "flavors:" in mlmodel
    (run,) = record["mlflow"]["runs"]
    assert re.fullmatch(r"[0-9a-f]{32}", run["run_id"]) and run["tags"] == {"team": "forecasting"}
    assert run["start_time"] and run["models"][0]["mlmodel"]["run_id"] == run["run_id"]
    assert record["mlflow"]["params"] == {"alpha": "0.05", "l1_ratio": "0.1"}
    assert record["runtime"]["env"]["MLFLOW_TRACKING_URI"] == "file:///harness/state/mlruns"
    assert record["runtime"]["limits"]["state"] == record["runtime"]["limits"]["outputs"]

    rebuilt = harness(mlflow_project, "rebuild", record["id"], "--json", timeout=1800)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    report = json.loads(rebuilt.stdout)
    assert report["identical"] is True
    again = json.loads(harness(mlflow_project, "show", report["rebuild"], "--json").stdout)
    assert again["mlflow"]["runs"][0]["run_id"] != run["run_id"]  # MLflow's ids differ; the outputs do not


def test_a_param_the_code_logs_differently_is_a_warning(mlflow_project: Path) -> None:
    result = harness(mlflow_project, "run", "-p", "l1_ratio=1.5", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning  MLflow param l1_ratio=0.9 was logged, but the run passed l1_ratio=1.5" in result.stderr
    record = _record(mlflow_project, result)
    assert record["mlflow"]["warnings"] == ["MLflow param l1_ratio=0.9 was logged, but the run passed l1_ratio=1.5"]
