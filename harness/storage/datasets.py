"""Data snapshots a project knows about: taking them from paths, a registry of who took them, show and diff.

The registry is a small SQLite table next to the run index (``<store>/snapshots.sqlite``): one row each time a
snapshot is taken, by ``harness data snapshot`` or by a run. SQLite in WAL mode with a busy timeout keeps it safe
under concurrent writers (two runs finishing at once). It is only a listing: the snapshot itself is the manifest
object in the store, and losing the registry loses no data.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import DataError, NotFound
from harness.files import make_file
from harness.paths import Layout
from harness.storage.snapshot import Entry, Progress, Snapshot, diff, load_snapshot, snapshot_roots
from harness.storage.store import Store, is_digest
from harness.storage.storelock import adding_objects

REGISTRY_NAME = "snapshots.sqlite"
ORIGIN_CLI = "data snapshot"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS snapshots_v1 (seq INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT NOT NULL, "
    "created_at REAL NOT NULL, files INTEGER NOT NULL, bytes INTEGER NOT NULL, sources TEXT NOT NULL, "
    "origin TEXT NOT NULL)"
)


def registry_path(layout: Layout) -> Path:
    return layout.store / REGISTRY_NAME


@dataclass(frozen=True)
class Known:
    """A snapshot as the registry remembers it: the newest time it was taken, and every origin that took it."""

    digest: str
    created_at: float
    files: int
    bytes: int
    sources: dict[str, str]
    origin: str  # "data snapshot" or the run id, of the newest registration
    origins: tuple[str, ...]  # distinct origins, newest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.digest,
            "time": iso(self.created_at),
            "files": self.files,
            "bytes": self.bytes,
            "sources": self.sources,
            "origin": self.origin,
            "origins": list(self.origins),
        }


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _connect(path: Path) -> sqlite3.Connection:
    make_file(path)  # no more open than the store (SQLite gives its -wal and -shm files this mode)
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(_TABLE)
    return db


def register(layout: Layout, snap: Snapshot, sources: Mapping[str, Any], origin: str) -> bool:
    """Remember that ``origin`` took ``snap``. Returns False instead of raising when the registry cannot be
    written. NOTE: the registry only lists snapshots; a run must not fail because its listing could not be
    written, so callers that care (the CLI) report the False."""
    if not snap.entries:
        return True  # a project without data: nothing worth listing
    row = (snap.digest, time.time(), snap.files, snap.bytes, json.dumps(dict(sources), sort_keys=True), origin)
    try:
        with closing(_connect(registry_path(layout))) as db, db:
            db.execute(
                "INSERT INTO snapshots_v1 (digest, created_at, files, bytes, sources, origin) VALUES (?,?,?,?,?,?)",
                row,
            )
    except (sqlite3.Error, OSError):
        return False
    return True


def known(layout: Layout) -> list[Known]:
    """Snapshots taken in this project, one per digest, newest first."""
    path = registry_path(layout)
    if not path.exists():
        return []
    try:
        with closing(_connect(path)) as db:
            rows = db.execute(
                "SELECT digest, created_at, files, bytes, sources, origin FROM snapshots_v1 ORDER BY seq DESC"
            ).fetchall()
    except sqlite3.Error as exc:
        raise DataError(
            f"cannot read the snapshot registry {path}: {exc}",
            "it is only a listing (the snapshots themselves are in objects/): move it aside, and snapshots are "
            "listed again as they are taken; a full 64-digit snapshot id still works everywhere",
        ) from None
    out: dict[str, Known] = {}
    for digest, created_at, files, size, sources, origin in rows:
        if digest in out:
            if origin not in out[digest].origins:
                prev = out[digest]
                out[digest] = Known(**{**vars(prev), "origins": (*prev.origins, origin)})
            continue
        out[digest] = Known(digest, created_at, files, size, json.loads(sources), origin, (origin,))
    return list(out.values())


def root_names(paths: Sequence[Path], names: Sequence[str]) -> dict[str, Path]:
    """``--name`` values name the paths in order; the rest are named by their basename."""
    if len(names) > len(paths):
        raise DataError(
            f"{len(names)} --name values for {len(paths)} paths",
            "give at most one --name per PATH; they apply to the paths in order",
        )
    roots: dict[str, Path] = {}
    for i, path in enumerate(paths):
        name = names[i] if i < len(names) else Path(os.path.abspath(path)).name
        if name in roots:
            raise DataError(
                f"two data paths would both be named {name!r}: {roots[name]} and {path}",
                "name them apart with --name (one per PATH, in order), e.g. --name train --name test",
            )
        roots[name] = path
    return roots


def take(
    layout: Layout,
    paths: Sequence[Path],
    names: Sequence[str] = (),
    progress: Progress | None = None,
    rehash: bool = False,
) -> tuple[Snapshot, dict[str, str], bool]:
    """Snapshot paths into the project store as one tree (``name/...`` per path, the same layout a run mounts
    at /data). Returns the snapshot, its sources and whether the registry recorded it. ``rehash`` reads every
    file, trusting no cached hash."""
    roots = root_names(paths, names)
    with adding_objects(layout.store):  # until the registry names them, `harness gc` must not take the objects
        snap = snapshot_roots(roots, Store(layout.objects), layout.stat_cache, progress, rehash)
        sources = {name: os.path.abspath(path) for name, path in roots.items()}
        return snap, sources, register(layout, snap, sources, ORIGIN_CLI)


def resolve(layout: Layout, ref: str) -> str:
    """A snapshot digest from a full digest or a unique prefix of a known one."""
    store = Store(layout.objects)
    ref = ref.strip().lower()
    if is_digest(ref):
        return ref  # load_snapshot says whether it is there and a manifest
    digests = [k.digest for k in known(layout)]
    matches = sorted({d for d in digests if d.startswith(ref)}) if ref else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NotFound(
            f"snapshot prefix {ref!r} is ambiguous: {', '.join(m[:16] for m in matches)}", "give more characters"
        )
    raise NotFound(
        f"no known snapshot starts with {ref!r} in {store.root.parent}",
        "list them with `harness data ls`; a run's snapshot is in `harness show RUN`; a full 64-digit id "
        "is looked up in the store directly",
    )


def load(layout: Layout, ref: str) -> Snapshot:
    return load_snapshot(Store(layout.objects), resolve(layout, ref))


def _change(old: Entry, new: Entry) -> dict[str, Any]:
    return {"path": new.path, "old": old.to_dict(), "new": new.to_dict()}


def compare(layout: Layout, ref_a: str, ref_b: str) -> dict[str, Any]:
    """What differs between two snapshots: added, removed and changed paths (changed with both entries)."""
    a, b = load(layout, ref_a), load(layout, ref_b)
    found = diff(a, b)
    old = {e.path: e for e in a.entries}
    new = {e.path: e for e in b.entries}
    return {
        "a": a.digest,
        "b": b.digest,
        "identical": a.digest == b.digest,
        "added": [new[p].to_dict() for p in found["added"]],
        "removed": [old[p].to_dict() for p in found["removed"]],
        "changed": [_change(old[p], new[p]) for p in found["changed"]],
    }
