"""Content-addressed objects: ``objects/ab/cdef...`` named by the sha256 of their bytes.

Objects are written to a temp file in the store and renamed into place, read-only: 0444, less what the store's
directory withholds from group and others (0400 in a store only its owner can enter; see harness/files.py). An
intact object that is already present is never rewritten, but one whose bytes no longer match its name is replaced
by the fresh copy, so storing the same content again (re-snapshotting the data) repairs it. Reading back through
:meth:`Store.verify` re-hashes the bytes, so a corrupted object is named rather than used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import queue
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from harness.digests import CHUNK, canonical_json
from harness.errors import NotFound, StoreCorruption
from harness.files import make_dirs, withheld

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
# A hardlink is impossible across filesystems, past an inode's link limit, or where hardlinks are not allowed:
# the file is then a copy instead (materialized trees, a run's outputs).
NO_HARDLINK = (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP)
_REPAIR_HINT = (
    "the damaged object was kept as it is. Run `harness verify` to list every damaged object and what uses it "
    "(it also makes the next snapshot re-read the files behind them); then store the same content again, which "
    "replaces a damaged object: `harness data snapshot PATH` or `harness run` for data; an output is written "
    "again when `harness rebuild RUN` reproduces it"
)


_BUFFERS = 3  # memory per stream: _BUFFERS x CHUNK
_SERIAL = itertools.count()
_SLOTS = itertools.count()
_LOCAL = threading.local()


def _thread_slot() -> str:
    """This thread's temp directory name: "t0", "t1", ... in the order threads first store something."""
    slot: str | None = getattr(_LOCAL, "slot", None)
    if slot is None:
        slot = _LOCAL.slot = f"t{next(_SLOTS) % 64}"
    return slot


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pipelined(readinto: Callable[[memoryview], int | None], hasher: Any, fd: int) -> int:
    """Hash on this thread while a helper thread reads each buffer and writes it to fd. Hashing is the one step
    that cannot be split, so it gets a core to itself; hashlib, read and write all release the GIL. The helper
    hands a filled buffer over and then writes it (both only read it); a buffer is refilled only after the
    helper has written it and this thread has hashed it. Returns the size read."""
    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    for _ in range(_BUFFERS):
        free.put(memoryview(bytearray(CHUNK)))
    failed: list[BaseException] = []
    # The helper writes through its own descriptor and closes it itself. If this thread leaves early (Ctrl-C,
    # which can also cut the join below short on CPython 3.11) and the caller closes fd, a write still under way
    # reaches the same temp file, never another file opened meanwhile under fd's number.
    own_fd = os.dup(fd)

    def read_and_write() -> None:
        try:
            while (buf := free.get()) is not None:
                n = readinto(buf) or 0
                if n == 0:
                    break
                full.put((buf, n))
                _write_all(own_fd, buf[:n])
        except BaseException as exc:  # handed to the hashing thread
            failed.append(exc)
        finally:
            full.put(None)
            os.close(own_fd)

    thread = threading.Thread(target=read_and_write, name="harness-store-copy", daemon=True)
    thread.start()
    size = 0
    try:
        while (item := full.get()) is not None:
            buf, n = item
            hasher.update(buf[:n])
            size += n
            free.put(buf)
    finally:
        free.put(None)  # stops the helper if this thread stopped first (an error or Ctrl-C)
        thread.join()
    if failed:
        raise failed[0]
    return size


def is_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[str] = set()  # fan-out (and tmp) directories this Store has made sure exist
        self._mode: int | None = None  # of new objects: READ_ONLY less what the store's directory withholds

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise NotFound(f"not an object id: {digest!r}", "object ids are 64 lowercase hex digits (sha256)")
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def mode(self) -> int:
        """The mode of objects this Store writes; makes the store's directory (no more open than its parent)."""
        if self._mode is None:
            make_dirs(self.root)
            self._mode = READ_ONLY & ~withheld(self.root)
        return self._mode

    def _temp_fd(self) -> tuple[int, str]:
        """A new read-only (0444 or less, see :meth:`mode`) temp file in the store, open for writing. Plain os
        calls: for 10,000 small objects, mkstemp's random names and the Path-based mkdir checks were a third of
        the cost per object.

        Each thread gets its own temp directory (tmp/<slot>): creating files in one directory from several
        threads serializes on that directory's lock, and here made storing 6,000 small objects with 6 threads
        3x slower than with a directory per thread (4.0 s against 1.35 s)."""
        mode = self.mode()
        while True:
            name = self._temp_name("incoming")
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            except FileExistsError:  # left behind by a crashed process that had the same pid
                continue
            except FileNotFoundError:  # tmp/ was removed since this Store made it
                make_dirs(os.path.dirname(name))
                continue
            try:
                os.fchmod(fd, mode)  # the umask may have taken bits away; the fd stays writable
            except BaseException:
                os.close(fd)
                os.unlink(name)
                raise
            return fd, name

    def _temp_name(self, kind: str) -> str:
        """A fresh name in this thread's temp directory (made once per Store): ``kind``-pid-thread-serial."""
        slot = _thread_slot()
        tmp_dir = f"{self.root}/tmp/{slot}"
        if slot not in self._dirs:
            make_dirs(tmp_dir)
            self._dirs.add(slot)
        return f"{tmp_dir}/{kind}-{os.getpid()}-{threading.get_ident()}-{next(_SERIAL)}"

    def _object_path(self, digest: str) -> str:
        """objects/ab/cdef... as a string, creating ab/ once per Store (digest already validated)."""
        fan = digest[:2]
        if fan not in self._dirs:
            make_dirs(f"{self.root}/{fan}")
            self._dirs.add(fan)  # set.add is atomic: threads may both mkdir, exist_ok covers that
        return f"{self.root}/{fan}/{digest[2:]}"

    def _intact(self, digest: str, size: int) -> bool:
        """True when the object is present with the given size and its bytes still hash to its name.

        Why re-hash and not only compare sizes: the damage `harness verify` reports is usually a changed byte,
        which keeps the size, and a size check alone would keep such an object forever. The re-hash runs only
        when content that is already stored is stored again (the stat cache missed, e.g. a copy of the data or
        a touched file), a path that has just read and hashed the whole source anyway, and a size mismatch
        short-cuts it for free.
        """
        try:
            return os.stat(f"{self.root}/{digest[:2]}/{digest[2:]}").st_size == size and (
                self.hash_object(digest) == digest
            )
        except OSError:  # absent or unreadable: the fresh copy takes its place
            return False

    def _commit_name(self, tmp: str, digest: str, size: int) -> None:
        """Move a finished read-only temp file into place, unless an intact copy is already there."""
        if self._intact(digest, size):
            os.unlink(tmp)
            return
        # Absent, or present but damaged: the fresh copy (hashed while written) takes its place.
        # rename is atomic; two writers of the same content end with the same bytes under one name.
        self._rename_in(tmp, digest)

    def _rename_in(self, tmp: str, digest: str) -> None:
        try:
            os.replace(tmp, self._object_path(digest))
        except FileNotFoundError:  # the fan-out directory was removed since this Store made it
            if not os.path.exists(tmp):
                raise
            self._dirs.discard(digest[:2])
            os.replace(tmp, self._object_path(digest))

    def _commit(self, tmp: Path, digest: str) -> Path:
        os.chmod(tmp, self.mode())
        self._commit_name(str(tmp), digest, os.stat(tmp).st_size)
        return self.path(digest)

    def put_stream(self, source: IO[bytes]) -> tuple[str, int]:
        """Copy a stream in, hashing while copying (one read pass). Returns (digest, size).

        A source with readinto is copied by a helper thread while this one hashes (see _pipelined). 1 GB, 2 CPUs,
        best of 4: 0.81 s, against 0.85 s for hashing alone, 1.21 s with the write (but not the read) on a second
        thread, and 3.2 s for read, hash and write on one thread. NOTE: an earlier writer thread fed fresh 1 MiB
        bytes objects through queue.Queue measured 2-3x slower than one thread; 4-8 MiB buffers were slower than
        1 MiB ones (they no longer fit in the CPU cache)."""
        fd, tmp = self._temp_fd()
        hasher = hashlib.sha256()
        size = 0
        try:
            try:
                readinto = getattr(source, "readinto", None)
                if readinto is None:
                    while chunk := source.read(CHUNK):
                        hasher.update(chunk)
                        _write_all(fd, chunk)
                        size += len(chunk)
                else:
                    size = _pipelined(readinto, hasher, fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        digest = hasher.hexdigest()
        self._commit_name(tmp, digest, size)
        return digest, size

    def put_file(self, source: Path) -> tuple[str, int]:
        with open(source, "rb", buffering=0) as fh:
            return self.put_stream(fh)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self._intact(digest, len(data)):
            return digest
        fd, tmp = self._temp_fd()
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            self._rename_in(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest

    def put_json(self, value: Any) -> str:
        return self.put_bytes(canonical_json(value))

    def adopt(self, tmp: Path, digest: str) -> Path:
        """Move a file whose digest the caller has just computed into the store (same filesystem)."""
        return self._commit(tmp, digest)

    def link_in(self, source: str, digest: str, size: int) -> bool:
        """Make the file at ``source`` the object ``digest`` by a hardlink: no byte is copied, the file and the
        object are one inode. The caller has hashed it, given it this store's :meth:`mode`, and made sure that no
        one can change it any more (harness/storage/adopt.py says how). False, with nothing changed, when an
        intact object is already there (the caller links to that one instead). An OSError whose errno is in
        NO_HARDLINK when no hardlink can be made here."""
        target = self._object_path(digest)
        try:
            os.link(source, target)
            return True
        except FileExistsError:
            if self._intact(digest, size):
                return False
        except FileNotFoundError:  # the fan-out directory was removed since this Store made it (_rename_in
            if not os.path.exists(source):  # makes it again)
                raise
            self._dirs.discard(digest[:2])
        # Present but damaged (or its directory gone): this file takes its place in one rename, as a copy would.
        tmp = self._temp_name("linked")
        try:
            os.link(source, tmp)
        except FileNotFoundError:  # tmp/ was removed since this Store made it (or the source is gone: raised again)
            make_dirs(os.path.dirname(tmp))
            os.link(source, tmp)
        try:
            self._rename_in(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def read_bytes(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"object {digest} is not in the store at {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreCorruption(
                f"object {digest} in {self.root} does not match its name (its bytes changed)",
                _REPAIR_HINT,
            )
        return data

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_bytes(digest))

    def hash_object(self, digest: str) -> str:
        hasher = hashlib.sha256()
        with open(self.path(digest), "rb") as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest()

    def verify(self, digest: str) -> bool:
        """True when the object is present and its bytes still hash to its name."""
        if not self.has(digest):
            return False
        return self.hash_object(digest) == digest

    def require(self, digest: str) -> Path:
        """The object's path after checking its bytes; raises instead of handing out a corrupted object."""
        path = self.path(digest)
        if not path.is_file():
            raise NotFound(f"object {digest} is not in the store at {self.root}")
        if self.hash_object(digest) != digest:
            raise StoreCorruption(
                f"object {digest} in {self.root} does not match its name (its bytes changed)",
                "nothing was run. " + _REPAIR_HINT,
            )
        return path

    def export(self, digest: str, dest: Path) -> None:
        shutil.copyfile(self.require(digest), dest)

    def __iter__(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            if len(fan.name) != 2 or not fan.is_dir():
                continue
            for obj in sorted(fan.iterdir()):
                digest = fan.name + obj.name
                if is_digest(digest):
                    yield digest
