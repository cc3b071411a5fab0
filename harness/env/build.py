"""Building an environment image (the slow path of :func:`harness.images.ensure_environment`).

1. wheels: every locked wheel (and the pinned pip) fetched on the host and hash-checked, before anything else, so a
   bad lock builds nothing;
2. base layer: mmdebstrap's rootfs tar, built once per base key and kept in the cache store;
3. library layer: in a container from the base image, with the network off and the wheels mounted read-only,
   ``python3 -m venv --without-pip /opt/venv``, pip run from its own wheel (``--no-index --no-deps
   --require-hashes --no-compile``), one sequential ``compileall`` (unchecked-hash pycs, PYTHONHASHSEED=0), and a
   freeze check that the venv holds exactly the lock; ``/opt/venv`` is exported and normalized (layers.py);
4. config + manifest (oci.py), ``docker load``, the loaded id checked against sha256(config).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from harness.docker.interface import ContainerSpec, Engine, Mount
from harness.env import layers, oci
from harness.env.baselayer import ensure_base
from harness.env.environment import VENV, Environment, Progress
from harness.env.imageload import load_image
from harness.env.lockfile import PIP_INSTALLER, Lock, LockedPackage, canonical_name
from harness.env.pinnedbase import ensure_loaded
from harness.env.recipe import Recipe
from harness.errors import EnvironmentBuildError
from harness.paths import Layout
from harness.storage.store import Store

FREEZE_MARKER = "HARNESS-FREEZE "
TAIL_LINES = 25

IMAGE_ENV = {"PATH": f"{VENV}/bin:{oci.DEFAULT_PATH}", "VIRTUAL_ENV": VENV, "LANG": "C.UTF-8"}

# Prints the interpreter version and every installed distribution (PEP 503 names) as one marked JSON line.
_FREEZE = (
    "import importlib.metadata as m, json, platform, re, sys;"
    "n = lambda s: re.sub(r'[-_.]+', '-', s).lower();"
    "p = sorted([n(d.metadata['Name']), d.version] for d in m.distributions());"
    f"print({FREEZE_MARKER!r} + json.dumps(dict(python=platform.python_version(), sys_version=sys.version, "
    "packages=p)))"
)
# Runs inside the installer container. Each step says its name first so a failure's log tail shows where it was.
_SCRIPT = f"""set -eu
echo 'harness: creating {VENV}' >&2
python3 -m venv --without-pip {VENV}
# An empty lock (standard library only) installs nothing: pip refuses an empty requirements file.
if [ -s /req/requirements.txt ]; then
echo 'harness: installing wheels' >&2
{VENV}/bin/python /wheels/{PIP_INSTALLER.filename}/pip install --no-index --find-links /wheels \\
  --no-compile --no-deps --require-hashes --no-cache-dir --disable-pip-version-check \\
  --root-user-action=ignore --no-input --progress-bar off -r /req/requirements.txt
fi
echo 'harness: compiling' >&2
{VENV}/bin/python -m compileall -q -j 1 --invalidation-mode unchecked-hash {VENV}
echo 'harness: checking what was installed' >&2
{VENV}/bin/python -I -B -c "$HARNESS_FREEZE"
"""


def build_environment(
    recipe: Recipe, lock: Lock, key: str, ref: str, layout: Layout, engine: Engine, store: Store, say: Progress
) -> Environment:
    say(f"fetching {len(lock.packages)} locked wheels")
    # Imported here, on the build path only: wheels loads packaging's tag machinery, which every run would pay for.
    from harness.env.wheels import fetch_wheels

    wheels = fetch_wheels(lock.packages, layout.wheels, say, python=lock.python, platform=lock.platform)
    installer = fetch_wheels([PIP_INSTALLER], layout.wheels, say)[PIP_INSTALLER.name]
    check_wheels(lock, wheels)
    entrypoint: tuple[str, ...] | None = None
    if recipe.archived:  # a registry image or a Dockerfile's build, archived in the store (pinnedbase.py)
        pinned = ensure_loaded(recipe, layout, engine, store, say)
        base_image, base_layers, base_label = pinned.parts.image_id, pinned.layers, pinned.digest
        image_env, entrypoint, base_info = pinned.image_env(), pinned.entrypoint, pinned.record_fields(recipe)
    else:
        base = ensure_base(recipe, layout, engine, store, say)
        base_image, base_layers, base_label, image_env = base.parts.image_id, (base.layer,), base.key, IMAGE_ENV
        base_info = {**recipe.to_dict(), "key": base.key, "layer": base.layer.diff_id, "image_id": base.parts.image_id}

    epoch = recipe.source_date_epoch
    tmp_root = layout.cache / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="build-") as tmp:
        work = Path(tmp)
        _stage(work, lock, wheels, installer)
        say(f"installing {len(lock.packages)} packages into {VENV} (network off)")
        freeze = _install(work, lock, base_image, engine, epoch)
        say("writing the library layer")
        with open(work / "venv.tar", "rb") as fh:
            digest, size = layers.normalize_layer(fh, store, epoch, strip="venv", prefix=VENV)
    venv_layer = oci.LayerRef(
        digest,
        size,
        f"harness: python3 -m venv {VENV} + pip {PIP_INSTALLER.version} install --require-hashes",
        comment=f"lock {lock.digest}",
    )
    python = str(freeze["python"])
    labels = {
        "org.harness.key": key,
        "org.harness.lock": lock.digest,
        "org.harness.python": python,
        "org.harness.base": base_label,
    }
    all_layers = [*base_layers, venv_layer]
    config = oci.image_config(
        all_layers,
        source_date_epoch=epoch,
        env=image_env,
        labels=labels,
        architecture=recipe.architecture,
        cmd=["python"],
    )
    if entrypoint:
        config["config"]["Entrypoint"] = list(entrypoint)  # the base image's own: commands run as they did on it
    parts = oci.store_image(store, config, all_layers)
    say(f"loading image {ref}")
    load_image(store, parts, ref, layout, engine, epoch)
    return Environment(
        key=key,
        image_id=parts.image_id,
        manifest_digest="sha256:" + parts.manifest_digest,
        image_ref=ref,
        base=base_info,
        lock_digest=lock.digest,
        python=python,
        packages=tuple(
            {"name": p.name, "version": p.version, "sha256": p.sha256} for p in sorted(lock.packages, key=_name)
        ),
        layers=tuple(layer.diff_id for layer in all_layers),
    )


def _name(package: LockedPackage) -> str:
    return package.name


def check_wheels(lock: Lock, wheels: dict[str, Path]) -> None:
    """Each locked wheel must be the project and version the lock claims, by its own METADATA.

    The hash proves the file is the one the lock names, not that the lock's name and version describe it (a hand
    edit can change one and not the other). Caught here, before the base is built or a container started.
    """
    wrong = []
    for p in sorted(lock.packages, key=_name):
        name, version = _wheel_metadata(wheels[p.name])
        if canonical_name(name) != p.name or version != p.version:
            wrong.append(f"the lock says {p.name} {p.version}, but {p.filename} is {name} {version}")
    if wrong:
        raise EnvironmentBuildError(
            "the lock does not match its wheels: " + "; ".join(wrong) + "; nothing was built",
            hint="re-resolve the lock with `harness lock` instead of editing it",
        )


def _wheel_metadata(path: Path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(path) as wheel:
            found = [n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(found) != 1:
                raise EnvironmentBuildError(f"{path.name} is not a wheel: no single *.dist-info/METADATA in it")
            headers = HeaderParser().parsestr(wheel.read(found[0]).decode("utf-8", "replace"))
    except zipfile.BadZipFile:
        raise EnvironmentBuildError(f"{path.name} is not a wheel (not a zip file)") from None
    return str(headers.get("Name", "?")), str(headers.get("Version", "?"))


def _stage(work: Path, lock: Lock, wheels: dict[str, Path], installer: Path) -> None:
    """Exactly the locked wheels in one directory, and the requirements file pip installs from."""
    wheel_dir, req_dir = work / "wheels", work / "req"
    for directory in (work, wheel_dir, req_dir):
        directory.mkdir(exist_ok=True)
        # Root in the container has no CAP_DAC_OVERRIDE, and the host user may not be root: make them readable.
        directory.chmod(0o755)
    for package in (*lock.packages, PIP_INSTALLER):
        source = installer if package is PIP_INSTALLER else wheels[package.name]
        target = wheel_dir / package.filename
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
            target.chmod(0o444)
    lines = [f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in sorted(lock.packages, key=_name)]
    (req_dir / "requirements.txt").write_text("".join(lines), encoding="utf-8")
    (req_dir / "requirements.txt").chmod(0o644)


def _install(work: Path, lock: Lock, base_image: str, engine: Engine, epoch: int) -> dict[str, Any]:
    spec = ContainerSpec(
        image=base_image,
        command=("/bin/sh", "-c", _SCRIPT),
        env={
            "PYTHONHASHSEED": "0",
            "SOURCE_DATE_EPOCH": str(epoch),
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
            "HOME": "/tmp",
            "HARNESS_FREEZE": _FREEZE,
        },
        mounts=(Mount(work / "wheels", "/wheels"), Mount(work / "req", "/req")),
        network=False,
        read_only_root=False,  # it writes /opt/venv, which is then exported
        labels={"org.harness.role": "environment-build"},
    )
    output: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    code, container_id = engine.run(spec, lambda stream, chunk: output[stream].append(chunk), keep=True)
    try:
        stdout = b"".join(output["stdout"]).decode("utf-8", "replace")
        log = stdout + b"".join(output["stderr"]).decode("utf-8", "replace")
        if code != 0:
            raise EnvironmentBuildError(
                f"installing the locked wheels failed (exit {code}); last lines:\n{_tail(log)}",
                hint="nothing was kept; the lock may not fit this base (re-resolve with `harness lock`)",
            )
        freeze = _parse_freeze(stdout, log)
        problems = freeze_problems(lock, freeze)
        if problems:
            raise EnvironmentBuildError(
                "the installed environment does not match the lock: " + "; ".join(problems),
                hint="nothing was kept; re-resolve the lock for this base with `harness lock`",
            )
        with open(work / "venv.tar", "wb") as fh:
            engine.export_path(container_id, VENV, fh)
    finally:
        engine.remove(container_id)
    return freeze


def _parse_freeze(stdout: str, log: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(FREEZE_MARKER):
            return dict(json.loads(line[len(FREEZE_MARKER) :]))
    raise EnvironmentBuildError(f"the install step printed no package list; last lines:\n{_tail(log)}")


def freeze_problems(lock: Lock, freeze: dict[str, Any]) -> list[str]:
    """Differences between the lock and what the venv reports (python version, then packages by name)."""
    problems = []
    python = str(freeze.get("python", ""))
    if python.split(".")[:2] != lock.python.split("."):
        problems.append(f"Python is {python}, the lock is for {lock.python}")
    expected = {p.name: p.version for p in lock.packages}
    found: dict[str, list[str]] = {}
    for name, version in freeze.get("packages", []):
        found.setdefault(canonical_name(name), []).append(version)
    for name in sorted(expected.keys() | found.keys()):
        versions = found.get(name, [])
        if name not in expected:
            problems.append(f"extra {name} {', '.join(versions)}")
        elif not versions:
            problems.append(f"missing {name} {expected[name]}")
        elif versions != [expected[name]]:
            problems.append(f"{name} is {', '.join(versions)}, the lock says {expected[name]}")
    return problems


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])
