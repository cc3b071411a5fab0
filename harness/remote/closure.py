"""What a run is made of, as objects: its closure, read from its sealed record.

Everything ``harness rebuild`` reads: the sealed record itself, the code archive, a dirty run's stored changes
(the patch manifest and each changed file), the lock, the params helper, the data snapshot's manifest and every
file object it names, and the outputs manifest and every output (a rebuild compares against them; `harness verify`
checks them). The environment image is its config, manifest and layers, in the cache (harness/env/oci.py).

Objects are grouped for packing (packing.py): ``data`` (a snapshot, shared by every run on the same data, so its
packs are too), ``outputs``, and ``run`` (code, changes, lock, helper, manifests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.env.environment import Environment
from harness.env.oci import ImageParts
from harness.errors import NotFound
from harness.runs.outputlist import all_files
from harness.storage.snapshot import load_snapshot
from harness.storage.store import Store, is_digest

GROUPS = ("run", "data", "outputs")


@dataclass(frozen=True)
class Closure:
    run: str
    seal: str  # the digest of the sealed record: the record object's name
    objects: dict[str, str] = field(default_factory=dict)  # digest -> group, in the project store
    image: ImageParts | None = None  # in the cache store

    def group(self, name: str) -> list[str]:
        return sorted(d for d, g in self.objects.items() if g == name)


def of_record(record: Mapping[str, Any], seal: str, store: Store) -> Closure:
    """The objects ``record`` references (reading its patch, snapshot and outputs manifests from ``store``)."""
    objects: dict[str, str] = {}

    def add(digest: object, group: str = "run") -> None:
        if isinstance(digest, str) and is_digest(digest):
            objects.setdefault(digest, group)

    add(seal)
    code = record.get("code") or {}
    add(code.get("archive"))
    add(code.get("diff"))
    patch = code.get("patch")
    if isinstance(patch, str) and is_digest(patch):
        add(patch)
        for entry in (store.read_json(patch).get("files") or {}).values():
            add(entry.get("sha256"))
    add((record.get("environment") or {}).get("lock_object"))
    add((record.get("runtime") or {}).get("params_helper"))
    snapshot = (record.get("data") or {}).get("snapshot")
    if isinstance(snapshot, str) and is_digest(snapshot):
        add(snapshot)
        for e in load_snapshot(store, snapshot).entries:
            if e.kind == "file":
                objects[e.sha256 or ""] = "data"
    outputs = record.get("outputs") or {}
    manifest = outputs.get("manifest")
    if isinstance(manifest, str) and is_digest(manifest):
        add(manifest)
    for sha in all_files(outputs, store).values():  # from the manifest when the record lists only the first
        add(sha, "outputs")
    image = None
    env = record.get("environment") or {}
    if env.get("image_id") and env.get("manifest_digest"):
        image = Environment.from_dict(env).parts
    objects.pop("", None)
    return Closure(str(record["id"]), seal, objects, image)


def sizes(store: Store, digests: list[str]) -> dict[str, int]:
    """Each object's size; NotFound naming the first one the store lacks."""
    found = {}
    for digest in digests:
        try:
            found[digest] = os.stat(store.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(
                f"object {digest} of this run is not in the store at {store.root}",
                "`harness verify --run RUN` names what is missing and what uses it",
            ) from None
    return found
