"""A run's outputs, stored once and read-only: what runs/<id>/outputs holds after a run is what its record names.

:func:`store_outputs` takes over the directory the container wrote, in three steps:

1. Settle. Every directory is made harness's own (when harness runs as root, the container ran as nobody) and
   0755, top first, through file descriptors that never follow a symlink: from then on no other local user can
   add, replace or remove anything in it. What a record cannot hold -- a FIFO, socket or device, a symlink that
   leads out of the directory, a name that is not UTF-8, a path longer than the host allows -- is moved to
   runs/<id>/skipped/ under the same relative path, settled the same way, and named with its reason.
2. Store. The rest is snapshotted into the store, exactly as strictly as data is, and each regular file with it
   (harness/storage/adopt.py): where no one but harness can still change it, its own inode becomes its store object
   (a hardlink under the object's name; objects are 0444 and never chmod-ed afterwards), or a link to the object
   already holding its bytes; an executable keeps its inode, 0555. Any other file is copied into the store and
   replaced by its object, or by a fresh copy made by harness: 0555 for an executable (a chmod on a hardlink would
   change the shared object), 0444 where no hardlink is possible -- a new inode, so nothing a process opened
   during the run can write to a file the record names. No file keeps a setuid bit, a writable mode or its old
   owner.

A model checkpoint of several GB so takes its size once on disk, not once in the run and once in the store: at no
moment more than once where it is adopted; twice while it is copied otherwise. Directories stay 0755 (writable by
harness's user only), so deleting a run's directory needs no chmod. Every mode here also loses the group and other
bits the run directory lacks (harness/files.py), so a private project's outputs stay private; an object has the
store's own mode, made the same way.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError
from harness.files import withheld
from harness.storage.adopt import REPLACE_PREFIX, Adopter
from harness.storage.snapshot import Snapshot, leaves_tree, snapshot_tree, special_kind
from harness.storage.store import Store

DIR_MODE = 0o755
FILE_MODE = 0o444
EXEC_MODE = 0o555
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_UTF8 = "its name is not valid UTF-8 (shown with \\x escapes); a record holds names as text"


@dataclass(frozen=True)
class _Modes:
    """DIR_MODE, FILE_MODE and EXEC_MODE less the group/other bits the run directory lacks (harness/files.py): a
    private project's outputs stay private."""

    mask: int

    @property
    def dir(self) -> int:
        return DIR_MODE & ~self.mask

    def file(self, executable: bool) -> int:
        return (EXEC_MODE if executable else FILE_MODE) & ~self.mask


@dataclass(frozen=True)
class Skipped:
    """An output the record does not hold: its path relative to the outputs directory (a name that is not UTF-8
    shown with \\xNN escapes) and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class StoredOutputs:
    snapshot: Snapshot
    skipped: tuple[Skipped, ...]


def shown(path: str) -> str:
    """A path for a record or a message: a name that is not UTF-8 (surrogate-escaped by os) with \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def store_outputs(outputs: Path, store: Store, aside: Path) -> StoredOutputs:
    """Settle ``outputs``, move what cannot be recorded to ``aside``, and store the rest: every file becomes its
    store object, or is replaced by its object or a fresh copy of it (see the module's doc).

    Call it after the container has exited. Adopting a file is one link, and each replacement one atomic rename, so
    an interruption leaves every file either the original or the identical object."""
    try:
        modes = _Modes(withheld(outputs.parent))
        skipped = _settle(outputs, aside, modes)
        for left in outputs.parent.glob(f"{REPLACE_PREFIX.rstrip('-')}*"):  # by an interrupted earlier attempt
            left.unlink()
        adopter = Adopter(store, str(outputs.parent), modes.file(False), modes.file(True))
        snap = snapshot_tree(outputs, store, None, ingest=adopter)
    except OSError as exc:
        name = f" ({shown(os.fsdecode(exc.filename))})" if isinstance(exc.filename, str | bytes) else ""
        raise DataError(
            f"could not store the run's outputs from {outputs}: {exc.strerror or exc}{name}",
            "the run's files were kept where they are; check free space and permissions of the store and the run "
            "directory",
        ) from None
    return StoredOutputs(snap, tuple(skipped))


# -- settling -----------------------------------------------------------------------------------------------------

_CannotOpen = Callable[[int, str, str, OSError], None]


def _own_dir(fd: int, modes: _Modes) -> None:
    me = _owner()
    if me[0] == 0:  # the container ran as nobody, who could otherwise chmod its directories back
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != me:
            os.fchown(fd, *me)
    os.fchmod(fd, modes.dir)


def _dirs(top: str, cannot_open: _CannotOpen, modes: _Modes) -> Iterator[tuple[int, str, list[os.DirEntry[str]]]]:
    """Every directory under ``top``, itself first, as (fd, relative path, entries): each opened from its parent's
    descriptor without following symlinks and made harness's own (0755) before it is listed. The caller may remove
    entries from the list; the directories still in it are visited next. A subdirectory that cannot be opened or
    taken over goes to ``cannot_open(parent fd, parent's relative path, name, error)``. Iterative, with one
    descriptor per level, so neither depth nor path length is limited by recursion or PATH_MAX."""
    root = os.open(top, _OPEN_DIR)
    stack: list[tuple[int, str, Iterator[str] | None]] = [(root, "", None)]
    try:
        _own_dir(root, modes)
        while stack:
            fd, rel, pending = stack[-1]
            if pending is None:
                with os.scandir(fd) as it:
                    entries = list(it)
                yield fd, rel, entries
                pending = iter([e.name for e in entries if e.is_dir(follow_symlinks=False)])
                stack[-1] = (fd, rel, pending)
            name = next(pending, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            try:
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
            except OSError as exc:
                cannot_open(fd, rel, name, exc)
                continue
            stack.append((child, f"{rel}/{name}" if rel else name, None))
            try:
                _own_dir(child, modes)
            except OSError as exc:
                stack.pop()
                os.close(child)
                cannot_open(fd, rel, name, exc)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _owner() -> tuple[int, int]:
    return os.geteuid(), os.getegid()


def _utf8(name: str) -> bool:
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os hands out undecodable bytes as surrogates
        return False
    return True


def _path_max(path: str) -> int:
    try:
        return os.pathconf(path, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


def _unrecordable(entry: os.DirEntry[str], dir_fd: int, abs_path: str, real_top: str, limit: int) -> str | None:
    """Why this entry cannot be part of the record, or None when it can."""
    if not _utf8(entry.name):
        return _NOT_UTF8
    if len(os.fsencode(abs_path)) >= limit:
        return f"its path in the run directory is longer than the host allows ({limit} bytes)"
    if entry.is_symlink():
        target = os.readlink(entry.name, dir_fd=dir_fd)
        if not _utf8(target):
            return f"it is a symlink to '{shown(target)}', a target that is not valid UTF-8 (shown with \\x escapes)"
        if leaves_tree(abs_path, target, real_top):
            return f"it is a symlink to {target!r}, outside the outputs directory (it would dangle anywhere else)"
        return None
    if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
        return None
    return f"it is {special_kind(entry.stat(follow_symlinks=False).st_mode)}, which cannot be stored"


class _Aside:
    """runs/<id>/skipped: what cannot be recorded is moved here, under the same relative path."""

    def __init__(self, root: Path, modes: _Modes) -> None:
        self.root, self.modes = root, modes

    def move(self, dir_fd: int, rel: str, name: str) -> None:
        os.makedirs(self.root, mode=self.modes.dir, exist_ok=True)
        fd = os.open(self.root, _OPEN_DIR)
        try:
            for part in rel.split("/") if rel else ():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, self.modes.dir, dir_fd=fd)
                child = os.open(part, _OPEN_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
            os.rename(name, name, src_dir_fd=dir_fd, dst_dir_fd=fd)  # one directory tree: never a copy
        finally:
            os.close(fd)


def _settle(outputs: Path, aside: Path, modes: _Modes) -> list[Skipped]:
    top = os.path.abspath(outputs)
    real_top, limit = os.path.realpath(top), _path_max(top)
    me = _owner()
    mover = _Aside(aside, modes)
    skipped: list[Skipped] = []

    def skip(dir_fd: int, rel: str, name: str, reason: str) -> None:
        path = shown(f"{rel}/{name}" if rel else name)
        try:
            mover.move(dir_fd, rel, name)
        except OSError as exc:
            raise DataError(
                f"output {path} cannot be recorded ({reason}), and moving it to {aside} failed: {exc.strerror}",
                "the run's files were kept where they are and none was recorded; move it out of the outputs "
                "directory by hand",
            ) from None
        skipped.append(Skipped(path, reason))

    def cannot_open(dir_fd: int, rel: str, name: str, exc: OSError) -> None:
        skip(dir_fd, rel, name, f"the directory could not be opened: {exc.strerror or exc}")

    for dir_fd, rel, entries in _dirs(top, cannot_open, modes):
        for entry in list(entries):
            path = f"{rel}/{entry.name}" if rel else entry.name
            reason = _unrecordable(entry, dir_fd, f"{top}/{path}", real_top, limit)
            if reason is not None:
                entries.remove(entry)
                skip(dir_fd, rel, entry.name, reason)
            elif me[0] != 0 and entry.is_file(follow_symlinks=False):
                # Root reads anything; harness's own user may need to give itself read access to hash the file.
                st = entry.stat(follow_symlinks=False)
                if st.st_uid == me[0] and not st.st_mode & stat.S_IRUSR:
                    os.chmod(entry.name, stat.S_IMODE(st.st_mode) | stat.S_IRUSR, dir_fd=dir_fd)
    if skipped:
        _settle_aside(aside, modes)
    return skipped


def _settle_aside(aside: Path, modes: _Modes) -> None:
    """Everything moved aside made harness's own and read-only like the outputs, though the record does not hold
    it: no setuid, nothing writable by others."""

    def cannot_open(dir_fd: int, rel: str, name: str, exc: OSError) -> None:
        raise exc

    me = _owner()
    for dir_fd, _, entries in _dirs(str(aside), cannot_open, modes):
        for entry in entries:
            if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            if me[0] == 0 and (st.st_uid, st.st_gid) != me:
                os.chown(entry.name, *me, dir_fd=dir_fd, follow_symlinks=False)
            executable = stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IXUSR
            # Not a symlink, in a directory only harness can change: chmod cannot be led elsewhere.
            os.chmod(entry.name, modes.file(bool(executable)), dir_fd=dir_fd)
