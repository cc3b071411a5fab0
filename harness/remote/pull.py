"""`harness pull`: a run's closure from a registry (or an imported OCI layout) into this machine's stores.

Every byte is checked before it is used: the manifest names the record by its digest (the seal), the record names
the index, the index names every blob, and each blob is hashed as it arrives and refused, named, when it does not
match (StoreCorruption, exit 107). A pack is downloaded whole and checked before any object is taken from it, and
every object is hashed again as it is stored. Nothing partial reaches the store: objects are renamed into place
only once verified, and the run's record is written last, only when every object it references is there. What was
verified stays, so a pull that was interrupted resumes: blobs whose objects are all present are not fetched again,
and a large object's download continues from the bytes kept in ``objects/tmp/remote/`` (checked again whole).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from harness.env.oci import ImageParts
from harness.errors import HarnessError, NotFound, StoreCorruption
from harness.files import withheld
from harness.paths import Layout
from harness.remote.artifact import Index, RunManifest, run_tag
from harness.runs.records import Records
from harness.runs.sealing import record_digest
from harness.soon import soon
from harness.storage import snapshot
from harness.storage.store import Store
from harness.storage.storelock import adding_objects

Say = Callable[[str], None]
Bytes = Callable[[int, int], None]


class Source(Protocol):
    """Where a pull comes from: a registry (client.Registry) or an OCI layout (layout.LayoutReader)."""

    def manifest(self, reference: str) -> tuple[bytes, str] | None: ...
    def blob(self, digest: str, offset: int = 0) -> AbstractContextManager[tuple[Iterator[bytes], int]]: ...


@dataclass
class Pulled:
    run: str
    name: str | None
    objects: int = 0  # in the run's closure
    fetched: int = 0  # blobs fetched now
    bytes_fetched: int = 0
    image: str | None = None
    already: bool = False  # every object and the record were here already
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def pull_run(
    layout: Layout,
    run_ref: str,
    source: Source,
    where: str,
    say: Say,
    progress: Bytes | None = None,
    image_elsewhere: Callable[[ImageParts], bool] | None = None,
) -> Pulled:
    """Pull run ``run_ref``. ``image_elsewhere``: asked before the image's blobs are fetched into the cache; True
    when the image is in the engine already, or the engine pulled it itself (rebuild --remote), so the cache
    need not hold it."""
    with adding_objects(layout.store, say):
        return _pull(layout, run_ref, source, where, say, progress, image_elsewhere)


def _pull(
    layout: Layout,
    run_ref: str,
    source: Source,
    where: str,
    say: Say,
    progress: Bytes | None,
    image_elsewhere: Callable[[ImageParts], bool] | None,
) -> Pulled:
    started = time.monotonic()
    store = Store(layout.objects)
    found = source.manifest(run_tag(run_ref))
    if found is None:
        raise NotFound(f"{where} has no run {run_ref!r}", f"list the runs it holds with `harness ls --remote {where}`")
    manifest = RunManifest.parse(found[0], f"{where}:{run_tag(run_ref)}")
    record_bytes = small_blob(source, manifest.seal, f"the record of run {run_ref}", where)
    record = json.loads(record_bytes.decode("utf-8", "surrogatepass"))
    if not isinstance(record, dict) or record.get("id") != run_ref or record_digest(record) != manifest.seal:
        raise StoreCorruption(f"{where}: the record under {run_tag(run_ref)} is not run {run_ref}'s sealed record")
    result = Pulled(run=run_ref, name=record.get("name"))
    records = Records(layout.runs, layout.index)
    local_seal = _local_seal(records, run_ref)
    if local_seal is not None and local_seal != manifest.seal:
        raise HarnessError(
            f"this store already has a different run {run_ref} (record {local_seal[:12]}, the remote's "
            f"{manifest.seal[:12]}); nothing was pulled",
            "pull into another store (HARNESS_HOME=DIR)",
        )
    index = Index.parse(small_blob(source, manifest.index, f"the index of run {run_ref}", where), where)
    if index.seal != manifest.seal or index.run != run_ref or set(index.blobs) != set(manifest.blobs):
        raise StoreCorruption(f"{where}: the index of run {run_ref} does not match its manifest")
    result.objects = len(index.objects)
    if index.image is not None:
        result.image = "sha256:" + index.image.manifest_digest
    fetched = fetch_objects(
        source, index, manifest.blobs, layout, where, f"run {run_ref}", say, progress, image_elsewhere
    )
    result.fetched, result.bytes_fetched = fetched
    if local_seal is None:
        _write_run(layout, records, record, manifest.seal, record_bytes, store)
    elif not result.fetched:
        result.already = True
    result.seconds = time.monotonic() - started
    return result


def fetch_objects(
    source: Source,
    index: Index,
    blobs: dict[str, int],
    layout: Layout,
    where: str,
    what: str,
    say: Say,
    progress: Bytes | None = None,
    image_elsewhere: Callable[[ImageParts], bool] | None = None,
) -> tuple[int, int]:
    """Fetch the blobs of ``index`` (sizes from its manifest, ``blobs``) whose objects the store lacks, and the
    environment image's into the cache unless ``image_elsewhere`` says the engine has it (asked in a thread, so
    an engine pulling the image does so while the run's blobs arrive); each checked as it arrives. Shared by a
    run's pull and a sweep's bundle (bundle.py). How many blobs and bytes were fetched."""
    store = Store(layout.objects)
    cache = Store(layout.cache_objects)
    fetched = 0
    wanted = [d for d, (_, members) in sorted(index.blobs.items()) if any(not store.has(o) for o in members)]
    image_wanted: list[str] = []
    engine_pulled: Callable[[], bool] | None = None
    if index.image is not None:
        parts = [index.image.manifest_digest, index.image.config_digest, *index.image.layers]
        image_wanted = [d for d in parts if not cache.has(d)]
        if image_wanted and image_elsewhere is not None:
            # The engine pulls the image while the run's own blobs come here: both transfers at once.
            engine_pulled = soon(partial(image_elsewhere, index.image), "harness-engine-pull")
    tally = _Tally(sum(blobs[d] for d in wanted), progress)
    if engine_pulled is None:
        tally.total += _image_bytes(source, index, image_wanted, cache, where)
    if wanted:
        say(f"fetching {what}: {len(wanted)} of {len(index.blobs)} blobs")
    for digest in wanted:
        kind, members = index.blobs[digest]
        part = f"{'a pack of' if kind == 'pack' else 'an object of'} {what}"
        if kind == "pack":
            _fetch_pack(source, digest, members, store, where, tally, part)
        else:
            if members != (digest,):
                raise StoreCorruption(f"{where}: the index of {what} names blob {digest} as another object")
            _fetch_object(source, digest, store, where, tally, part)
        fetched += 1
    if engine_pulled is not None:
        if engine_pulled():
            image_wanted = []
        else:
            tally.total += _image_bytes(source, index, image_wanted, cache, where)
    if image_wanted and index.image is not None:
        say(f"fetching environment image {index.image.config_digest[:12]}")
        for digest in image_wanted:
            if not cache.has(digest):
                _fetch_object(source, digest, cache, where, tally, f"a layer of the environment image of {what}")
                fetched += 1
    absent = [d for d in index.objects if not store.has(d)]
    if absent:
        raise StoreCorruption(
            f"{where}: {what} names {len(absent)} objects its blobs do not hold (first: {absent[0]})",
            "push it again from the machine that has it",
        )
    return fetched, tally.done


@dataclass
class _Tally:
    total: int
    progress: Bytes | None
    done: int = 0

    def add(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(min(self.done, self.total), self.total)


def _local_seal(records: Records, run_id: str) -> str | None:
    if not (records.runs_dir / run_id / "record.json").is_file():
        return None
    checked = records.check(run_id)
    if not checked.ok:
        raise checked.error()
    return checked.seal


def _image_bytes(source: Source, index: Index, wanted: list[str], cache: Store, where: str) -> int:
    """The sizes of the image blobs to fetch, from the image's manifest (fetched, checked and stored first)."""
    if not wanted or index.image is None:
        return 0
    manifest_digest = index.image.manifest_digest
    if not cache.has(manifest_digest):
        found = source.manifest("sha256:" + manifest_digest)  # a registry checks these bytes against the digest
        if found is None:
            raise NotFound(f"{where} does not have the environment image sha256:{manifest_digest}")
        if found[1] != manifest_digest:
            raise StoreCorruption(f"{where}: image manifest sha256:{manifest_digest} came back altered")
        cache.put_bytes(found[0])
        wanted.remove(manifest_digest)
    doc = json.loads(cache.read_bytes(manifest_digest))
    sizes = {str(d["digest"]).removeprefix("sha256:"): int(d["size"]) for d in [doc["config"], *doc["layers"]]}
    return sum(sizes.get(d, 0) for d in wanted)


def small_blob(source: Source, digest: str, what: str, where: str) -> bytes:
    with source.blob(digest) as (chunks, _length):
        data = b"".join(chunks)
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise _altered(where, digest, what, got, len(data))
    return data


def _altered(where: str, digest: str, what: str, got: str, size: int) -> StoreCorruption:
    return StoreCorruption(
        f"{where}: blob sha256:{digest} ({what}) arrived altered or truncated: {size:,} bytes that hash to "
        f"sha256:{got}; it was refused and nothing of it was stored",
        "the copy in the registry is damaged: push the run again from a machine that has it (it re-sends what "
        "the registry lacks; remove the damaged blob in the registry first), then pull again",
    )


def _partial(store: Store, digest: str) -> Path:
    tmp = store.root / "tmp" / "remote"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp / f"{digest}.partial"


def _download(source: Source, digest: str, store: Store, where: str, tally: _Tally, what: str) -> Path:
    """The blob in a temp file, whole and checked; resumes from a partial download kept by an earlier try."""
    path = _partial(store, digest)
    hasher = hashlib.sha256()
    offset = 0
    if path.exists():
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
                offset += len(chunk)
        tally.add(offset)
    try:
        with source.blob(digest, offset) as (chunks, _length), open(path, "ab") as out:
            for chunk in chunks:
                hasher.update(chunk)
                out.write(chunk)
                tally.add(len(chunk))
    except HarnessError as exc:
        if isinstance(exc, StoreCorruption | NotFound):
            path.unlink(missing_ok=True)
        raise
    got = hasher.hexdigest()
    if got != digest:
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        raise _altered(where, digest, what, got, size)
    return path


def _fetch_object(source: Source, digest: str, store: Store, where: str, tally: _Tally, what: str) -> None:
    path = _download(source, digest, store, where, tally, what)
    store.adopt(path, digest)  # already hashed: renamed into place, read-only


def _fetch_pack(
    source: Source, digest: str, members: tuple[str, ...], store: Store, where: str, tally: _Tally, what: str
) -> None:
    from harness.remote.packing import unpack

    path = _download(source, digest, store, where, tally, what)
    try:
        unpack(path, members, store)
    finally:
        path.unlink(missing_ok=True)


def _write_run(
    layout: Layout, records: Records, record: dict[str, Any], seal: str, record_bytes: bytes, store: Store
) -> None:
    """The record, sealed as it was, and its outputs directory: the run as its own machine had it."""
    run_dir = layout.runs / str(record["id"])
    layout.runs.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(0o777 & ~withheld(layout.runs), exist_ok=True)
    if store.put_bytes(record_bytes) != seal:
        raise StoreCorruption(f"the record of run {record['id']} does not hash to its seal")
    manifest = (record.get("outputs") or {}).get("manifest")
    outputs = run_dir / "outputs"
    if manifest and not outputs.exists():
        tmp = run_dir / ".outputs.pulling"
        if tmp.exists():
            snapshot.remove_materialized(tmp)
        snapshot.materialize(store, manifest, tmp)
        mode = 0o755 & ~withheld(run_dir)
        for dirpath, _dirs, _files in os.walk(tmp):
            os.chmod(dirpath, mode)
        os.rename(tmp, outputs)
    try:
        records.write(record)
    except BaseException:
        with contextlib.suppress(OSError):
            snapshot.remove_materialized(outputs)
            shutil.rmtree(run_dir)
        raise
