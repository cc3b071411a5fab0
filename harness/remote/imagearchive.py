"""An environment image whose pieces are no longer in this machine's cache, taken back from the engine.

Pushing or exporting a run sends its image's config, manifest and layers from the cache. When the cache has lost
them (a fresh ``HARNESS_CACHE``) but the engine still has the image, ``docker save`` gives them back: the classic
image store saves the config's own bytes and uncompressed layers, so every digest must come out as recorded, and
anything else is refused rather than sent under the recorded name.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.digests import canonical_json
from harness.env import oci
from harness.errors import NotFound
from harness.paths import Layout
from harness.storage.store import Store


def archive_from_engine(
    image: oci.ImageParts, layout: Layout, cache: Store, engine: object | None, say: Callable[[str], None]
) -> None:
    from harness.docker.engine import connect
    from harness.docker.interface import Engine

    gone = NotFound(
        f"environment image {image.image_id} is neither in the cache ({layout.cache}) nor in the engine",
        "rebuild it on this machine first (`harness rebuild RUN` rebuilds the image from its recipe and lock), "
        "then push again",
    )
    live: Engine = engine if engine is not None else connect()  # type: ignore[assignment]
    if not live.has_image(image.image_id):
        raise gone
    say(f"the cache lacks image {image.config_digest[:12]}: taking it from the engine (docker save)")
    tmp_dir = layout.cache / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="save-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in live.save_image(image.image_id):
                fh.write(chunk)
        _split(Path(name), image, cache)
    finally:
        Path(name).unlink(missing_ok=True)


def _split(archive: Path, image: oci.ImageParts, cache: Store) -> None:
    with tarfile.open(archive, mode="r:") as tar:
        manifest = json.loads(_member(tar, "manifest.json"))
        config = _member(tar, manifest[0]["Config"])
        layers = []
        for path in manifest[0]["Layers"]:
            extracted = tar.extractfile(path)
            if extracted is None:
                raise NotFound(f"docker save of {image.image_id}: layer {path} is not a file")
            digest, size = cache.put_stream(extracted)
            layers.append(oci.LayerRef(digest, size, ""))
    config_digest = cache.put_bytes(config)
    manifest_digest = cache.put_bytes(canonical_json(oci.manifest(config_digest, len(config), layers)))
    got = oci.ImageParts(config_digest, manifest_digest, tuple(x.digest for x in layers))
    if got != image:
        raise NotFound(
            f"docker save of image {image.image_id} did not give the recorded pieces (manifest {manifest_digest[:12]},"
            f" not {image.manifest_digest[:12]}): this engine stores images differently (containerd's store "
            "saves layers compressed)",
            "rebuild the image into the cache on this machine (`harness rebuild RUN`), then push again",
        )


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    extracted = tar.extractfile(name)
    if extracted is None:
        raise NotFound(f"docker save archive: {name} is not a file")
    return extracted.read()
