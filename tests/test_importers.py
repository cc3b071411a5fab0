"""`harness init --from MLproject|dvc.yaml` (harness/project/importers.py), with neither mlflow nor dvc installed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from harness.project.config import load_config
from tests.projects import harness, make_repo, settle, valid_record

MLPROJECT = """
name: wine
conda_env: conda.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
      epochs: {type: int, default: "3"}
      data_file: path
    command: "python train.py {alpha} {l1_ratio} --epochs {epochs}"
"""
CONDA = """
name: wine
channels: [conda-forge]
dependencies:
  - python=3.11.6
  - pip
  - conda-forge::numpy=1.26
  - pandas>=2.0
  - mkl
  - cudatoolkit=11.8
  - pytorch
  - pip:
    - mlflow-skinny<4
    - scikit-learn==1.5.2
"""


def test_init_from_mlproject_with_conda_env(tmp_path: Path) -> None:
    make_repo(tmp_path, {"MLproject": MLPROJECT, "conda.yaml": CONDA, "train.py": ""})
    result = harness(tmp_path, "init", "--from", "MLproject")
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path)
    assert config.name == "wine" and config.base == "bookworm"
    assert config.command == ("python", "train.py", "{alpha}", "{l1_ratio}", "--epochs", "{epochs}")
    assert config.params == {"alpha": 0.5, "l1_ratio": 0.1, "epochs": 3}
    assert (
        "data_file (path): no default in MLproject; pass -p data_file=VALUE" in (tmp_path / "harness.toml").read_text()
    )
    requirements = (tmp_path / "requirements.txt").read_text().splitlines()
    assert requirements[1:] == ["numpy==1.26.*", "pandas>=2.0", "torch", "mlflow-skinny<4", "scikit-learn==1.5.2"]
    assert "conda packages with no wheel on PyPI (mkl, cudatoolkit=11.8)" in result.stdout
    assert config.requirements == "requirements.txt"


def test_init_from_mlproject_with_python_env(tmp_path: Path) -> None:
    make_repo(
        tmp_path,
        {
            "MLproject": "python_env: python_env.yaml\nentry_points:\n  main:\n    command: python t.py {x}\n"
            "    parameters:\n      x: {type: string, default: 7}\n",
            "python_env.yaml": "python: '3.13'\nbuild_dependencies: [pip]\ndependencies:\n  - -r requirements.txt\n",
            "requirements.txt": "six\n",
        },
    )
    result = harness(tmp_path, "init", "--from", "MLproject")
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path)
    assert config.base == "trixie" and config.params == {"x": "7"} and config.requirements == "requirements.txt"
    assert (tmp_path / "requirements.txt").read_text() == "six\n"  # used as it is


DVC_YAML = """
stages:
  train:
    cmd: python train.py --seed ${seed}
    deps:
      - train.py
      - data/points.csv
    params:
      - train.lr
      - seed
    outs:
      - model.json
    metrics:
      - eval/scores.json:
          cache: false
"""
DVC_PARAMS = "seed: 3\ntrain:\n  lr: 0.5\n  steps: 4\n"
DVC_TRAIN = r"""
import argparse, json, os, yaml
parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int)
seed = parser.parse_args().seed
params = yaml.safe_load(open("params.yaml"))
points = [float(x) for x in open("data/points.csv").read().split()]
w = 0.0
for _ in range(params["train"]["steps"]):
    w -= params["train"]["lr"] * sum(2 * (w - p) for p in points) / len(points)
json.dump({"w": w, "seed": seed}, open("model.json", "w"), sort_keys=True)
os.makedirs("eval", exist_ok=True)
json.dump({"loss": sum((w - p) ** 2 for p in points) / len(points)}, open("eval/scores.json", "w"))
"""


def test_init_from_dvc_yaml_writes_the_stage(tmp_path: Path) -> None:
    stage = DVC_YAML.replace("      - train.py\n", "      - train.py\n      - src\n")
    files = {"dvc.yaml": stage, "params.yaml": DVC_PARAMS, "train.py": DVC_TRAIN, "src/util.py": ""}
    make_repo(tmp_path, files)
    result = harness(tmp_path, "init", "--from", "dvc.yaml")
    assert result.returncode == 0, result.stderr
    table = tomllib.loads((tmp_path / "harness.toml").read_text())
    assert table["command"] == "python train.py --seed {seed}"
    assert table["defaults_file"] == "params.yaml" and table["metrics"] == ["eval/scores.json"]
    assert table["data"] == {"points.csv": "data/points.csv"}  # src/ holds code: it is in /code
    assert table["paths"] == {
        "data/points.csv": "/data/points.csv",
        "model.json": "/outputs/model.json",
        "eval/scores.json": "/outputs/eval/scores.json",
    }
    two = tmp_path / "two"
    make_repo(two, {"dvc.yaml": "stages:\n  a:\n    cmd: x\n  b:\n    cmd: y\n"})
    refused = harness(two, "init", "--from", "dvc.yaml")
    assert refused.returncode != 0 and "dvc.yaml has 2 stages: a, b" in refused.stderr
    assert "--stage NAME" in refused.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_a_dvc_project_runs_unchanged(tmp_path: Path, harness_cache: Path) -> None:
    from tests.projects import commit_all, session_owned

    root = tmp_path / "dvcproj"
    make_repo(
        root,
        {
            "dvc.yaml": DVC_YAML,
            "params.yaml": DVC_PARAMS,
            "train.py": DVC_TRAIN,
            "requirements.txt": session_owned("pyyaml==6.0.2") + "\n",
            ".gitignore": "/data\n",
        },
    )
    (root / "data").mkdir()
    (root / "data" / "points.csv").write_text("1 2 3 6\n")
    settle(root / "data")
    assert harness(root, "init", "--from", "dvc.yaml").returncode == 0
    locked = harness(root, "lock")
    assert locked.returncode == 0, locked.stderr
    commit_all(root, "harness config")
    run = harness(root, "run", "-p", "train.steps=20", "--json")
    assert run.returncode == 0, run.stderr
    record = valid_record(json.loads(run.stdout))
    assert record["command"] == ["python", "train.py", "--seed", "3"]
    assert record["params"] == {"seed": 3, "train": {"lr": 0.5, "steps": 20}}
    assert set(record["outputs"]["files"]) == {"model.json", "eval/scores.json"}
    model = json.loads((root / ".harness" / "runs" / record["id"] / "outputs" / "model.json").read_text())
    assert model["seed"] == 3 and abs(model["w"] - 3.0) < 1e-6  # 20 steps, read from the written params.yaml
    assert abs(record["metrics"]["loss"] - 3.5) < 1e-6
    assert record["runtime"]["defaults_file_written"] == "params.yaml"
    rebuilt = harness(root, "rebuild", record["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert json.loads(rebuilt.stdout)["identical"] is True
