"""A run's outputs are stored once and read-only: each file in the run directory becomes its store object or a
fresh read-only copy of it, what a record cannot hold is moved aside and named, and `verify` compares the directory
with the record. The same through real runs: tests/test_run_outputs.py."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.storage.outputcheck import check_outputs
from harness.storage.outputs import StoredOutputs, store_outputs
from harness.storage.store import Store

IS_ROOT = os.geteuid() == 0
NOBODY = 65534


@pytest.fixture(autouse=True)
def readable_project(tmp_path: Path) -> None:
    """The modes checked here are a project others may read (pytest's tmp_path is 0700); a private project's are
    checked in tests/test_privacy.py and below."""
    tmp_path.chmod(0o755)


def mode(path: Path | bytes) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def stored(out: Path, store: Store) -> StoredOutputs:
    return store_outputs(out, store, out.parent / "skipped")


def test_outputs_become_their_store_objects(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    (out / "model.bin").write_bytes(b"weights" * 1000)
    (out / "sub" / "copy.bin").write_bytes(b"weights" * 1000)  # same bytes: one object, two links
    (out / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(out / "run.sh", 0o755)
    os.symlink("model.bin", out / "latest")
    store = Store(tmp_path / "objects")

    snap = stored(out, store).snapshot

    files = {e.path: e for e in snap.entries}
    obj = store.path(files["model.bin"].sha256 or "")
    assert os.path.samefile(out / "model.bin", obj) and os.path.samefile(out / "sub" / "copy.bin", obj)
    assert obj.stat().st_nlink == 3 and (out / "model.bin").read_bytes() == b"weights" * 1000
    # an executable is a copy (a chmod on a hardlink would change the shared object), read-only and executable
    run_obj = store.path(files["run.sh"].sha256 or "")
    assert not os.path.samefile(out / "run.sh", run_obj) and mode(out / "run.sh") == 0o555
    assert mode(run_obj) == 0o444 and (out / "run.sh").read_text() == "#!/bin/sh\n"
    assert os.readlink(out / "latest") == "model.bin"
    assert sorted(p.name for p in out.iterdir()) == ["latest", "model.bin", "run.sh", "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects", "outputs"]  # no temp file, nothing skipped
    # storing again changes nothing and names the same snapshot
    assert stored(out, store).snapshot.digest == snap.digest and obj.stat().st_nlink == 3


def test_outputs_are_read_only_and_owned_by_harness_whatever_modes_the_run_left(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "open" / "deeper").mkdir(parents=True)
    (out / "open" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (out / "open" / "deeper" / "notes.txt").write_text("notes\n")
    (out / "shared.txt").write_text("anyone may write me\n")
    os.chmod(out / "open" / "run.sh", 0o4777)  # setuid, world-writable
    os.chmod(out / "shared.txt", 0o666)
    for d in (out, out / "open", out / "open" / "deeper"):
        os.chmod(d, 0o1777 if d.name == "deeper" else 0o777)
    if IS_ROOT:  # as under `harness run` by root: the container ran as nobody
        for p in (out / "open", out / "open" / "run.sh", out / "open" / "deeper", out / "shared.txt"):
            os.chown(p, NOBODY, NOBODY)
    # A file opened for writing during the run (by the run, or by anyone while the directory was 0777) ...
    held = open(out / "open" / "run.sh", "a")  # noqa: SIM115
    store = Store(tmp_path / "objects")

    snap = stored(out, store).snapshot

    assert mode(out) == mode(out / "open") == mode(out / "open" / "deeper") == 0o755
    assert mode(out / "open" / "run.sh") == 0o555 and mode(out / "shared.txt") == 0o444
    assert mode(out / "open" / "deeper" / "notes.txt") == 0o444
    owner = (os.geteuid(), os.getegid())
    for p in (out, out / "open", out / "open" / "deeper", out / "open" / "run.sh", out / "shared.txt"):
        assert (p.lstat().st_uid, p.lstat().st_gid) == owner, p
    # ... writes to nothing the record names: every recorded file is a new inode made by harness.
    held.write("echo appended\n")
    held.close()
    assert (out / "open" / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert check_outputs(out, store, snap.entries, {}, strict=True) == []


def test_what_a_record_cannot_hold_is_moved_aside_named_and_the_rest_recorded(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    raw = os.fsencode(out)
    (out / "good.txt").write_text("good\n")
    (out / ("n" * 255)).write_text("a name as long as ext4 allows is an ordinary output\n")
    os.symlink("good.txt", out / "inside")
    os.symlink("/etc/passwd", out / "passwd")
    os.symlink("../../escape", out / "up")
    os.symlink(b"latin1-\xe9", raw + b"/bad-target")
    os.mkfifo(out / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(out / "sock"))
    with open(raw + b"/latin1-\xe9.txt", "w") as fh:
        fh.write("caf\xe9\n")
    os.mkdir(raw + b"/dir-\xff")
    with open(raw + b"/dir-\xff/inner.txt", "w") as fh:
        fh.write("inside a directory whose name is not UTF-8\n")
    os.chmod(raw + b"/dir-\xff", 0o777)
    # Nested until the path on the host passes PATH_MAX (the container saw a shorter /outputs/...).
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(20):
        os.mkdir("d" * 250, dir_fd=fd)
        fd, parent = os.open("d" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    store = Store(tmp_path / "objects")

    result = stored(out, store)

    recorded = {e.path for e in result.snapshot.entries}
    assert {"good.txt", "n" * 255, "inside"} <= recorded
    assert not recorded & {"passwd", "up", "bad-target", "pipe", "sock"}
    reasons = {s.path: s.reason for s in result.skipped}
    assert "outside the outputs directory" in reasons["passwd"] and "'/etc/passwd'" in reasons["passwd"]
    assert "outside the outputs directory" in reasons["up"]
    assert "not valid UTF-8" in reasons["bad-target"] and "latin1-\\xe9" in reasons["bad-target"]
    assert "FIFO" in reasons["pipe"] and "socket" in reasons["sock"]
    assert "not valid UTF-8" in reasons["latin1-\\xe9.txt"] and "not valid UTF-8" in reasons["dir-\\xff"]
    [deep] = [p for p in reasons if p.startswith("d" * 250)]
    assert "longer than the host allows" in reasons[deep]
    assert all(len(e.path) < 4096 for e in result.snapshot.entries)
    # Moved, not deleted: under runs/<id>/skipped/ at the same relative path, and read-only there too.
    aside = os.fsencode(tmp_path / "skipped")
    assert sorted(os.listdir(aside)) == sorted(
        [b"bad-target", b"d" * 250, b"dir-\xff", b"latin1-\xe9.txt", b"passwd", b"pipe", b"sock", b"up"]
    )
    assert stat.S_ISFIFO(os.lstat(aside + b"/pipe").st_mode) and os.readlink(aside + b"/passwd") == b"/etc/passwd"
    with open(aside + b"/dir-\xff/inner.txt") as fh:
        assert fh.read().startswith("inside")
    assert mode(aside + b"/dir-\xff") == 0o755 and mode(aside + b"/latin1-\xe9.txt") == 0o444
    # What stays is exactly what the record names.
    assert check_outputs(out, store, result.snapshot.entries, {}, strict=True) == []


def test_check_names_a_modified_replaced_removed_added_or_writable_output(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "sub/d.txt"):
        (out / name).write_text(f"{name}\n")
    (out / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(out / "run.sh", 0o755)
    os.symlink("a.txt", out / "link")
    store = Store(tmp_path / "objects")
    entries = stored(out, store).snapshot.entries
    assert check_outputs(out, store, entries, {}, strict=True) == []

    with open(out / "run.sh", "a") as fh:  # root ignores the 0555; the owner could chmod it first
        fh.write("rm -rf ~\n")
    (out / "b.txt").unlink()
    (out / "b.txt").write_text("b.txt\n")  # replaced: same bytes, a new writable file
    os.unlink(out / "c.txt")
    (out / "sub" / "extra.bin").write_bytes(b"planted")
    os.chmod(out / "sub", 0o777)
    os.unlink(out / "link")
    os.symlink("/etc/passwd", out / "link")

    found = {(d.path, d.problem) for d in check_outputs(out, store, entries, {}, strict=True)}

    assert found == {
        ("run.sh", "modified"),
        ("b.txt", "mode"),  # its bytes are right, its mode is not
        ("c.txt", "missing"),
        ("sub/extra.bin", "added"),
        ("sub", "mode"),
        ("link", "modified"),
    }
    os.chmod(out / "b.txt", 0o444)
    (out / "b.txt").unlink()
    (out / "b.txt").write_text("B!")
    os.chmod(out / "b.txt", 0o444)
    assert ("b.txt", "modified") in {(d.path, d.problem) for d in check_outputs(out, store, entries, {}, True)}


def test_check_of_an_older_record_flags_only_modes_others_could_abuse(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "bin").mkdir(parents=True)
    (out / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(out / "bin" / "tool", 0o755)
    (out / "log.txt").write_text("log\n")
    store = Store(tmp_path / "objects")
    entries = stored(out, store).snapshot.entries
    # As outputs were left before they were stored read-only: the container's 0755 and 0644.
    os.chmod(out / "bin" / "tool", 0o755)
    os.unlink(out / "log.txt")
    (out / "log.txt").write_text("log\n")
    os.chmod(out / "log.txt", 0o644)
    assert check_outputs(out, store, entries, {}, strict=False) == []
    assert {d.path for d in check_outputs(out, store, entries, {}, strict=True)} == {"bin/tool", "log.txt"}
    os.chmod(out / "bin" / "tool", 0o4755)
    os.chmod(out / "bin", 0o777)
    problems = check_outputs(out, store, entries, {}, strict=False)
    assert [(d.path, d.problem) for d in problems] == [("bin", "mode"), ("bin/tool", "mode")]
    assert "writable" in problems[0].detail and "set-id" in problems[1].detail


def test_check_without_the_manifest_still_checks_the_recorded_files(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "a.txt").write_text("a\n")
    store = Store(tmp_path / "objects")
    files = {e.path: e.sha256 or "" for e in stored(out, store).snapshot.entries if e.kind == "file"}
    assert check_outputs(out, store, None, files, strict=True) == []
    (out / "sub" / "a.txt").unlink()
    (out / "sub" / "a.txt").write_text("A\n")
    os.chmod(out / "sub" / "a.txt", 0o444)
    (out / "planted.txt").write_text("x")
    os.chmod(out / "planted.txt", 0o444)
    found = [(d.path, d.problem) for d in check_outputs(out, store, None, files, strict=True)]
    assert found == [("planted.txt", "added"), ("sub/a.txt", "modified")]


def test_a_missing_outputs_directory_is_named(tmp_path: Path) -> None:
    store = Store(tmp_path / "objects")
    [problem] = check_outputs(tmp_path / "gone", store, (), {}, strict=True)
    assert (problem.path, problem.problem) == (".", "missing")


@pytest.mark.skipif(IS_ROOT, reason="root reads any file")
def test_a_file_the_run_made_unreadable_is_still_recorded(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "secret.txt").write_text("s\n")
    os.chmod(out / "secret.txt", 0)
    result = stored(out, Store(tmp_path / "objects"))
    assert [e.path for e in result.snapshot.entries] == ["secret.txt"] and not result.skipped
    assert (out / "secret.txt").read_text() == "s\n"


def test_a_private_project_gets_private_outputs_that_check_clean(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    out = tmp_path / "outputs"
    (out / "d").mkdir(parents=True)
    (out / "d" / "model.bin").write_bytes(b"weights")
    (out / "run.sh").write_text("#!/bin/sh\n")
    (out / "run.sh").chmod(0o777)
    store = Store(tmp_path / "objects")
    result = stored(out, store)
    assert (mode(out), mode(out / "d"), mode(out / "run.sh")) == (0o700, 0o700, 0o500)
    manifest = result.snapshot
    files = {e.path: e.sha256 for e in manifest.entries if e.kind == "file" and e.sha256}
    assert check_outputs(out, store, manifest.entries, files, strict=True) == []
    (out / "d").chmod(0o770)  # group-writable: named, private or not
    assert [(d.path, d.problem) for d in check_outputs(out, store, manifest.entries, files, strict=True)] == [
        ("d", "mode")
    ]


def written_by_this_process() -> int:
    """Bytes this process (all its threads) has handed to write(2) and friends so far (/proc/self/io wchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def test_an_output_no_one_else_holds_becomes_its_store_object_without_a_second_copy(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    big = out / "model.bin"
    with open(big, "wb") as fh:
        for i in range(64):
            fh.write(i.to_bytes(8, "little") + os.urandom((1 << 20) - 8))
    (out / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(out / "run.sh", 0o775)
    if IS_ROOT:  # as a container run as nobody leaves them
        for p in (big, out / "run.sh"):
            os.chown(p, NOBODY, NOBODY)
    inode, script = big.stat().st_ino, (out / "run.sh").stat().st_ino
    store = Store(tmp_path / "objects")

    before = written_by_this_process()
    snap = stored(out, store).snapshot
    written = written_by_this_process() - before

    files = {e.path: e for e in snap.entries}
    obj = store.path(files["model.bin"].sha256 or "")
    # The output's own inode is the object: linked under the object's name, its 64 MiB never copied.
    assert obj.stat().st_ino == big.stat().st_ino == inode and obj.stat().st_nlink == 2
    assert written < 1 << 20, written  # the manifest and the executable's copy, not the 64 MiB
    assert mode(big) == 0o444 and (big.stat().st_uid, big.stat().st_gid) == (os.geteuid(), os.getegid())
    assert files["model.bin"].size == 64 << 20 and store.verify(files["model.bin"].sha256 or "")
    # An executable keeps its own inode, 0555; the store gets a 0444 copy.
    assert (out / "run.sh").stat().st_ino == script and mode(out / "run.sh") == 0o555
    assert mode(store.path(files["run.sh"].sha256 or "")) == 0o444
    assert check_outputs(out, store, snap.entries, {}, strict=True) == []


# Opens a file as another process would have during the run ("a": for appending, "r": for reading, "m": mapped
# shared and writable, its descriptor closed), and on a line from stdin writes through what it holds.
HOLD = """
import mmap, sys
how = sys.argv[2]
fh = open(sys.argv[1], "r+b" if how == "m" else how)
if how == "m":
    mapped = mmap.mmap(fh.fileno(), 0)
    fh.close()
print("open", flush=True)
sys.stdin.readline()
if how == "a":
    fh.write("tampered after the record was made\\n")
    fh.flush()
elif how == "m":
    mapped[0:2] = b"AS"
    mapped.flush()
print("done", flush=True)
"""


@pytest.mark.parametrize("how", ["a", "r", "m"])
def test_an_output_another_process_holds_open_is_copied_and_its_descriptor_reaches_nothing_recorded(
    tmp_path: Path, how: str
) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    held = out / "held.txt"
    held.write_text("as the run left it\n")
    held.chmod(0o666)  # anyone could open it for writing while the run went on, and keep it open
    (out / "free.txt").write_text("nobody holds this one\n")
    inode = held.stat().st_ino
    argv = [sys.executable, "-c", HOLD, str(held), how]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "open\n"
        store = Store(tmp_path / "objects")
        snap = stored(out, store).snapshot
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "done\n"
    finally:
        holder.kill()
        holder.wait()
    files = {e.path: e.sha256 or "" for e in snap.entries}
    # Not adopted: the inode held open is neither the output nor the object; the other file was adopted.
    assert held.stat().st_ino != inode and store.path(files["held.txt"]).stat().st_ino != inode
    assert os.path.samefile(held, store.path(files["held.txt"])) and mode(held) == 0o444
    assert os.path.samefile(out / "free.txt", store.path(files["free.txt"]))
    # What was written through the old descriptor reached nothing the record names.
    assert held.read_text() == "as the run left it\n" and store.verify(files["held.txt"])
    assert check_outputs(out, store, snap.entries, {}, strict=True) == []


def test_an_output_whose_object_is_damaged_takes_its_place_and_one_already_stored_is_linked_to(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "objects")
    damaged = store.put_bytes(b"checkpoint\n")
    intact = store.put_bytes(b"already stored\n")
    path = store.path(damaged)
    path.chmod(0o644)
    path.write_bytes(b"checkpoinT\n")  # same size, one byte changed
    path.chmod(0o444)
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "model.bin").write_bytes(b"checkpoint\n")
    (out / "same.txt").write_bytes(b"already stored\n")
    inode = (out / "model.bin").stat().st_ino

    snap = stored(out, store).snapshot

    assert store.path(damaged).stat().st_ino == inode and store.verify(damaged)  # repaired by adoption
    assert os.path.samefile(out / "same.txt", store.path(intact)) and store.path(intact).stat().st_nlink == 2
    assert check_outputs(out, store, snap.entries, {}, strict=True) == []
