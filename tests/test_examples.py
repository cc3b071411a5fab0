"""The bikes example, run the way the README tells a user to: its own git repository, two named configs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.projects import git, harness, make_bikes_repo, valid_record

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def bikes(tmp_path_factory: pytest.TempPathFactory, harness_cache: Path) -> Path:
    # The same packages, locked for requirements that name this session, so the environment image's id is this
    # session's own and removing it below disturbs no other process on the engine (tests/projects.py).
    return make_bikes_repo(tmp_path_factory.mktemp("bikes") / "bikes")


def test_bikes_baseline_then_linear_regression(bikes: Path) -> None:
    first = harness(bikes, "run", "--commit", "HEAD", "--json")
    assert first.returncode == 0, first.stderr
    second = harness(bikes, "run", "--commit", "HEAD", "-c", "linear_regression", "--json")
    assert second.returncode == 0, second.stderr
    assert "building" not in second.stderr.lower()  # the second run builds no image

    commit = git(bikes, "rev-parse", "HEAD").strip()
    records = []
    for result in (first, second):
        run_id = json.loads(result.stdout)["id"]
        shown = harness(bikes, "show", run_id, "--json")
        assert shown.returncode == 0
        records.append(valid_record(json.loads(shown.stdout)))
    baseline, linear = records
    for record in records:
        assert record["status"] == "succeeded"
        assert record["code"]["commit"] == commit and record["code"]["dirty"] is False
        assert len(record["data"]["snapshot"]) == 64 and record["data"]["files"] == 1
        assert {"metrics.json", "predictions.csv", "predictions.png"} <= set(record["outputs"]["files"])
        assert all(len(sha) == 64 for sha in record["outputs"]["files"].values())
        assert {"rmse_train", "rmse_test"} <= set(record["metrics"])
    image_id = baseline["environment"]["image_id"]
    assert linear["environment"]["image_id"] == image_id
    inspected = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image_id], capture_output=True, text=True, check=True
    )
    assert inspected.stdout.strip() == image_id
    # Exactly the locked packages, nothing else (pip itself is not installed into the environment).
    locked = {
        line.split('"')[1] for line in (bikes / "harness.lock").read_text().splitlines() if line.startswith("name = ")
    }
    assert {p["name"] for p in baseline["environment"]["packages"]} == locked
    assert baseline["params"]["model"] == "baseline" and linear["params"]["model"] == "linear_regression"
    assert linear["metrics"]["rmse_test"] < baseline["metrics"]["rmse_test"]
    # Same code, data, params and image: the same bytes out.
    rerun = harness(bikes, "run", "--json")
    assert json.loads(rerun.stdout)["outputs"]["files"] == baseline["outputs"]["files"]

    # The image is gone from the engine: rebuild loads it back from the store and proves the outputs identical.
    subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)
    rebuilt = harness(bikes, "rebuild", linear["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "loading image" in rebuilt.stderr and "rebuilding it from recipe" not in rebuilt.stderr
    assert json.loads(rebuilt.stdout)["identical"] is True

    table = harness(bikes, "ls").stdout
    assert "bikes+linear_regression" in table and "rmse_test" in table


def test_bikes_params_read_and_the_runs_table(bikes: Path) -> None:
    """The issue's "done when": configs and overrides in `ls`, --where and --sort, an unread param reported."""
    runs = {}
    for args in (("-c", "baseline"), ("-c", "linear_regression"), ("-c", "linear_regression", "-p", "test_days=14")):
        result = harness(bikes, "run", *args, "--json")
        assert result.returncode == 0, result.stderr
        runs[args] = json.loads(result.stdout)
        assert runs[args]["params_unread"] == [] and "model" in runs[args]["params_read"]
    ignored = harness(bikes, "run", "-c", "linear_regression", "-p", "oversample=true")
    assert ignored.returncode == 0, ignored.stderr
    assert "params set but never read by the code: oversample" in ignored.stderr

    table = harness(bikes, "ls", "--where", 'params.model == "linear_regression"', "--sort", "metrics.rmse_test")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[1].split()
    assert "test_days" in header and "oversample" in header and "rmse_test" in header
    listed = json.loads(
        harness(bikes, "ls", "--where", "metrics.rmse_test < 1000 and params.test_days == 14", "--json").stdout
    )
    assert [r["id"] for r in listed] == [runs[("-c", "linear_regression", "-p", "test_days=14")]["id"]]
    ordered = json.loads(harness(bikes, "ls", "--sort", "metrics.rmse_test", "--json").stdout)
    rmse = [r["metrics"]["rmse_test"] for r in ordered]
    assert rmse == sorted(rmse)
