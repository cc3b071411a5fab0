"""Runs in one file, for machines without a registry: an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<digest>``) in an uncompressed tar.

It holds exactly what a push sends (the same manifests, packs and image blobs: push.py writes it through the same
interface as a registry), and ``index.json`` names each manifest as a registry's tags would
(``org.opencontainers.image.ref.name``: ``run-<id>``, ``env-<key>``). Tools that read OCI layouts see it as
such (``skopeo copy oci-archive:run.tar:env-<key> docker-daemon:...`` takes the image out, for one). Importing
reads it back through the interface a pull reads a registry with, so every blob is checked the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness.digests import canonical_json
from harness.env import oci
from harness.errors import DataError, NotFound, StoreCorruption
from harness.remote.client import MEDIA_OCI_MANIFEST

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


def _info(name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


class _Hashing:
    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hash.update(data)
        return data


class LayoutWriter:
    """An OCI layout tar being written, in the role of a registry being pushed to (push.Target)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._tar = tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed in close()
        self._blobs: set[str] = set()
        self._manifests: dict[str, tuple[str, int]] = {}  # ref name -> (digest, size)
        self._written: dict[str, bytes] = {}  # manifest digest -> bytes
        self._tar.addfile(_info("blobs", 0, directory=True))
        self._tar.addfile(_info("blobs/sha256", 0, directory=True))

    def has_blob(self, digest: str) -> bool:
        return digest in self._blobs

    def upload(self, digest: str, size: int, source: IO[bytes] | bytes) -> None:
        stream = _Hashing(io.BytesIO(source) if isinstance(source, bytes) else source)
        self._tar.addfile(_info(f"blobs/sha256/{digest}", size), stream)  # type: ignore[arg-type]
        if stream.hash.hexdigest() != digest:
            raise StoreCorruption(
                f"object {digest} changed while it was written to the export; the file is incomplete",
                "`harness verify` names damaged objects; export again",
            )
        self._blobs.add(digest)

    def manifest(self, reference: str) -> tuple[bytes, str] | None:
        """A manifest already written by digest (an image two exported runs share); a fresh file has no tags."""
        digest = reference.removeprefix("sha256:")
        data = self._written.get(digest) if reference.startswith("sha256:") else None
        return None if data is None else (data, digest)

    def put_manifest(self, reference: str, data: bytes, media_type: str = MEDIA_OCI_MANIFEST) -> None:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._blobs:
            self.upload(digest, len(data), data)
        self._manifests[reference] = (digest, len(data))
        self._written[digest] = data

    def close(self) -> None:
        index = {
            "schemaVersion": 2,
            "mediaType": oci.MEDIA_INDEX,
            "manifests": [
                {"mediaType": MEDIA_OCI_MANIFEST, "digest": f"sha256:{d}", "size": n, "annotations": {REF_NAME: ref}}
                for ref, (d, n) in sorted(self._manifests.items())
            ],
        }
        for name, data in (("index.json", canonical_json(index)), ("oci-layout", oci.OCI_LAYOUT)):
            self._tar.addfile(_info(name, len(data)), io.BytesIO(data))
        self._tar.close()


class LayoutReader:
    """An OCI layout tar, in the role of a registry being pulled from (pull.Source)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed in close()
            self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers()}
            index = json.loads(self._read("index.json"))
            self.refs: dict[str, str] = {
                str(m["annotations"][REF_NAME]): str(m["digest"]).removeprefix("sha256:")
                for m in index.get("manifests", [])
                if REF_NAME in (m.get("annotations") or {})
            }
        except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{path} is not an OCI image layout written by `harness export` ({exc})",
                "export the run again with `harness export RUN -o FILE`",
            ) from None

    def _read(self, name: str) -> bytes:
        member = self._members.get(name)
        extracted = self._tar.extractfile(member) if member is not None else None
        if extracted is None:
            raise KeyError(name)
        return extracted.read()

    def close(self) -> None:
        self._tar.close()

    def manifest(self, reference: str) -> tuple[bytes, str] | None:
        digest = reference.removeprefix("sha256:") if reference.startswith("sha256:") else self.refs.get(reference)
        if digest is None or f"blobs/sha256/{digest}" not in self._members:
            return None
        data = self._read(f"blobs/sha256/{digest}")
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise StoreCorruption(f"{self.path}: manifest sha256:{digest} was altered (its bytes hash to {got})")
        return data, digest

    @contextlib.contextmanager
    def blob(self, digest: str, offset: int = 0) -> Iterator[tuple[Iterator[bytes], int]]:
        member = self._members.get(f"blobs/sha256/{digest}")
        extracted = self._tar.extractfile(member) if member is not None else None
        if member is None or extracted is None:
            raise NotFound(f"{self.path} does not hold blob sha256:{digest}", "export the run again")
        extracted.seek(offset)

        def chunks() -> Iterator[bytes]:
            while chunk := extracted.read(CHUNK):
                yield chunk

        yield chunks(), member.size - offset

    def runs(self) -> list[str]:
        from harness.remote.artifact import RUN_TAG_PREFIX

        return sorted(r.removeprefix(RUN_TAG_PREFIX) for r in self.refs if r.startswith(RUN_TAG_PREFIX))
