"""How a run looks in a registry (or in an OCI image layout): the blobs of its closure and one manifest naming them.

A pushed run is the OCI image manifest tagged ``run-<id>``:
- config: the sealed record, its canonical JSON (``application/vnd.harness.record.v1+json``); its digest is the
  run's seal, so the record is checked by the same digest that names it;
- layers: the index (``application/vnd.harness.remote-index.v1+json``), then each blob the index names: packs of
  small objects (``application/vnd.harness.pack.v1.tar``) and lone large objects
  (``application/vnd.harness.object.v1``), so the registry keeps every blob the run needs while the tag exists;
- annotations: the run id, name and the environment image's manifest digest.

The index says what is where: for each blob, whether it is a pack or a lone object and which objects it holds;
and the environment image (its manifest digest, config and layers). A pull reads it and fetches exactly the blobs
whose objects it lacks. The environment image is pushed as an ordinary image, tagged ``env-<key>``: its own
config, manifest and uncompressed layers from the cache, so ``docker pull REF@<manifest digest>`` gives the
recorded image id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.digests import canonical_json
from harness.env import oci
from harness.errors import StoreCorruption
from harness.remote.packing import MEDIA_INDEX, MEDIA_OBJECT, MEDIA_PACK, MEDIA_RECORD
from harness.storage.store import is_digest

INDEX_FORMAT = "harness.remote/1"
RUN_TAG_PREFIX = "run-"
ENV_TAG_PREFIX = "env-"
ANNOTATION_RUN = "org.harness.run.id"
ANNOTATION_NAME = "org.harness.run.name"
ANNOTATION_IMAGE = "org.harness.image.manifest"


def run_tag(run_id: str) -> str:
    return RUN_TAG_PREFIX + run_id


def env_tag(key: str) -> str:
    return ENV_TAG_PREFIX + key[:32]


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    members: tuple[str, ...] = ()  # the objects a pack or lone object blob holds

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": "sha256:" + self.digest, "size": self.size}


def index_document(run_id: str, seal: str, blobs: Sequence[Blob], sizes: Mapping[str, int], image: Any) -> bytes:
    doc: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "run": run_id,
        "seal": seal,
        "blobs": {
            b.digest: {"kind": "pack" if b.media_type == MEDIA_PACK else "object", "objects": list(b.members)}
            for b in blobs
        },
        "objects": dict(sorted(sizes.items())),
        "image": None,
    }
    if image is not None:
        doc["image"] = {"manifest": image.manifest_digest, "config": image.config_digest, "layers": list(image.layers)}
    return canonical_json(doc)


def run_manifest(record: Mapping[str, Any], seal: str, seal_size: int, index: Blob, blobs: Sequence[Blob]) -> bytes:
    annotations = {ANNOTATION_RUN: str(record["id"]), ANNOTATION_NAME: str(record.get("name") or "")}
    env = record.get("environment") or {}
    if env.get("manifest_digest"):
        annotations[ANNOTATION_IMAGE] = str(env["manifest_digest"])
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_RECORD, "digest": "sha256:" + seal, "size": seal_size},
            "layers": [index.descriptor(), *(b.descriptor() for b in blobs)],
            "annotations": annotations,
        }
    )


@dataclass(frozen=True)
class RunManifest:
    """A run's manifest as read back: the record's digest (the seal), the index blob and the other blobs."""

    seal: str
    index: str
    blobs: dict[str, int]  # digest -> size, every layer but the index

    @classmethod
    def parse(cls, data: bytes, where: str, config_type: str = MEDIA_RECORD) -> RunManifest:
        """A run's manifest; with another ``config_type``, one of the same shape (a sweep's bundle, bundle.py)."""
        import json

        bad = StoreCorruption(f"{where} is not a harness manifest", "push it again; check the reference")
        try:
            doc = json.loads(data)
            config = doc["config"]
            layers = doc["layers"]
        except (ValueError, KeyError, TypeError):
            raise bad from None
        if config.get("mediaType") != config_type or not layers or layers[0].get("mediaType") != MEDIA_INDEX:
            raise bad
        digests = [_digest(config), *(_digest(layer) for layer in layers)]
        if not all(is_digest(d) for d in digests):
            raise bad
        blobs = {_digest(layer): int(layer.get("size", 0)) for layer in layers[1:]}
        if any(layer.get("mediaType") not in (MEDIA_PACK, MEDIA_OBJECT) for layer in layers[1:]):
            raise bad
        return cls(seal=digests[0], index=digests[1], blobs=blobs)


def _digest(descriptor: Mapping[str, Any]) -> str:
    return str(descriptor.get("digest", "")).removeprefix("sha256:")


@dataclass(frozen=True)
class Index:
    run: str
    seal: str
    blobs: dict[str, tuple[str, tuple[str, ...]]]  # blob digest -> (kind, objects)
    objects: dict[str, int]
    image: oci.ImageParts | None

    @classmethod
    def parse(cls, data: bytes, where: str) -> Index:
        import json

        bad = StoreCorruption(f"{where} is not a harness remote index", "push the run again")
        try:
            doc = json.loads(data)
            if doc.get("format") != INDEX_FORMAT:
                raise bad
            blobs = {str(d): (str(v["kind"]), tuple(str(o) for o in v["objects"])) for d, v in doc["blobs"].items()}
            objects = {str(d): int(s) for d, s in doc["objects"].items()}
            image = doc.get("image")
            parts = (
                oci.ImageParts(str(image["config"]), str(image["manifest"]), tuple(str(x) for x in image["layers"]))
                if image
                else None
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad from None
        named = [*blobs, *objects, *(o for _, members in blobs.values() for o in members)]
        if parts is not None:
            named += [parts.config_digest, parts.manifest_digest, *parts.layers]
        if not all(is_digest(d) for d in named):
            raise bad
        return cls(str(doc.get("run")), str(doc.get("seal")), blobs, objects, parts)
