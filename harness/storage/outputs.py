"""A run's outputs, stored once: hashed into the store, then kept in the run directory as hardlinks to the objects.

A model checkpoint of several GB would otherwise take its size twice on disk, once in runs/<id>/outputs and once
in the store. After :func:`store_outputs`, each regular file in the outputs directory *is* its store object
(read-only, mode 0444), so the directory shows exactly the bytes the record names and `harness verify` checks
them. Executable files stay copies: their mode differs from the shared object's. Directories stay writable,
so deleting a run's directory needs no chmod.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.storage.snapshot import NO_HARDLINK, Snapshot, snapshot_tree
from harness.storage.store import Store


def store_outputs(outputs: Path, store: Store) -> Snapshot:
    """Store every file under ``outputs`` and replace each non-executable one by a hardlink to its object.

    Call it after the container has exited: nothing may write to the directory meanwhile. Each replacement is
    one atomic rename, so an interruption leaves every file either the original or the identical object."""
    snap = snapshot_tree(outputs, store, None)
    for entry in snap.entries:
        if entry.kind == "file" and not entry.executable and entry.sha256:
            _link_in_place(store.path(entry.sha256), outputs / entry.path)
    return snap


def _link_in_place(obj: Path, target: Path) -> None:
    if os.path.samefile(obj, target):
        return
    temp = target.with_name(f".{target.name}.harness-link")
    try:
        os.link(obj, temp)
    except FileExistsError:
        os.unlink(temp)  # left by an interrupted earlier attempt
        os.link(obj, temp)
    except OSError as exc:
        if exc.errno in NO_HARDLINK:  # the file stays a copy
            return
        raise
    os.replace(temp, target)
