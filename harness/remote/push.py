"""`harness push`: send a run's closure where it can be pulled from (a registry, or an OCI layout for export).

Ask first, send only what is missing: the run's manifest (``run-<id>``) is looked up before anything else, and
when the target already holds this sealed record the push is done (one request, and one for the image). Else
each blob is asked for (HEAD) and sent only when absent; the environment image likewise, blob by blob, and its
manifest last. The run's manifest goes last of all, so a run is findable only once everything it names is there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from harness.env.oci import ImageParts
from harness.errors import HarnessError, NotFound, StoreCorruption
from harness.paths import Layout
from harness.remote.artifact import (
    Blob,
    RunManifest,
    env_tag,
    index_document,
    run_manifest,
    run_tag,
)
from harness.remote.packing import MEDIA_INDEX, Planned, plan, write_pack
from harness.runs.records import Records
from harness.runs.sealing import canonical_record
from harness.storage.store import Store

Say = Callable[[str], None]
Bytes = Callable[[int, int], None]


class Target(Protocol):
    """Where a push goes: a registry (client.Registry) or an OCI layout being written (layout.LayoutWriter)."""

    def has_blob(self, digest: str) -> bool: ...
    def upload(self, digest: str, size: int, source: IO[bytes] | bytes) -> None: ...
    def manifest(self, reference: str) -> tuple[bytes, str] | None: ...
    def put_manifest(self, reference: str, data: bytes, media_type: str = ...) -> None: ...


@dataclass
class Pushed:
    run: str
    name: str | None
    manifest: str = ""  # sha256 hex of the run's manifest
    image: str | None = None  # the environment image's manifest digest
    blobs: int = 0  # blobs the run (and its image) consist of
    sent: int = 0  # of them, sent now
    bytes_sent: int = 0
    already: bool = False  # the target had this run already
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class _Tally:
    total: int
    done: int = 0
    progress: Bytes | None = None
    sent: list[int] = field(default_factory=list)

    def add(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(min(self.done, self.total), self.total)


def sealed_run(layout: Layout, ref: str) -> tuple[dict[str, Any], str]:
    """The run's record as sealed, and its seal; a run that is not finished and sealed cannot travel."""
    records = Records(layout.runs, layout.index)
    checked = records.check(ref)
    if not checked.ok:
        raise checked.error()
    if checked.state != "sealed" or checked.record is None or checked.seal is None:
        why = "is still running" if checked.state == "running" else "has no seal (it was recorded by an older harness)"
        raise HarnessError(
            f"run {checked.run} {why}; only a finished, sealed run can be pushed or exported",
            "push it when it has finished" if checked.state == "running" else "re-run it to get a sealed run",
        )
    return checked.record, checked.seal


def push_run(
    layout: Layout, run_ref: str, target: Target, say: Say, progress: Bytes | None = None, engine: Any = None
) -> Pushed:
    started = time.monotonic()
    record, seal = sealed_run(layout, run_ref)
    run_id = str(record["id"])
    result = Pushed(run=run_id, name=record.get("name"))
    store = Store(layout.objects)
    existing = target.manifest(run_tag(run_id))
    if existing is not None:
        found = RunManifest.parse(existing[0], f"{run_tag(run_id)}")
        if found.seal != seal:
            raise HarnessError(
                f"the remote already holds a different run under id {run_id} (record {found.seal[:12]}, this one "
                f"{seal[:12]}); nothing was sent",
                "run ids are short and random: use another remote repository for this project, or remove the "
                f"remote's tag {run_tag(run_id)}",
            )
    image_digest = str((record.get("environment") or {}).get("manifest_digest") or "")
    image_there = not image_digest or target.manifest(image_digest) is not None
    result.image = image_digest or None
    if existing is not None and image_there:
        result.already, result.manifest = True, existing[1]
        result.seconds = time.monotonic() - started
        return result
    from harness.remote import closure as closures  # the environment's modules: not needed by a push already done

    closure = closures.of_record(record, seal, store)
    image = closure.image
    objects = {d: g for d, g in closure.objects.items() if d != seal}
    key = str((record.get("environment") or {}).get("key") or "")
    say(f"sending run {run_id}: {len(objects)} objects")
    blobs, sizes = send_objects(target, layout, objects, image, key, image_there, result, say, progress, engine)
    index_bytes = index_document(run_id, seal, blobs, sizes, image)
    index = send_bytes(target, index_bytes, MEDIA_INDEX, result)
    record_bytes = store.read_bytes(seal)  # the sealed copy, re-hashed: the config blob is the seal
    if canonical_record(record) != record_bytes:
        raise StoreCorruption(f"the sealed copy of run {run_id} does not hold its record", "`harness verify`")
    send_bytes(target, record_bytes, "", result)
    manifest = run_manifest(record, seal, len(record_bytes), index, blobs)
    target.put_manifest(run_tag(run_id), manifest)
    import hashlib

    result.manifest = hashlib.sha256(manifest).hexdigest()
    result.seconds = time.monotonic() - started
    return result


def send_objects(
    target: Target,
    layout: Layout,
    objects: Mapping[str, str],
    image: ImageParts | None,
    env_key: str,
    image_there: bool,
    result: Pushed,
    say: Say,
    progress: Bytes | None = None,
    engine: Any = None,
) -> tuple[list[Blob], dict[str, int]]:
    """Send the project store's ``objects`` (digest -> group, closure.GROUPS), packed, and the environment
    ``image`` from the cache unless ``image_there``: what a run's manifest (or a sweep's bundle, bundle.py)
    then names. Each blob is asked for first and sent only when absent. The blobs sent, and each object's size."""
    from harness.remote import closure as closures

    store = Store(layout.objects)
    cache = Store(layout.cache_objects)
    sizes = closures.sizes(store, sorted(objects))
    planned: list[Planned] = []
    for group in closures.GROUPS:
        planned += plan({d: sizes[d] for d, g in objects.items() if g == group}, group)
    image_sizes: dict[str, int] = {}
    if image is not None and not image_there:
        image_sizes = _image_sizes(image, cache, layout, engine, say)
    tally = _Tally(sum(p.size for p in planned) + sum(image_sizes.values()), progress=progress)

    if image is not None and not image_there:
        say(f"sending environment image {image.config_digest[:12]} ({len(image.layers)} layers)")
        for digest in [*image.layers, image.config_digest]:
            _send_object(target, cache, digest, image_sizes[digest], tally, result)
        target.put_manifest(env_tag(env_key or image.config_digest), cache.read_bytes(image.manifest_digest))
    blobs = [_send_planned(target, store, p, tally, result, layout) for p in planned]
    return blobs, sizes


def _image_sizes(image: Any, cache: Store, layout: Layout, engine: Any, say: Say) -> dict[str, int]:
    from harness.remote import closure as closures

    wanted = [image.config_digest, image.manifest_digest, *image.layers]
    if any(not cache.has(d) for d in wanted):
        from harness.remote.imagearchive import archive_from_engine

        archive_from_engine(image, layout, cache, engine, say)
    return closures.sizes(cache, wanted)


def _send_object(target: Target, store: Store, digest: str, size: int, tally: _Tally, result: Pushed) -> None:
    result.blobs += 1
    if target.has_blob(digest):
        tally.add(size)
        return
    with open(store.path(digest), "rb") as fh:
        target.upload(digest, size, cast(IO[bytes], _Counting(fh, tally)))
    result.sent += 1
    result.bytes_sent += size


def _send_planned(target: Target, store: Store, p: Planned, tally: _Tally, result: Pushed, layout: Layout) -> Blob:
    if p.kind == "object":
        digest = p.members[0]
        _send_object(target, store, digest, p.size, tally, result)
        return Blob(digest, p.size, p.media_type, p.members)
    tmp_dir = layout.objects / "tmp" / "remote"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="pack-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as fh:
            digest, size = write_pack(store, p.members, fh)
        result.blobs += 1
        if not target.has_blob(digest):
            with open(name, "rb") as fh:
                target.upload(digest, size, cast(IO[bytes], _Counting(fh, tally)))
            result.sent += 1
            result.bytes_sent += size
        else:
            tally.add(size)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return Blob(digest, size, p.media_type, p.members)


def send_bytes(target: Target, data: bytes, media_type: str, result: Pushed) -> Blob:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    result.blobs += 1
    if not target.has_blob(digest):
        target.upload(digest, len(data), data)
        result.sent += 1
        result.bytes_sent += len(data)
    return Blob(digest, len(data), media_type)


class _Counting:
    """A file read by the uploader, counted for the progress bar."""

    def __init__(self, fh: IO[bytes], tally: _Tally) -> None:
        self._fh = fh
        self._tally = tally

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._tally.add(len(data))
        return data

    def __len__(self) -> int:  # requests sends a Content-Length it can tell
        return os.fstat(self._fh.fileno()).st_size - self._fh.tell()

    def __iter__(self) -> Iterable[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk


def missing(needed: Mapping[str, int], store: Store) -> list[str]:
    return [d for d in needed if not store.has(d)]


def not_found(run: str, remote: str) -> NotFound:
    return NotFound(f"remote {remote} has no run {run!r}", f"list its runs with `harness ls --remote {remote}`")
