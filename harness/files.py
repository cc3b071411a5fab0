"""Writing files safely: all at once (a temp file beside the target, then a rename) and under an exclusive lock.

Every file harness writes for a user or for itself goes through :func:`write_atomic`, so a reader never sees half a
file and a failed write leaves no temp file behind. A new file gets the user's umask (0666 & ~umask), like any file
the user's own tools create; a file that is replaced keeps its permissions (a user's pyproject.toml stays as they
set it). Store objects are the exception: they are named by their hash and made read-only by the store itself.
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


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step; the parent directory is created if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the kernel apply the umask, as open() does; mkstemp would make the file 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
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


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` as UTF-8 with ``\\n`` line ends, written with :func:`write_atomic`."""
    write_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    """``value`` as canonical JSON (sorted keys, no spaces), written with :func:`write_atomic`."""
    write_atomic(path, canonical_json(value))


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
