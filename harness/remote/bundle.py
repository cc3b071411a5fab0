"""What the runs of a sweep share, sent once to a remote as one artifact (a bundle), and fetched from it by a
machine that has no project: the code archive, a dirty sweep's changes, the lock, the params helper, the data
snapshot and every file it names, and the environment image.

A bundle looks like a pushed run (artifact.py) without a record: the OCI manifest tagged ``bundle-<digest>``,
whose config is the bundle document (``application/vnd.harness.bundle.v1+json``: the digests above, canonical
JSON; its digest names the tag) and whose layers are the index and the packed objects, made and read by the same
code as a run's (push.send_objects, pull.fetch_objects): asked for before sent, hashed as fetched, refused named
when altered. The image goes up as ``env-<key>`` as a run's does, so a worker's engine can pull it by digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.digests import canonical_json
from harness.env import oci
from harness.env.oci import ImageParts
from harness.errors import NotFound, StoreCorruption
from harness.paths import Layout
from harness.remote.artifact import Index, RunManifest, index_document
from harness.remote.packing import MEDIA_INDEX
from harness.remote.pull import Source, fetch_objects, small_blob
from harness.remote.push import Pushed, Target, send_bytes, send_objects
from harness.storage.snapshot import load_snapshot
from harness.storage.store import Store, is_digest

FORMAT = "harness.bundle/1"
MEDIA_BUNDLE = "application/vnd.harness.bundle.v1+json"
TAG_PREFIX = "bundle-"
Say = Callable[[str], None]


@dataclass(frozen=True)
class Bundle:
    """The shared inputs of a sweep's runs, by digest."""

    archive: str  # the code archive
    patch: str | None  # a dirty sweep's changes (a manifest of objects)
    lock: str  # the lock object
    helper: str  # the params helper module
    snapshot: str  # the data snapshot's manifest
    image: ImageParts | None  # the environment image, in the cache
    env_key: str  # its key: the image's tag on the remote is env-<key>

    def to_dict(self) -> dict[str, Any]:
        image = self.image
        return {
            "format": FORMAT,
            "archive": self.archive,
            "patch": self.patch,
            "lock": self.lock,
            "helper": self.helper,
            "snapshot": self.snapshot,
            "env_key": self.env_key,
            "image": None
            if image is None
            else {"config": image.config_digest, "manifest": image.manifest_digest, "layers": list(image.layers)},
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> Bundle:
        try:
            if doc["format"] != FORMAT:
                raise KeyError("format")
            image = doc.get("image")
            parts = (
                ImageParts(str(image["config"]), str(image["manifest"]), tuple(str(x) for x in image["layers"]))
                if image
                else None
            )
            bundle = cls(
                archive=str(doc["archive"]),
                patch=str(doc["patch"]) if doc.get("patch") else None,
                lock=str(doc["lock"]),
                helper=str(doc["helper"]),
                snapshot=str(doc["snapshot"]),
                image=parts,
                env_key=str(doc.get("env_key") or ""),
            )
        except (KeyError, TypeError, AttributeError):
            raise StoreCorruption(f"{where} is not a harness bundle ({FORMAT})", "publish the sweep again") from None
        named = [bundle.archive, bundle.lock, bundle.helper, bundle.snapshot, *([bundle.patch] if bundle.patch else [])]
        if not all(is_digest(d) for d in named):
            raise StoreCorruption(f"{where} names an object by something that is no sha256 digest")
        return bundle

    @property
    def document(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def tag(self) -> str:
        return TAG_PREFIX + hashlib.sha256(self.document).hexdigest()[:32]

    def objects(self, store: Store) -> dict[str, str]:
        """Every object the bundle names, digest -> packing group (closure.GROUPS), read from ``store``."""
        objects = {self.archive: "run", self.lock: "run", self.helper: "run", self.snapshot: "run"}
        if self.patch:
            objects[self.patch] = "run"
            for entry in (store.read_json(self.patch).get("files") or {}).values():
                if entry.get("sha256"):
                    objects.setdefault(str(entry["sha256"]), "run")
        for e in load_snapshot(store, self.snapshot).entries:
            if e.kind == "file" and e.sha256:
                objects.setdefault(e.sha256, "data")
        return objects


def publish(layout: Layout, bundle: Bundle, target: Target, say: Say, engine: Any = None) -> Pushed:
    """Send what ``target`` lacks of the bundle, its manifest last (found only once whole). One request when the
    target has it already."""
    result = Pushed(run=bundle.tag, name=None)
    there = target.manifest(bundle.tag)
    image = bundle.image
    image_there = image is None or target.manifest(image.manifest_digest) is not None
    if there is not None and image_there:
        result.already = True
        return result
    store = Store(layout.objects)
    objects = bundle.objects(store)
    say(f"publishing the sweep's code, data and environment to the remote: {len(objects)} objects")
    blobs, sizes = send_objects(target, layout, objects, image, bundle.env_key, image_there, result, say, None, engine)
    document = bundle.document
    seal = hashlib.sha256(document).hexdigest()
    index = send_bytes(target, index_document(bundle.tag, seal, blobs, sizes, image), MEDIA_INDEX, result)
    send_bytes(target, document, MEDIA_BUNDLE, result)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_BUNDLE, "digest": "sha256:" + seal, "size": len(document)},
            "layers": [index.descriptor(), *(b.descriptor() for b in blobs)],
        }
    )
    target.put_manifest(bundle.tag, manifest)
    result.manifest = hashlib.sha256(manifest).hexdigest()
    return result


def fetch(
    layout: Layout,
    tag: str,
    source: Source,
    where: str,
    say: Say,
    image_elsewhere: Callable[[ImageParts], bool] | None = None,
) -> Bundle:
    """The bundle under ``tag``, with every object it names in the store (and its image in the cache, unless
    ``image_elsewhere`` says the engine has it), each checked against its digest."""
    found = source.manifest(tag)
    if found is None:
        raise NotFound(f"{where} has no {tag}", "the submitting side publishes it before it submits any run")
    manifest = RunManifest.parse(found[0], f"{where}:{tag}", MEDIA_BUNDLE)
    document = small_blob(source, manifest.seal, f"the bundle document of {tag}", where)
    bundle = Bundle.from_dict(json.loads(document), f"{where}:{tag}")
    if bundle.tag != tag:
        raise StoreCorruption(f"{where}: the document under {tag} is another bundle's ({bundle.tag})")
    index = Index.parse(small_blob(source, manifest.index, f"the index of {tag}", where), where)
    if index.seal != manifest.seal or index.run != tag or set(index.blobs) != set(manifest.blobs):
        raise StoreCorruption(f"{where}: the index of {tag} does not match its manifest")
    fetch_objects(source, index, manifest.blobs, layout, where, f"sweep bundle {tag}", say, None, image_elsewhere)
    return bundle
