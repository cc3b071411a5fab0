"""The store's collection lock (``<store>/gc.lock``): `harness gc` removes objects that nothing references only
while no other harness process may hold objects that nothing references yet.

A run stores its code archive, data and lock before its record names them, and its outputs before its last
record write does; `harness data snapshot` stores files before the registry names the snapshot. Each such process
holds this lock shared (:func:`adding_objects`) for as long as it works; `harness gc` takes it exclusively and
without waiting (:func:`collecting`): while anyone holds it shared, gc leaves objects and temp files alone. flock
locks go with the process: one killed by SIGKILL holds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.files import make_dirs, withheld

LOCK_NAME = "gc.lock"


def _open(store: Path) -> int:
    make_dirs(store)
    return os.open(store / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~withheld(store))


@contextlib.contextmanager
def adding_objects(store: Path, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Held shared while this process stores objects that no record or registry names yet. Waits only while a
    `harness gc` is removing objects (seconds)."""
    fd = _open(store)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if say is not None:
                say("waiting for `harness gc` to finish removing unreferenced objects")
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def maybe_adding_objects(store: Path) -> Iterator[bool]:
    """:func:`adding_objects` without waiting: False (and no lock) while a `harness gc` is removing objects."""
    if not store.is_dir():
        yield False
        return
    with _without_waiting(store, fcntl.LOCK_SH) as taken:
        yield taken


def collecting(store: Path) -> contextlib.AbstractContextManager[bool]:
    """Exclusive, without waiting: True when no other process is adding objects (and none can start until the
    block ends), False when some are."""
    return _without_waiting(store, fcntl.LOCK_EX)


@contextlib.contextmanager
def _without_waiting(store: Path, kind: int) -> Iterator[bool]:
    fd = _open(store)
    try:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
