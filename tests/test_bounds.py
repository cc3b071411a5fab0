"""Inputs that cost too much: each is bounded, and past the bound it is a clear error or a named omission, never a
traceback, minutes of work or gigabytes of memory. Real runs go through the real engine and real git."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.project import params as params_module
from harness.project.config import parse_config
from harness.project.params import MAX_ENV_TOTAL, MAX_ENV_VALUE, load_named_configs, merge_params
from harness.runs.query import MAX_DEPTH, QueryError, parse_sort, parse_where, varying
from harness.runs.records import SCHEMA, Records
from harness.runs.tracking import MAX_METRIC_KEYS, MAX_METRICS_DEPTH, read_metrics
from harness.ui.server import make_server
from tests.projects import cli_env, commit_all, harness, make_probe_project, valid_record

# 419 bytes: nine levels of nine aliases each, 9^9 (387 million) strings, 490 million YAML nodes written out.
BILLION_LAUGHS = "lol:\n" + "".join(
    f"  {name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)
EXPANDED = "YAML aliases expand to 490,329,066 values from the 30 written, more than the 100,000 extra values"


def _record(root: Path, result: subprocess.CompletedProcess) -> dict[str, Any]:
    run_id = result.stderr.split("harness: run ", 1)[1].split()[0]
    shown = harness(root, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return valid_record(json.loads(shown.stdout))


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# -- metrics: how many, how deep ------------------------------------------------------------------------------------
def test_varying_over_300000_metric_keys_takes_a_moment_not_minutes() -> None:
    # The old test `k not in changing` searched a list: 300,000 keys took 433 s in `harness ls --limit 5`.
    many = {f"m{i:06d}": i for i in range(300_000)}
    records = [{"metrics": many}, {"metrics": {**many, "m000000": -1}}, {"metrics": {"other": 1}}]
    started = time.monotonic()
    changing, constant = varying(records, "metrics")
    assert time.monotonic() - started < 10
    assert len(changing) == 300_001 and constant == {}
    changing, constant = varying(records[:2], "metrics")
    assert changing == ["m000000"] and len(constant) == 299_999 and constant["m299999"] == 299_999


def test_ls_of_a_run_an_older_harness_recorded_with_300000_metrics_is_quick(tmp_path: Path) -> None:
    records = Records(tmp_path / ".harness" / "runs", tmp_path / ".harness" / "index.sqlite")
    (tmp_path / "harness.toml").write_text('name = "big"\ncommand = ["python", "train.py"]\n')
    for n, metrics in enumerate([{"loss": 0.5}, {"loss": 0.4}, {f"m{i:06d}": i % 13 for i in range(300_000)}]):
        run_id = records.allocate().id
        records.write(
            {
                "schema": SCHEMA,
                "id": run_id,
                "name": "big",
                "status": "succeeded",
                "exit_code": 0,
                "started_at": f"2026-03-01T10:0{n}:00.000Z",
                "finished_at": f"2026-03-01T10:0{n}:30.000Z",
                "duration_s": 30.0,
                "command": ["python", "train.py"],
                "params": {"seed": n},
                "metrics": metrics,
                "code": {"commit": f"{n}" * 40, "dirty": False, "branch": "main"},
                "data": {"snapshot": "d" * 64},
                "environment": {"image_id": "sha256:" + "e" * 64},
                "outputs": {"manifest": None, "files": {}, "bytes": 0},
                "rebuild_of": None,
            }
        )
    started = time.monotonic()
    listed = harness(tmp_path, "ls", "--limit", "5", env=cli_env(HARNESS_HOME=str(tmp_path / ".harness")), timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert time.monotonic() - started < 60
    assert "m299999" in listed.stdout.splitlines()[1]


def test_the_record_keeps_the_first_metric_keys_in_file_order_and_counts_them_all(tmp_path: Path) -> None:
    steps = [{"step": 1, "z_first": 1.0}, {"step": 2, "z_first": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    summary = {"group": {f"k{i}": i for i in range(MAX_METRIC_KEYS)}, "a_last": 2}
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    found = read_metrics(tmp_path, {})
    assert found.truncated_from == MAX_METRIC_KEYS + 2 and found.error is None
    assert list(found.metrics) == ["z_first", "group"]  # z_first came first (metrics.jsonl), a_last did not fit
    assert found.metrics["z_first"] == 0.5 and len(found.metrics["group"]) == MAX_METRIC_KEYS - 1
    (tmp_path / "metrics.json").write_text(json.dumps({"a": {"b": 1}}))
    assert read_metrics(tmp_path, {}).truncated_from is None  # within the bound: nothing left out


def test_metrics_nested_past_the_bound_are_named_and_not_read(tmp_path: Path) -> None:
    lines = [json.dumps({"loss": 1.0}), _nested(MAX_METRICS_DEPTH + 1), json.dumps({"loss": 0.5})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    found = read_metrics(tmp_path, {})
    assert found.metrics == {"loss": 0.5} and found.steps == 2
    assert found.error == (
        f"outputs/metrics.jsonl line 2: nested more than {MAX_METRICS_DEPTH} levels deep, so not read "
        "(it stays in the outputs)"
    )
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "metrics.json").write_text(_nested(MAX_METRICS_DEPTH - 1))  # a leaf at the bound
    assert read_metrics(tmp_path, {}).error is None


@pytest.mark.docker
def test_a_run_with_300000_metrics_records_10000_and_names_the_rest(probe_project: Path) -> None:
    (probe_project / "many.py").write_text(
        "import json\n"
        "metrics = {f'm{i:06d}': i % 13 for i in range(300_000)}\n"
        "open('/outputs/metrics.json', 'w').write(json.dumps(metrics))\n"
    )
    commit_all(probe_project, "many metrics")
    result = harness(probe_project, "run", "--", "python", "many.py")
    assert result.returncode == 0, result.stderr
    assert f"warning  300,000 metrics: the record keeps the first {MAX_METRIC_KEYS:,}" in result.stderr
    assert "m000029=" in result.stderr and "m000030=" not in result.stderr  # the summary names 30
    record = _record(probe_project, result)
    assert record["status"] == "succeeded"
    assert record["metrics_truncated"] == {"kept": MAX_METRIC_KEYS, "total": 300_000}
    assert len(record["metrics"]) == MAX_METRIC_KEYS and record["metrics"]["m009999"] == 9999 % 13
    kept = json.loads((probe_project / ".harness" / "runs" / record["id"] / "outputs" / "metrics.json").read_text())
    assert len(kept) == 300_000  # the output file has them all
    started = time.monotonic()
    listed = harness(probe_project, "ls", "--limit", "5")
    assert listed.returncode == 0 and time.monotonic() - started < 30


@pytest.mark.docker
def test_a_metrics_file_nested_100000_deep_is_skipped_with_a_warning_and_the_run_keeps_its_outputs(
    probe_project: Path,
) -> None:
    (probe_project / "deep.py").write_text(
        "open('/outputs/metrics.json', 'w').write('{\"a\": ' * 100_000 + '1' + '}' * 100_000)\n"
        "open('/outputs/model.txt', 'w').write('weights')\n"
    )
    commit_all(probe_project, "deep metrics")
    result = harness(probe_project, "run", "--", "python", "deep.py")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    message = f"outputs/metrics.json: nested more than {MAX_METRICS_DEPTH} levels deep, so not read"
    assert f"warning  {message}" in result.stderr
    record = _record(probe_project, result)
    assert record["status"] == "succeeded" and record["metrics"] == {}
    assert record["metrics_error"].startswith(message)
    assert set(record["outputs"]["files"]) == {"metrics.json", "model.txt"}


# -- --where and --sort ---------------------------------------------------------------------------------------------
def test_a_where_nested_past_the_bound_is_a_query_error() -> None:
    assert parse_where("not " * (MAX_DEPTH - 1) + "dirty")({"code": {"dirty": True}}) is False
    for text in ("not " * MAX_DEPTH + "dirty", "not " * 3000 + "dirty", ".".join(["a"] * 5000) + " == 1"):
        with pytest.raises(QueryError) as info:
            parse_where(text)
        assert f"nested more than {MAX_DEPTH} levels deep" in info.value.message
    with pytest.raises(QueryError, match="--sort"):
        parse_sort(".".join(["a"] * 5000))


def test_ls_with_not_3000_times_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "harness.toml").write_text('name = "x"\ncommand = ["python", "train.py"]\n')
    result = harness(tmp_path, "ls", "--where", "not " * 3000 + "dirty")
    assert result.returncode == 2, result.stderr
    assert f"error: --where: nested more than {MAX_DEPTH} levels deep" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_ui_answers_a_too_deep_where_with_a_400_and_the_message(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    ui = make_server(records, port=0)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        where = urllib.parse.quote("not " * 3000 + "dirty")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{ui.url}api/runs?where={where}", timeout=10)
        assert info.value.code == 400
        body = json.loads(info.value.read())
        assert body["error"] == "QueryError" and f"nested more than {MAX_DEPTH} levels deep" in body["message"]
    finally:
        ui.shutdown()
        ui.server_close()
        thread.join(5)


# -- params: YAML aliases, depth, size -------------------------------------------------------------------------------
def test_yaml_aliases_that_expand_past_the_bound_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_named_configs(BILLION_LAUGHS, "params.yaml")
    assert info.value.message.startswith(f"params.yaml: {EXPANDED}")
    flow = "{" + BILLION_LAUGHS.split("\n", 1)[1].replace("\n  ", ", ").strip().rstrip(",") + "}"
    with pytest.raises(ConfigError, match="-p x: YAML aliases expand"):
        merge_params({}, {}, [], ["x=" + flow], None)
    with pytest.raises(ConfigError, match="a YAML alias refers to a value that contains it"):
        load_named_configs("c:\n  x: &a [1, *a]\n", "params.yaml")
    with pytest.raises(ConfigError, match=f"nested more than {params_module.MAX_DEPTH} levels deep"):
        load_named_configs("c:\n  x: " + "[" * 5000 + "]" * 5000 + "\n", "params.yaml")
    # Aliases within the bound are YAML as usual.
    named = load_named_configs("base: &b {lr: 0.1, depth: 3}\nfast: {<<: *b, lr: 0.5}\n", "params.yaml")
    assert named["fast"] == {"lr": 0.5, "depth": 3}


@pytest.mark.docker
def test_a_billion_laughs_params_file_is_refused_in_a_moment_and_little_memory(probe_project: Path) -> None:
    (probe_project / "params.yaml").write_text(BILLION_LAUGHS)
    commit_all(probe_project, "lol")

    def two_gib() -> None:  # before the fix this run took 5.9 GB: fail with MemoryError, not take the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "-c", "lol"],
        cwd=probe_project,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=two_gib,
    )
    assert result.returncode == 101, result.stderr
    assert f"error: params.yaml: {EXPANDED}" in result.stderr
    assert "Traceback" not in result.stderr and time.monotonic() - started < 20


def test_env_variables_over_the_bounds_are_left_out_and_named() -> None:
    big = "x" * (MAX_ENV_VALUE + 1)
    chunk = "y" * (MAX_ENV_VALUE // 2)
    many = {f"p{i:02d}": chunk for i in range(2 * MAX_ENV_TOTAL // MAX_ENV_VALUE)}  # twice the total, in halves
    params = merge_params({"big": big, "small": 1, "nested": {"big": big}, **many}, {}, [], [], None)
    env = params.env()
    omitted = params.env_omitted()
    assert "HARNESS_PARAM_BIG" not in env and "HARNESS_PARAM_NESTED__BIG" not in env
    assert env["HARNESS_PARAM_SMALL"] == "1"
    assert omitted[:2] == ["big", "nested.big"] and "small" not in omitted
    kept = [k for k in many if f"HARNESS_PARAM_{k.upper()}" in env]
    assert kept == list(many)[: len(kept)] and len(kept) + len(omitted) - 2 == len(many)
    assert sum(len(k) + len(v) + 2 for k, v in env.items()) <= MAX_ENV_TOTAL


@pytest.mark.docker
def test_a_3_mb_param_reaches_the_code_in_params_json_and_is_left_out_of_the_environment(
    probe_project: Path,
) -> None:
    blob = "0123456789abcdef" * (3 * 1024 * 1024 // 16)
    (probe_project / "params.yaml").write_text(json.dumps({"big": {"blob": blob}}))
    (probe_project / "big.py").write_text(
        "import json, os\n"
        "params = json.load(open('/harness/params.json'))\n"
        "print('blob', len(params['blob']), 'HARNESS_PARAM_BLOB' in os.environ, os.environ['HARNESS_PARAM_SCALE'])\n"
    )
    commit_all(probe_project, "a 3 MB param")
    result = harness(probe_project, "run", "-c", "big", "--", "python", "big.py")
    assert result.returncode == 0, result.stderr
    assert f"blob {len(blob)} False 1" in result.stdout
    assert "warning: params too long for an environment variable" in result.stderr and ": blob;" in result.stderr
    assert "warning  too long for HARNESS_PARAM_* variables, only in params.json: blob" in result.stderr
    record = _record(probe_project, result)
    assert record["runtime"]["params_env_omitted"] == ["blob"]
    assert "HARNESS_PARAM_BLOB" not in record["runtime"]["env"] and len(record["params"]["blob"]) == len(blob)


# -- the project's path, threads -------------------------------------------------------------------------------------
@pytest.mark.docker
def test_a_project_whose_path_holds_a_colon_runs(tmp_path: Path, tiny_env: Any, tiny_lock: Any) -> None:
    root = make_probe_project(tmp_path / "pro:ject", tiny_lock)
    result = harness(root, "run")
    assert result.returncode == 0, result.stderr
    record = _record(root, result)
    assert record["status"] == "succeeded" and record["metrics"] == {"total": 10, "nested": {"n": 4}}
    probe = json.loads((root / ".harness" / "runs" / record["id"] / "outputs" / "probe.json").read_text())
    assert probe["write_code"] is False and probe["write_data"] is False  # the mounts are read-only as before


def test_threads_beyond_the_machines_cpus_is_a_config_error_naming_key_value_and_limit(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    base = 'base = "bookworm"\nlock = "l"\ncommand = ["x"]\n'
    assert parse_config(base + f"threads = {cpus}\n", tmp_path / "harness.toml", tmp_path).threads == cpus
    with pytest.raises(ConfigError) as info:
        parse_config(base + "threads = 100000\n", tmp_path / "harness.toml", tmp_path)
    assert info.value.message == f"harness.toml: threads: 100000 is more than the {cpus} CPUs of this machine"
    assert f"set threads to {cpus} or fewer" in (info.value.hint or "")


@pytest.mark.docker
def test_a_run_with_threads_100000_is_refused_before_anything_runs(probe_project: Path) -> None:
    config = probe_project / "harness.toml"
    config.write_text(
        config.read_text().replace('params_file = "params.yaml"', 'params_file = "params.yaml"\nthreads = 100000')
    )
    commit_all(probe_project, "threads")
    result = harness(probe_project, "run")
    assert result.returncode == 101, result.stderr
    assert "error: harness.toml: threads: 100000 is more than the" in result.stderr
    assert not (probe_project / ".harness" / "runs").exists() or not any(
        (probe_project / ".harness" / "runs").iterdir()
    )
