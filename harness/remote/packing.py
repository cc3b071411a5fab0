"""Many small objects as a few blobs: packs, and which objects go in which.

A registry costs a round trip or more per blob (a HEAD to ask, a POST and a PUT to upload, a GET to fetch), so
10,000 data files of 10 kB sent one by one would be 30,000 requests. Objects under ``LARGE`` (1 MiB) are packed
instead: an uncompressed tar whose members are named by their digest, written byte for byte the same for the same
objects (sorted names, mode 0444, mtime 0, owner 0), so a pack has a stable digest and a registry that has it is
never sent it again. Larger objects travel alone, as their own blob, named by their own sha256 (already the
registry's name for them).

Which objects share a pack is decided by the objects alone, not by their neighbours in one run: sorted by digest,
a pack ends after an object whose digest, read as a fraction of 1, is below its size over ``TARGET`` (32 MiB). A
pack so holds about 32 MiB on average, and adding a file to a snapshot changes only the pack it falls in: the
others keep their digests and are not uploaded again (content-defined boundaries, as rsync and restic use for
chunks, applied to whole objects).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.digests import CHUNK
from harness.errors import StoreCorruption
from harness.storage.store import Store, is_digest

LARGE = 1 << 20
TARGET = 32 << 20
_HEADER = 512  # a tar member's header; the body is padded to 512 bytes too

MEDIA_RECORD = "application/vnd.harness.record.v1+json"
MEDIA_INDEX = "application/vnd.harness.remote-index.v1+json"
MEDIA_PACK = "application/vnd.harness.pack.v1.tar"
MEDIA_OBJECT = "application/vnd.harness.object.v1"


@dataclass(frozen=True)
class Planned:
    """One blob to send: a lone object (``members`` is just it) or a pack of small ones."""

    kind: str  # "object" | "pack"
    group: str
    members: tuple[str, ...]
    size: int  # a lone object's size; a pack's tar size

    @property
    def media_type(self) -> str:
        return MEDIA_OBJECT if self.kind == "object" else MEDIA_PACK


def plan(objects: Mapping[str, int], group: str) -> list[Planned]:
    """Lone blobs for the large objects, packs for the small ones (see the module's doc)."""
    planned = [Planned("object", group, (d,), objects[d]) for d in sorted(objects) if objects[d] >= LARGE]
    current: list[str] = []
    for digest in sorted(d for d in objects if objects[d] < LARGE):
        current.append(digest)
        if int(digest[:13], 16) / 16**13 < (objects[digest] + _HEADER) / TARGET:
            planned.append(_pack(current, objects, group))
            current = []
    if current:
        planned.append(_pack(current, objects, group))
    return planned


def _pack(members: list[str], sizes: Mapping[str, int], group: str) -> Planned:
    size = sum(_HEADER + -(-sizes[d] // 512) * 512 for d in members)
    return Planned("pack", group, tuple(members), size + 1024 + _tail_padding(size + 1024))


def _tail_padding(size: int) -> int:
    # tarfile pads the archive to a whole record (20 blocks of 512 bytes)
    return -size % tarfile.RECORDSIZE


class _HashingWriter:
    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.size = 0

    def tell(self) -> int:
        return self.size

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.fh.write(data)


class _CheckedReader:
    """An object's bytes as tarfile reads them, hashed on the way; the caller compares with the name."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.hash.update(data)
        return data


def write_pack(store: Store, members: Sequence[str], dest: IO[bytes]) -> tuple[str, int]:
    """Write the pack of ``members`` (objects of ``store``) to ``dest``; (sha256 hex, size). Each object is
    re-hashed as it is read, so a damaged one is named, never sent."""
    out = _HashingWriter(dest)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
        for digest in members:
            path = store.path(digest)
            info = tarfile.TarInfo(digest)
            info.mode, info.mtime, info.uid, info.gid = 0o444, 0, 0, 0
            with open(path, "rb") as fh:
                info.size = os.fstat(fh.fileno()).st_size
                reader = _CheckedReader(fh)
                tar.addfile(info, reader)  # type: ignore[arg-type]
            if reader.hash.hexdigest() != digest:
                raise StoreCorruption(
                    f"object {digest} in {store.root} does not match its name (its bytes changed); it was not sent",
                    "`harness verify` lists every damaged object and what uses it",
                )
    return out.hash.hexdigest(), out.size


def unpack(pack: Path, expected: Sequence[str], store: Store, progress: Callable[[int], None] | None = None) -> None:
    """Store the members of a verified pack file. Only the objects ``expected`` of it are taken; each is hashed
    again as it is stored and must match its name."""
    wanted = set(expected)
    with tarfile.open(pack, mode="r:") as tar:
        for member in _members(tar):
            if member.name not in wanted or not member.isfile():
                continue
            extracted = tar.extractfile(member)
            assert extracted is not None
            if store.has(member.name):
                continue
            digest, size = store.put_stream(extracted)
            if digest != member.name:  # the pack's digest was checked: only a bug in a packer gets here
                raise StoreCorruption(f"pack {pack.name}: member {member.name} holds bytes that hash to {digest}")
            wanted.discard(member.name)
            if progress:
                progress(size)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        if is_digest(member.name):
            yield member


def hash_file(path: Path, start: int = 0) -> tuple[hashlib._Hash, int]:
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return hasher, size
