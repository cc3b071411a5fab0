"""`harness gc`: remove what nothing in the project store references, never what a live run uses.

What goes:
- containers labelled with this store's path whose run is over (a dead harness's, its engine unreachable when
  the run was recovered, or stopped ones left behind);
- work directories (``work/<id>``) and run directories holding no record, of runs that are not live;
- temp files a killed harness left: ``objects/tmp/``, and the ``.*.tmp`` files of atomic writes;
- objects that no record (as sealed, and as its file says), seal, known data snapshot or code archive pointer
  names: what a run killed before its record named them stored, for instance;
- with ``images``: environment images (``harness-env:*``) that no record of this store names and no container
  uses, that carry no other tag, and that this machine's cache (``HARNESS_CACHE``) can load back.

What a live run uses is never touched. Containers, work and run directories are checked run by run (a run is live
while its harness holds its lock: ownership.py). Objects and temp files are removed only under the store's
collection lock (storage/storelock.py), which nobody holds while any run, rebuild or data snapshot is in progress
in this store; when someone does, gc leaves them and says why. A record that can be read neither as a file nor as
its sealed copy stops the removal of objects: what it names cannot be known; so does a record that lists only its
first outputs (harness/runs/outputlist.py) when its outputs manifest cannot be read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness.docker.engine import connect
from harness.docker.interface import Engine
from harness.env import oci
from harness.env.catalog import recorded_environments
from harness.env.environment import ENV_REPOSITORY
from harness.errors import HarnessError
from harness.paths import Layout
from harness.runs import ownership
from harness.runs.integrity import referenced
from harness.runs.records import Records
from harness.runs.recovery import TEMP_PREFIXES
from harness.runs.sealing import SEALS_DIRNAME, Seals
from harness.storage import snapshot
from harness.storage.store import Store, is_digest
from harness.storage.storelock import collecting

KINDS = ("container", "work", "run", "temp", "object", "image")


@dataclass(frozen=True)
class Item:
    """One thing gc removed (or, in a dry run, would remove)."""

    kind: str  # one of KINDS
    name: str  # a path relative to the store, a container's name, an image's tags
    size: int | None  # bytes; None where the engine does not say (containers)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "size": self.size, "detail": self.detail}


@dataclass
class Report:
    store: str
    dry_run: bool
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left alone, and why
    failed: list[str] = field(default_factory=list)  # what could not be removed

    @property
    def bytes(self) -> int:
        return sum(i.size or 0 for i in self.items if i.kind != "image")

    @property
    def image_bytes(self) -> int:
        return sum(i.size or 0 for i in self.items if i.kind == "image")

    def of(self, kind: str) -> list[Item]:
        return [i for i in self.items if i.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "dry_run": self.dry_run,
            "bytes": self.bytes,
            "image_bytes": self.image_bytes,
            "counts": {kind: len(self.of(kind)) for kind in KINDS},
            "items": [i.to_dict() for i in self.items],
            "notes": list(self.notes),
            "failed": list(self.failed),
        }


def collect(
    layout: Layout,
    dry_run: bool = False,
    images: bool = False,
    connect_engine: Callable[[], Engine] | None = None,
) -> Report:
    """Remove (or with ``dry_run`` only list) what nothing references; see the module's doc."""
    report = Report(str(layout.store), dry_run)
    engine = _connect(connect_engine or connect, report)
    if engine is not None:
        _containers(layout, engine, report)
    if layout.store.is_dir():
        with collecting(layout.store) as alone:
            if alone:
                _work_dirs(layout, report)
                _run_dirs(layout, report)
                _temp_files(layout, report)
                _objects(layout, report)
            else:
                report.notes.append(
                    "objects, temp files and work directories were left alone: a run, a rebuild or a data snapshot "
                    "is in progress in this store, and what it has stored may not be named by any record yet; run "
                    "`harness gc` again when it is done"
                )
    if images:
        if engine is None:
            report.notes.append("environment images were not looked at: the engine cannot be reached")
        else:
            _images(layout, engine, report)
    return report


def _connect(connect_engine: Callable[[], Engine], report: Report) -> Engine | None:
    try:
        return connect_engine()
    except HarnessError as exc:
        report.notes.append(f"containers were not looked at: {exc.message}")
        return None


def _live(layout: Layout, run_id: str) -> bool:
    """Whether the run may still be using what it has: its harness holds its lock, or its record still says it
    is running (its harness died and the run could not be recorded as interrupted: left for a later command)."""
    run_dir = layout.runs / run_id
    if not run_dir.is_dir():
        return False
    probe = ownership.probe(run_dir)
    probe.release()
    if probe.alive:
        return True
    try:
        record = json.loads((run_dir / "record.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("status") == "running"


def _remove(report: Report, item: Item, remove: Callable[[], None]) -> None:
    if not report.dry_run:
        try:
            remove()
        except (HarnessError, OSError) as exc:
            reason = exc.message if isinstance(exc, HarnessError) else (exc.strerror or str(exc))
            report.failed.append(f"{item.kind} {item.name}: {reason}")
            return
    report.items.append(item)


def _containers(layout: Layout, engine: Engine, report: Report) -> None:
    store = os.path.realpath(layout.store)
    try:
        found = engine.containers({ownership.STORE_LABEL: store})
    except HarnessError as exc:
        report.notes.append(f"containers were not looked at: {exc.message}")
        return
    for container in found:
        run_id = container["labels"].get(ownership.RUN_LABEL, "")
        if run_id and _live(layout, run_id):
            continue
        item = Item("container", container["name"] or container["id"][:12], None, f"run {run_id}, {container['state']}")
        _remove(report, item, partial(engine.remove, container["id"]))


def _work_dirs(layout: Layout, report: Report) -> None:
    for name in _listdir(layout.work):
        path = layout.work / name
        if not _live(layout, name):
            item = Item("work", f"work/{name}", _tree_size(path), "a run's code, data and params laid out for it")
            _remove(report, item, partial(snapshot.remove_materialized, path))


def _run_dirs(layout: Layout, report: Report) -> None:
    """Run directories holding nothing but a lock and temp files: a harness killed between allocating the id and
    writing the first record."""
    for name in _listdir(layout.runs):
        path = layout.runs / name
        if not path.is_dir() or (path / "record.json").exists():
            continue
        contents = _listdir(path)
        if any(not (n == ownership.LOCK_NAME or n.startswith(TEMP_PREFIXES)) for n in contents) or _live(layout, name):
            continue
        item = Item("run", f"runs/{name}", _tree_size(path), "a run directory with no record")
        _remove(report, item, partial(shutil.rmtree, path))


def _temp_files(layout: Layout, report: Report) -> None:
    store = layout.store
    found: list[Path] = []
    tmp = layout.objects / "tmp"
    for dirpath, _dirs, files in os.walk(tmp):
        found += [Path(dirpath) / f for f in files]
    for directory in (store, store / "code", store / SEALS_DIRNAME):
        found += [directory / n for n in _listdir(directory) if n.startswith(".") and n.endswith((".tmp", ".tar"))]
    for name in _listdir(layout.runs):
        run_dir = layout.runs / name
        temps = [run_dir / n for n in _listdir(run_dir) if n.startswith(TEMP_PREFIXES)]
        if temps and not _live(layout, name):
            found += temps
    for path in found:
        item = Item("temp", str(path.relative_to(store)), _tree_size(path), "left by a harness process that died")
        _remove(report, item, partial(_remove_path, path))


def _objects(layout: Layout, report: Report) -> None:
    store = Store(layout.objects)
    try:
        refs, checked, unlisted = referenced(layout, store)
    except HarnessError as exc:  # the snapshot registry cannot be read: what it names is not known
        report.notes.append(f"objects were left alone: {exc.message}")
        return
    blind = [c.run for c in checked if c.trusted is None and c.record is None]
    if blind:
        report.notes.append(
            f"objects were left alone: the record of run(s) {', '.join(blind)} can be read neither from its file nor "
            "as sealed, so what it names is not known; `harness verify` says more"
        )
        return
    if unlisted:
        report.notes.append(
            f"objects were left alone: the record of run(s) {', '.join(unlisted)} lists only its first outputs and "
            "its outputs manifest cannot be read, so what the rest use is not known; `harness verify` says more"
        )
        return
    keep = set(refs) | set(_code_pointers(layout)) | set(_seals(layout, store))
    for digest in store:
        if digest in keep:
            continue
        path = store.path(digest)
        try:
            info = path.lstat()
        except OSError:
            continue
        # An output of a run killed while its outputs were stored is also a file in its outputs directory (a
        # hardlink): removing the object frees nothing while that file stays.
        linked = info.st_nlink > 1
        detail = "referenced by nothing" + ("; still a file in a run's outputs directory" if linked else "")
        item = Item("object", str(path.relative_to(layout.store)), 0 if linked else info.st_size, detail)
        _remove(report, item, path.unlink)


def _code_pointers(layout: Layout) -> Iterable[str]:
    """The code archives that `harness run` reuses for a tree (``code/<tree>`` holds the archive's object id)."""
    directory = layout.store / "code"
    for name in _listdir(directory):
        if not name.startswith("."):
            try:
                digest = (directory / name).read_text().strip()
            except (OSError, UnicodeDecodeError):
                continue
            if is_digest(digest):
                yield digest


def _seals(layout: Layout, store: Store) -> Iterable[str]:
    """Every sealed record's object, also of runs whose directory is gone."""
    seals = Seals(layout.store / SEALS_DIRNAME, store)
    for name in _listdir(seals.root):
        if not name.startswith("."):
            try:
                digest = seals.read(name)
            except ValueError:
                continue
            if digest is not None:
                yield digest


def _images(layout: Layout, engine: Engine, report: Report) -> None:
    used: set[str] = set()
    for checked in Records(layout.runs, layout.index).check_all():
        for record in (checked.record, checked.sealed):
            env = (record or {}).get("environment") or {}
            used.update(str(env.get(k)) for k in ("image_id", "manifest_digest") if env.get(k))
    try:
        in_use = {c["image_id"] for c in engine.containers()}
        found = engine.images(ENV_REPOSITORY)
    except HarnessError as exc:
        report.notes.append(f"environment images were not looked at: {exc.message}")
        return
    cache = Store(layout.cache_objects)
    reloadable = {
        env.image_ref: {env.image_id, env.manifest_digest}
        for env in recorded_environments(layout)
        if not oci.missing_objects(cache, env.parts)
    }
    left = 0
    for image in found:
        tags = image["tags"]
        if image["id"] in used or image["id"] in in_use or not tags:
            continue
        ours = all(t.startswith(f"{ENV_REPOSITORY}:") for t in tags)
        if not ours or not any(image["id"] in reloadable.get(t, ()) for t in tags):
            left += 1
            continue
        detail = f"{image['id'][:19]}, loaded back from the cache when needed"
        item = Item("image", ", ".join(tags), image["size"], detail)
        _remove(report, item, partial(_untag, engine, tags))
    report.notes.append(
        "environment images are shared by every project on this machine: another project may use one removed here; "
        f"harness loads it back from the cache ({layout.cache}) when a run needs it"
        + (
            f". {left} harness-env image(s) this cache cannot load back, or tagged for something else too, were left"
            if left
            else ""
        )
    )


def _untag(engine: Engine, tags: list[str]) -> None:
    for tag in tags:  # the image goes with its last tag
        engine.untag_image(tag)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _tree_size(path: Path) -> int:
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
