"""Image config, manifest and the archive that ``docker load`` reads, all written byte-for-byte reproducibly.

One archive serves both Docker image stores:
- the classic store (Docker <= 28 default) reads docker's ``manifest.json`` and names the image by the sha256 of
  the config bytes, so the image id is a pure function of the config we write;
- the containerd store (default from Docker 29) reads the OCI layout (``oci-layout``, ``index.json``) and names
  the image by the sha256 of the OCI manifest bytes, which we also write ourselves.
Layers are uncompressed, so a layer's blob digest is its diff id and one stored object serves as both.

``index.json`` carries no name annotation on purpose: containerd would store an unqualified name verbatim (where
docker would not find it) and a qualified one would hard-code a registry host. The caller tags the image after
loading it instead, which works the same in both stores.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from harness.digests import canonical_json
from harness.errors import StoreCorruption
from harness.storage.store import Store

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class LayerRef:
    """One layer as the config and manifest see it; ``digest`` is sha256 hex of the uncompressed tar."""

    digest: str
    size: int
    created_by: str
    comment: str = ""

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.digest


@dataclass(frozen=True)
class ImageParts:
    """The stored pieces of one image: everything needed to assemble its archive again."""

    config_digest: str  # sha256 hex of the config bytes == image id in the classic store
    manifest_digest: str  # sha256 hex of the OCI manifest bytes == image id in the containerd store
    layers: tuple[str, ...]  # layer digests (== diff ids), bottom first

    @property
    def image_id(self) -> str:
        return "sha256:" + self.config_digest


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def image_config(
    layers: Sequence[LayerRef],
    *,
    source_date_epoch: int,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    architecture: str = "amd64",
    cmd: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The image config (OCI image-spec ``config.md``); every field fixed by the arguments, none by the clock."""
    created = rfc3339(source_date_epoch)
    container: dict[str, Any] = {
        "Env": [f"{k}={v}" for k, v in env.items()],  # order as given: PATH first reads naturally
        "Labels": dict(sorted(labels.items())),
    }
    if cmd:
        container["Cmd"] = list(cmd)
    return {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        # One history entry per layer: the classic store refuses configs where they disagree.
        "history": [{"created": created, "created_by": layer.created_by, "comment": layer.comment} for layer in layers],
    }


def manifest(config_digest: str, config_size: int, layers: Sequence[LayerRef]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": "sha256:" + config_digest, "size": config_size},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.diff_id, "size": layer.size} for layer in layers],
    }


def store_image(store: Store, config: dict[str, Any], layers: Sequence[LayerRef]) -> ImageParts:
    """Write config and manifest as objects (canonical JSON) next to the layers, which must be stored already."""
    config_bytes = canonical_json(config)
    config_digest = store.put_bytes(config_bytes)
    manifest_digest = store.put_bytes(canonical_json(manifest(config_digest, len(config_bytes), layers)))
    return ImageParts(config_digest, manifest_digest, tuple(layer.digest for layer in layers))


def missing_objects(store: Store, parts: ImageParts) -> list[str]:
    wanted = [parts.config_digest, parts.manifest_digest, *parts.layers]
    return [digest for digest in wanted if not store.has(digest)]


def _index(manifest_digest: str, manifest_size: int) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": "sha256:" + manifest_digest, "size": manifest_size}],
        }
    )


def write_archive(store: Store, parts: ImageParts, repo_tags: Sequence[str], dest: IO[bytes], epoch: int) -> None:
    """Write the loadable archive of ``parts`` to ``dest``; the same inputs give the same bytes.

    Objects are re-hashed while they are copied (one read), so a corrupted layer is named, not loaded.
    """
    manifest_size = store.path(parts.manifest_digest).stat().st_size
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{parts.config_digest}",
            "RepoTags": list(repo_tags),
            "Layers": [f"blobs/sha256/{digest}" for digest in parts.layers],
        }
    ]
    blobs = sorted({parts.config_digest, parts.manifest_digest, *parts.layers})
    with tarfile.open(fileobj=dest, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs", epoch)
        _add_dir(tar, "blobs/sha256", epoch)
        for digest in blobs:
            path = store.path(digest)
            with open(path, "rb") as fh:
                reader = _HashingReader(fh)
                _add_file(tar, f"blobs/sha256/{digest}", cast(IO[bytes], reader), path.stat().st_size, epoch)
            if reader.hexdigest() != digest:
                raise StoreCorruption(
                    f"object {digest} in {store.root} does not match its name (its bytes changed)",
                    "nothing was loaded; the object was kept for inspection. Remove it and run again to rebuild",
                )
        for name, data in (
            ("index.json", _index(parts.manifest_digest, manifest_size)),
            ("manifest.json", canonical_json(docker_manifest)),
            ("oci-layout", OCI_LAYOUT),
        ):
            _add_file(tar, name, io.BytesIO(data), len(data), epoch)


def write_archive_file(store: Store, parts: ImageParts, repo_tags: Sequence[str], path: Path, epoch: int) -> None:
    with open(path, "wb") as fh:
        write_archive(store, parts, repo_tags, fh, epoch)


class _HashingReader:
    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _info(name: str, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str, epoch: int) -> None:
    info = _info(name, epoch)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int, epoch: int) -> None:
    info = _info(name, epoch)
    info.mode = 0o644
    info.size = size
    tar.addfile(info, data)
