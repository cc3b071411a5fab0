"""Sealed run records, through real runs of the probe project (real git, real Docker) and the real CLI: a record
changed after its run ended, or one that cannot be read, is named, never shown, compared or executed, and a
store-wide verify reports it and checks the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.projects import cli_env, harness, unseal, valid_record

pytestmark = pytest.mark.docker

NO_ENGINE = "unix:///nonexistent/harness-tests/docker.sock"


def _run(root: Path, *args: str) -> dict[str, Any]:
    result = harness(root, "run", "--json", *args)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _record_path(root: Path, run_id: str) -> Path:
    return root / ".harness" / "runs" / run_id / "record.json"


def _edit(root: Path, run_id: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = _record_path(root, run_id)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _refused(result: subprocess.CompletedProcess, root: Path, run_id: str) -> None:
    """Exit 107, an error naming the run and its record file and a hint, and no traceback."""
    said = result.stdout + result.stderr  # `harness verify` lists what it found on stdout
    assert result.returncode == 107, said
    assert f"the record of run {run_id}" in said and str(_record_path(root, run_id)) in said
    assert "\nhint: " in result.stderr and "Traceback" not in result.stderr


def _runs(root: Path) -> list[str]:
    return sorted(os.listdir(root / ".harness" / "runs"))


def _drop_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / ".harness" / f"index.sqlite{suffix}").unlink(missing_ok=True)


def test_rebuild_refuses_an_edited_command_and_never_reaches_the_engine(probe_project: Path) -> None:
    original = _run(probe_project)
    run_id = original["id"]
    _edit(probe_project, run_id, lambda r: r.update(command=["python", "-c", "print('the edited command ran')"]))
    before = _runs(probe_project)
    no_engine = cli_env(DOCKER_HOST=NO_ENGINE)

    refused = harness(probe_project, "rebuild", run_id, env=no_engine)
    _refused(refused, probe_project, run_id)
    assert "was changed after its run ended" in refused.stderr and "(changed: command)" in refused.stderr
    with_engine = harness(probe_project, "rebuild", run_id)
    _refused(with_engine, probe_project, run_id)
    assert "the edited command ran" not in with_engine.stdout + with_engine.stderr
    assert _runs(probe_project) == before, "no run was recorded"

    # The hint's command puts the sealed record back; then a rebuild gets as far as the engine (which is how
    # the refusal above is known to come before it: without a reachable engine this one fails there).
    [(sealed_copy, record)] = re.findall(r"`cp (\S+) (\S+)`", refused.stderr)
    assert record == str(_record_path(probe_project, run_id))
    shutil.copyfile(sealed_copy, record)
    assert json.loads(Path(record).read_text())["command"] == ["python", "main.py"]
    reached = harness(probe_project, "rebuild", run_id, env=no_engine)
    assert reached.returncode == 106, reached.stderr
    assert harness(probe_project, "show", run_id).returncode == 0


@pytest.mark.parametrize(
    "corruption",
    [
        pytest.param(lambda data: data.replace(b'"status"', b'\xffstatus"', 1), id="not-utf8"),
        pytest.param(lambda data: data.replace(b'"status":', b'"status";', 1), id="not-json"),
        pytest.param(lambda data: data.replace(b'"total": 10', b'"total": 19', 1), id="a-digit"),
    ],
)
def test_a_one_byte_corruption_is_an_error_in_every_reader_never_a_traceback(
    probe_project: Path, corruption: Callable[[bytes], bytes]
) -> None:
    run_id = _run(probe_project)["id"]
    path = _record_path(probe_project, run_id)
    data = path.read_bytes()
    damaged = corruption(data)
    assert len(damaged) == len(data) and sum(a != b for a, b in zip(data, damaged, strict=True)) == 1
    path.write_bytes(damaged)
    before = _runs(probe_project)

    for args in (
        ("show", run_id),
        ("show", run_id, "--json"),
        ("verify", "--run", run_id),
        ("rebuild", run_id),
        ("diff", run_id, run_id),
    ):
        _refused(harness(probe_project, *args), probe_project, run_id)
    assert json.loads(harness(probe_project, "show", run_id, "--json").stdout)["exit_code"] == 107
    assert _runs(probe_project) == before

    # `harness ls` reads the index, which keeps the record as sealed; rebuilt from the files, it still does.
    for _ in range(2):
        listed = harness(probe_project, "ls", "--json")
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["id"] == run_id and row["metrics"]["total"] == 10
        _drop_index(probe_project)


def test_verify_names_each_damaged_record_and_checks_all_the_others(probe_project: Path) -> None:
    edited, broken, intact = _run(probe_project), _run(probe_project), _run(probe_project, "-c", "double")
    _edit(probe_project, edited["id"], lambda r: r["metrics"].update(total=11))
    _record_path(probe_project, broken["id"]).write_text("{")
    output = intact["outputs"]["files"]["sub/total.txt"]  # "20": no other run wrote it
    obj = probe_project / ".harness" / "objects" / output[:2] / output[2:]
    os.chmod(obj, 0o644)
    obj.write_text("21")

    result = harness(probe_project, "verify", "--json")
    assert result.returncode == 107 and "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["records"]["checked"] == 3 and report["records"]["unsealed"] == []
    problems = {p["run"]: p for p in report["records"]["problems"]}
    assert set(problems) == {edited["id"], broken["id"]}
    assert problems[edited["id"]]["problem"] == "changed"
    assert problems[edited["id"]]["detail"] == "changed: metrics.total"
    assert problems[broken["id"]]["problem"] == "unreadable" and "not valid JSON" in problems[broken["id"]]["detail"]
    assert all(p["sealed_copy"] for p in problems.values())
    # The intact run's objects were checked too, and what a damaged record's run uses comes from its sealed copy.
    [damaged_object] = report["problems"]
    assert damaged_object["object"] == output
    assert damaged_object["used_by"] == [f"output sub/total.txt of run {intact['id']}"]

    text = harness(probe_project, "verify")
    assert text.returncode == 107
    assert f"CHANGED since its run ended: the record of run {edited['id']}" in text.stdout
    assert f"UNREADABLE: the record of run {broken['id']}" in text.stdout
    # The damaged object is the intact run's output file too (a hardlink), so its outputs directory is named as well.
    assert "error: 2 record(s) and 1 object(s) and 1 file(s) in run outputs directories failed" in text.stderr


def test_rebuilding_the_index_does_not_launder_an_edited_record(probe_project: Path) -> None:
    run_id = _run(probe_project)["id"]
    _edit(probe_project, run_id, lambda r: r["metrics"].update(total=1))
    _drop_index(probe_project)

    listed = harness(probe_project, "ls", "--json")  # rebuilds the index from the record files
    assert listed.returncode == 0, listed.stderr
    assert [r["metrics"]["total"] for r in json.loads(listed.stdout)] == [10], "the index holds the sealed values"
    _refused(harness(probe_project, "show", run_id), probe_project, run_id)
    # With no sealed copy left, the index says so instead of listing the edited values.
    shutil.rmtree(probe_project / ".harness" / "objects")
    _drop_index(probe_project)
    table = harness(probe_project, "ls")
    assert table.returncode == 0 and "DAMAGED" in table.stdout, table.stdout + table.stderr
    assert "1" not in re.findall(r"total\S*\s+(\S+)", table.stdout)
    # The seal is in two places: without the one in the store, the index's copy still catches the edit.
    (probe_project / ".harness" / "seals" / run_id).unlink()
    _refused(harness(probe_project, "show", run_id), probe_project, run_id)


def test_a_record_from_before_seals_is_shown_and_verify_warns(probe_project: Path) -> None:
    run_id = _run(probe_project)["id"]
    sealed = harness(probe_project, "show", run_id)
    assert sealed.returncode == 0 and re.search(r"sealed +sha256 [0-9a-f]{16}, unchanged since the run", sealed.stdout)
    assert json.loads(harness(probe_project, "verify", "--json").stdout)["records"] == {
        "checked": 1,
        "problems": [],
        "unsealed": [],
    }
    unseal(probe_project, run_id)

    shown = harness(probe_project, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "sealed    no: recorded by a harness that did not seal records" in shown.stdout
    record = valid_record(json.loads(harness(probe_project, "show", run_id, "--json").stdout))
    assert record == json.loads(_record_path(probe_project, run_id).read_text())
    report = harness(probe_project, "verify", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["records"]["unsealed"] == [run_id]
    text = harness(probe_project, "verify")
    assert text.returncode == 0 and "have no seal, so an edit to them could not be noticed" in text.stderr
    assert run_id in text.stderr and "all intact" in text.stdout
