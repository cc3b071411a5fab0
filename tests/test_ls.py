"""`harness ls` over real run records written with harness.records.Records (no Docker needed)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.runs.records import SCHEMA, Records
from tests.projects import cli_env, harness


def make_record(run_id: str, minute: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "id": run_id,
        "name": "bikes",
        "status": "succeeded",
        "exit_code": 0,
        "started_at": f"2026-03-01T10:{minute:02d}:00.000Z",
        "finished_at": f"2026-03-01T10:{minute:02d}:30.000Z",
        "duration_s": 30.0,
        "command": ["python", "train.py"],
        "params": {},
        "metrics": {},
        "code": {"commit": f"{minute:02d}" + "c" * 38, "dirty": False, "branch": "main"},
        "data": {"snapshot": "d" * 64},
        "environment": {"image_id": "sha256:" + "e" * 64},
        "outputs": {"manifest": None, "files": {}, "bytes": 0},
        "rebuild_of": None,
    }
    record.update(fields)
    return record


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "harness.toml").write_text('name = "bikes"\ncommand = ["python", "train.py"]\n')
    records = Records(root / ".harness" / "runs", root / ".harness" / "index.sqlite")
    runs = [
        make_record(
            "aaa111",
            1,
            name="bikes+baseline",
            params={"model": "baseline", "test_days": 28, "lags": [1, 24]},
            metrics={"rmse_test": 55.25, "rmse_train": 50.0},
        ),
        make_record(
            "bbb222",
            2,
            name="bikes+linear_regression",
            params={"model": "linear_regression", "test_days": 28, "lags": [1, 24]},
            metrics={"rmse_test": 36.5, "rmse_train": 30.0},
        ),
        make_record(
            "ccc333",
            3,
            name="bikes+linear_regression",
            params={"model": "linear_regression", "test_days": 14, "lags": [1, 24], "oversample": True},
            metrics={"rmse_test": 38.0, "rmse_train": 31.0},
            code={"commit": "03" + "c" * 38, "dirty": True, "branch": "wip"},
        ),
        make_record(
            "ddd444",
            4,
            name="bikes+linear_regression",
            status="failed",
            exit_code=3,
            params={"model": "linear_regression", "test_days": 7, "lags": [1, 24]},
        ),
    ]
    for record in runs:
        (records.runs_dir / record["id"]).mkdir(parents=True)
        records.write(record)
    return root


def ls(project: Path, *args: str) -> Any:
    return harness(project, "ls", *args, env=cli_env(HARNESS_HOME=str(project / ".harness")))


def body(table: str) -> list[str]:
    """The run rows of the text table: after the two header lines and the rule."""
    return [line for line in table.splitlines()[3:] if line[:4].isdigit()]


def test_grouped_table_shows_only_what_varies_and_marks_dirty_and_failed(project: Path) -> None:
    result = ls(project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    groups = [g.strip() for g in lines[0].split(" | ")]
    assert groups == ["Meta", "Provenance", "Params", "Metrics"]
    header = [cell for cell in lines[1].split() if cell != "|"]
    assert header[:7] == ["time", "id", "name", "status", "commit", "data", "image"]
    assert "model" in header and "test_days" in header and "oversample" in header and "rmse_test" in header
    assert "lags" not in header  # the same in every run: named under the table instead
    assert "same in every run shown: params lags=[1, 24]" in result.stdout
    rows = body(result.stdout)
    assert [row.split()[2] for row in rows] == ["ddd444", "ccc333", "bbb222", "aaa111"]  # newest first
    assert "FAILED(3)" in rows[0] and "DIRTY" in rows[1]
    assert "DIRTY" not in rows[2] and "FAILED" not in rows[2]
    # Each row's cells line up under the group separators of the header.
    assert all(row.index(" | ") == lines[0].index(" | ") for row in rows)


def test_all_columns_and_limit(project: Path) -> None:
    result = ls(project, "--all-columns", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert "lags" in result.stdout.splitlines()[1].split()
    assert len(body(result.stdout)) == 2
    assert "2 of 4 matching runs shown (--limit)" in result.stdout


def test_where_and_sort_select_and_order(project: Path) -> None:
    result = ls(
        project,
        "--where",
        'metrics.rmse_test < 40 and params.model == "linear_regression"',
        "--sort",
        "metrics.rmse_test",
    )
    assert result.returncode == 0, result.stderr
    assert [row.split()[2] for row in body(result.stdout)] == ["bbb222", "ccc333"]
    descending = ls(project, "--sort", "-metrics.rmse_test")
    # Runs without the metric come last whichever the direction.
    assert [row.split()[2] for row in body(descending.stdout)] == ["aaa111", "ccc333", "bbb222", "ddd444"]
    failed_or_dirty = ls(project, "-w", 'status == "failed" or dirty', "--sort=started_at")
    assert [row.split()[2] for row in body(failed_or_dirty.stdout)] == ["ccc333", "ddd444"]


def test_where_over_fields_only_the_full_record_has(project: Path) -> None:
    result = ls(project, "--where", 'code.branch == "wip"', "--json")
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == ["ccc333"]


def test_json_gives_full_records_in_order(project: Path) -> None:
    result = ls(project, "--json", "--sort", "metrics.rmse_test", "-n", "2")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == ["bbb222", "ccc333"]
    assert records[0]["command"] == ["python", "train.py"] and records[0]["code"]["branch"] == "main"


def test_csv_has_every_param_and_metric(project: Path) -> None:
    result = ls(project, "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == ["ddd444", "ccc333", "bbb222", "aaa111"]
    assert rows[1]["dirty"] == "true" and rows[1]["params.oversample"] == "true"
    assert rows[0]["status"] == "failed" and rows[0]["exit_code"] == "3" and rows[0]["metrics.rmse_test"] == ""
    assert rows[3]["params.lags"] == "[1, 24]" and rows[3]["metrics.rmse_test"] == "55.25"


def test_bad_where_shows_expression_and_position(project: Path) -> None:
    result = ls(project, "--where", "metrics.rmse_test < 40 and")
    assert result.returncode == 2
    assert "error: --where: not a valid expression" in result.stderr
    assert "  metrics.rmse_test < 40 and\n" in result.stderr and "^" in result.stderr
    assert "hint: examples:" in result.stderr and "Traceback" not in result.stderr
    typo = ls(project, "--where", "metrics.rmse_tset < 40")
    assert typo.returncode == 2
    assert "no run has metrics.rmse_tset" in typo.stderr and "did you mean metrics.rmse_test" in typo.stderr
    both = ls(project, "--json", "--csv")
    assert both.returncode == 101 and "choose one output format" in both.stderr


def test_option_spellings_print_the_same(project: Path) -> None:
    env = cli_env(HARNESS_HOME=str(project / ".harness"))
    spellings = (
        ["--sort", "-metrics.rmse_test", "--limit", "2", "--where", "metrics.rmse_test < 40"],
        ["-s", "-metrics.rmse_test", "-n", "2", "-w", "metrics.rmse_test < 40"],
        ["--sort=-metrics.rmse_test", "--limit=2", "--where=metrics.rmse_test < 40", "-C", str(project)],
        ["-s-metrics.rmse_test", "-n2", "-wmetrics.rmse_test < 40"],
    )
    results = [harness(project, "ls", *args, env=env) for args in spellings]
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len({r.stdout for r in results}) == 1 and results[0].stdout.count("\n") > 3


def test_index_follows_the_record_files(project: Path) -> None:
    shutil.rmtree(project / ".harness" / "runs" / "aaa111")
    assert "aaa111" not in ls(project).stdout
    (project / ".harness" / "index.sqlite").unlink()
    result = ls(project, "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == ["ddd444", "ccc333", "bbb222"]
    (project / ".harness" / "runs" / "eee555").mkdir()  # allocated, no record yet: not listed, no error
    assert len(body(ls(project).stdout)) == 3


def test_no_runs_and_no_matches(tmp_path: Path) -> None:
    (tmp_path / "harness.toml").write_text('name = "x"\ncommand = ["true"]\n')
    empty = ls(tmp_path)
    assert empty.returncode == 0 and "no runs yet" in empty.stdout
    (tmp_path / ".harness" / "runs" / "abc123").mkdir(parents=True)
    Records(tmp_path / ".harness" / "runs", tmp_path / ".harness" / "index.sqlite").write(
        make_record("abc123", 1, metrics={"rmse_test": 50})
    )
    none = ls(tmp_path, "--where", "metrics.rmse_test < 40")
    assert none.returncode == 0 and "no runs match --where 'metrics.rmse_test < 40'" in none.stdout


@pytest.mark.parametrize(
    "where",
    [
        "params.oversample == true",
        "params.oversample",
        "not params.oversample",
        "params.lags == [1, 24]",
        "metrics.rmse_test < 40",
        "metrics.rmse_test == null",
        'dirty or status == "failed"',
        "params.test_days >= 14 and exit_code == 0",
        'commit == "03' + "c" * 38 + '"',
        'metrics["it\'s"] > 1 or metrics["a\'); DROP TABLE runs; --"] > 1',  # paths are bound, not spliced
    ],
)
def test_index_scan_agrees_with_full_records(project: Path, where: str) -> None:
    """`ls` filters over fields SQLite extracts from the index; the answer must be the full records' answer."""
    from harness.runs.query import parse_where, select

    records = Records(project / ".harness" / "runs", project / ".harness" / "index.sqlite")
    condition = parse_where(where)
    scanned = records.scan(condition.names)
    assert scanned is not None
    assert [r["id"] for r in select(scanned, condition)] == [r["id"] for r in select(records.list(), condition)]
    assert records.scan([("code", "branch")]) is None  # not in the index: the caller reads full records
