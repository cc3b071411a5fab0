"""`harness data ...` and `harness verify` through the real CLI, on real files and a real store; the run tests use
the real Docker engine (probe_project)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from harness.cli.output import ByteProgress
from harness.storage.snapshot import STAT_TABLE, TREE_TABLE
from harness.storage.store import Store
from tests.projects import harness, settle

CONFIG = 'name = "d"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["true"]\n'
FILES = {"a.csv": b"x,y\n1,2\n", "sub/b.txt": b"bee", "sub/deep/c.bin": b"\x00\x01\x02", "z.txt": b"zed"}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "harness.toml").write_text(CONFIG)
    return root


def make_tree(root: Path, order: list[str]) -> Path:
    for name in order:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FILES[name])
    return root


def ok(root: Path, *args: str, code: int = 0) -> Any:
    result = harness(root, *args, "--json")
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def corrupt(path: Path) -> None:
    os.chmod(path, 0o644)  # chmod u+w: objects are read-only
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_snapshot_ls_show_diff(project: Path) -> None:
    one = make_tree(project / "one" / "data", ["a.csv", "sub/b.txt", "sub/deep/c.bin", "z.txt"])
    two = make_tree(project / "two" / "data", ["z.txt", "sub/deep/c.bin", "sub/b.txt", "a.csv"])
    (one / "run.sh").write_text("#!/bin/sh\n")
    (two / "run.sh").write_text("#!/bin/sh\n")
    for tree in (one, two):
        os.chmod(tree / "run.sh", 0o755)
        os.symlink("sub/b.txt", tree / "link")

    a = ok(project, "data", "snapshot", "one/data")
    b = ok(project, "data", "snapshot", "two/data")
    assert a["snapshot"] == b["snapshot"], "same content in another creation order gives the same digest"
    assert (a["files"], a["bytes"]) == (5, 8 + 3 + 3 + 3 + 10)
    assert a["sources"] == {"data": str(one)}

    plain = harness(project, "data", "snapshot", "one/data")
    assert plain.returncode == 0 and plain.stdout.strip() == a["snapshot"]  # SNAP=$(harness data snapshot ...)
    assert "5 files" in plain.stderr

    (two / "sub" / "b.txt").write_bytes(b"bed")  # one changed byte
    c = ok(project, "data", "snapshot", "two/data")
    assert c["snapshot"] != a["snapshot"]

    listed = ok(project, "data", "ls")
    assert [s["snapshot"] for s in listed] == [c["snapshot"], a["snapshot"]], "one row per digest, newest first"
    assert listed[0]["origin"] == "data snapshot" and listed[0]["sources"] == {"data": str(two)}
    table = harness(project, "data", "ls").stdout
    assert c["snapshot"][:12] in table.splitlines()[1] and "data snapshot" in table

    shown = ok(project, "data", "show", a["snapshot"][:10])
    entries = {e["path"]: e for e in shown["entries"]}
    assert entries["data/run.sh"]["executable"] is True
    assert entries["data/link"] == {**entries["data/link"], "kind": "symlink", "target": "sub/b.txt"}
    text = harness(project, "data", "show", a["snapshot"][:10]).stdout
    assert f"{hashlib.sha256(FILES['a.csv']).hexdigest()[:12]}  data/a.csv" in text
    assert "x " in text and "data/link -> sub/b.txt" in text

    diff = harness(project, "data", "diff", a["snapshot"][:8], c["snapshot"][:8])
    assert diff.returncode == 1, diff.stderr
    assert diff.stdout.splitlines() == [
        f"~ data/sub/b.txt  (3 B, {hashlib.sha256(b'bee').hexdigest()[:12]} -> 3 B, "
        f"{hashlib.sha256(b'bed').hexdigest()[:12]})"
    ]
    assert ok(project, "data", "diff", a["snapshot"], c["snapshot"], code=1)["changed"][0]["path"] == "data/sub/b.txt"
    same = ok(project, "data", "diff", a["snapshot"], b["snapshot"])
    assert same["identical"] and not (same["added"] or same["removed"] or same["changed"])


def test_several_paths_and_names(project: Path) -> None:
    make_tree(project / "x" / "data", ["a.csv"])
    make_tree(project / "y" / "data", ["z.txt"])
    clash = harness(project, "data", "snapshot", "x/data", "y/data")
    assert clash.returncode == 105 and "both be named 'data'" in clash.stderr and "--name" in clash.stderr
    snap = ok(project, "data", "snapshot", "x/data", "y/data", "--name", "train", "--name", "test")
    assert set(snap["sources"]) == {"train", "test"}
    paths = [e["path"] for e in ok(project, "data", "show", snap["snapshot"])["entries"]]
    assert paths == ["test", "test/z.txt", "train", "train/a.csv"]


def test_unknown_and_ambiguous_snapshots_are_not_found(project: Path) -> None:
    result = harness(project, "data", "show", "abc")
    assert result.returncode == 108 and "harness data ls" in result.stderr
    assert ok(project, "data", "show", "abc", code=108)["error"] == "NotFound"  # errors are JSON under --json
    assert harness(project, "data", "show", "0" * 64).returncode == 108


def test_outside_pointing_symlink_is_refused(project: Path, tmp_path: Path) -> None:
    data = make_tree(project / "data", ["a.csv"])
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", data / "escape")
    result = harness(project, "data", "snapshot", "data")
    assert result.returncode == 105, result.stderr
    assert "escape" in result.stderr and "outside the data tree" in result.stderr
    assert "Traceback" not in result.stderr
    assert ok(project, "data", "ls") == []


def test_verify_names_the_data_path_and_a_resnapshot_repairs_the_object(project: Path) -> None:
    make_tree(project / "data", ["a.csv", "sub/b.txt", "z.txt"])
    ok(project, "data", "snapshot", "data")
    assert ok(project, "verify")["ok"]
    obj = Store(project / ".harness" / "objects").path(hashlib.sha256(FILES["sub/b.txt"]).hexdigest())
    corrupt(obj)

    report = ok(project, "verify", code=107)
    [problem] = report["problems"]
    assert problem["problem"] == "changed" and problem["path"] == str(obj)
    assert any("data/sub/b.txt" in use for use in problem["used_by"])
    text = harness(project, "verify")
    assert text.returncode == 107 and "data/sub/b.txt" in text.stdout and "hint:" in text.stderr

    ok(project, "data", "snapshot", "data")  # same content stored again replaces the damaged object
    assert obj.read_bytes() == FILES["sub/b.txt"]
    assert ok(project, "verify")["ok"]


def make_the_cache_lie(cache: Path, path: Path, sha: str) -> None:
    """Point the stat cache's row for path at another object, and drop the whole-tree rows."""
    with closing(sqlite3.connect(cache)) as db, db:
        db.execute(f"UPDATE {STAT_TABLE} SET sha256 = ? WHERE path = ?", (sha, str(path)))
        db.execute(f"DELETE FROM {TREE_TABLE}")


def test_snapshot_rehash_reads_every_file_whatever_the_stat_cache_says(project: Path) -> None:
    data = make_tree(project / "data", ["a.csv", "sub/b.txt", "z.txt"])
    settle(data)
    first = ok(project, "data", "snapshot", "data")["snapshot"]
    make_the_cache_lie(project / ".harness" / "stat-cache.sqlite", data / "a.csv", hashlib.sha256(b"bee").hexdigest())
    assert ok(project, "data", "snapshot", "data")["snapshot"] != first, "without --rehash the cache is trusted"
    assert ok(project, "data", "snapshot", "data", "--rehash")["snapshot"] == first
    assert ok(project, "data", "snapshot", "data")["snapshot"] == first, "--rehash rewrote the cache"
    assert "--rehash" in harness(project, "data", "snapshot", "--help").stdout


def test_store_replaces_a_damaged_object_and_keeps_an_intact_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "objects")
    small = store.put_bytes(b"small")
    big_data = os.urandom((1 << 20) * 2 + 5)
    big, _ = store.put_stream(io.BytesIO(big_data))
    intact = store.path(small).stat().st_ino
    assert store.put_bytes(b"small") == small and store.path(small).stat().st_ino == intact
    for digest in (small, big):
        corrupt(store.path(digest))
        assert not store.verify(digest)
    store.path(big).write_bytes(b"truncated")  # a size change is caught without hashing
    assert store.put_bytes(b"small") == small
    assert store.put_stream(io.BytesIO(big_data)) == (big, len(big_data))
    assert store.verify(small) and store.verify(big)
    assert oct(store.path(big).stat().st_mode & 0o777) == oct(store.mode()) == "0o400"  # read-only, as private as tmp


def test_progress_bar_only_for_work_over_a_second(capsys: pytest.CaptureFixture[str]) -> None:
    quick = ByteProgress("hashing")
    quick(0, 100)
    quick(100, 100)
    slow = ByteProgress("hashing", delay=0.0)
    slow(50_000_000, 100_000_000)
    slow(100_000_000, 100_000_000)
    slow.close()
    err = capsys.readouterr().err
    assert "50.0 MB / 100.0 MB" in err and "100%" in err
    assert err.count("hashing") == 2


@pytest.mark.parametrize("command", ["snapshot", "ls", "show", "diff"])
def test_data_commands_have_help(tmp_path: Path, command: str) -> None:
    result = harness(tmp_path, "data", command, "--help")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) > 3


@pytest.mark.docker
def test_run_with_a_corrupted_data_object_stops_before_starting(probe_project: Path) -> None:
    # Data written a while ago, so the stat cache trusts its row and the second run does not re-read (and so
    # repair) the file.
    settle(probe_project / "data" / "numbers")
    first = harness(probe_project, "run", "--json")
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    listed = ok(probe_project, "data", "ls")
    assert listed[0]["snapshot"] == run["data"]["snapshot"] and listed[0]["origin"] == run["id"]
    assert listed[0]["sources"] == {"numbers": "data/numbers"}
    standalone = ok(probe_project, "data", "snapshot", "data/numbers")
    assert standalone["snapshot"] == run["data"]["snapshot"], "the CLI and a run name the same data alike"

    store = Store(probe_project / ".harness" / "objects")
    corrupt(store.path(hashlib.sha256(b"1 2 3 4\n").hexdigest()))

    second = harness(probe_project, "run")
    assert second.returncode == 107, second.stderr
    assert "numbers/values.txt" in second.stderr and "Traceback" not in second.stderr
    assert "probe ran" not in second.stdout
    # What the runner leaves: a record that says it failed before the container, and no log.
    runs = sorted(p for p in (probe_project / ".harness" / "runs").iterdir() if p.name != run["id"])
    [failed] = runs
    record = json.loads((failed / "record.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] is None
    assert record["error"]["error"] == "StoreCorruption" and "numbers/values.txt" in record["error"]["message"]
    assert "runtime" not in record and not (failed / "log.txt").exists()

    report = ok(probe_project, "verify", "--run", run["id"][:4], code=107)  # forgets the file's cached hash...
    assert report["scope"] == f"run {run['id']}"
    assert any("numbers/values.txt" in use for use in report["problems"][0]["used_by"])
    again = harness(probe_project, "run", "--json")  # ...so this run re-reads it and repairs the object
    assert again.returncode == 0, again.stderr
    assert ok(probe_project, "verify")["ok"]


@pytest.mark.docker
def test_a_run_sees_a_same_size_edit_with_its_mtime_put_back_and_rehash_trusts_no_cache(
    probe_project: Path, tmp_path: Path
) -> None:
    values = probe_project / "data" / "numbers" / "values.txt"
    settle(values.parent)
    first = harness(probe_project, "run", "--json")
    assert first.returncode == 0, first.stderr
    before = json.loads(first.stdout)
    assert before["metrics"]["total"] == 1 + 2 + 3 + 4

    # `cp -p f ref; edit f; touch -r ref f`: size, mtime and inode as before, other bytes.
    ref = tmp_path / "ref"
    subprocess.run(["cp", "-p", str(values), str(ref)], check=True)
    with open(values, "r+b") as fh:
        fh.write(b"5 6 7 8\n")
    subprocess.run(["touch", "-r", str(ref), str(values)], check=True)
    second = harness(probe_project, "run", "--json")
    assert second.returncode == 0, second.stderr
    after = json.loads(second.stdout)
    assert after["data"]["snapshot"] != before["data"]["snapshot"], "the record names the new bytes"
    assert after["metrics"]["total"] == 5 + 6 + 7 + 8, "and the container read them"

    # A cache that lies (values.txt -> the old bytes' object) is trusted by a plain snapshot, not by --rehash.
    settle(values.parent)
    cache = probe_project / ".harness" / "stat-cache.sqlite"
    make_the_cache_lie(cache, values, hashlib.sha256(b"1 2 3 4\n").hexdigest())
    assert ok(probe_project, "data", "snapshot", "data/numbers")["snapshot"] == before["data"]["snapshot"]
    third = harness(probe_project, "run", "--rehash", "--json")
    assert third.returncode == 0, third.stderr
    rehashed = json.loads(third.stdout)
    assert rehashed["data"]["snapshot"] == after["data"]["snapshot"]
    assert rehashed["metrics"]["total"] == 5 + 6 + 7 + 8
