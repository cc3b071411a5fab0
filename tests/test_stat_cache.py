"""The snapshot stat cache on real files and a real store: what it may trust, what it must read again, --rehash.

How many bytes a snapshot read is what its progress callback was last told (the total to hash; 0 when every file
came from the cache), so each test shows which files were read, not only which digest came out."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from harness.storage.snapshot import (
    RACY_COARSE_NS,
    RACY_FINE_NS,
    STAT_TABLE,
    TREE_TABLE,
    Snapshot,
    forget_hashes,
    snapshot_roots,
    verify_snapshot,
)
from harness.storage.store import Store
from tests.projects import settle

SECOND = 1_000_000_000
# An mtime years ago (put there as `touch -r` or an unpacked archive does), with a sub-second part: only ctime,
# which no one can set, can then make a row racy.
OLD_NS = 1_600_000_000_123_456_789


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store" / "objects")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "store" / "stat-cache.sqlite"


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def snap(root: Path, store: Store, cache: Path | None, rehash: bool = False, name: str = "d") -> tuple[Snapshot, int]:
    """(the snapshot, how many bytes it read)."""
    totals: list[int] = []
    s = snapshot_roots({name: root}, store, cache, progress=lambda done, total: totals.append(total), rehash=rehash)
    return s, totals[-1]


def truth(root: Path, tmp_path: Path, name: str = "d") -> str:
    """The digest of the bytes as they are: a fresh store and no cache."""
    fresh = tmp_path / f"fresh-{time.time_ns()}"
    return snapshot_roots({name: root}, Store(fresh / "objects")).digest


def db(cache: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(cache)) as conn, conn:
        return conn.execute(sql, args).fetchall()


def test_an_unchanged_tree_reads_nothing_whole_or_file_by_file(store: Store, cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "sub/b.txt": b"bee", "z.txt": b"zed"})
    settle(root)
    first, read = snap(root, store, cache)
    assert read == 14
    again, read = snap(root, store, cache)  # the whole-tree row
    assert (again.digest, read) == (first.digest, 0)
    db(cache, f"DELETE FROM {TREE_TABLE}")
    again, read = snap(root, store, cache)  # the per-file rows alone
    assert (again.digest, read) == (first.digest, 0)


def test_a_same_size_edit_with_its_mtime_put_back_is_read_again(store: Store, cache: Path, tmp_path: Path) -> None:
    # What rsync and some sync tools do: `cp -p f ref; edit f; touch -r ref f`. Size, mtime, inode and device are
    # all as they were; only ctime, which no one can set back, says the file changed.
    root = write_tree(tmp_path / "d", {"data.csv": b"1,2\n", "other.csv": b"3,4,5\n"})
    data, ref = root / "data.csv", tmp_path / "ref"
    settle(root)
    first, _ = snap(root, store, cache)
    assert snap(root, store, cache)[1] == 0, "the cache holds the tree"

    before = data.stat()
    subprocess.run(["cp", "-p", str(data), str(ref)], check=True)
    with open(data, "r+b") as fh:  # in place: same inode, same size, other bytes
        fh.write(b"9,9\n")
    subprocess.run(["touch", "-r", str(ref), str(data)], check=True)
    after = data.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino, after.st_dev) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
        before.st_dev,
    )
    assert after.st_ctime_ns != before.st_ctime_ns

    edited, read = snap(root, store, cache)
    assert read == 4, "only the edited file was read again"
    assert edited.digest != first.digest and edited.digest == truth(root, tmp_path)

    # The same through the per-file rows, when the tree changed anyway (a file added): the edit is still seen.
    settle(root)
    snap(root, store, cache)  # (the row written right after the edit was racy; this one is not)
    with open(data, "r+b") as fh:
        fh.write(b"7,7\n")
    subprocess.run(["touch", "-r", str(ref), str(data)], check=True)
    (root / "new.csv").write_bytes(b"new")
    changed, read = snap(root, store, cache)
    assert read == 4 + 3, "the edited file and the new one, not other.csv"
    assert changed.digest == truth(root, tmp_path)


def test_a_file_changed_within_the_racy_window_of_its_hash_is_read_again(
    store: Store, cache: Path, tmp_path: Path
) -> None:
    # Its stat is exactly what the cache row holds, but the row was written in the same clock tick as the file's
    # last change, so a second change in that tick would have left every stat field alone: the row is not trusted.
    root = write_tree(tmp_path / "d", {"data.csv": b"1,2\n"})
    os.utime(root / "data.csv", ns=(OLD_NS, OLD_NS))
    settle(root)
    first, _ = snap(root, store, cache)
    path = str(root / "data.csv")
    [(ctime,)] = db(cache, f"SELECT ctime_ns FROM {STAT_TABLE} WHERE path = ?", path)
    assert ctime == (root / "data.csv").stat().st_ctime_ns and isinstance(ctime, int) and ctime % SECOND

    db(cache, f"UPDATE {STAT_TABLE} SET hashed_at_ns = ? WHERE path = ?", ctime + RACY_FINE_NS - 1, path)
    db(cache, f"DELETE FROM {TREE_TABLE}")  # as for a racy snapshot, which never stores its tree
    again, read = snap(root, store, cache)
    assert (again.digest, read) == (first.digest, 4), "read again though its stat is unchanged"
    [(hashed_at,)] = db(cache, f"SELECT hashed_at_ns FROM {STAT_TABLE} WHERE path = ?", path)
    assert isinstance(hashed_at, int) and hashed_at >= ctime + RACY_FINE_NS, "the new row is trusted"

    # One tick later is outside the window: trusted.
    db(cache, f"UPDATE {STAT_TABLE} SET hashed_at_ns = ? WHERE path = ?", ctime + RACY_FINE_NS, path)
    db(cache, f"DELETE FROM {TREE_TABLE}")
    assert snap(root, store, cache) == (first, 0)


def test_a_whole_second_timestamp_gets_the_coarse_window(store: Store, cache: Path, tmp_path: Path) -> None:
    # A whole-second mtime is what a 1 s (ext4 with small inodes, HFS+) or 2 s (FAT) filesystem gives: the file
    # may have changed again anywhere in that second, so the row is trusted only 2 s after it.
    root = write_tree(tmp_path / "d", {"data.csv": b"1,2\n"})
    mtime = time.time_ns() // SECOND * SECOND
    os.utime(root / "data.csv", ns=(mtime, mtime))
    first, _ = snap(root, store, cache)  # its row's hashed_at is set below
    path = str(root / "data.csv")
    [(ctime,)] = db(cache, f"SELECT ctime_ns FROM {STAT_TABLE} WHERE path = ?", path)
    assert isinstance(ctime, int) and ctime + RACY_FINE_NS <= mtime + RACY_COARSE_NS - 1

    db(cache, f"UPDATE {STAT_TABLE} SET hashed_at_ns = ? WHERE path = ?", mtime + RACY_COARSE_NS - 1, path)
    db(cache, f"DELETE FROM {TREE_TABLE}")
    assert snap(root, store, cache) == (first, 4)
    db(cache, f"UPDATE {STAT_TABLE} SET hashed_at_ns = ? WHERE path = ?", mtime + RACY_COARSE_NS, path)
    db(cache, f"DELETE FROM {TREE_TABLE}")
    assert snap(root, store, cache) == (first, 0)


def test_rows_written_in_the_racy_window_are_read_again_and_only_they(
    store: Store, cache: Path, tmp_path: Path
) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "z.txt": b"zed"})
    for path in root.iterdir():
        os.utime(path, ns=(OLD_NS, OLD_NS))
    first, _ = snap(root, store, cache)  # right after the writes: usually inside their racy window
    rows = db(cache, f"SELECT size, ctime_ns, hashed_at_ns FROM {STAT_TABLE}")
    assert len(rows) == 2 and all(isinstance(c, int) and c % SECOND for _, c, _ in rows)
    racy = [size for size, c, h in rows if isinstance(c, int) and isinstance(h, int) and h < c + RACY_FINE_NS]
    kept = db(cache, f"SELECT count(*) FROM {TREE_TABLE}") == [(1,)]
    assert kept != bool(racy), "a tree is kept only when none of its files is racy"
    assert snap(root, store, cache) == (first, sum(racy))
    settle(root)
    snap(root, store, cache)
    assert snap(root, store, cache) == (first, 0)


def test_rehash_reads_every_file_whatever_the_cache_says(store: Store, cache: Path, tmp_path: Path) -> None:
    files = {"a.csv": b"x,y\n1,2\n", "sub/b.txt": b"bee", "z.txt": b"zed"}
    root = write_tree(tmp_path / "d", files)
    settle(root)
    first, _ = snap(root, store, cache)
    # A cache that lies: a.csv's row names b.txt's object (which the store holds), and no tree row.
    db(
        cache,
        f"UPDATE {STAT_TABLE} SET sha256 = ? WHERE path = ?",
        hashlib.sha256(b"bee").hexdigest(),
        str(root / "a.csv"),
    )
    db(cache, f"DELETE FROM {TREE_TABLE}")
    lied, read = snap(root, store, cache)
    assert read == 0 and lied.digest != first.digest, "without --rehash the cache is trusted"

    again, read = snap(root, store, cache, rehash=True)
    assert again.digest == first.digest == truth(root, tmp_path)
    assert read == sum(len(b) for b in files.values()), "every file was read"
    assert snap(root, store, cache) == (first, 0), "and the cache was rewritten from what was read"

    # Even a whole-tree row that lies is not consulted.
    db(cache, f"UPDATE {TREE_TABLE} SET digest = ?", lied.digest)
    assert snap(root, store, cache, rehash=True) == (first, 14)


def test_a_broken_cache_file_means_reading_everything(store: Store, cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "z.txt": b"zed"})
    settle(root)
    first, _ = snap(root, store, cache)
    cache.write_bytes(b"not a database" * 100)
    assert snap(root, store, cache) == (first, 11)


def test_a_cache_of_the_old_layout_is_ignored_not_misread(store: Store, cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n"})
    settle(root)
    st = (root / "a.csv").stat()
    other = store.put_bytes(b"another file's bytes")
    cache.parent.mkdir(parents=True, exist_ok=True)
    # The v1 layout (no ctime), with a row that matches the file's size, mtime, inode and device and names
    # another object: read by the new code it would give a wrong digest.
    db(
        cache,
        "CREATE TABLE stat_v1 (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, dev INTEGER, "
        "sha256 TEXT, hashed_at_ns INTEGER)",
    )
    db(cache, "CREATE TABLE tree_v1 (key TEXT PRIMARY KEY, tree BLOB, digest TEXT)")
    db(
        cache,
        "INSERT INTO stat_v1 VALUES (?,?,?,?,?,?,?)",
        str(root / "a.csv"),
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_dev,
        other,
        time.time_ns(),
    )
    s, read = snap(root, store, cache)
    assert (s.digest, read) == (truth(root, tmp_path), 8)
    tables = {name for (name,) in db(cache, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {STAT_TABLE, TREE_TABLE}, "the old layout's tables are dropped"


def test_forget_hashes_makes_the_next_snapshot_read_those_files(store: Store, cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "z.txt": b"zed"})
    settle(root)
    first, _ = snap(root, store, cache)
    forget_hashes(cache, [hashlib.sha256(b"zed").hexdigest()])
    assert snap(root, store, cache) == (first, 3)


def test_a_cached_hash_is_used_only_while_its_object_is_in_the_store(cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"data.csv": b"1,2\n"})
    settle(root)
    snap(root, Store(tmp_path / "s1"), cache)
    other = Store(tmp_path / "s2")  # a cache row alone must not produce a snapshot whose object is absent
    s, read = snap(root, other, cache)
    assert read == 4 and verify_snapshot(other, s.digest) == []


def test_the_tree_row_goes_when_verify_forgets_a_damaged_objects_hash(
    store: Store, cache: Path, tmp_path: Path
) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "sub/b.txt": b"bee", "z.txt": b"zed"})
    settle(root)
    first, _ = snap(root, store, cache)
    assert snap(root, store, cache) == (first, 0)  # the whole-tree row
    sha = hashlib.sha256(b"bee").hexdigest()
    path = store.path(sha)
    os.chmod(path, 0o644)  # objects are read-only
    path.write_bytes(b"BEE")
    forget_hashes(cache, [sha])  # what `harness verify` does for a damaged object: the tree row must go too
    assert snap(root, store, cache) == (first, 3)
    assert store.verify(sha), "the file was read again and the damaged object replaced"


def test_the_tree_row_puts_back_a_deleted_object(store: Store, cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "sub/b.txt": b"bee"})
    settle(root)
    first, _ = snap(root, store, cache)
    assert snap(root, store, cache) == (first, 0)
    sha = hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    store.path(sha).unlink()
    assert snap(root, store, cache) == (first, 8)
    assert store.verify(sha)


def test_the_tree_row_sees_changed_added_and_chmodded_files(store: Store, cache: Path, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "sub/b.txt": b"bee"})
    settle(root)
    seen = {snap(root, store, cache)[0].digest}
    (root / "a.csv").write_bytes(b"x,y\n3,4\n")
    changed, _ = snap(root, store, cache)
    assert changed.digest not in seen and changed.digest == truth(root, tmp_path)
    seen.add(changed.digest)
    settle(root)
    (root / "sub" / "new.txt").write_bytes(b"new")
    added, _ = snap(root, store, cache)
    assert added.digest not in seen and "d/sub/new.txt" in {e.path for e in added.entries}
    seen.add(added.digest)
    settle(root)
    os.chmod(root / "sub" / "new.txt", 0o755)
    chmodded, _ = snap(root, store, cache)
    assert chmodded.digest not in seen and chmodded.digest == truth(root, tmp_path)
    (root / "sub" / "new.txt").unlink()
    assert snap(root, store, cache)[0].digest == changed.digest


def test_unchanged_10000_files_cost_about_a_walk(store: Store, cache: Path, tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(100):
        (root / f"{i:03d}").mkdir(parents=True)
        for j in range(100):
            (root / f"{i:03d}" / f"{j:03d}.txt").write_text(f"{i}-{j}\n" * 10)
    settle(root)
    first, _ = snap(root, store, cache)
    assert first.files == 10_000
    start = time.perf_counter()
    again, read = snap(root, store, cache)
    elapsed = time.perf_counter() - start
    assert (again.digest, read) == (first.digest, 0)
    # Target is < 0.1 s on an idle machine (bench/snapshot.py); the bound is loose so a busy runner does not flake.
    assert elapsed < 1.0, f"re-snapshot of 10,000 unchanged files took {elapsed:.3f} s"
