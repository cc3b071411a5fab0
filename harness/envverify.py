"""`harness env verify`: rebuild a project's environment from nothing and compare it with what was recorded.

The rebuild runs in a clean state: a fresh temporary cache (no base record, no wheel cache, no stored layers), so
the base is bootstrapped with mmdebstrap again and every wheel is downloaded again. The image is loaded under its
own tag (``harness-verify:<key>``) so a differing rebuild never moves the tag that runs use; tags the rebuild moved
are put back and the temporary cache is removed afterwards.

Compared: the config digest (image id), the manifest digest, and each layer's diff id; and each recorded layer's
stored object is re-hashed, so a layer altered in the cache is caught even when the rebuild matches its record.
For a layer that differs, the two tars are compared member by member (name, type, size, mode, link target,
sha256 of the content) and the first differing files are named.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .digests import CHUNK
from .engine import Engine
from .envcatalog import project_environment
from .errors import NotFound
from .images import Environment, Progress, read_record
from .paths import Layout
from .store import Store

VERIFY_REPOSITORY = "harness-verify"
MAX_FILES = 10
ROLES = ("base", "libraries")


@dataclass(frozen=True)
class FileDifference:
    path: str
    recorded: dict[str, Any] | None  # None: only in the rebuilt layer
    rebuilt: dict[str, Any] | None  # None: only in the recorded layer

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "recorded": self.recorded, "rebuilt": self.rebuilt}

    def describe(self) -> str:
        if self.recorded is None:
            return f"{self.path}: only in the rebuild"
        if self.rebuilt is None:
            return f"{self.path}: only in the recorded layer"
        changed = [k for k in self.recorded if self.recorded[k] != self.rebuilt.get(k)]
        parts = [f"{k} {_short(self.recorded[k])} -> {_short(self.rebuilt.get(k))}" for k in changed]
        return f"{self.path}: {', '.join(parts)}"


@dataclass(frozen=True)
class LayerCheck:
    index: int
    role: str
    recorded: str  # diff id
    rebuilt: str | None
    stored: str  # "ok" | "missing" | "corrupt": the recorded layer's object in the cache
    differences: tuple[FileDifference, ...] = ()
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.recorded == self.rebuilt and self.stored == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "role": self.role,
            "recorded": self.recorded,
            "rebuilt": self.rebuilt,
            "stored": self.stored,
            "ok": self.ok,
            "differences": [d.to_dict() for d in self.differences],
            "note": self.note,
        }


@dataclass(frozen=True)
class VerifyReport:
    key: str
    recorded: dict[str, str]  # image_id, manifest_digest
    rebuilt: dict[str, str]
    layers: tuple[LayerCheck, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.recorded == self.rebuilt and all(layer.ok for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "key": self.key,
            "recorded": dict(self.recorded),
            "rebuilt": dict(self.rebuilt),
            "layers": [layer.to_dict() for layer in self.layers],
        }


def verify_project(project_dir: Path, engine: Engine, progress: Progress | None = None) -> VerifyReport:
    """Rebuild the project's recorded environment in a clean temporary cache and compare; never raises on a
    mismatch (the report says what differs), only when the rebuild itself cannot be done."""
    from .envbuild import BASE_REPOSITORY, base_key, build_environment

    say = progress or (lambda _message: None)
    project = project_environment(project_dir)
    layout, key = project.layout, project.key
    recorded = read_record(project.record_path)
    if recorded is None:
        raise NotFound(
            f"no environment is recorded for this project's recipe and lock (key {key[:16]}) in {layout.images}",
            "build it first with `harness env build`, then verify it",
        )
    base_ref = f"{BASE_REPOSITORY}:{base_key(project.recipe)[:16]}"
    base_before = _image_id(engine, base_ref)
    ref = f"{VERIFY_REPOSITORY}:{key[:16]}"
    tmp_root = layout.cache / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="verify-") as tmp:
        clean = Layout(project=layout.project, store=layout.store, cache=Path(tmp))
        clean_store = Store(clean.cache_objects)
        say(f"rebuilding environment {key[:16]} in a clean cache ({tmp}): base, wheels and layers from scratch")
        try:
            rebuilt = build_environment(project.recipe, project.lock, key, ref, clean, engine, clean_store, say)
            say("comparing digests and layers with the record")
            return compare(recorded, rebuilt, Store(layout.cache_objects), clean_store)
        finally:
            engine.remove_image(ref)  # only the tag when the rebuild is the recorded image
            _restore_tag(engine, base_ref, base_before)


def compare(recorded: Environment, rebuilt: Environment, recorded_store: Store, rebuilt_store: Store) -> VerifyReport:
    checks = []
    count = max(len(recorded.layers), len(rebuilt.layers))
    for i in range(len(recorded.layers)):
        role = ROLES[i] if count == len(ROLES) else f"layer {i}"
        want = recorded.layers[i]
        got = rebuilt.layers[i] if i < len(rebuilt.layers) else None
        digest = want.removeprefix("sha256:")
        stored = "missing" if not recorded_store.has(digest) else "ok" if recorded_store.verify(digest) else "corrupt"
        differences: tuple[FileDifference, ...] = ()
        note = ""
        if (got != want or stored != "ok") and got is not None:
            if stored == "missing":
                note = "the recorded layer is not in the cache, so its files cannot be compared"
            else:
                try:
                    differences = diff_layers(recorded_store.path(digest), rebuilt_store.path(got.split(":")[-1]))
                except tarfile.TarError as exc:
                    note = f"the recorded layer is not a readable tar ({exc})"
                if not differences and not note:
                    note = "same files, names, modes and contents: the tars differ only in their encoding"
        checks.append(LayerCheck(i, role, want, got, stored, differences, note))
    return VerifyReport(
        key=recorded.key,
        recorded={"image_id": recorded.image_id, "manifest_digest": recorded.manifest_digest},
        rebuilt={"image_id": rebuilt.image_id, "manifest_digest": rebuilt.manifest_digest},
        layers=tuple(checks),
    )


def diff_layers(recorded: Path, rebuilt: Path, limit: int = MAX_FILES) -> tuple[FileDifference, ...]:
    """The first ``limit`` members (by path) that differ between two layer tars."""
    old, new = _members(recorded), _members(rebuilt)
    found = []
    for name in sorted(old.keys() | new.keys(), key=lambda n: tuple(n.split("/"))):
        if old.get(name) != new.get(name):
            found.append(FileDifference(name, old.get(name), new.get(name)))
            if len(found) >= limit:
                break
    return tuple(found)


def _members(path: Path) -> dict[str, dict[str, Any]]:
    members: dict[str, dict[str, Any]] = {}
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            name = member.name.lstrip("./").rstrip("/")
            facts: dict[str, Any] = {"type": _type(member), "size": member.size, "mode": oct(member.mode & 0o7777)}
            if member.issym() or member.islnk():
                facts["link"] = member.linkname
            if member.isreg():
                hasher = hashlib.sha256()
                source = tar.extractfile(member)
                assert source is not None
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                facts["sha256"] = hasher.hexdigest()
            members[name] = facts
    return members


def _type(member: tarfile.TarInfo) -> str:
    for kind, test in (("file", member.isreg), ("dir", member.isdir), ("symlink", member.issym)):
        if test():
            return kind
    return "hardlink" if member.islnk() else "other"


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text


def _image_id(engine: Engine, ref: str) -> str | None:
    info = engine.inspect_image(ref)
    return str(info["Id"]) if info else None


def _restore_tag(engine: Engine, ref: str, image_id: str | None) -> None:
    """Point ``ref`` back at ``image_id`` if the rebuild moved it (a base that did not rebuild the same)."""
    now = _image_id(engine, ref)
    if image_id is None or now == image_id or engine.inspect_image(image_id) is None:
        return
    repository, tag = ref.rsplit(":", 1)
    engine.tag_image(image_id, repository, tag)
    if now is not None:
        engine.remove_image(now)  # the differing base the rebuild loaded; nothing else uses it
