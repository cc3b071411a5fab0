"""The base layer: a recipe's Debian root filesystem, bootstrapped by mmdebstrap, kept in the cache store and
loaded as the ``harness-base`` image that every environment of the recipe builds on.

The layer must be the same bytes whoever builds it. mmdebstrap's tar is reproducible for a fixed
``SOURCE_DATE_EPOCH``, with two things pinned here rather than left to the machine:

- the mode: ``root`` when harness runs as root, ``unshare`` (user namespaces, a subuid range) otherwise, never the
  ``fakechroot``/``proot`` fallbacks that mmdebstrap's ``auto`` mode may pick and that do not reproduce;
- byte-compiled files: ``py_compile`` writes a hash-checked ``.pyc`` when ``SOURCE_DATE_EPOCH`` reaches the
  package's maintainer script and a timestamp one when it does not, which was seen for a non-root build (five
  ``debpython`` files). A customize hook, run by the suite's own python3 in the new root, rewrites any
  timestamp ``.pyc`` under /usr as the hash-checked one ``py_compile`` would have written (same code bytes, the
  header holds the source's hash instead of its mtime), so a build where the variable arrived is left unchanged.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.digests import sha256_json
from harness.docker.interface import Engine
from harness.env import layers, oci
from harness.env.environment import Progress
from harness.env.imageload import load_image
from harness.env.recipe import Recipe
from harness.errors import EnvironmentBuildError
from harness.files import file_lock, write_json_atomic
from harness.paths import Layout
from harness.storage.store import Store

BASE_FORMAT = "harness.base/2"  # 2: mode pinned, timestamp .pyc files normalized (the same layer as root's)
BASE_REPOSITORY = "harness-base"
BASE_ENV = {"PATH": oci.DEFAULT_PATH, "LANG": "C.UTF-8"}
TAIL_LINES = 25

# Run by the new root's python3 (its own magic number and source hash): each timestamp-header .pyc under /usr whose
# source is beside its __pycache__ gets the checked-hash header py_compile writes under SOURCE_DATE_EPOCH.
_NORMALIZE_PYC = """import os, importlib.util as u
m = u.MAGIC_NUMBER
for d, _, fs in os.walk('/usr'):
    for f in fs if d.endswith('/__pycache__') else ():
        p = os.path.join(d, f)
        s = os.path.join(os.path.dirname(d), f.split('.')[0] + '.py')
        if f.endswith('.pyc') and not os.path.islink(p) and os.path.isfile(s):
            with open(p, 'r+b') as pyc:
                if pyc.read(8) == m + bytes(4):
                    pyc.seek(4)
                    pyc.write(b'\\3\\0\\0\\0' + u.source_hash(open(s, 'rb').read()))
"""
_PYC_SCRIPT = shlex.quote(_NORMALIZE_PYC)


@dataclass(frozen=True)
class Base:
    key: str
    layer: oci.LayerRef
    parts: oci.ImageParts
    image_ref: str
    inputs: dict[str, Any]
    tool: str  # the mmdebstrap version that made it, for the record

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": BASE_FORMAT,
            "key": self.key,
            "inputs": self.inputs,
            "layer": {"digest": self.layer.digest, "size": self.layer.size, "created_by": self.layer.created_by},
            "config": self.parts.config_digest,
            "manifest": self.parts.manifest_digest,
            "image_ref": self.image_ref,
            "tool": self.tool,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Base:
        layer = oci.LayerRef(str(data["layer"]["digest"]), int(data["layer"]["size"]), str(data["layer"]["created_by"]))
        parts = oci.ImageParts(str(data["config"]), str(data["manifest"]), (layer.digest,))
        return cls(str(data["key"]), layer, parts, str(data["image_ref"]), dict(data["inputs"]), str(data["tool"]))


def base_key(recipe: Recipe) -> str:
    return sha256_json({"format": BASE_FORMAT, **recipe.base_inputs()})


def ensure_base(recipe: Recipe, layout: Layout, engine: Engine, store: Store, say: Progress) -> Base:
    """The base image for the recipe, in the engine: reused, loaded from the store, or bootstrapped."""
    key = base_key(recipe)
    record = layout.images / f"base-{key}.json"
    with file_lock(layout.locks / f"base-{key}.lock", say):
        base = _read_base(record)
        if base is not None and not oci.missing_objects(store, base.parts):
            if engine.inspect_image(base.parts.image_id) is None:
                say(f"loading base image {base.image_ref} from the cache")
                load_image(store, base.parts, base.image_ref, layout, engine, recipe.source_date_epoch)
            return base
        say(f"building base layer {recipe.name!r} ({recipe.suite}) with mmdebstrap (about 20 s)")
        digest, size = _mmdebstrap(recipe, layout, store)
        # The command as the layer's history shows it: the same for every builder (the mode is not in it).
        display = f"SOURCE_DATE_EPOCH={recipe.source_date_epoch} {shlex.join(mmdebstrap_command(recipe, 'rootfs.tar'))}"
        layer = oci.LayerRef(digest, size, display)
        labels = {"org.harness.base": key}
        config = oci.image_config(
            [layer],
            source_date_epoch=recipe.source_date_epoch,
            env=BASE_ENV,
            labels=labels,
            architecture=recipe.architecture,
        )
        parts = oci.store_image(store, config, [layer])
        base = Base(key, layer, parts, f"{BASE_REPOSITORY}:{key[:16]}", recipe.base_inputs(), _mmdebstrap_version())
        say(f"loading base image {base.image_ref}")
        load_image(store, parts, base.image_ref, layout, engine, recipe.source_date_epoch)
        write_json_atomic(record, base.to_dict())
        return base


def _read_base(path: Path) -> Base | None:
    try:
        data = json.loads(path.read_bytes())
        return Base.from_dict(data) if data.get("format") == BASE_FORMAT else None
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # damaged: rebuilt from the recipe


def mmdebstrap_command(recipe: Recipe, output: str) -> list[str]:
    return [
        "mmdebstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        f"--architectures={recipe.architecture}",
        "--format=tar",
        # mmdebstrap copies these from the host; they would make the layer differ from machine to machine.
        '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
        f'--customize-hook=if [ -x "$1/usr/bin/python3" ]; then chroot "$1" python3 -I -c {_PYC_SCRIPT}; fi',
        recipe.suite,
        output,
        *([recipe.mirror] if recipe.mirror else []),
    ]


def mmdebstrap_mode() -> str:
    """``root`` for root, else ``unshare``: pinned, so that mmdebstrap's ``auto`` cannot fall back to a mode whose
    output differs (fakechroot, proot)."""
    return "root" if os.geteuid() == 0 else "unshare"


def _primary_group_note() -> str:
    """newuidmap refuses a process whose group is not the user's own, as under `sg docker` or `newgrp docker`."""
    own = pwd.getpwuid(os.getuid()).pw_gid
    if os.getegid() == own:
        return ""
    return (
        f"; your group is now {os.getegid()}, not your own ({own}), as under `sg` or `newgrp`, and newuidmap refuses "
        "that: run harness from a fresh login (or `sudo -u $USER harness ...`)"
    )


def _mmdebstrap(recipe: Recipe, layout: Layout, store: Store) -> tuple[str, int]:
    tmp_root = layout.cache / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=tmp_root, prefix="base-"))
    try:
        out = tmp / "rootfs.tar"
        command = mmdebstrap_command(recipe, str(out))
        argv = [command[0], f"--mode={mmdebstrap_mode()}", *command[1:]]
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(recipe.source_date_epoch)}
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise EnvironmentBuildError(
                f"mmdebstrap is not installed; harness needs it to build the base image {recipe.name!r}",
                hint="apt-get install mmdebstrap (Debian/Ubuntu), then run again",
            ) from None
        if proc.returncode != 0:
            unshare = (
                ""
                if mmdebstrap_mode() == "root"
                else (
                    "; as a user other than root harness runs mmdebstrap in unshare mode, which needs user namespaces "
                    "(sysctl kernel.unprivileged_userns_clone=1 where the kernel has it) and a range for you in "
                    "/etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)"
                    + _primary_group_note()
                )
            )
            raise EnvironmentBuildError(
                f"mmdebstrap failed (exit {proc.returncode}) building base {recipe.name!r}:\n{_tail(proc.stderr)}",
                hint="check the suite, packages and mirror in the recipe and that the Debian mirror is reachable"
                + unshare,
            )
        # Adopted as it is: mmdebstrap's tar is already byte-for-byte reproducible for a fixed SOURCE_DATE_EPOCH
        # (checked twice on this host), and normalizing owners to root would break files such as /etc/shadow
        # (group shadow) that a system image needs.
        return layers.adopt_file(out, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mmdebstrap_version() -> str:
    try:
        proc = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])
