"""`harness rebuild` and `harness diff` against real runs: real engine, real git, real store objects."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.projects import commit_all, git, harness, make_repo, valid_record

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(root: Path, *args: str) -> dict[str, Any]:
    result = harness(root, "run", "--json", *args)
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


def _rebuild(root: Path, run_id: str) -> tuple[int, dict[str, Any], str]:
    result = harness(root, "rebuild", run_id, "--json")
    return result.returncode, json.loads(result.stdout), result.stderr


def _object(root: Path, digest: str) -> Path:
    return root / ".harness" / "objects" / digest[:2] / digest[2:]


def test_rebuild_of_a_deterministic_run_is_identical(probe_project: Path) -> None:
    original = _run(probe_project)
    code, result, _ = _rebuild(probe_project, original["id"])
    assert code == 0, result
    assert result["identical"] is True and result["outputs"]["same_files"] == 3
    assert result["inputs"]["identical"] is True  # the same hermetic settings, recorded again
    rebuilt = valid_record(json.loads(harness(probe_project, "show", result["rebuild"], "--json").stdout))
    assert rebuilt["rebuild_of"] == original["id"] and rebuilt["status"] == "succeeded"
    assert rebuilt["outputs"]["files"] == original["outputs"]["files"]
    human = harness(probe_project, "rebuild", original["id"])
    assert human.returncode == 0 and "IDENTICAL" in human.stdout
    diff = harness(probe_project, "diff", original["id"], result["rebuild"])
    assert diff.returncode == 0 and "same inputs, same outputs" in diff.stdout


def test_rebuild_works_after_the_commit_is_gone_from_the_repository(probe_project: Path) -> None:
    git(probe_project, "checkout", "-q", "-b", "experiment")
    (probe_project / "main.py").write_text((probe_project / "main.py").read_text().replace("probe ran", "exp ran"))
    commit = commit_all(probe_project, "an experiment that will be thrown away")
    original = _run(probe_project)
    assert original["code"]["commit"] == commit
    git(probe_project, "checkout", "-q", "main")
    git(probe_project, "branch", "-q", "-D", "experiment")
    git(probe_project, "reflog", "expire", "--expire=now", "--all")
    git(probe_project, "gc", "-q", "--prune=now")
    assert git(probe_project, "cat-file", "-t", commit, check=False).strip() != "commit"

    code, result, stderr = _rebuild(probe_project, original["id"])
    assert code == 0, stderr
    assert result["identical"] is True
    log = (probe_project / ".harness" / "runs" / result["rebuild"] / "log.txt").read_text()
    assert "exp ran" in log  # the thrown-away code ran, from the stored archive

    # Without the archive too, the missing input is named with what would restore it, and nothing runs.
    archive = _object(probe_project, original["code"]["archive"])
    archive.unlink()
    (probe_project / ".harness" / "code" / original["code"]["tree"]).unlink()
    runs_before = len(list((probe_project / ".harness" / "runs").iterdir()))
    missing = harness(probe_project, "rebuild", original["id"])
    assert missing.returncode == 108
    assert commit in missing.stderr and "git fetch" in missing.stderr
    assert len(list((probe_project / ".harness" / "runs").iterdir())) == runs_before


def test_a_tampered_data_object_is_reported_not_used(probe_project: Path) -> None:
    original = _run(probe_project)
    snapshot = json.loads(_object(probe_project, original["data"]["snapshot"]).read_text())
    [entry] = [e for e in snapshot["entries"] if e["path"] == "numbers/values.txt"]
    obj = _object(probe_project, entry["sha256"])
    os.chmod(obj, 0o644)
    obj.write_text("9 9 9 9\n")
    runs_before = len(list((probe_project / ".harness" / "runs").iterdir()))
    result = harness(probe_project, "rebuild", original["id"])
    assert result.returncode == 107, result.stderr
    assert "numbers/values.txt" in result.stderr and "nothing was run" in result.stderr
    assert len(list((probe_project / ".harness" / "runs").iterdir())) == runs_before


def test_rebuild_of_a_dirty_run_uses_the_stored_changes(probe_project: Path) -> None:
    (probe_project / "main.py").write_text((probe_project / "main.py").read_text().replace("probe ran", "dirty ran"))
    original = _run(probe_project, "--allow-dirty")
    git(probe_project, "checkout", "--", "main.py")  # the working tree no longer has the change
    code, result, _ = _rebuild(probe_project, original["id"])
    assert code == 0 and result["identical"] is True
    assert "dirty ran" in (probe_project / ".harness" / "runs" / result["rebuild"] / "log.txt").read_text()


def test_diff_explains_two_different_runs(probe_project: Path) -> None:
    first = _run(probe_project)
    second = _run(probe_project, "-c", "double")
    result = harness(probe_project, "diff", first["id"], second["id"], "--json")
    assert result.returncode == 1
    diff = json.loads(result.stdout)
    assert diff["inputs"]["differences"]["params"] == [{"key": "scale", "old": 1, "new": 2}]
    changed = {f["path"] for f in diff["outputs"]["files"]}
    assert changed == {"metrics.json", "sub/total.txt", "probe.json"}  # probe.json shows HARNESS_PARAM_SCALE
    assert {"key": "total", "old": 10, "new": 20} in diff["outputs"]["metrics"]
    text = harness(probe_project, "diff", first["id"], second["id"]).stdout
    assert "params   scale: 1 -> 2" in text and "-10" in text and "+20" in text


@pytest.fixture()
def nondeterministic(tmp_path: Path, tiny_env: Any) -> Path:
    root = tmp_path / "nondeterministic"
    shutil.copytree(EXAMPLES / "nondeterministic", root)
    make_repo(root, {".gitignore": ".harness/\n"})
    return root


def test_nondeterministic_example_is_caught_and_fixed_through_a_param(nondeterministic: Path) -> None:
    loose = _run(nondeterministic)
    code, result, _ = _rebuild(nondeterministic, loose["id"])
    assert code == 1
    assert result["identical"] is False and result["inputs"]["identical"] is True
    differing = {f["path"]: f for f in result["outputs"]["files"]}
    assert {"estimate.txt", "points.csv"} <= set(differing)
    assert differing["estimate.txt"]["diff"].count("made at") == 2  # the readable diff shows the timestamp
    assert differing["points.csv"]["old"]["sha256"] != differing["points.csv"]["new"]["sha256"]
    text = harness(nondeterministic, "rebuild", loose["id"])
    assert text.returncode == 1 and "DIFFERENT" in text.stdout and "estimate.txt" in text.stdout
    assert "not deterministic" in text.stdout

    fixed = _run(nondeterministic, "-c", "fixed")
    code, result, _ = _rebuild(nondeterministic, fixed["id"])
    assert code == 0 and result["identical"] is True
