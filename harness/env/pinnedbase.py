"""Archived bases: an image made once, outside harness's control, kept in the cache store and loaded back from it.

Two kinds, archived the same way:

    base = "host/repo@sha256:<manifest digest>"                     (source "registry")
      first use:  docker pull by digest
    base = "Dockerfile.base"                                         (source "dockerfile", dockerfilebase.py)
      first use per key (the Dockerfile's digest and its context files' digests): docker build

    then:   docker save -> each layer (uncompressed tar == its diff id) and the image's own config bytes become
            objects in the cache store; python3 is asked once, with the network off, for its version and glibc;
            all of it goes into images/pinned-<digest>.json or images/dockerfile-<key>.json
    later:  that record and the stored objects are enough: no registry, no build

The config bytes are kept exactly as the engine gave them, so loading the stored objects gives the image id the
pull or the build gave. The library layer is then built on it as on a recipe base (build.py), and the environment
key holds the digests and the diff ids in place of the recipe. A pulled image can be fetched again by its digest;
a built one cannot be made again bit for bit (``docker build`` stamps times), so its archive is the only copy.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from harness.digests import canonical_json
from harness.docker.interface import ContainerSpec, Engine
from harness.env import oci
from harness.env.dockerfilebase import build_dockerfile
from harness.env.environment import VENV, Progress
from harness.env.imageload import load_image
from harness.env.recipe import Recipe, pinned_digest
from harness.errors import EnvironmentBuildError, HarnessError
from harness.files import file_lock, write_json_atomic
from harness.paths import Layout
from harness.storage.store import Store

PINNED_FORMAT = "harness.pinned/1"
BASE_REPOSITORY = "harness-base"
REGISTRY, DOCKERFILE = "registry", "dockerfile"
PYTHON = "/usr/bin/python3"
_ARCH_TO_WHEEL = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x"}
# Printed by the image's own python3: its version and the glibc the manylinux tag is derived from.
_PROBE = "import json, os, platform; print(json.dumps([platform.python_version(), os.confstr('CS_GNU_LIBC_VERSION')]))"


@dataclass(frozen=True)
class PinnedBase:
    ref: str  # registry: as configured, where it was pulled from; dockerfile: the Dockerfile's path in the project
    digest: str  # registry: "sha256:<hex>" of the manifest, from the reference; dockerfile: "sha256:" + its key
    parts: oci.ImageParts  # the image's own config, our manifest, its layers
    layers: tuple[oci.LayerRef, ...]
    env: tuple[str, ...]  # the image config's Env ("K=V"), carried into the environment image
    entrypoint: tuple[str, ...] | None
    python: str  # major.minor
    python_full: str
    platform: str  # manylinux_2_XX_<arch>
    architecture: str
    source_date_epoch: int  # the image's own "created", so nothing here depends on the clock
    source: str = REGISTRY  # REGISTRY | DOCKERFILE
    build: dict[str, Any] | None = None  # a Dockerfile base: its digests and context files, the build's image id

    @property
    def image_ref(self) -> str:
        prefix = "pinned" if self.source == REGISTRY else self.source
        return f"{BASE_REPOSITORY}:{prefix}-{self.digest.removeprefix('sha256:')[:16]}"

    @property
    def archive_name(self) -> str:
        return _archive_name(self.source, self.digest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PINNED_FORMAT,
            "source": self.source,
            "ref": self.ref,
            "digest": self.digest,
            "config": self.parts.config_digest,
            "manifest": self.parts.manifest_digest,
            "layers": [{"digest": x.digest, "size": x.size, "created_by": x.created_by} for x in self.layers],
            "env": list(self.env),
            "entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "python": self.python,
            "python_full": self.python_full,
            "platform": self.platform,
            "architecture": self.architecture,
            "source_date_epoch": self.source_date_epoch,
            **({} if self.build is None else {"build": self.build}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PinnedBase:
        layers = tuple(oci.LayerRef(str(x["digest"]), int(x["size"]), str(x["created_by"])) for x in data["layers"])
        entrypoint = data.get("entrypoint")
        return cls(
            ref=str(data["ref"]),
            digest=str(data["digest"]),
            parts=oci.ImageParts(str(data["config"]), str(data["manifest"]), tuple(x.digest for x in layers)),
            layers=layers,
            env=tuple(str(e) for e in data["env"]),
            entrypoint=None if entrypoint is None else tuple(str(e) for e in entrypoint),
            python=str(data["python"]),
            python_full=str(data["python_full"]),
            platform=str(data["platform"]),
            architecture=str(data["architecture"]),
            source_date_epoch=int(data["source_date_epoch"]),
            source=str(data.get("source", REGISTRY)),  # records from before Dockerfile bases are all pulled
            build=dict(data["build"]) if data.get("build") else None,
        )

    def image_env(self) -> dict[str, str]:
        """The base's Env with the venv first on PATH: what the environment image's config sets."""
        env = dict(e.split("=", 1) for e in self.env if "=" in e)
        path = env.pop("PATH", oci.DEFAULT_PATH)
        return {"PATH": f"{VENV}/bin:{path}", **env, "VIRTUAL_ENV": VENV}

    def record_fields(self, recipe: Recipe) -> dict[str, Any]:
        """What the environment record (and so the run record) says about the base."""
        return {**recipe.to_dict(), "digest": self.digest, "image_id": self.parts.image_id}


def resolve(recipe: Recipe, layout: Layout, engine: Engine, say: Progress) -> Recipe:
    """The recipe with what the image says about itself; pulls or builds and archives the image on first use."""
    base = ensure_archived(recipe, layout, engine, Store(layout.cache_objects), say)
    return resolved_recipe(recipe, base)


def resolve_archived(recipe: Recipe, layout: Layout) -> Recipe | None:
    """The resolved recipe from the archive alone (no engine, no registry); None if the base is not archived."""
    base = _read(record_path(recipe, layout), Store(layout.cache_objects))
    return None if base is None else resolved_recipe(recipe, base)


def resolved_recipe(recipe: Recipe, base: PinnedBase) -> Recipe:
    return dataclasses.replace(
        recipe,
        python=base.python,
        platform=base.platform,
        architecture=base.architecture,
        source_date_epoch=base.source_date_epoch,
        pinned_layers=tuple(x.diff_id for x in base.layers),
    )


def ensure_loaded(recipe: Recipe, layout: Layout, engine: Engine, store: Store, say: Progress) -> PinnedBase:
    """The archived base, present in the engine (loaded back from the store if it was removed)."""
    base = ensure_archived(recipe, layout, engine, store, say)
    if engine.inspect_image(base.parts.image_id) is None:
        say(f"loading base image {base.ref} from the cache")
        load_image(store, base.parts, base.image_ref, layout, engine, base.source_date_epoch)
    return base


def ensure_archived(recipe: Recipe, layout: Layout, engine: Engine, store: Store, say: Progress) -> PinnedBase:
    path = record_path(recipe, layout)
    base = _read(path, store)
    if base is not None:
        return base
    with file_lock(layout.locks / path.with_suffix(".lock").name, say):
        base = _read(path, store)  # another process may have archived it while we waited
        if base is None:
            if recipe.dockerfile is not None:
                base = _archive_built(recipe, layout, engine, store, say)
            else:
                ref = str(recipe.pinned)
                base = _archive(_pull(ref, engine, say), ref, pinned_digest(ref), layout, engine, store, say)
            write_json_atomic(path, base.to_dict())
        return base


def archive_again(ref: str, layout: Layout, engine: Engine, store: Store, say: Progress) -> PinnedBase:
    """Archive the registry image ``ref`` in ``layout``'s cache as on first use, whatever is archived there
    (`harness env verify` calls it on a clean cache, right after pulling ``ref`` again)."""
    base = _archive(_pull(ref, engine, say), ref, pinned_digest(ref), layout, engine, store, say)
    write_archived(base, layout)
    return base


def record_path(recipe: Recipe, layout: Layout) -> Path:
    if recipe.dockerfile is not None:
        return layout.images / f"{_archive_name(DOCKERFILE, recipe.dockerfile_key)}.json"
    return layout.images / f"{_archive_name(REGISTRY, pinned_digest(str(recipe.pinned)))}.json"


def read_archived(recipe: Recipe, layout: Layout) -> PinnedBase | None:
    """The archive record of the base, as written, its objects not checked; None if absent or unreadable."""
    return _load(record_path(recipe, layout))


def write_archived(base: PinnedBase, layout: Layout) -> None:
    write_json_atomic(layout.images / f"{base.archive_name}.json", base.to_dict())


def _archive_name(source: str, digest: str) -> str:
    return f"{'pinned' if source == REGISTRY else source}-{digest.removeprefix('sha256:')}"


def _read(path: Path, store: Store) -> PinnedBase | None:
    """The archive record, if every object it names is in the store."""
    base = _load(path)
    if base is None or oci.missing_objects(store, base.parts):
        return None
    return base


def _load(path: Path) -> PinnedBase | None:
    try:
        data = json.loads(path.read_bytes())
        return PinnedBase.from_dict(data) if data.get("format") == PINNED_FORMAT else None
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # damaged: archived again from the engine, the registry or the Dockerfile


def _pull(ref: str, engine: Engine, say: Progress) -> str:
    """The image id of ``ref`` in the engine, pulled by digest if it is not there."""
    if engine.inspect_image(ref) is None:
        say(f"pulling base image {ref} (only this once: it is archived in the cache)")
        try:
            engine.pull_image(ref)
        except HarnessError as exc:
            raise EnvironmentBuildError(
                f"cannot pull the base image {ref}: {exc.message}; nothing was built or kept",
                hint="check that the registry is reachable and the digest exists there (`docker pull REF`), or "
                "`docker load` the image from elsewhere; after one success it is archived in the cache "
                "(HARNESS_CACHE) and never pulled again",
            ) from None
    info = engine.inspect_image(ref)
    if info is None:
        raise EnvironmentBuildError(f"docker pull {ref} reported success, but the engine has no such image")
    return str(info["Id"])


def _archive_built(recipe: Recipe, layout: Layout, engine: Engine, store: Store, say: Progress) -> PinnedBase:
    """Build the Dockerfile (dockerfilebase.py) and archive what it built, with what decided the build."""
    digest = "sha256:" + recipe.dockerfile_key
    tag = f"{BASE_REPOSITORY}:{DOCKERFILE}-{recipe.dockerfile_key[:16]}"
    image_id, build = build_dockerfile(recipe, tag, layout, engine, say)
    base = _archive(image_id, str(recipe.dockerfile), digest, layout, engine, store, say, source=DOCKERFILE)
    return dataclasses.replace(base, build=build)


def _archive(
    image_id: str,
    ref: str,
    digest: str,
    layout: Layout,
    engine: Engine,
    store: Store,
    say: Progress,
    source: str = REGISTRY,
) -> PinnedBase:
    """Archive the image ``image_id`` (pulled as ``ref``, or built from the Dockerfile ``ref``) in the store."""
    say(f"archiving base image {ref} in the cache")
    tmp_dir = layout.cache / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="pinned-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in engine.save_image(image_id):
                fh.write(chunk)
        config_bytes, layers = _split(Path(name), ref, store)
    finally:
        Path(name).unlink(missing_ok=True)
    config = json.loads(config_bytes)
    diff_ids = [str(d) for d in config.get("rootfs", {}).get("diff_ids", [])]
    if diff_ids != [x.diff_id for x in layers]:
        raise EnvironmentBuildError(
            f"docker save of {ref} gave layers that do not match its config's diff ids",
            hint="nothing was recorded; report this with `docker version`",
        )
    config_digest = store.put_bytes(config_bytes)
    # The classic store's id is the config digest. The containerd store's is a manifest's digest: a pull's is the
    # reference's; a build's is a manifest only the engine holds (loaded back, the image has our manifest's id).
    if source == REGISTRY and image_id not in ("sha256:" + config_digest, digest):
        raise EnvironmentBuildError(f"docker save of {ref} gave config {config_digest}, not image {image_id}")
    manifest_digest = store.put_bytes(canonical_json(oci.manifest(config_digest, len(config_bytes), layers)))
    python_full, glibc = _probe(image_id, ref, engine, source)
    architecture = str(config.get("architecture", "amd64"))
    container = config.get("config") or {}
    entrypoint = container.get("Entrypoint")
    base = PinnedBase(
        ref=ref,
        digest=digest,
        parts=oci.ImageParts(config_digest, manifest_digest, tuple(x.digest for x in layers)),
        layers=tuple(layers),
        env=tuple(str(e) for e in container.get("Env") or []),
        entrypoint=None if not entrypoint else tuple(str(e) for e in entrypoint),
        python=".".join(python_full.split(".")[:2]),
        python_full=python_full,
        platform=_platform(glibc, architecture, ref),
        architecture=architecture,
        source_date_epoch=_epoch(str(config.get("created", ""))),
        source=source,
    )
    repository, tag = base.image_ref.rsplit(":", 1)
    engine.tag_image(image_id, repository, tag)  # a name that says where it came from in `docker images`
    return base


def _split(archive: Path, ref: str, store: Store) -> tuple[bytes, list[oci.LayerRef]]:
    """The config bytes and the layers (stored as objects) of a ``docker save`` archive of one image."""
    with tarfile.open(archive, mode="r:") as tar:
        manifest = json.loads(_member(tar, "manifest.json"))
        if len(manifest) != 1:
            raise EnvironmentBuildError(f"docker save of {ref} gave {len(manifest)} images, expected one")
        config_bytes = _member(tar, manifest[0]["Config"])
        layers = []
        for number, path in enumerate(manifest[0]["Layers"], 1):
            extracted = tar.extractfile(path)
            if extracted is None:
                raise EnvironmentBuildError(f"docker save of {ref}: layer {path} is not a file")
            # The classic store saves layers uncompressed (blob == diff id); the containerd store (Docker 29
            # default) saves them as pulled, usually gzip. Stored uncompressed either way, so a layer's object
            # name is its diff id and oci.py can write it back unchanged.
            compressed = extracted.read(2) == b"\x1f\x8b"
            extracted.seek(0)
            source = cast(IO[bytes], gzip.GzipFile(fileobj=extracted, mode="rb")) if compressed else extracted
            layer_digest, size = store.put_stream(source)
            layers.append(oci.LayerRef(layer_digest, size, f"{ref} layer {number}"))
    return config_bytes, layers


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    extracted = tar.extractfile(name)
    if extracted is None:
        raise EnvironmentBuildError(f"docker save archive: {name} is not a file")
    return extracted.read()


def _probe(image_id: str, ref: str, engine: Engine, source: str) -> tuple[str, str]:
    """(python version, "glibc 2.XX") as the image's own python3 reports them, network off."""
    spec = ContainerSpec(
        image=image_id, command=(PYTHON, "-I", "-c", _PROBE), labels={"org.harness.role": "base-probe"}
    )
    output: list[bytes] = []
    try:
        code, _ = engine.run(spec, lambda _stream, chunk: output.append(chunk))
    except HarnessError as exc:
        code, output = -1, [exc.message.encode()]
    text = b"".join(output).decode("utf-8", "replace").strip()
    try:
        version, glibc = json.loads(text.splitlines()[-1])
        if code == 0 and isinstance(version, str) and isinstance(glibc, str):
            return version, glibc
    except (ValueError, IndexError, TypeError):
        pass
    fix = "choose another image" if source == REGISTRY else f"install python3 at {PYTHON} in the Dockerfile"
    raise EnvironmentBuildError(
        f"base image {ref}: {PYTHON} could not report its version and glibc (exit {code}): {text[-500:]}",
        hint=f"a base image must have CPython at {PYTHON} on glibc (Debian, Ubuntu, manylinux images); its layers "
        f"stay in the cache store but no base was recorded: {fix}",
    )


def _platform(glibc: str, architecture: str, ref: str) -> str:
    match = re.fullmatch(r"glibc (\d+)\.(\d+)", glibc.strip())
    arch = _ARCH_TO_WHEEL.get(architecture)
    if match is None or arch is None:
        raise EnvironmentBuildError(
            f"base image {ref}: cannot derive a wheel platform from {glibc!r} on {architecture!r}",
            hint="use a glibc-based image (not Alpine/musl) on amd64, arm64, ppc64le or s390x",
        )
    return f"manylinux_{match[1]}_{match[2]}_{arch}"


def _epoch(created: str) -> int:
    """The image's "created" as Unix time (0 if absent): seconds are enough, and the digest fixes the value."""
    match = re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created)
    if match is None:
        return 0
    moment = datetime.fromisoformat(match[0]).replace(tzinfo=UTC)
    return max(0, int(moment.timestamp()))
