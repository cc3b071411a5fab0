from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from harness.errors import DataError, NotFound, StoreCorruption
from harness.storage.snapshot import (
    Entry,
    Snapshot,
    diff,
    load_snapshot,
    materialize,
    remove_materialized,
    snapshot_roots,
    snapshot_tree,
    verify_snapshot,
)
from harness.storage.store import Store

PAST_NS = 1_600_000_000 * 10**9  # an mtime well outside the stat cache's "racy" window
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    tmp_path.chmod(0o755)  # a store others may read (pytest's 0700 would make a private one: objects 0400)
    return Store(tmp_path / "store" / "objects")


def write(path: Path, data: bytes | str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def make_tree(root: Path, order: list[str], mtime_ns: int | None = None) -> Path:
    contents = {"a.csv": "x,y\n1,2\n", "sub/b.txt": "bee", "sub/deep/c.bin": b"\x00\x01\x02", "z.txt": "zed"}
    for name in order:
        write(root / name, contents[name], mtime_ns)
    return root


def corrupt(store: Store, digest: str) -> None:
    path = store.path(digest)
    os.chmod(path, 0o644)  # chmod u+w: objects are read-only
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def by_path(snap: Snapshot) -> dict[str, Entry]:
    return {e.path: e for e in snap.entries}


def test_same_content_same_digest_regardless_of_order_mtime_and_location(store: Store, tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one", ["a.csv", "sub/b.txt", "sub/deep/c.bin", "z.txt"])
    two = make_tree(tmp_path / "elsewhere" / "two", ["z.txt", "sub/deep/c.bin", "a.csv", "sub/b.txt"], PAST_NS)
    s1, s2 = snapshot_tree(one, store), snapshot_tree(two, store)
    assert s1.digest == s2.digest
    assert s1 == s2
    assert snapshot_roots({"data": one}, store).digest == snapshot_roots({"data": two}, store).digest
    assert s1.files == 4 and s1.bytes == 8 + 3 + 3 + 3
    assert s1.to_dict() == {"snapshot": s1.digest, "files": 4, "bytes": 17}


def test_manifest_is_canonical_sorted_json_named_by_its_sha256(store: Store, tmp_path: Path) -> None:
    snap = snapshot_tree(make_tree(tmp_path / "d", ["z.txt", "a.csv", "sub/b.txt"]), store)
    raw = store.path(snap.digest).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == snap.digest
    doc = json.loads(raw)
    assert doc["version"] == 1
    assert [e["path"] for e in doc["entries"]] == ["a.csv", "sub", "sub/b.txt", "z.txt"]
    assert doc["entries"][0] == {
        "path": "a.csv",
        "kind": "file",
        "size": 8,
        "executable": False,
        "sha256": hashlib.sha256(b"x,y\n1,2\n").hexdigest(),
        "target": None,
    }
    assert load_snapshot(store, snap.digest) == snap


def test_one_changed_byte_changes_digest_and_diff_names_the_file(store: Store, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", ["a.csv", "sub/b.txt", "sub/deep/c.bin", "z.txt"])
    before = snapshot_tree(root, store)
    write(root / "sub/b.txt", "bef")
    (root / "z.txt").unlink()
    write(root / "new.txt", "new")
    after = snapshot_tree(root, store)
    assert after.digest != before.digest
    assert diff(before, after) == {"added": ["new.txt"], "removed": ["z.txt"], "changed": ["sub/b.txt"]}
    assert diff(before, before) == {"added": [], "removed": [], "changed": []}


def test_executable_bit_is_part_of_the_digest(store: Store, tmp_path: Path) -> None:
    script = write(tmp_path / "d" / "run.sh", "#!/bin/sh\n")
    plain = snapshot_tree(tmp_path / "d", store)
    script.chmod(0o755)
    executable = snapshot_tree(tmp_path / "d", store)
    assert plain.digest != executable.digest
    assert diff(plain, executable)["changed"] == ["run.sh"]


def test_roots_form_one_virtual_tree(store: Store, tmp_path: Path) -> None:
    hours = make_tree(tmp_path / "hours", ["a.csv", "sub/b.txt"])
    labels = write(tmp_path / "labels.json", "{}")
    snap = snapshot_roots({"hours": hours, "labels": labels}, store)
    assert [e.path for e in snap.entries] == ["hours", "hours/a.csv", "hours/sub", "hours/sub/b.txt", "labels"]
    assert by_path(snap)["hours"].kind == "dir"
    assert by_path(snap)["labels"].kind == "file"


def test_missing_root_and_bad_root_name_are_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope") as info:
        snapshot_roots({"train": tmp_path / "nope"}, store)
    assert info.value.hint
    with pytest.raises(DataError, match="plain name"):
        snapshot_roots({"../x": tmp_path}, store)
    with pytest.raises(DataError, match="not a directory"):
        snapshot_tree(tmp_path / "nope", store)


def test_empty_file_empty_dir_exec_bit_and_in_tree_symlink_are_kept_and_materialized(
    store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "d"
    write(root / "empty.txt", b"")
    (root / "empty_dir").mkdir()
    write(root / "bin" / "tool", "#!/bin/sh\necho hi\n").chmod(0o755)
    write(root / "sub" / "data.csv", "1,2\n")
    os.symlink("../sub/data.csv", root / "bin" / "link.csv")
    os.symlink("sub", root / "dirlink")
    snap = snapshot_roots({"d": root}, store)
    entries = by_path(snap)
    assert entries["d/empty.txt"] == Entry("d/empty.txt", "file", 0, False, hashlib.sha256(b"").hexdigest())
    assert entries["d/empty_dir"].kind == "dir"
    assert entries["d/bin/tool"].executable
    assert not entries["d/sub/data.csv"].executable
    assert entries["d/bin/link.csv"] == Entry("d/bin/link.csv", "symlink", target="../sub/data.csv")
    assert entries["d/dirlink"].target == "sub"

    dest = tmp_path / "work" / "data"
    materialize(store, snap.digest, dest)
    out = dest / "d"
    assert (out / "empty.txt").read_bytes() == b""
    assert list((out / "empty_dir").iterdir()) == []
    assert (out / "bin" / "tool").read_text() == "#!/bin/sh\necho hi\n"
    assert os.readlink(out / "bin" / "link.csv") == "../sub/data.csv"
    assert (out / "bin" / "link.csv").read_text() == "1,2\n"
    assert (out / "dirlink" / "data.csv").read_text() == "1,2\n"
    # The rematerialized tree snapshots to the same digest: nothing was lost on the way.
    assert snapshot_roots({"d": out}, store).digest == snap.digest


def test_materialized_tree_is_read_only_hardlinks(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "d"
    data = write(root / "sub" / "data.csv", "1,2\n")
    write(root / "tool", "#!/bin/sh\n").chmod(0o755)
    snap = snapshot_tree(root, store)
    dest = tmp_path / "m"
    materialize(store, snap.digest, dest)
    entries = by_path(snap)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.lstat().st_mode)

    assert mode(dest) == 0o555 and mode(dest / "sub") == 0o555
    assert mode(dest / "sub" / "data.csv") == 0o444
    assert mode(dest / "tool") == 0o555
    obj = store.path(entries["sub/data.csv"].sha256 or "")
    assert (dest / "sub" / "data.csv").stat().st_ino == obj.stat().st_ino, "no bytes copied"
    tool_obj = store.path(entries["tool"].sha256 or "")
    assert (dest / "tool").stat().st_ino != tool_obj.stat().st_ino
    assert mode(tool_obj) == 0o444, "the store object keeps its own mode"
    assert data.stat().st_nlink == 1, "the user's file was never hardlinked into the store"
    if not IS_ROOT:  # root ignores permission bits; the mode checks above stand in for it
        with pytest.raises(PermissionError):
            (dest / "sub" / "data.csv").write_text("changed")
        with pytest.raises(PermissionError):
            (dest / "sub" / "new.txt").write_text("new")

    remove_materialized(dest)
    assert not dest.exists()
    assert store.verify(entries["sub/data.csv"].sha256 or "") and mode(obj) == 0o444


def test_materialize_refuses_an_existing_destination(store: Store, tmp_path: Path) -> None:
    snap = snapshot_tree(make_tree(tmp_path / "d", ["a.csv"]), store)
    dest = write(tmp_path / "dest" / "mine.txt", "user file").parent
    with pytest.raises(DataError, match="already exists"):
        materialize(store, snap.digest, dest)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("target", ["../outside.txt", "ABSOLUTE", "sub/../../outside.txt"])
def test_symlink_pointing_outside_the_tree_is_refused(store: Store, tmp_path: Path, target: str) -> None:
    outside = write(tmp_path / "outside.txt", "secret")
    root = make_tree(tmp_path / "d", ["a.csv", "sub/b.txt"])
    link = root / "link"
    os.symlink(str(outside) if target == "ABSOLUTE" else target, link)
    with pytest.raises(DataError, match="outside the data tree") as info:
        snapshot_tree(root, store)
    assert str(link) in info.value.message and info.value.hint
    assert link.is_symlink() and outside.read_text() == "secret"


def test_absolute_symlink_is_refused_even_when_it_points_inside(store: Store, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", ["a.csv"])
    os.symlink(root / "a.csv", root / "link")  # would dangle once mounted elsewhere
    with pytest.raises(DataError, match="outside"):
        snapshot_tree(root, store)


def test_symlink_escaping_through_another_link_is_refused(store: Store, tmp_path: Path) -> None:
    # d1/d2/up -> ../.. is the tree root, so d1/d2/x -> up/../../.. climbs above it, though a lexical
    # normalization of "d1/d2/up/../../.." stays inside.
    root = tmp_path / "d"
    (root / "d1" / "d2").mkdir(parents=True)
    os.symlink("../..", root / "d1" / "d2" / "up")
    os.symlink("up/../../..", root / "d1" / "d2" / "x")
    with pytest.raises(DataError, match="outside"):
        snapshot_tree(root, store)


def test_symlink_into_a_sibling_root_is_refused(store: Store, tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", ["a.csv"])
    b = make_tree(tmp_path / "b", ["z.txt"])
    os.symlink("../b/z.txt", a / "link")
    with pytest.raises(DataError, match="outside"):
        snapshot_roots({"a": a, "b": b}, store)


def test_fifo_is_refused(store: Store, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", ["a.csv"])
    fifo = root / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="FIFO") as info:
        snapshot_tree(root, store)
    assert str(fifo) in info.value.message and info.value.hint
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_name_or_symlink_target_that_is_not_utf8_is_refused_not_a_traceback(store: Store, tmp_path: Path) -> None:
    # Data snapshots stay strict (a run's outputs set such entries aside instead: tests/test_outputs.py).
    root = make_tree(tmp_path / "d", ["a.csv"])
    os.symlink(b"caf\xe9.csv", os.fsencode(root) + b"/link")
    with pytest.raises(DataError, match="symlink whose target .* is not valid UTF-8"):
        snapshot_tree(root, store)
    os.unlink(root / "link")
    with open(os.fsencode(root) + b"/caf\xe9.csv", "w"):
        pass
    with pytest.raises(DataError, match="the name is not valid UTF-8"):
        snapshot_tree(root, store)


def test_large_file_is_streamed_and_progress_reaches_the_total(store: Store, tmp_path: Path) -> None:
    data = os.urandom(5 * (1 << 20) + 3)
    write(tmp_path / "d" / "big.bin", data)
    write(tmp_path / "d" / "small.txt", "s")
    calls: list[tuple[int, int]] = []
    snap = snapshot_tree(tmp_path / "d", store, progress=lambda done, total: calls.append((done, total)))
    assert by_path(snap)["big.bin"].sha256 == hashlib.sha256(data).hexdigest()
    assert store.path(hashlib.sha256(data).hexdigest()).read_bytes() == data
    assert calls[-1] == (len(data) + 1, len(data) + 1)
    assert all(done <= total for done, total in calls)


def test_corrupted_object_is_caught_by_verify_and_materialize(store: Store, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", ["a.csv", "sub/b.txt", "z.txt"])
    write(root / "copy.txt", "zed")  # same object as z.txt: both paths are reported
    snap = snapshot_tree(root, store)
    assert verify_snapshot(store, snap.digest) == []
    corrupt(store, by_path(snap)["z.txt"].sha256 or "")
    assert verify_snapshot(store, snap.digest) == ["copy.txt", "z.txt"]

    dest = tmp_path / "m"
    with pytest.raises(StoreCorruption, match="copy.txt|z.txt") as info:
        materialize(store, snap.digest, dest)
    assert info.value.hint and not dest.exists(), "nothing half-built is left behind"


def test_missing_object_is_reported(store: Store, tmp_path: Path) -> None:
    snap = snapshot_tree(make_tree(tmp_path / "d", ["a.csv", "z.txt"]), store)
    store.path(by_path(snap)["a.csv"].sha256 or "").unlink()
    assert verify_snapshot(store, snap.digest) == ["a.csv"]
    with pytest.raises(NotFound, match="a.csv"):
        materialize(store, snap.digest, tmp_path / "m")


def test_load_snapshot_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_snapshot(store, "1" * 64)
    with pytest.raises(NotFound):
        load_snapshot(store, "not-an-id")
    data_object = store.put_bytes(b"just data")
    with pytest.raises(DataError, match="not a snapshot manifest"):
        load_snapshot(store, data_object)
    snap = snapshot_tree(make_tree(tmp_path / "d", ["a.csv"]), store)
    corrupt(store, snap.digest)
    with pytest.raises(StoreCorruption):
        load_snapshot(store, snap.digest)


def test_manifest_with_an_escaping_path_is_refused(store: Store, tmp_path: Path) -> None:
    sha = store.put_bytes(b"x")
    entry = {"path": "../evil", "kind": "file", "size": 1, "executable": False, "sha256": sha, "target": None}
    digest = store.put_json({"version": 1, "entries": [entry]})
    with pytest.raises(DataError, match="not valid"):
        materialize(store, digest, tmp_path / "m")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "m").exists()


def test_entry_round_trips_through_dict() -> None:
    entry = Entry("a/b", "symlink", target="../c")
    assert Entry.from_dict(entry.to_dict()) == entry


def test_a_tree_containing_the_store_is_refused(tmp_path: Path) -> None:
    project = make_tree(tmp_path / "project", ["a.csv"])
    store = Store(project / ".harness" / "objects")
    with pytest.raises(DataError, match="contains the harness store"):
        snapshot_roots({"all": project}, store)
