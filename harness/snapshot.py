"""Data snapshots: a tree of files -> objects in the Store plus one manifest object whose id is the digest.

The manifest is canonical JSON ``{"version": 1, "entries": [...]}`` with entries sorted by path. It depends only
on paths, content, kinds, executable bits and symlink targets -- never on mtimes, owners, creation order or host --
so the same data gives the same digest anywhere. A stat cache (SQLite) lets an unchanged tree be re-snapshotted
for about the cost of a directory walk. ``materialize`` turns a digest back into a read-only tree of hardlinks.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

from .digests import CHUNK
from .errors import DataError, NotFound, StoreCorruption
from .store import Store, is_digest

MANIFEST_VERSION = 1
KINDS = ("file", "dir", "symlink")
_FIELDS = ("path", "kind", "size", "executable", "sha256", "target")
# Canonical JSON sorts keys, so every manifest starts like this: a data object (maybe gigabytes) passed by
# mistake is refused without being read whole.
_MANIFEST_HEAD = b'{"entries":['
# A file modified within this window before it was hashed could be rewritten again with the same size and mtime
# on a coarse-clock filesystem (ext3/HFS+ 1 s, FAT 2 s), so its cache row is not trusted (git's "racy clean").
RACY_NS = 2_000_000_000
_DIGEST = re.compile("[0-9a-f]{64}")
_WORKERS = min(32, (os.cpu_count() or 1) + 4)  # more threads than cores: reads wait on the disk, not the GIL
_NOTHING_CHANGED = "nothing was changed"

Progress = Callable[[int, int], None]
_Found = tuple[str, str, os.stat_result]  # (manifest path, absolute host path, lstat)


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str
    size: int = 0
    executable: bool = False
    sha256: str | None = None
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # the fields, in order; 3x faster than naming them, for 10,000-entry manifests

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entry:
        try:
            e = cls(**{k: d[k] for k in _FIELDS})
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed snapshot manifest entry {d!r} ({exc})") from None
        # materialize() writes these paths under dest: refuse anything that could land outside it.
        safe = not e.path.startswith("/") and all(p not in ("", ".", "..") for p in e.path.split("/"))
        if not (
            safe
            and e.kind in KINDS
            and isinstance(e.size, int)
            and (e.kind != "file" or (isinstance(e.sha256, str) and is_digest(e.sha256)))
            and (e.kind != "symlink" or isinstance(e.target, str))
        ):
            raise DataError(f"snapshot manifest entry {d!r} is not valid", "the manifest was not made by harness")
        return e


@dataclass(frozen=True)
class Snapshot:
    digest: str
    files: int
    bytes: int
    entries: tuple[Entry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.digest, "files": self.files, "bytes": self.bytes}


def _unreadable(path: str, exc: OSError) -> DataError:
    return DataError(
        f"cannot read {path}: {exc.strerror or exc}",
        f"check that it is readable and that nothing changes the data while it is snapshotted; {_NOTHING_CHANGED}",
    )


def _special(path: str, mode: int) -> DataError:
    kinds = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device"}
    what = kinds.get(stat.S_IFMT(mode), "a block device" if stat.S_ISBLK(mode) else "an unknown file type")
    return DataError(
        f"{path} is {what}, which cannot be part of a data snapshot",
        f"snapshots hold regular files, directories and in-tree symlinks: move it out of the data; {_NOTHING_CHANGED}",
    )


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _check_name(rel: str, path: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{path!r}: the name is not valid UTF-8", "rename it; manifests store names as text") from None


def _link_target(link: str, real_top: str) -> str:
    target = os.readlink(link)
    # realpath, not a lexical normpath: the target may pass through other links in the tree ("up/../..").
    if os.path.isabs(target) or not _inside(os.path.realpath(os.path.join(os.path.dirname(link), target)), real_top):
        raise DataError(
            f"{link} is a symlink to {target!r}, which is outside the data tree {real_top}",
            "a run sees only the snapshot, where the link would dangle: replace it with a copy of what it points "
            "to, make it a relative link inside the tree, or add the target as its own data root",
        )
    return target


def _walk(top: str, prefix: str, store: Store, entries: list[Entry], files: list[_Found]) -> None:
    real_top = os.path.realpath(top)
    if _inside(os.path.realpath(store.root), real_top):  # it would snapshot its own growing object store
        raise DataError(
            f"{top} contains the harness store {store.root}",
            "snapshot a directory that does not contain the store, or move the store with HARNESS_HOME",
        )
    stack = [(top, prefix)]
    while stack:
        dir_abs, dir_rel = stack.pop()
        try:
            with os.scandir(dir_abs) as it:
                for de in it:
                    rel = f"{dir_rel}/{de.name}" if dir_rel else de.name
                    _check_name(rel, de.path)
                    if de.is_symlink():
                        entries.append(Entry(rel, "symlink", target=_link_target(de.path, real_top)))
                    elif de.is_dir(follow_symlinks=False):
                        entries.append(Entry(rel, "dir"))
                        stack.append((de.path, rel))
                    elif de.is_file(follow_symlinks=False):
                        files.append((rel, de.path, de.stat(follow_symlinks=False)))
                    else:
                        raise _special(de.path, de.stat(follow_symlinks=False).st_mode)
        except OSError as exc:
            raise _unreadable(exc.filename or dir_abs, exc) from None


def _i64(value: int) -> int:
    # SQLite integers are signed 64-bit; some filesystems hand out inode/dev numbers above 2**63.
    return value - (1 << 64) if value >= 1 << 63 else value


class _StatCache:
    """abs path -> (size, mtime_ns, inode, dev, sha256, hashed_at_ns): one read of the whole table, one
    executemany write. NOTE: it only saves time; a broken or unwritable cache means re-hashing, never failing."""

    def __init__(self, path: Path | None, store: Store) -> None:
        self.path, self.objects = path, str(store.root)
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.updates: list[tuple[Any, ...]] = []
        if path is not None and path.exists():
            try:
                with closing(sqlite3.connect(path, timeout=30)) as db:
                    self.rows = {r[0]: r for r in db.execute("SELECT * FROM stat_v1")}
            except sqlite3.Error:
                pass

    def lookup(self, abs_path: str, st: os.stat_result) -> str | None:
        row = self.rows.get(abs_path)
        if (
            row is None
            or row[1:5] != (st.st_size, st.st_mtime_ns, _i64(st.st_ino), _i64(st.st_dev))
            or row[2] + RACY_NS > row[6]
            or not _DIGEST.fullmatch(sha := row[5])
        ):
            return None
        # Store.has() builds Path objects and re-validates the id: 3/4 of a 10,000-file re-snapshot. This is the
        # same objects/ab/cdef... layout (tests/test_store.py pins it) with plain strings.
        return sha if os.path.isfile(f"{self.objects}/{sha[:2]}/{sha[2:]}") else None

    def record(self, abs_path: str, st: os.stat_result, sha: str, hashed_at: int) -> None:
        self.updates.append((abs_path, st.st_size, st.st_mtime_ns, _i64(st.st_ino), _i64(st.st_dev), sha, hashed_at))

    def save(self) -> None:
        if self.path is None or not self.updates:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30)) as db, db:  # one transaction, no per-file commit
                db.execute(
                    "CREATE TABLE IF NOT EXISTS stat_v1 (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                    "inode INTEGER, dev INTEGER, sha256 TEXT, hashed_at_ns INTEGER)"
                )
                db.executemany("INSERT OR REPLACE INTO stat_v1 VALUES (?, ?, ?, ?, ?, ?, ?)", self.updates)
        except (sqlite3.Error, OSError):
            pass


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any], tick: Callable[[], None] | None = None) -> list[Any]:
    """fn over items on a few threads (hashlib and file I/O release the GIL), results in order. tick() runs on the
    calling thread every 0.1 s, so a progress renderer is never called from a worker."""
    results: list[Any] = [None] * len(items)
    todo, lock = iter(range(len(items))), threading.Lock()
    stop: list[BaseException | None] = []

    def work() -> None:
        while not stop:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # handed to the calling thread below
                stop.append(exc)

    n = min(_WORKERS, len(items))
    if n == 0:
        return results
    pool = ThreadPoolExecutor(n, thread_name_prefix="harness-snapshot")
    futures = [pool.submit(work) for _ in range(n)]
    try:
        while wait(futures, timeout=0.1).not_done:
            if tick:
                tick()
    finally:
        stop.append(None)  # after an error or Ctrl-C, workers stop after the file they are on
        pool.shutdown()
    if stop[0] is not None:
        raise stop[0]
    return results


class _Reader:
    """The user's file as a stream for Store.put_stream: counts progress and blames read errors on the file."""

    def __init__(self, fh: IO[bytes], path: str, counter: list[int]) -> None:
        self.fh, self.path, self.counter, self.pending = fh, path, counter, b""

    def read(self, n: int = -1) -> bytes:
        if self.pending:
            chunk, self.pending = self.pending, b""
            return chunk
        try:
            chunk = self.fh.read(n)
        except OSError as exc:
            raise _unreadable(self.path, exc) from None
        self.counter.append(len(chunk))  # list.append is atomic; the caller sums
        return chunk


def _ingest(store: Store, abs_path: str, size: int, counter: list[int]) -> tuple[str, int]:
    """Hash a user's file while copying it into the store: one read pass, memory bounded by CHUNK."""
    try:
        fh = open(abs_path, "rb")  # noqa: SIM115 -- a with here would also cover the store's errors
    except OSError as exc:
        raise _unreadable(abs_path, exc) from None
    try:
        with fh:
            reader = _Reader(fh, abs_path, counter)
            # size+1, not CHUNK: a 1 MiB buffer per small file costs more than hashing it. A short read is EOF, so a
            # small file takes one read, and put_bytes skips writing an object that is already there.
            want = min(CHUNK, size + 1)
            reader.pending = reader.read(want)
            if len(reader.pending) < want:
                return store.put_bytes(reader.pending), len(reader.pending)
            return store.put_stream(reader)  # type: ignore[arg-type]
    except OSError as exc:  # _Reader turned read errors into DataError; these are the store's
        raise DataError(
            f"could not store {abs_path} in {store.root}: {exc.strerror or exc}",
            f"check free space and permissions of the store; {_NOTHING_CHANGED} in the data",
        ) from None


def snapshot_roots(
    roots: Mapping[str, Path], store: Store, stat_cache: Path | None = None, progress: Progress | None = None
) -> Snapshot:
    """One virtual tree whose top-level entries are the root names (a file root is a single entry)."""
    entries: list[Entry] = []
    files: list[_Found] = []
    for name, root in roots.items():
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise DataError(f"data root name {name!r} is not a plain name", "use a name such as 'train'")
        top = os.path.abspath(root)
        try:
            st = os.stat(top)  # follows a symlinked root: the user named that path on purpose
        except FileNotFoundError:
            raise DataError(f"data root {name!r}: {root} does not exist", "create it or fix its path") from None
        except OSError as exc:
            raise _unreadable(top, exc) from None
        if stat.S_ISDIR(st.st_mode):
            entries.append(Entry(name, "dir"))
            _walk(top, name, store, entries, files)
        elif stat.S_ISREG(st.st_mode):
            _check_name(name, top)
            files.append((name, top, st))
        else:
            raise _special(top, st.st_mode)
    return _build(entries, files, store, stat_cache, progress)


def snapshot_tree(
    root: Path, store: Store, stat_cache: Path | None = None, progress: Progress | None = None
) -> Snapshot:
    """Entries relative to root itself (a run's outputs directory)."""
    top = os.path.abspath(root)
    if not os.path.isdir(top):
        raise DataError(f"{root} is not a directory", "pass the directory whose contents should be recorded")
    entries: list[Entry] = []
    files: list[_Found] = []
    _walk(top, "", store, entries, files)
    return _build(entries, files, store, stat_cache, progress)


def _build(
    entries: list[Entry], files: list[_Found], store: Store, stat_cache: Path | None, progress: Progress | None
) -> Snapshot:
    started = time.time_ns()  # before any read: a file modified after this is "racy" for the cache
    cache = _StatCache(stat_cache, store)
    results: list[tuple[str, int] | None] = [None] * len(files)
    todo: list[int] = []
    for i, (_, abs_path, st) in enumerate(files):
        sha = cache.lookup(abs_path, st)
        if sha is None:
            todo.append(i)
        else:
            results[i] = (sha, st.st_size)

    total = sum(files[i][2].st_size for i in todo)
    counter: list[int] = []
    tick = (lambda: progress(min(sum(counter), total), total)) if progress else None
    if tick:
        tick()
    hashed = _parallel(lambda i: _ingest(store, files[i][1], files[i][2].st_size, counter), todo, tick)
    for i, result in zip(todo, hashed, strict=True):
        results[i] = result
        cache.record(files[i][1], files[i][2], result[0], started)
    cache.save()
    if progress:
        progress(total, total)

    for (rel, _, st), result in zip(files, results, strict=True):
        assert result is not None
        sha, size = result  # the size actually read, so it matches the object even if the file grew
        entries.append(Entry(rel, "file", size, bool(st.st_mode & stat.S_IXUSR), sha))
    entries.sort(key=lambda e: e.path)
    digest = store.put_json({"version": MANIFEST_VERSION, "entries": [e.to_dict() for e in entries]})
    return _snapshot(digest, tuple(entries))


def _snapshot(digest: str, entries: tuple[Entry, ...]) -> Snapshot:
    sizes = [e.size for e in entries if e.kind == "file"]
    return Snapshot(digest=digest, files=len(sizes), bytes=sum(sizes), entries=entries)


def load_snapshot(store: Store, digest: str) -> Snapshot:
    try:
        with open(store.path(digest), "rb") as fh:  # store.path: NotFound for what is not an object id
            head = fh.read(len(_MANIFEST_HEAD))
    except FileNotFoundError:
        raise NotFound(
            f"snapshot {digest} is not in the store at {store.root}",
            "check the id (`harness show RUN` prints a run's data snapshot), or snapshot the data again",
        ) from None
    not_manifest = DataError(f"object {digest} is not a snapshot manifest", "pass the `snapshot` id of a run")
    if head != _MANIFEST_HEAD:
        store.require(digest)  # a damaged manifest is StoreCorruption, not "wrong kind of object"
        raise not_manifest
    try:
        doc = store.read_json(digest)  # re-hashes: StoreCorruption if the bytes changed
    except ValueError:
        raise not_manifest from None
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION or not isinstance(doc.get("entries"), list):
        raise not_manifest
    entries = tuple(Entry.from_dict(d) for d in doc["entries"])
    if any(a.path >= b.path for a, b in pairwise(entries)):
        raise not_manifest
    return _snapshot(digest, entries)


def diff(a: Snapshot, b: Snapshot) -> dict[str, list[str]]:
    old = {e.path: e for e in a.entries}
    new = {e.path: e for e in b.entries}
    return {
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "changed": sorted(p for p in old.keys() & new.keys() if old[p] != new[p]),
    }


def _paths_by_object(snap: Snapshot) -> dict[str, list[str]]:
    by_sha: dict[str, list[str]] = {}
    for e in snap.entries:
        if e.kind == "file" and e.sha256:
            by_sha.setdefault(e.sha256, []).append(e.path)
    return by_sha


def verify_snapshot(store: Store, digest: str) -> list[str]:
    """Paths (sorted) whose object is missing from the store or no longer hashes to its name."""
    by_sha = _paths_by_object(load_snapshot(store, digest))
    ok = _parallel(store.verify, list(by_sha))
    return sorted(p for (sha, paths), good in zip(by_sha.items(), ok, strict=True) if not good for p in paths)


def _require(store: Store, sha: str, path: str) -> Path:
    try:
        return store.require(sha)
    except NotFound:
        raise NotFound(
            f"data file {path}: object {sha} is missing from the store at {store.root}",
            "nothing was materialized; snapshot the original data again to put the object back",
        ) from None
    except StoreCorruption:
        raise StoreCorruption(
            f"data file {path}: object {sha} at {store.path(sha)} does not match its name (its bytes changed)",
            "nothing was materialized and the object was kept for inspection; move it aside, snapshot the "
            "original data again to restore it, and run `harness verify` to check the rest of the store",
        ) from None


def _place(entry: Entry, target: Path, obj: Path | None) -> None:
    if entry.kind == "dir":
        target.mkdir()
    elif entry.kind == "symlink":
        os.symlink(entry.target or "", target)
    elif obj is not None:
        if not entry.executable:
            try:
                os.link(obj, target)  # no bytes copied; the object is already 0444
                return
            except OSError as exc:
                # NOTE: another filesystem, an inode's link limit or no hardlinks: a copy has the same bytes.
                if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP):
                    raise
        # Executables are copies: a chmod on a hardlink would change the shared store object's mode.
        shutil.copyfile(obj, target)
        os.chmod(target, 0o555 if entry.executable else 0o444)


def materialize(store: Store, digest: str, dest: Path) -> None:
    """Build a read-only tree at dest (which must not exist) from hardlinks to verified store objects."""
    if os.path.lexists(dest):
        raise DataError(
            f"{dest} already exists; a snapshot is materialized only into a new directory",
            f"choose a path that does not exist yet; {_NOTHING_CHANGED} there",
        )
    snap = load_snapshot(store, digest)
    by_sha = _paths_by_object(snap)
    # Check every object before creating anything, so a damaged store leaves no half-built tree behind.
    found = _parallel(lambda sha: _require(store, sha, by_sha[sha][0]), list(by_sha))
    objects = dict(zip(by_sha, found, strict=True))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.mkdir()
    try:
        for e in snap.entries:  # sorted, so a directory always comes before its contents
            _place(e, dest / e.path, objects.get(e.sha256 or ""))
        for e in reversed(snap.entries):  # deepest first, while parents are still writable
            if e.kind == "dir":
                os.chmod(dest / e.path, 0o555)
        os.chmod(dest, 0o555)
    except OSError as exc:
        remove_materialized(dest)  # only what this call created
        raise DataError(
            f"could not materialize snapshot {digest} at {dest}: {exc.strerror or exc}",
            "the partial tree was removed; check free space and permissions there",
        ) from None


def remove_materialized(dest: Path) -> None:
    """Delete a tree made by materialize(). Only directories are made writable: files may be hardlinks to store
    objects, and a chmod on them would change the object too."""
    if os.path.lexists(dest):
        for dirpath, _, _ in os.walk(dest):
            os.chmod(dirpath, 0o700)
        shutil.rmtree(dest)
