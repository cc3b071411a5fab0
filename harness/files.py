"""Writing files safely: all at once (a temp file beside the target, then a rename) and under an exclusive lock.

Every file harness writes for a user or for itself goes through :func:`write_atomic`, so a reader never sees half a
file and a failed write leaves no temp file behind. A new file gets the user's umask (0666 & ~umask), like any file
the user's own tools create; a file that is replaced keeps its permissions (a user's pyproject.toml stays as they
set it). Store objects are the exception: they are named by their hash and made read-only by the store itself.

The store is as private as the directory it is made in (for ``.harness``, the project directory): a directory or
file made there with :func:`make_dirs`, :func:`make_file` or ``write_atomic(..., inherit=True)`` gets no group or
other permission that the directory holding it lacks (:func:`withheld`), on top of the umask. So a project at
0700 gets a store that no other user can read, from its directories down to its objects and index, while a
project at 0755 gets the modes it always had. Modes are set when a file or directory is made, never afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.digests import canonical_json


def withheld(directory: Path | str) -> int:
    """The group and other permission bits ``directory`` lacks: what nothing made inside it may have."""
    return 0o077 & ~os.stat(directory).st_mode


def make_dirs(path: Path | str) -> None:
    """``mkdir -p``, each directory made no more open than the one it is made in (and the umask)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    make_dirs(parent)
    try:
        os.mkdir(path, 0o777 & ~withheld(parent))
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def make_file(path: Path) -> None:
    """Create ``path`` empty, no more open than its directory, unless it exists. For files that another library
    creates otherwise with its own mode: SQLite gives its -wal and -shm files the database file's mode."""
    make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666 & ~withheld(path.parent)))


def write_atomic(path: Path, data: bytes, *, inherit: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step; the parent directory is created if needed. ``inherit``: a new
    file (and any directory made for it) is no more open than its directory, as everything in the store."""
    if inherit:
        make_dirs(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the kernel apply the umask, as open() does; mkstemp would make the file 0600.
    mode = 0o666 & ~withheld(path.parent) if inherit else 0o666
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(fh.fileno(), stat.S_IMODE(os.stat(path).st_mode))
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not land before the bytes do (a crash would leave an empty file)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, inherit: bool = False) -> None:
    """``text`` as UTF-8 with ``\\n`` line ends, written with :func:`write_atomic`."""
    write_atomic(path, text.encode("utf-8"), inherit=inherit)


def write_json_atomic(path: Path, value: Any, *, inherit: bool = False) -> None:
    """``value`` as canonical JSON (sorted keys, no spaces), written with :func:`write_atomic`."""
    write_atomic(path, canonical_json(value), inherit=inherit)


@contextmanager
def file_lock(path: Path, say: Callable[[str], None]) -> Iterator[None]:
    """An exclusive fcntl lock; released by the kernel even if this process dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another harness process that is building the same image ({path.name})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
