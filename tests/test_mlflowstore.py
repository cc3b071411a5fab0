"""Reading MLflow's file store on the host (harness/runs/mlflowstore.py), on stores in the layout MLflow 3.17 writes
(the real store, written by real MLflow in a run, is read in tests/test_mlflow.py)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.project.codepaths import place
from harness.runs.mlflowstore import harvest, uses_mlflow
from harness.runs.tracking import read_metrics
from tests.projects import write_files

MLMODEL = """artifact_path: file:///harness/state/mlruns/0/models/m-0dc4/artifacts
flavors:
  sklearn:
    pickled_model: model.pkl
    run_id: nested-keys-stay
mlflow_version: 3.17.2
model_id: m-0dc4
model_uuid: m-0dc4
run_id: {run}
utc_time_created: '2026-11-29 22:52:38.263383'
"""


def _run(store: Path, run: str, start: int, metrics: dict[str, str], params: dict[str, str]) -> None:
    base = f"0/{run}/"
    write_files(
        store,
        {
            base + "meta.yaml": f"run_id: {run}\nrun_name: name-{run}\nexperiment_id: '0'\nstart_time: {start}\n"
            f"end_time: {start + 5}\nstatus: 3\nuser_id: harness\n",
            base + "tags/mlflow.user": "harness",
            base + "tags/team": "forecasting",
            base + "artifacts/report/coef.txt": "1 2 3\n",
            **{base + f"metrics/{k}": v for k, v in metrics.items()},
            **{base + f"params/{k}": v for k, v in params.items()},
            f"0/models/m-{run}/meta.yaml": f"model_id: m-{run}\nname: model\nsource_run_id: {run}\n",
            f"0/models/m-{run}/artifacts/MLmodel": MLMODEL.format(run=run),
            f"0/models/m-{run}/artifacts/model.pkl": "pickle",
        },
    )


def test_one_run_lands_under_its_artifact_paths(tmp_path: Path) -> None:
    state, outputs = tmp_path / "state", tmp_path / "outputs"
    outputs.mkdir()
    # MLflow 3 writes a metric's step again when a model is logged: the same point twice is one.
    loss = "100 1.0 0\n110 0.5 1\n120 0.25 2\n100 1.0 0\n"
    _run(state / "mlruns", "a" * 32, 1000, {"loss": loss, "r2": "130 0.9 0\n"}, {"alpha": "0.5", "l1_ratio": "0.9"})
    (outputs / "report").mkdir()
    (outputs / "report" / "coef.txt").write_text("the code's own\n")
    found = harvest(state, outputs, {"alpha": 0.5, "l1_ratio": 1.5, "other": 1})
    assert found is not None
    section, warnings = found
    assert warnings == [
        "MLflow artifact report/coef.txt is also an output the code wrote: the code's file is kept",
        "MLflow param l1_ratio=0.9 was logged, but the run passed l1_ratio=1.5",
    ]
    assert (outputs / "report" / "coef.txt").read_text() == "the code's own\n"
    assert sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file()) == [
        "mlflow/metrics.jsonl",
        "model/MLmodel",
        "model/model.pkl",
        "report/coef.txt",
    ]
    mlmodel = (outputs / "model" / "MLmodel").read_text()
    assert (
        mlmodel
        == "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    run_id: nested-keys-stay\nmlflow_version: 3.17.2\n"
    )
    steps = [json.loads(line) for line in (outputs / "mlflow" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [{"step": 0, "loss": 1.0, "r2": 0.9}, {"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    assert section["metrics"] == {"loss": 0.25, "r2": 0.9} and section["steps"] == 3
    (run,) = section["runs"]
    assert (
        run["run_id"] == "a" * 32 and run["run_name"] == "name-" + "a" * 32 and run["tags"] == {"team": "forecasting"}
    )
    assert run["models"][0]["mlmodel"]["run_id"] == "a" * 32 and run["models"][0]["path"] == "model"


def test_several_runs_go_under_mlflow_runs_in_the_order_they_started(tmp_path: Path) -> None:
    state, outputs = tmp_path / "state", tmp_path / "outputs"
    outputs.mkdir()
    _run(state / "mlruns", "b" * 32, 2000, {"loss": "1 0.2 0\n"}, {})
    _run(state / "mlruns", "a" * 32, 3000, {"loss": "1 0.1 0\n"}, {})
    section, _ = harvest(state, outputs, {}) or ({}, [])
    assert [r["run_id"] for r in section["runs"]] == ["b" * 32, "a" * 32]
    assert (outputs / "mlflow" / "runs" / "1" / "model" / "model.pkl").is_file()
    assert (outputs / "mlflow" / "runs" / "2" / "report" / "coef.txt").is_file()
    assert section["metrics"] == {"mlflow.runs.1.loss": 0.2, "mlflow.runs.2.loss": 0.1}
    assert harvest(tmp_path / "none", outputs, {}) is None
    assert uses_mlflow(["numpy", "MLflow_Skinny"]) and not uses_mlflow(["mlflow-tracing"])


def test_paths_link_code_to_data_and_outputs_and_metrics_files_are_read(tmp_path: Path) -> None:
    code, outputs = tmp_path / "code", tmp_path / "outputs"
    code.mkdir()
    outputs.mkdir()
    place(code, outputs, {"data/train.csv": "/data/train.csv", "eval/scores.json": "/outputs/eval/scores.json"})
    assert (code / "data" / "train.csv").readlink() == Path("/data/train.csv")
    assert (outputs / "eval").is_dir()
    (outputs / "eval" / "scores.json").write_text('{"loss": 2, "acc": 0.5}')
    (outputs / "metrics.json").write_text('{"loss": 1}')
    found = read_metrics(outputs, {}, ("eval/scores.json",))
    assert found.metrics == {"loss": 1, "acc": 0.5}  # metrics.json wins a shared name


def test_nothing_the_container_left_leads_the_harvest_out_of_its_trees(tmp_path: Path) -> None:
    """The container wrote the store and the outputs: a symlink in either, pointing at a host path, is not
    followed (read from, or written through) by harness on the host."""
    state, outputs, secret, elsewhere = tmp_path / "state", tmp_path / "outputs", tmp_path / "secret", tmp_path / "x"
    outputs.mkdir()
    elsewhere.mkdir()
    secret.write_text("host secret\n")
    run = "c" * 32
    _run(state / "mlruns", run, 1000, {"loss": "1 0.5 0\n"}, {"alpha": "0.5"})
    artifacts = state / "mlruns" / "0" / run / "artifacts"
    (artifacts / "stolen.txt").symlink_to(secret)
    (artifacts / "hostdir").symlink_to(tmp_path)
    (state / "mlruns" / "0" / run / "params" / "leak").symlink_to(secret)
    (outputs / "model").symlink_to(elsewhere)  # the code left a symlink where the model would go
    found = harvest(state, outputs, {"alpha": 0.5})
    assert found is not None
    section, warnings = found
    assert "MLflow artifact stolen.txt is not a regular file (a symlink?): not copied" in warnings
    assert "MLflow artifact hostdir is not a regular file (a symlink?): not copied" in warnings
    assert "MLflow artifact model/MLmodel is also an output the code wrote: the code's file is kept" in warnings
    assert list(elsewhere.iterdir()) == [] and not (outputs / "stolen.txt").exists()
    assert "leak" not in section["params"] and section["runs"][0]["models"][0]["mlmodel"] == {}


def test_a_model_logged_into_the_runs_artifacts_as_mlflow_2_does(tmp_path: Path) -> None:
    state, outputs = tmp_path / "state", tmp_path / "outputs"
    outputs.mkdir()
    run = "d" * 32
    write_files(
        state / "mlruns" / "0" / run,
        {
            "meta.yaml": f"run_id: {run}\nstart_time: 1\n",
            "artifacts/clf/MLmodel": MLMODEL.format(run=run),
            "artifacts/clf/model.pkl": "pickle",
        },
    )
    section, warnings = harvest(state, outputs, {}) or ({}, [])
    assert warnings == []
    stripped = (
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    run_id: nested-keys-stay\nmlflow_version: 3.17.2\n"
    )
    assert (outputs / "clf" / "MLmodel").read_text() == stripped
    (model,) = section["runs"][0]["models"]
    assert model["path"] == "clf" and model["mlmodel"]["run_id"] == run and model["mlmodel"]["model_id"] == "m-0dc4"
    assert not (outputs / "mlflow").exists()  # nothing was logged as a metric
