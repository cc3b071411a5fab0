"""The in-container params helper (harness_params) and what the runner makes of its note and of metrics files."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runs.tracking import HELPER, Metrics, ParamsUsage, params_usage, read_metrics, with_pythonpath

PARAMS = {"lr": 0.1, "model": {"depth": 3, "kind": "tree"}, "lags": [1, 2], "oversample": True, "empty": {}}

USER_CODE = """
import json, harness_params
p = harness_params.load()
lr = p["lr"]
depth = p["model"]["depth"]
seed = p.get("seed", 7)          # not set: not a read of any param
lags = p["lags"]; lags.append(99)  # a copy: the params do not change
print(json.dumps({"lr": lr, "depth": depth, "seed": seed, "lags": p["lags"], "has": "oversample" in p,
                  "keys": sorted(p.keys()), "n": len(p), "model_dict": dict(p["model"])}))
"""


def run_user_code(tmp_path: Path, code: str, python: str = sys.executable) -> tuple[dict[str, object], Path]:
    (tmp_path / "params.json").write_text(json.dumps(PARAMS))
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    env = {
        "PYTHONPATH": str(HELPER.parent),
        "HARNESS_PARAMS": str(tmp_path / "params.json"),
        "HARNESS_PARAMS_READ": str(state / "params_read.json"),
    }
    done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=True)
    return (json.loads(done.stdout) if done.stdout.strip() else {}), state


def test_helper_notes_what_the_code_reads(tmp_path: Path) -> None:
    out, state = run_user_code(tmp_path, USER_CODE)
    assert out["lr"] == 0.1 and out["depth"] == 3 and out["seed"] == 7 and out["lags"] == [1, 2]
    assert out["has"] is True and out["keys"] == ["empty", "lags", "lr", "model", "oversample"] and out["n"] == 5
    note = json.loads((state / "params_read.json").read_text())
    # dict(p["model"]) took every value under model; `in`, keys() and len() took none.
    assert note == {"schema": "harness.params_read/1", "read": ["lags", "lr", "model.depth", "model.kind"]}
    assert params_usage(state, PARAMS) == ParamsUsage(
        read=["lags", "lr", "model.depth", "model.kind"], unread=["empty", "oversample"]
    )


def test_loading_without_reading_means_every_param_unread(tmp_path: Path) -> None:
    _, state = run_user_code(tmp_path, "import harness_params; harness_params.load()")
    usage = params_usage(state, PARAMS)
    assert usage.read == [] and usage.unread == [
        "empty",
        "lags",
        "lr",
        "model.depth",
        "model.kind",
        "oversample",
    ]


def test_to_dict_reads_everything_and_the_note_survives_a_hard_exit(tmp_path: Path) -> None:
    code = "import harness_params, os; harness_params.load()['lr']; os._exit(0)"  # no atexit: written on read
    _, state = run_user_code(tmp_path, code)
    assert params_usage(state, PARAMS).read == ["lr"]
    _, state = run_user_code(tmp_path, "import harness_params; harness_params.load().to_dict()")
    assert params_usage(state, PARAMS).unread == []


def test_code_that_never_loads_the_helper_says_nothing(tmp_path: Path) -> None:
    assert params_usage(tmp_path, PARAMS) == ParamsUsage(read=None, unread=None)
    (tmp_path / "params_read.json").write_text("{not json")
    usage = params_usage(tmp_path, PARAMS)
    assert usage.read is None and usage.error is not None and "params_read.json" in usage.error


def _python38() -> str | None:
    """A Python 3.8 interpreter, if the machine has one (pyenv's shims need a selected version, so look behind)."""
    candidates = [
        shutil.which("python3.8"),
        *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.8*/bin/python3.8"))),
    ]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_helper_runs_on_python_38(tmp_path: Path) -> None:
    """The helper runs in the user's environment, which may be older than harness's own Python."""
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    out, state = run_user_code(tmp_path, USER_CODE, python)
    assert out["depth"] == 3 and params_usage(state, PARAMS).unread == ["empty", "oversample"]


def test_metrics_last_value_per_key_and_steps_counted(tmp_path: Path) -> None:
    steps = [
        {"step": 1, "loss": 0.9, "acc": 0.5},
        {"step": 2, "loss": 0.5, "val": {"loss": 0.7}},
        {"step": 3, "loss": 0.25},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps) + "\n")
    found = read_metrics(tmp_path, {"metrics.jsonl": "ab" * 32})
    assert found == Metrics(metrics={"loss": 0.25, "acc": 0.5, "val": {"loss": 0.7}}, steps=3, steps_object="ab" * 32)
    (tmp_path / "metrics.json").write_text(json.dumps({"loss": 0.3, "test": {"rmse": 4.5}}))
    assert read_metrics(tmp_path, {}).metrics == {
        "loss": 0.3,
        "acc": 0.5,
        "val": {"loss": 0.7},
        "test": {"rmse": 4.5},
    }


def test_bad_metrics_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1}\nnot json\n[1, 2]\n{"loss": 0.5}\n')
    found = read_metrics(tmp_path, {})
    assert found.metrics == {"loss": 0.5} and found.steps == 2 and found.error is not None
    assert found.error.startswith("outputs/metrics.jsonl line 2:") and "(and 1 more)" in found.error
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "metrics.json").write_text("[1]")
    assert read_metrics(tmp_path, {}) == Metrics(metrics={}, error="outputs/metrics.json: not a JSON object")


def test_configured_pythonpath_keeps_the_helper() -> None:
    ours = {"PYTHONPATH": "/harness/lib", "TZ": "UTC"}
    assert with_pythonpath(ours, {"PYTHONPATH": "/code/src"})["PYTHONPATH"] == "/code/src:/harness/lib"
    assert with_pythonpath(ours, {"TZ": "Europe/Paris"}) == {"PYTHONPATH": "/harness/lib", "TZ": "Europe/Paris"}
