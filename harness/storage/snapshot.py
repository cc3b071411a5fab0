"""Data snapshots: a tree of files -> objects in the Store plus one manifest object whose id is the digest.

The manifest is canonical JSON ``{"version": 1, "entries": [...]}`` with entries sorted by path. It depends only
on paths, content, kinds, executable bits and symlink targets -- never on mtimes, owners, creation order or host --
so the same data gives the same digest anywhere. A stat cache (SQLite) lets an unchanged tree be re-snapshotted
for about the cost of a directory walk: per file (size, mtime_ns, ctime_ns, inode, dev) -> sha256, and per set of
roots the whole last tree, so an unchanged tree also skips the per-file lookups and the manifest serialisation.
ctime is what catches a file rewritten in place with its size kept and its mtime put back (``touch -r``, rsync):
no one can set it back. ``rehash=True`` trusts no cache.
``materialize`` turns a digest back into a read-only tree of hardlinks.
"""

from __future__ import annotations

import gc
import marshal
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

from harness.digests import CHUNK
from harness.errors import DataError, NotFound, StoreCorruption
from harness.files import make_file
from harness.storage.store import NO_HARDLINK, Store, is_digest

MANIFEST_VERSION = 1
KINDS = ("file", "dir", "symlink")
_FIELDS = ("path", "kind", "size", "executable", "sha256", "target")
# Canonical JSON sorts keys, so every manifest starts like this: a data object (maybe gigabytes) passed by
# mistake is refused without being read whole.
_MANIFEST_HEAD = b'{"entries":['
# git's "racy clean" rule: a file changed within one tick of its filesystem's clock before it was hashed could
# change again in that same tick and keep every stat field, so its cache row is not trusted and the next snapshot
# reads it again. A timestamp of whole seconds comes from a coarse filesystem (ext4 with 128-byte inodes, HFS+: 1 s;
# FAT: 2 s); any other from one that keeps sub-second times, stamped from the kernel's coarse clock, which ticks
# at least every 10 ms (HZ >= 100; exFAT keeps 10 ms): the fine window covers that ten times over.
RACY_COARSE_NS = 2_000_000_000
RACY_FINE_NS = 100_000_000
_SECOND = 1_000_000_000
# The cache's tables carry their layout's version: a cache written by another layout is ignored (and dropped on
# the next write), never misread. v2 added ctime_ns and the sub-second racy window.
STAT_TABLE, TREE_TABLE = "stat_v2", "tree_v2"
_OLD_TABLES = ("stat_v1", "tree_v1")
_DIGEST = re.compile("[0-9a-f]{64}")
_WORKERS = min(32, (os.cpu_count() or 1) + 4)  # more threads than cores: reads wait on the disk, not the GIL
_NOTHING_CHANGED = "nothing was changed"

Progress = Callable[[int, int], None]
# Stores one file found by the walk: (absolute path, its lstat, a list to append the bytes read to, for progress)
# -> (sha256, the size read). copy_in by default; a run's outputs are adopted instead (harness/storage/adopt.py).
Ingest = Callable[[str, os.stat_result, list[int]], tuple[str, int]]
_Found = tuple[str, str, os.stat_result]  # (manifest path, absolute host path, lstat)
_Row = tuple[str, str, int, bool, str | None, str | None]  # an Entry's fields, in _FIELDS order


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


def special_kind(mode: int) -> str:
    """What a file that is not a regular file, directory or symlink is, in words ("a FIFO (named pipe)")."""
    kinds = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device"}
    return kinds.get(stat.S_IFMT(mode), "a block device" if stat.S_ISBLK(mode) else "an unknown file type")


def _special(path: str, mode: int) -> DataError:
    return DataError(
        f"{path} is {special_kind(mode)}, which cannot be part of a data snapshot",
        f"snapshots hold regular files, directories and in-tree symlinks: move it out of the data; {_NOTHING_CHANGED}",
    )


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _check_name(rel: str, path: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{path!r}: the name is not valid UTF-8", "rename it; manifests store names as text") from None


def leaves_tree(link: str, target: str, real_top: str) -> bool:
    """Whether the symlink at ``link`` (an absolute path) with this target points outside ``real_top``: an absolute
    target, or one that resolves outside it."""
    # realpath, not a lexical normpath: the target may pass through other links in the tree ("up/../..").
    return os.path.isabs(target) or not _inside(os.path.realpath(os.path.join(os.path.dirname(link), target)), real_top)


def _link_target(link: str, real_top: str) -> str:
    target = os.readlink(link)
    if not target.isascii():
        try:
            target.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(
                f"{link!r} is a symlink whose target {target!r} is not valid UTF-8",
                f"point it at a name that is valid UTF-8; manifests store targets as text; {_NOTHING_CHANGED}",
            ) from None
    if leaves_tree(link, target, real_top):
        raise DataError(
            f"{link} is a symlink to {target!r}, which is outside the data tree {real_top}",
            "a run sees only the snapshot, where the link would dangle: replace it with a copy of what it points "
            "to, make it a relative link inside the tree, or add the target as its own data root",
        )
    return target


def _walk(top: str, prefix: str, store: Store, entries: list[_Row], files: list[_Found]) -> None:
    real_top = os.path.realpath(top)
    if _inside(os.path.realpath(store.root), real_top):  # it would snapshot its own growing object store
        raise DataError(
            f"{top} contains the harness store {store.root}",
            "snapshot a directory that does not contain the store, or move the store with HARNESS_HOME",
        )
    if prefix:
        _check_name(prefix, top)
    stack = [(top, prefix)]
    while stack:
        dir_abs, dir_rel = stack.pop()
        base = f"{dir_rel}/" if dir_rel else ""
        try:
            with os.scandir(dir_abs) as it:
                # The hot loop of a re-snapshot: DirEntry type checks use d_type (no syscall), files first.
                for de in it:
                    name = de.name
                    rel = base + name
                    if not name.isascii():
                        _check_name(rel, de.path)
                    if de.is_file(follow_symlinks=False):
                        files.append((rel, de.path, de.stat(follow_symlinks=False)))
                    elif de.is_symlink():
                        entries.append((rel, "symlink", 0, False, None, _link_target(de.path, real_top)))
                    elif de.is_dir(follow_symlinks=False):
                        entries.append((rel, "dir", 0, False, None, None))
                        stack.append((de.path, rel))
                    else:
                        raise _special(de.path, de.stat(follow_symlinks=False).st_mode)
        except OSError as exc:
            raise _unreadable(exc.filename or dir_abs, exc) from None


def _i64(value: int) -> int:
    # SQLite integers are signed 64-bit; some filesystems hand out inode/dev numbers above 2**63.
    return value - (1 << 64) if value >= 1 << 63 else value


def _u64(value: int) -> int:
    return value if value >= 0 else value + (1 << 64)


_ALL_DIGESTS = re.compile("(?:[0-9a-f]{64})*")
# A fan-out directory is listed (one syscall per ~100 names) rather than stat-ing each object when it holds at most
# this many bytes of directory per object looked up in it (ext4 uses ~72 bytes a name): listing a fan of a store
# much larger than the snapshot would cost more than the stats it saves.
_LIST_BYTES_PER_LOOKUP = 8 * 72


def _all_digests(values: list[str]) -> bool:
    """All are sha256 hex digests: one regex over them joined, not one per value."""
    try:
        return _ALL_DIGESTS.fullmatch("".join(values)) is not None and all(len(v) == 64 for v in values)
    except TypeError:  # not all strings: a damaged cache
        return False


def _present(objects: str, shas: list[str]) -> list[bool]:
    """Which objects exist in the store (objects/ab/cdef... layout, pinned by tests/test_store.py)."""
    counts = Counter(sha[:2] for sha in shas)
    names: set[str] = set()
    unlisted: set[str] = set()
    for fan, n in counts.items():
        try:
            if os.stat(f"{objects}/{fan}").st_size > n * _LIST_BYTES_PER_LOOKUP:
                unlisted.add(fan)
            else:
                names.update([fan + name for name in os.listdir(f"{objects}/{fan}")])
        except OSError:
            pass
    if not unlisted and names.issuperset(shas):
        return [True] * len(shas)
    return [sha in names or (sha[:2] in unlisted and os.path.isfile(f"{objects}/{sha[:2]}/{sha[2:]}")) for sha in shas]


def _racy_window(ns: int) -> int:
    return RACY_FINE_NS if ns % _SECOND else RACY_COARSE_NS


def _settled(st: os.stat_result, hashed_at: int) -> bool:
    """Whether a file with this lstat, hashed at ``hashed_at`` (ns), may be trusted later: neither its mtime nor
    its ctime within the racy window. The SQL in _StatCache.load_rows is the same rule."""
    m, c = st.st_mtime_ns, st.st_ctime_ns
    return m + _racy_window(m) <= hashed_at and c + _racy_window(c) <= hashed_at


_SETTLED = " AND ".join(
    f"{col} + CASE WHEN {col} % {_SECOND} = 0 THEN {RACY_COARSE_NS} ELSE {RACY_FINE_NS} END <= hashed_at_ns"
    for col in ("mtime_ns", "ctime_ns")
)


class _StatCache:
    """abs path -> (size, mtime_ns, ctime_ns, inode, dev, sha256, hashed_at_ns): one read of the whole table, one
    executemany write.

    Also, per set of roots (the key holds their names and absolute paths), the whole last tree (tree_v2): every
    file's (path, size, mtime_ns, ctime_ns, inode, dev, mode), the dirs and symlinks, the resulting entries and
    manifest digest. A re-snapshot that walks to exactly the same tree reuses them without reading stat_v2 or
    serialising the manifest (its objects must still be in the store, and the manifest object must still hash to
    its name). It is stored only when no file was "racy", and a trigger empties it whenever a stat_v2 row is
    deleted (`harness verify` drops the rows of damaged objects so that their files are read again), so it never
    trusts more than stat_v2 would.
    NOTE: it only saves time; a broken or unwritable cache means re-hashing, never failing."""

    def __init__(self, path: Path | None, store: Store, key: str) -> None:
        self.path, self.objects, self.key = path, str(store.root), key
        # Only rows outside the racy window, keyed for one tuple compare with (size, mtime_ns, ctime_ns, ino, dev).
        self.rows: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
        self.updates: list[tuple[Any, ...]] = []
        self.tree: tuple[bytes, str] | None = None  # (marshalled (version, signature, entries), digest)
        self.new_tree: tuple[bytes, str] | None = None
        if path is not None and path.exists():
            try:
                with closing(sqlite3.connect(path, timeout=30)) as db:
                    row = db.execute(f"SELECT tree, digest FROM {TREE_TABLE} WHERE key = ?", (key,)).fetchone()
                if row is not None and isinstance(row[0], bytes) and isinstance(row[1], str):
                    self.tree = (row[0], row[1])
            except sqlite3.Error:
                pass

    def same_tree(self, signature: Any) -> tuple[list[_Row], str] | None:
        """The entries and digest of the last snapshot of these roots, if it walked to exactly this signature."""
        if self.tree is None:
            return None
        try:
            version, cached, entries = marshal.loads(self.tree[0])
        except (ValueError, EOFError, TypeError):
            return None
        # Compared as values, not bytes: marshal's output depends on reference counts.
        if version != MANIFEST_VERSION or cached != signature or not isinstance(entries, list):
            return None
        return entries, self.tree[1]

    def load_rows(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as db:
                query = f"SELECT path, size, mtime_ns, ctime_ns, inode, dev, sha256 FROM {STAT_TABLE} WHERE {_SETTLED}"
                self.rows = {
                    p: ((size, mtime, ctime, _u64(ino), _u64(dev)), sha)
                    for p, size, mtime, ctime, ino, dev, sha in db.execute(query)
                }
        except sqlite3.Error:
            pass

    def lookup_all(self, files: list[_Found]) -> list[str | None]:
        """The cached sha256 of each file whose (size, mtime_ns, ctime_ns, inode, dev) is unchanged and whose object
        is in the store; None for the rest."""
        get = self.rows.get
        hits: list[int] = []
        shas: list[str] = []
        for i, (_, abs_path, st) in enumerate(files):
            row = get(abs_path)
            if row is not None and row[0] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev):
                hits.append(i)
                shas.append(row[1])
        if not _all_digests(shas):  # a bad row is rare
            keep = [j for j, sha in enumerate(shas) if isinstance(sha, str) and _DIGEST.fullmatch(sha)]
            hits, shas = [hits[j] for j in keep], [shas[j] for j in keep]
        out: list[str | None] = [None] * len(files)
        for i, sha, present in zip(hits, shas, _present(self.objects, shas), strict=True):
            if present:
                out[i] = sha
        return out

    def record(self, abs_path: str, st: os.stat_result, sha: str, hashed_at: int) -> None:
        row = (abs_path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, _i64(st.st_ino), _i64(st.st_dev), sha, hashed_at)
        self.updates.append(row)

    def save(self) -> None:
        if self.path is None or not (self.updates or self.new_tree):
            return
        try:
            make_file(self.path)  # no more open than the store: it lists the data's paths
            with closing(sqlite3.connect(self.path, timeout=30)) as db, db:  # one transaction, no per-file commit
                for old in _OLD_TABLES:  # an older layout's rows are never read again (its trigger goes with it)
                    db.execute(f"DROP TABLE IF EXISTS {old}")
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {STAT_TABLE} (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                    "ctime_ns INTEGER, inode INTEGER, dev INTEGER, sha256 TEXT, hashed_at_ns INTEGER)"
                )
                db.execute(f"CREATE TABLE IF NOT EXISTS {TREE_TABLE} (key TEXT PRIMARY KEY, tree BLOB, digest TEXT)")
                # INSERT OR REPLACE below does not fire it (recursive_triggers is off); a DELETE does.
                db.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {STAT_TABLE}_delete AFTER DELETE ON {STAT_TABLE} "
                    f"BEGIN DELETE FROM {TREE_TABLE}; END"
                )
                db.executemany(f"INSERT OR REPLACE INTO {STAT_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.updates)
                if self.new_tree:
                    db.execute(f"INSERT OR REPLACE INTO {TREE_TABLE} VALUES (?, ?, ?)", (self.key, *self.new_tree))
                else:  # the tree changed, or was racy: the row no longer describes it
                    db.execute(f"DELETE FROM {TREE_TABLE} WHERE key = ?", (self.key,))
        except (sqlite3.Error, OSError):
            pass


def forget_hashes(stat_cache: Path, digests: Sequence[str]) -> None:
    """Drop the stat-cache rows that point at these objects (and with them every cached tree), so the next
    snapshot reads those files again and stores them again. NOTE: a cache that cannot be opened keeps its rows;
    `harness data snapshot --rehash` reads everything whatever the cache holds."""
    if not digests or not stat_cache.exists():
        return
    try:
        with closing(sqlite3.connect(stat_cache, timeout=30)) as db, db:
            db.executemany(f"DELETE FROM {STAT_TABLE} WHERE sha256 = ?", [(d,) for d in digests])
    except sqlite3.Error:
        pass


def _parallel(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    tick: Callable[[], None] | None = None,
    workers: int = _WORKERS,
) -> list[Any]:
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

    n = min(workers, len(items))
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

    def __init__(self, fh: IO[bytes], path: str, counter: list[int], pending: bytes = b"") -> None:
        self.fh, self.path, self.counter, self.pending = fh, path, counter, pending

    def readinto(self, buf: memoryview) -> int:
        if self.pending:
            n = min(len(buf), len(self.pending))
            buf[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n
        try:
            n = self.fh.readinto(buf) or 0  # type: ignore[attr-defined]
        except OSError as exc:
            raise _unreadable(self.path, exc) from None
        self.counter.append(n)  # list.append is atomic; the caller sums
        return n


def copy_in(store: Store, abs_path: str, size: int, counter: list[int]) -> tuple[str, int]:
    """Hash a user's file while copying it into the store: one read pass, memory bounded by the store's buffers.
    ``size`` is what its lstat said; the size returned is what was read."""
    try:
        fd = os.open(abs_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(abs_path, exc) from None
    try:
        pending = b""
        if size < CHUNK:
            # A small file is read whole with one read of size+1 (a short read is EOF), and put_bytes skips
            # writing an object that is already there.
            want = size + 1
            try:
                pending = os.read(fd, want)
            except OSError as exc:
                raise _unreadable(abs_path, exc) from None
            counter.append(len(pending))
            if len(pending) < want:
                return store.put_bytes(pending), len(pending)
        elif hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        with open(fd, "rb", buffering=0, closefd=False) as fh:  # the file grew past CHUNK, or is large
            return store.put_stream(_Reader(fh, abs_path, counter, pending))  # type: ignore[arg-type]
    except OSError as exc:  # _Reader turned read errors into DataError; these are the store's
        raise DataError(
            f"could not store {abs_path} in {store.root}: {exc.strerror or exc}",
            f"check free space and permissions of the store; {_NOTHING_CHANGED} in the data",
        ) from None
    finally:
        os.close(fd)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a snapshot makes its ~5 objects per file (tuples, dicts, Entries):
    otherwise the collector walks them all again and again, ~20% of an unchanged 10,000-file re-snapshot. They hold
    no reference cycles, and the ingestion threads allocate buffers, which the collector does not track."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def snapshot_roots(
    roots: Mapping[str, Path],
    store: Store,
    stat_cache: Path | None = None,
    progress: Progress | None = None,
    rehash: bool = False,
) -> Snapshot:
    """One virtual tree whose top-level entries are the root names (a file root is a single entry). ``rehash``
    reads every file whatever the stat cache says, and rewrites the cache from what was read."""
    with _gc_paused():
        return _snapshot_roots(roots, store, stat_cache, progress, rehash)


def _snapshot_roots(
    roots: Mapping[str, Path], store: Store, stat_cache: Path | None, progress: Progress | None, rehash: bool
) -> Snapshot:
    entries: list[_Row] = []
    files: list[_Found] = []
    tops: list[tuple[str, str]] = []
    for name, root in roots.items():
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise DataError(f"data root name {name!r} is not a plain name", "use a name such as 'train'")
        top = os.path.abspath(root)
        tops.append((name, top))
        try:
            st = os.stat(top)  # follows a symlinked root: the user named that path on purpose
        except FileNotFoundError:
            raise DataError(f"data root {name!r}: {root} does not exist", "create it or fix its path") from None
        except OSError as exc:
            raise _unreadable(top, exc) from None
        if stat.S_ISDIR(st.st_mode):
            entries.append((name, "dir", 0, False, None, None))
            _walk(top, name, store, entries, files)
        elif stat.S_ISREG(st.st_mode):
            _check_name(name, top)
            files.append((name, top, st))
        else:
            raise _special(top, st.st_mode)
    return _build(entries, files, store, stat_cache, progress, repr(sorted(tops)), rehash)


def snapshot_tree(
    root: Path,
    store: Store,
    stat_cache: Path | None = None,
    progress: Progress | None = None,
    ingest: Ingest | None = None,
) -> Snapshot:
    """Entries relative to root itself (a run's outputs directory). ``ingest`` stores each file that the stat
    cache does not know (default: a copy, :func:`copy_in`)."""
    with _gc_paused():
        return _snapshot_tree(root, store, stat_cache, progress, ingest)


def _snapshot_tree(
    root: Path, store: Store, stat_cache: Path | None, progress: Progress | None, ingest: Ingest | None
) -> Snapshot:
    top = os.path.abspath(root)
    if not os.path.isdir(top):
        raise DataError(f"{root} is not a directory", "pass the directory whose contents should be recorded")
    entries: list[_Row] = []
    files: list[_Found] = []
    _walk(top, "", store, entries, files)
    return _build(entries, files, store, stat_cache, progress, repr([("", top)]), False, ingest)


def _build(
    entries: list[_Row],
    files: list[_Found],
    store: Store,
    stat_cache: Path | None,
    progress: Progress | None,
    key: str,
    rehash: bool,
    ingest: Ingest | None = None,
) -> Snapshot:
    started = time.time_ns()  # before any read: a file modified after this is "racy" for the cache
    cache = _StatCache(stat_cache, store, key)
    signature = (
        entries,
        [(r, t.st_size, t.st_mtime_ns, t.st_ctime_ns, t.st_ino, t.st_dev, t.st_mode) for r, _, t in files],
    )
    same = None if rehash else cache.same_tree(signature)
    if same is not None:
        rows, digest = same
        shas = [e[4] or "" for e in rows if e[1] == "file"]
        if _all_digests(shas) and all(_present(cache.objects, shas)) and store.verify(digest):
            if progress:
                progress(0, 0)
            return _snapshot(digest, _entries(rows))
    if not rehash:
        cache.load_rows()
    cached = cache.lookup_all(files)
    todo = [i for i, sha in enumerate(cached) if sha is None]

    results: dict[int, tuple[str, int]] = {}
    if todo:
        total = sum(files[i][2].st_size for i in todo)
        counter: list[int] = []
        tick = (lambda: progress(min(sum(counter), total), total)) if progress else None
        if tick:
            tick()
        # Small files are CPU and metadata work (create, rename), not disk waits: threads beyond the cores only
        # contend for the GIL and the store's tmp directory.
        workers = _WORKERS if total >= CHUNK * len(todo) else (os.cpu_count() or 1)
        store_one = ingest or (lambda path, st, counter: copy_in(store, path, st.st_size, counter))
        hashed = _parallel(lambda i: store_one(files[i][1], files[i][2], counter), todo, tick, workers)
        for i, result in zip(todo, hashed, strict=True):
            results[i] = result
            cache.record(files[i][1], files[i][2], result[0], started)
        if progress:
            progress(total, total)
    elif progress:
        progress(0, 0)

    rows = list(entries)
    for i, ((rel, _, st), sha) in enumerate(zip(files, cached, strict=True)):
        executable = bool(st.st_mode & stat.S_IXUSR)
        if sha is None:
            sha, size = results[i]  # the size actually read, so it matches the object even if the file grew
            rows.append((rel, "file", size, executable, sha, None))
        else:
            rows.append((rel, "file", st.st_size, executable, sha, None))
    rows.sort()  # paths are unique, so this is the order of the paths
    manifest = [dict(zip(_FIELDS, e, strict=True)) for e in rows]
    digest = store.put_json({"version": MANIFEST_VERSION, "entries": manifest})
    # Kept only when every file is outside the racy window and was read at the size its lstat gave (and only
    # where there is a cache: a run's 100,000 outputs took 0.3 s to marshal for nothing).
    if (
        stat_cache is not None
        and all(_settled(st, started) for _, _, st in files)
        and all(size == files[i][2].st_size for i, (_, size) in results.items())
    ):
        cache.new_tree = (marshal.dumps((MANIFEST_VERSION, signature, rows)), digest)
    cache.save()
    return _snapshot(digest, _entries(rows))


def _entries(rows: list[_Row]) -> tuple[Entry, ...]:
    """Entry objects without the frozen dataclass __init__ (six object.__setattr__ calls each): 40% less time
    for the 10,000 entries of an unchanged re-snapshot. The same objects: equality, hash and repr use the fields."""
    new, set_dict = object.__new__, object.__setattr__
    out = []
    for path, kind, size, executable, sha256, target in rows:
        e = new(Entry)
        fields = {
            "path": path,
            "kind": kind,
            "size": size,
            "executable": executable,
            "sha256": sha256,
            "target": target,
        }
        set_dict(e, "__dict__", fields)
        out.append(e)
    return tuple(out)


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


def _place(entry: Entry, target: Path, obj: Path | None, shared: bool) -> None:
    if entry.kind == "dir":
        target.mkdir()
    elif entry.kind == "symlink":
        os.symlink(entry.target or "", target)
    elif obj is not None:
        if not entry.executable and not (shared and not os.stat(obj).st_mode & stat.S_IROTH):
            try:
                os.link(obj, target)  # no bytes copied; the object is already 0444
                return
            except OSError as exc:
                # NOTE: another filesystem, an inode's link limit or no hardlinks: a copy has the same bytes.
                if exc.errno not in NO_HARDLINK:
                    raise
        # Executables are copies: a chmod on a hardlink would change the shared store object's mode. So is an
        # object of a private store (0400) that another user is to read.
        shutil.copyfile(obj, target)
        os.chmod(target, 0o555 if entry.executable else 0o444)


def materialize(store: Store, digest: str, dest: Path, shared: bool = False) -> None:
    """Build a read-only tree at dest (which must not exist) from hardlinks to verified store objects. ``shared``:
    another user reads the tree (the container's, when harness runs as root), so an object others may not read
    is copied, readable by all, instead of linked."""
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
            _place(e, dest / e.path, objects.get(e.sha256 or ""), shared)
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
