"""Loading an image from the objects of a store: one archive, one ``docker load``, the id checked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.docker.interface import Engine
from harness.env import oci
from harness.errors import EnvironmentBuildError, HarnessError
from harness.paths import Layout
from harness.storage.store import Store


def load_image(store: Store, parts: oci.ImageParts, ref: str, layout: Layout, engine: Engine, epoch: int) -> None:
    """Assemble the archive of ``parts`` in a temp file, ``docker load`` it, check the id, tag it ``ref``."""
    tmp_dir = layout.cache / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="image-", suffix=".tar")
    archive = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            oci.write_archive(store, parts, [ref], fh, epoch)
        try:
            loaded = engine.load_image(archive)
        except HarnessError as exc:
            raise EnvironmentBuildError(
                f"docker load of image {ref} failed: {exc.message}",
                hint="the layers stay in the cache store; check `docker info` (disk space) and run again",
            ) from None
    finally:
        archive.unlink(missing_ok=True)
    # The classic store names the image from manifest.json; the containerd store reads only the OCI index, which
    # carries no name, and reports the id it loaded instead.
    got = "nothing"
    for candidate in (ref, *loaded):
        info = engine.inspect_image(candidate)
        if info is not None:
            got = str(info.get("Id"))
            break
    if got not in (parts.image_id, "sha256:" + parts.manifest_digest):
        raise EnvironmentBuildError(
            f"docker load of {ref} gave image {got}, expected {parts.image_id}",
            hint="the engine rewrote the image; the stored layers were kept. Report this with `docker version`",
        )
    repository, tag = ref.rsplit(":", 1)
    engine.tag_image(got, repository, tag)
