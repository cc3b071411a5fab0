"""One settled output file into the store with no second copy where that is safe: the file's own inode becomes its
store object (a hardlink under the object's name), so a 1 GiB checkpoint costs 1 GiB of disk, not 2.

What must hold (outputs.py): what the record names never changes afterwards, and nothing a process opened during
the run can write to it. The run's own processes are gone (the container has exited, and with its first process
the kernel kills every other in its PID namespace), and settle made every directory harness's own (0755), so
nobody else can add, rename or remove a name in them. What could remain is a descriptor to the inode held
elsewhere: another local user's process that opened a file the run left world-writable, or that received a
descriptor through a socket the run made in /outputs. So a file is *claimed*, on one descriptor opened without
following symlinks, only when, in this order:

1. it is a regular file with one name (``st_nlink == 1``): no other path leads to it;
2. it becomes harness's (``fchown``, when harness runs as root and the container ran as nobody: an owner could
   chmod it back) and gets its final read-only mode (``fchmod``). From then on only root and harness's own user
   can open it for writing -- the same people who can write the store itself;
3. the kernel grants a write lease on it (``fcntl F_SETLEASE F_WRLCK``), which it does only while no other open
   file description of the inode exists anywhere: no descriptor open for writing or reading, no shared mapping
   (a mapping keeps its file open), in any process. The lease is the check and is given back at once.

A claimed file keeps its inode: it is hashed through that descriptor (one read pass, nothing written) and linked
into the store as its object (0444, less what the store withholds, like every object). If an intact object with
those bytes is already there, the file is replaced by a link to it instead. A claimed executable keeps its inode
too (0555), and a copy of it goes into the store: a 0444 object cannot be executable. Where leases are not
available (another OS, ``fs.leases-enable = 0``, some network filesystems) or any step fails, the file is not
claimed and is handled as before adoption existed: copied into the store and replaced by a hardlink to its object,
or by a fresh copy where no hardlink is possible (executables, another filesystem). A new inode either way, so an
old descriptor writes to nothing the record names. Such a file takes its size twice on disk while it is copied.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import threading
from itertools import count

from harness.digests import CHUNK
from harness.storage.snapshot import copy_in
from harness.storage.store import NO_HARDLINK, Store

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: never wait on someone's lease
_LEASE = getattr(fcntl, "F_SETLEASE", None)  # Linux only
REPLACE_PREFIX = ".harness-replace-"  # temp names beside outputs/: the same filesystem, and no output's name


class Adopter:
    """Stores the files of one settled outputs directory, called from several threads (a snapshot.Ingest).
    ``file_mode``/``exec_mode``: the modes of the files it leaves in the run directory that are not objects."""

    def __init__(self, store: Store, temp_dir: str, file_mode: int, exec_mode: int) -> None:
        self.store, self.temp_dir, self.file_mode, self.exec_mode = store, temp_dir, file_mode, exec_mode
        self._object_mode = store.mode()
        self._store_dev = os.stat(store.root).st_dev
        self._ids = count()
        self._local = threading.local()

    def __call__(self, path: str, st: os.stat_result, counter: list[int]) -> tuple[str, int]:
        executable = bool(st.st_mode & stat.S_IXUSR)  # as the manifest records it, from the walk's lstat
        linkable = not executable and st.st_dev == self._store_dev
        fd = os.open(path, _OPEN)
        try:
            mode = self._object_mode if linkable else self.exec_mode if executable else self.file_mode
            claimed = self._claim(fd, st, mode)
            if claimed and linkable:
                sha, size = _hash(fd, counter)
                try:
                    if not self.store.link_in(path, sha, size):
                        self._replace(sha, path, executable=False)  # the same bytes are an object already
                    return sha, size
                except OSError as exc:
                    if exc.errno not in NO_HARDLINK:
                        raise
        finally:
            os.close(fd)
        sha, size = copy_in(self.store, path, st.st_size, counter)
        if not claimed:
            self._replace(sha, path, executable)
        return sha, size

    def _claim(self, fd: int, walked: os.stat_result, mode: int) -> bool:
        """Steps 1-3 of the module's doc on this descriptor, giving it ``mode``; False when any does not hold
        (the file is then replaced by a copy, so what was done to it here does not matter)."""
        if _LEASE is None:
            return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (st.st_ino, st.st_dev) != (walked.st_ino, walked.st_dev):
            return False
        me = (os.geteuid(), os.getegid())
        if me[0] == 0:
            if (st.st_uid, st.st_gid) != me:
                os.fchown(fd, *me)  # also clears set-id bits
        elif st.st_uid != me[0]:
            return False  # not ours: we could neither chmod it nor take a lease
        os.fchmod(fd, mode)
        try:
            fcntl.fcntl(fd, _LEASE, fcntl.F_WRLCK)
        except OSError:  # EAGAIN: open elsewhere; EINVAL, ENOLCK...: no leases here
            return False
        fcntl.fcntl(fd, _LEASE, fcntl.F_UNLCK)
        return True

    def _replace(self, sha: str, target: str, executable: bool) -> None:
        """The output at ``target`` becomes a hardlink to its object (objects are 0444 and never chmod-ed), or a
        fresh copy of it made by harness: an executable (0555), or where no hardlink is possible. One rename, so an
        interruption leaves the original or the identical object."""
        obj = str(self.store.path(sha))
        temp = self._temp()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)  # left by an interrupted earlier attempt
        if not executable:
            if os.path.samefile(obj, target):  # stored before
                return
            try:
                os.link(obj, temp)
                os.replace(temp, target)
                return
            except OSError as exc:
                if exc.errno not in NO_HARDLINK:
                    raise
        shutil.copyfile(obj, temp)
        os.chmod(temp, self.exec_mode if executable else self.file_mode)
        os.replace(temp, target)

    def _temp(self) -> str:
        name: str | None = getattr(self._local, "temp", None)
        if name is None:
            name = self._local.temp = f"{self.temp_dir}/{REPLACE_PREFIX}{next(self._ids)}"
        return name


def _hash(fd: int, counter: list[int]) -> tuple[str, int]:
    """(sha256, size) of the file behind ``fd``, read once from its start. A small file is one read."""
    size = os.fstat(fd).st_size
    if size < CHUNK:
        data = os.read(fd, size + 1)
        counter.append(len(data))
        if len(data) <= size:
            return hashlib.sha256(data).hexdigest(), len(data)
        hasher, total = hashlib.sha256(data), len(data)  # it grew (it cannot, once claimed): read on
    else:
        hasher, total = hashlib.sha256(), 0
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    buf = memoryview(bytearray(CHUNK))
    while n := os.readv(fd, [buf]):
        hasher.update(buf[:n])
        total += n
        counter.append(n)
    return hasher.hexdigest(), total
