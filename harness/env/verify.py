"""`harness env verify`: rebuild a project's environment from nothing and compare it with what was recorded.

The rebuild runs in a clean state: a fresh temporary cache (no base record, no wheel cache, no stored layers), so
the base is bootstrapped with mmdebstrap again and every wheel is downloaded again. The image is loaded under its
own tag (``harness-verify:<key>``) so a differing rebuild never moves the tag that runs use; tags the rebuild moved
are put back and the temporary cache is removed afterwards.

A digest-pinned base (pinnedbase.py) is not built but defined by its digest, so it is fetched, not rebuilt: pulled
again by digest (docker checks the registry's manifest against the digest, and that manifest fixes the config and
every diff id) and archived into the clean cache as on first use. When the registry cannot serve it, the stored
copy stands in, each of its objects re-hashed against the digests recorded when it was pulled; the report then
says that the base was checked, not fetched again. An altered stored object with no registry to fetch a good copy
from leaves nothing to rebuild on, and is an error that names it. The library layer is rebuilt on the base either way.

A Dockerfile base (dockerfilebase.py) is archived, not rebuildable bit for bit: ``docker build`` stamps times, so
building it again would prove nothing. Its stored config and layers are re-hashed against the digests recorded
when it was built (the report says so), and the library layer is rebuilt on them.

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

from harness.digests import CHUNK
from harness.docker.interface import Engine
from harness.env.baselayer import BASE_REPOSITORY, base_key
from harness.env.build import build_environment
from harness.env.catalog import ProjectEnvironment, project_environment
from harness.env.dockerfilebase import NOT_REBUILDABLE
from harness.env.environment import Environment, Progress, check_lock_matches, environment_key, read_record
from harness.env.pinnedbase import (
    PinnedBase,
    archive_again,
    read_archived,
    record_path,
    resolved_recipe,
    write_archived,
)
from harness.env.recipe import Recipe
from harness.errors import EnvironmentBuildError, HarnessError, NotFound
from harness.paths import Layout
from harness.storage.store import Store

VERIFY_REPOSITORY = "harness-verify"
MAX_FILES = 10


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
class BaseCheck:
    """Where the rebuild's base came from, and so what a match proves about it."""

    kind: str  # "recipe": bootstrapped by mmdebstrap | "pinned": a registry image | "dockerfile": archived build
    source: str  # "mmdebstrap" | "registry": pulled again | "cache": the stored copy, re-hashed, not re-fetched
    detail: str  # for people: what was verified and how
    repair: str  # what to do about an altered stored base layer

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "source": self.source, "detail": self.detail}


@dataclass(frozen=True)
class VerifyReport:
    key: str
    recorded: dict[str, str]  # image_id, manifest_digest
    rebuilt: dict[str, str]
    base: BaseCheck
    layers: tuple[LayerCheck, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.recorded == self.rebuilt and all(layer.ok for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "key": self.key,
            "base": self.base.to_dict(),
            "recorded": dict(self.recorded),
            "rebuilt": dict(self.rebuilt),
            "layers": [layer.to_dict() for layer in self.layers],
        }


def verify_project(project_dir: Path, engine: Engine, progress: Progress | None = None) -> VerifyReport:
    """Rebuild the project's recorded environment in a clean temporary cache and compare; never raises on a
    mismatch (the report says what differs), only when the rebuild itself cannot be done."""
    say = progress or (lambda _message: None)
    project = project_environment(project_dir)
    layout = project.layout
    recipe, pinned = _recorded_base(project)
    key = environment_key(recipe, project.lock)
    recorded = read_record(layout.images / f"{key}.json")
    if recorded is None:
        raise NotFound(
            f"no environment is recorded for this project's recipe and lock (key {key[:16]}) in {layout.images}",
            "build it first with `harness env build`, then verify it",
        )
    base_ref = pinned.image_ref if pinned else f"{BASE_REPOSITORY}:{base_key(recipe)[:16]}"
    base_before = _image_id(engine, base_ref)
    ref = f"{VERIFY_REPOSITORY}:{key[:16]}"
    tmp_root = layout.cache / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="verify-") as tmp:
        clean = Layout(project=layout.project, store=layout.store, cache=Path(tmp))
        recorded_store, clean_store = Store(layout.cache_objects), Store(clean.cache_objects)
        try:
            if pinned is None:
                base = _recipe_check(recipe, layout, key)
            elif recipe.dockerfile is not None:
                base = _stage_dockerfile(pinned, key, layout, clean, say)
            else:
                base = _stage_pinned(str(recipe.pinned), pinned, key, layout, clean, engine, say)
            what = "base, wheels and layers" if pinned is None else "wheels and the library layer"
            say(f"rebuilding environment {key[:16]} in a clean cache ({tmp}): {what} from scratch")
            rebuilt = build_environment(recipe, project.lock, key, ref, clean, engine, clean_store, say)
            say("comparing digests and layers with the record")
            return compare(recorded, rebuilt, recorded_store, clean_store, base)
        finally:
            engine.remove_image(ref)  # only the tag when the rebuild is the recorded image
            _restore_tag(engine, base_ref, base_before)


def _recorded_base(project: ProjectEnvironment) -> tuple[Recipe, PinnedBase | None]:
    """The project's recipe; for a pinned or Dockerfile base, resolved from its archive record (nothing is pulled
    or built here)."""
    if not project.recipe.archived:
        return project.recipe, None
    name = project.recipe.name
    pinned = read_archived(project.recipe, project.layout)
    if pinned is None:
        what = "pulls" if project.recipe.pinned is not None else "builds"
        raise NotFound(
            f"base {name} is not archived in {project.layout.images} "
            f"(no {record_path(project.recipe, project.layout).name}), so no environment on it is recorded there",
            f"build it first with `harness env build` (it {what} and archives the base), then verify it",
        )
    recipe = resolved_recipe(project.recipe, pinned)
    check_lock_matches(recipe, project.lock)
    return recipe, pinned


def _recipe_check(recipe: Recipe, layout: Layout, key: str) -> BaseCheck:
    records = f"{layout.images / f'base-{base_key(recipe)}.json'} and {layout.images / f'{key}.json'}"
    return BaseCheck(
        kind="recipe",
        source="mmdebstrap",
        detail=f"recipe {recipe.name!r} bootstrapped again with mmdebstrap in a clean cache",
        repair=f"remove {records}; the next `harness env build` bootstraps the base again and builds on it",
    )


def _stage_pinned(
    ref: str, pinned: PinnedBase, key: str, layout: Layout, clean: Layout, engine: Engine, say: Progress
) -> BaseCheck:
    """Put the pinned base into the clean cache: pulled again if its registry serves it, else the stored copy."""
    repair = (
        f"remove {layout.images / f'{pinned.archive_name}.json'}; the next `harness env build` archives the base "
        "again (from the engine or its registry) and replaces the altered object"
    )
    say(f"pulling base image {ref} again from its registry")
    try:
        engine.pull_image(ref)
    except HarnessError as exc:
        say(f"{exc.message}; checking the stored base against its recorded digests instead (not fetching it again)")
        detail = _stand_in(ref, pinned, key, layout, clean, exc.message, repair)
        source = "cache"
    else:
        archive_again(ref, clean, engine, Store(clean.cache_objects), say)
        detail = (
            f"{ref} pulled again by digest (docker checked the registry's manifest against the digest) and archived "
            "in a clean cache; the library layer was rebuilt on the pulled layers"
        )
        source = "registry"
    say(f"base: {detail}")
    return BaseCheck("pinned", source, detail, repair)


def _stage_dockerfile(base: PinnedBase, key: str, layout: Layout, clean: Layout, say: Progress) -> BaseCheck:
    """Put the archived build of a Dockerfile into the clean cache, each object re-hashed: there is nothing to
    fetch it again from, and building it again would give another image."""
    record = layout.images / f"{base.archive_name}.json"
    repair = (
        f"restore {record} and the objects it names from a backup of the cache ({NOT_REBUILDABLE}); or accept a "
        f"new base: remove {record}, and the next `harness env build` or `harness run` builds {base.ref} anew"
    )
    bad = _copy_checked(base, Store(layout.cache_objects), Store(clean.cache_objects))
    if bad:
        raise EnvironmentBuildError(
            f"cannot verify environment {key[:16]}: its base was built from {base.ref} and is archived, not "
            f"rebuildable bit for bit, and the archive cannot stand in for it: {'; '.join(bad)}. Nothing was "
            "rebuilt or changed",
            hint=f"to repair the cache, {repair}",
        )
    write_archived(base, clean)
    built = (base.build or {}).get("image_id", base.parts.image_id)
    detail = (
        f"{base.ref}: archived, not rebuildable bit for bit (docker build stamps times): the image built from it "
        f"({built}, key {base.digest.removeprefix('sha256:')[:16]}) is kept in the cache; its stored config and "
        f"{len(base.layers)} layers were re-hashed against the diff ids recorded when it was built, and the library "
        "layer was rebuilt on them"
    )
    say(f"base: {detail}")
    return BaseCheck("dockerfile", "cache", detail, repair)


def _stand_in(ref: str, pinned: PinnedBase, key: str, layout: Layout, clean: Layout, reason: str, repair: str) -> str:
    """The stored copy of the base, each object re-hashed, into the clean cache; what that checked, in words."""
    bad = _copy_checked(pinned, Store(layout.cache_objects), Store(clean.cache_objects))
    if bad:
        raise EnvironmentBuildError(
            f"cannot verify environment {key[:16]}: its base {ref} could not be pulled again ({reason}), and the "
            f"stored copy cannot stand in for it: {'; '.join(bad)}. Nothing was rebuilt or changed",
            hint="make the registry reachable and verify again: the stored layers are then compared with a fresh "
            f"pull and the altered files named. To repair the cache, {repair}",
        )
    write_archived(pinned, clean)
    return (
        f"the registry could not serve {ref} ({reason}), so the base was not fetched again: its stored config and "
        "layers were checked against the digests recorded when it was first pulled and copied into a clean cache, "
        f"and the library layer was rebuilt on them; that the registry still serves {pinned.digest} as this "
        "image was not checked"
    )


def _copy_checked(pinned: PinnedBase, source: Store, target: Store) -> list[str]:
    """Copy the stored objects of ``pinned`` into ``target``, each re-hashed on the way; names the bad ones."""
    named = [("config", pinned.parts.config_digest), ("manifest", pinned.parts.manifest_digest)]
    named += [(f"layer {i} (diff id sha256:{x.digest})", x.digest) for i, x in enumerate(pinned.layers)]
    bad = []
    for name, digest in named:
        path = source.path(digest)
        try:
            with open(path, "rb") as fh:
                got, _size = target.put_stream(fh)
        except FileNotFoundError:
            bad.append(f"{name} is missing from the cache ({path})")
            continue
        if got != digest:
            bad.append(f"{name} no longer hashes to its digest: it was altered in the cache ({path})")
    return bad


def compare(
    recorded: Environment, rebuilt: Environment, recorded_store: Store, rebuilt_store: Store, base: BaseCheck
) -> VerifyReport:
    checks = []
    for i in range(len(recorded.layers)):
        # Every layer below the last is the base's: one for a recipe, the image's own for a pinned base.
        role = "libraries" if i == len(recorded.layers) - 1 else "base"
        want = recorded.layers[i]
        got = rebuilt.layers[i] if i < len(rebuilt.layers) else None
        digest = want.removeprefix("sha256:")
        stored = "missing" if not recorded_store.has(digest) else "ok" if recorded_store.verify(digest) else "corrupt"
        differences: tuple[FileDifference, ...] = ()
        notes = []
        if (got != want or stored != "ok") and got is not None:
            if stored == "missing":
                notes.append("the recorded layer is not in the cache, so its files cannot be compared")
            else:
                try:
                    differences = diff_layers(recorded_store.path(digest), rebuilt_store.path(got.split(":")[-1]))
                except tarfile.TarError as exc:
                    notes.append(f"the recorded layer is not a readable tar ({exc})")
                if not differences and not notes:
                    notes.append("same files, names, modes and contents: the tars differ only in their encoding")
        if stored != "ok" and role == "base":
            notes.append(f"to repair: {base.repair}")
        checks.append(LayerCheck(i, role, want, got, stored, differences, "; ".join(notes)))
    return VerifyReport(
        key=recorded.key,
        recorded={"image_id": recorded.image_id, "manifest_digest": recorded.manifest_digest},
        rebuilt={"image_id": rebuilt.image_id, "manifest_digest": rebuilt.manifest_digest},
        base=base,
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
