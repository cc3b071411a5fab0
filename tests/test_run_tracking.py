"""Params actually read, and metrics steps, through a real run of the probe project (real git, real Docker)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.projects import commit_all, harness, unseal, valid_record

pytestmark = pytest.mark.docker

# Reads only `scale` through the helper; the probe's params also set `exit` and `sleep`.
TRACKED = r"""
import json, os, pathlib
import harness_params

params = harness_params.load()
out = pathlib.Path(os.environ["HARNESS_OUTPUTS"])
with open(out / "metrics.jsonl", "w") as fh:
    for step in range(1, 4):
        fh.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n")
(out / "metrics.json").write_text(json.dumps({"scale": params["scale"]}))
try:
    open("/harness/lib/harness_params.py", "a")
    print("helper writable")
except OSError:
    print("helper read-only")
"""


def _record(root: Path, result: Any) -> dict[str, Any]:
    run_id = result.stderr.split("harness: run ", 1)[1].split()[0]
    shown = harness(root, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return valid_record(dict(json.loads(shown.stdout)))


def test_unread_params_are_recorded_and_warned_about(probe_project: Path) -> None:
    (probe_project / "tracked.py").write_text(TRACKED)
    commit_all(probe_project, "tracked entry point")
    result = harness(probe_project, "run", "-p", "oversample=true", "--", "python", "tracked.py")
    assert result.returncode == 0, result.stderr
    assert "helper read-only" in result.stdout
    assert "warning  params set but never read by the code: exit, oversample, sleep" in result.stderr
    record = _record(probe_project, result)
    assert record["params_read"] == ["scale"]
    assert record["params_unread"] == ["exit", "oversample", "sleep"]
    assert record["metrics"] == {"loss": 1 / 3, "scale": 1}
    assert record["metrics_steps"] == 3
    assert record["metrics_steps_object"] == record["outputs"]["files"]["metrics.jsonl"]
    # The note lives outside /outputs: the outputs are only what the code wrote.
    assert set(record["outputs"]["files"]) == {"metrics.json", "metrics.jsonl"}
    mounts = {m["target"]: m["read_only"] for m in record["runtime"]["mounts"]}
    assert mounts["/harness"] is True and mounts["/harness/state"] is False
    assert record["runtime"]["env"]["PYTHONPATH"] == "/harness/lib"

    listed = harness(probe_project, "ls", "--where", "params.oversample == true", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)] == [record["id"]]


def test_code_that_reads_params_itself_gets_no_verdict(probe_project: Path) -> None:
    result = harness(probe_project, "run", "-p", "sleep=0")
    assert result.returncode == 0, result.stderr
    assert "never read" not in result.stderr
    record = _record(probe_project, result)
    assert record["params_read"] is None and record["params_unread"] is None
    assert record["metrics"] == {"total": 10, "nested": {"n": 4}} and "metrics_steps" not in record


def test_a_rebuild_runs_the_helper_the_run_recorded(probe_project: Path) -> None:
    """The helper is code the run executed: it is stored and recorded, and a rebuild mounts that version even
    when this harness ships another (here: the record names an older helper, as a record of an older harness
    would)."""
    (probe_project / "tracked.py").write_text(TRACKED)
    commit_all(probe_project, "tracked entry point")
    result = harness(probe_project, "run", "--", "python", "tracked.py")
    assert result.returncode == 0, result.stderr
    record = _record(probe_project, result)
    helper = record["runtime"]["params_helper"]
    objects = probe_project / ".harness" / "objects"
    current = (objects / helper[:2] / helper[2:]).read_bytes()
    assert b"def load" in current

    older = current + b"\nprint('the older helper')\n"
    digest = hashlib.sha256(older).hexdigest()
    (objects / digest[:2]).mkdir(exist_ok=True)
    (objects / digest[:2] / digest[2:]).write_bytes(older)
    path = probe_project / ".harness" / "runs" / record["id"] / "record.json"
    saved = json.loads(path.read_text())
    saved["runtime"]["params_helper"] = digest
    path.write_text(json.dumps(saved))
    unseal(probe_project, record["id"])  # an older harness sealed nothing

    rebuilt = harness(probe_project, "rebuild", record["id"])
    assert "the older helper" in rebuilt.stdout + rebuilt.stderr
    assert rebuilt.returncode == 0, rebuilt.stderr  # same outputs: the helper does not change them

    (objects / digest[:2] / digest[2:]).write_bytes(older + b"# tampered\n")
    refused = harness(probe_project, "rebuild", record["id"])
    assert refused.returncode == 107
    assert "the params helper module (harness_params) of the run was tampered with" in refused.stderr
    checked = harness(probe_project, "verify", "--run", record["id"])
    assert checked.returncode == 107 and f"used by params helper module of run {record['id']}" in checked.stdout
