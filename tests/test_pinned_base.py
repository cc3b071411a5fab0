"""A digest-pinned registry image as the base: a real registry on loopback, pulled once, then only the store."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from harness.docker.interface import Engine
from harness.env import images, oci
from harness.env.baselayer import ensure_base
from harness.env.catalog import build_project
from harness.env.environment import Environment
from harness.env.imageload import load_image
from harness.env.lockfile import Lock, read_lock
from harness.env.recipe import load_recipe
from harness.env.verify import verify_project
from harness.errors import ConfigError, EngineUnavailable, EnvironmentBuildError
from harness.paths import ENV_CACHE, Layout
from harness.storage.store import Store
from tests.projects import PROBE_CONFIG, SESSION, cli_env, commit_all, harness, make_probe_project, make_repo
from tests.registry import Registry

pytestmark = pytest.mark.docker


def _push_base(
    registry: Registry, rootfs: str, layout: Layout, engine: Engine, name: str = "pybase"
) -> tuple[str, str]:
    """Push a base of our own (a stored rootfs layer, by diff id, with its own Env and Entrypoint) to the registry.

    A config of its own (labelled with this session) gives it an image id of its own, so removing it disturbs neither
    the session's other images nor another session's.
    Returns (digest-pinned reference, image id); the image is removed from the engine afterwards.
    """
    store = Store(layout.cache_objects)
    diff_id = rootfs.removeprefix("sha256:")
    layer = oci.LayerRef(diff_id, store.path(diff_id).stat().st_size, f"{name} rootfs")
    env = {"PATH": oci.DEFAULT_PATH, "LANG": "C.UTF-8", "PYBASE": "1"}
    config = oci.image_config(
        [layer], source_date_epoch=1700000000, env=env, labels={"org.harness.test": f"pinned-base {SESSION}"}
    )
    config["config"]["Entrypoint"] = ["/usr/bin/env"]  # harmless for any command, and visible when carried over
    parts = oci.store_image(store, config, [layer])
    tagged = f"{registry.host}/{name}:1"
    load_image(store, parts, tagged, layout, engine, 1700000000)
    engine.push_image(tagged)
    info = engine.inspect_image(tagged)
    assert info is not None
    pinned = next(d for d in info["RepoDigests"] if d.startswith(f"{registry.host}/{name}@sha256:"))
    engine.remove_image(parts.image_id)  # so the first run has to pull it
    assert engine.inspect_image(pinned) is None
    return pinned, parts.image_id


def _pinned_probe_project(root: Path, pinned: str, lock: Lock) -> Path:
    config = PROBE_CONFIG.replace('base = "bookworm"', f'base = "{pinned}"')
    assert config != PROBE_CONFIG
    make_probe_project(root, lock)
    (root / "harness.toml").write_text(config)
    commit_all(root, "pinned base")
    return root


def _run(project: Path) -> dict:
    result = harness(project, "run", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_pinned_base_is_pulled_once_then_loaded_from_the_store(
    tmp_path: Path, registry: Registry, tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine
) -> None:
    pinned, base_id = _push_base(registry, tiny_env.base["layer"], env_layout, engine)
    project = _pinned_probe_project(tmp_path / "pinned", pinned, tiny_lock)

    first = _run(project)
    env = first["environment"]
    assert env["base"]["pinned"] == pinned
    assert env["base"]["digest"] == "sha256:" + pinned.split("@sha256:")[1]
    assert env["base"]["diff_ids"] == [tiny_env.base["layer"]]
    assert env["base"]["image_id"] == base_id
    assert (env["base"]["python"], env["base"]["platform"]) == ("3.11", "manylinux_2_36_x86_64")
    assert env["layers"][0] == tiny_env.base["layer"] and len(env["layers"]) == 2
    assert env["image_id"] != tiny_env.image_id  # another base, another key, another image
    info = engine.inspect_image(env["image_id"])
    assert info is not None
    assert "PYBASE=1" in info["Config"]["Env"] and info["Config"]["Entrypoint"] == ["/usr/bin/env"]
    assert info["Config"]["Env"][0].startswith("PATH=/opt/venv/bin:")

    # Gone from the engine, registry down: everything comes from the cache store, nothing is pulled.
    engine.remove_image(env["image_id"])
    engine.remove_image(base_id)
    registry.stop()
    second = _run(project)
    assert second["environment"]["image_id"] == env["image_id"]
    assert second["environment"]["manifest_digest"] == env["manifest_digest"]
    assert second["environment"]["key"] == env["key"]

    engine.remove_image(env["image_id"])
    rebuilt = harness(project, "rebuild", first["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert engine.inspect_image(env["image_id"]) is not None


def test_base_by_tag_is_refused_with_the_command_that_pins_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_recipe("127.0.0.1:5000/pybase:1", tmp_path)
    assert "digest" in raised.value.message
    assert "docker inspect --format '{{index .RepoDigests 0}}' IMAGE" in (raised.value.hint or "")


def test_unreachable_registry_names_the_reference_and_keeps_nothing(
    tmp_path: Path, tiny_lock: Lock, engine: Engine
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ref = f"127.0.0.1:{port}/pybase@sha256:{'0' * 64}"
    layout = Layout(project=tmp_path, store=tmp_path / ".harness", cache=tmp_path / "cache")
    recipe = load_recipe(ref, tmp_path)
    with pytest.raises(EnvironmentBuildError) as raised:
        images.ensure_environment(recipe, tiny_lock, layout, engine)
    assert ref in raised.value.message and "nothing was built or kept" in raised.value.message
    assert "registry" in (raised.value.hint or "")
    assert not list(layout.images.glob("pinned-*.json"))


# -- harness env verify on a pinned base -------------------------------------------------------------------------


@pytest.fixture()
def private_cache(tmp_path: Path, harness_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of the test's own (HARNESS_CACHE) for what a test alters; the session cache stays untouched."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(cache))
    return cache


def _built_pinned_project(
    tmp_path: Path, registry: Registry, tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine
) -> tuple[Path, dict[str, Any]]:
    """A probe project on a pinned base, its environment built (the base pulled) in the current HARNESS_CACHE."""
    pinned, _ = _push_base(registry, tiny_env.base["layer"], env_layout, engine)
    project = _pinned_probe_project(tmp_path / "pinned", pinned, tiny_lock)
    env = build_project(project, engine)
    assert env["action"] == "built" and env["base"]["pinned"] == pinned
    return project, env


def _alter_member(layer: Path, name: str) -> None:
    """Flip one byte of a file inside a stored layer tar: the tar stays readable, the object no longer matches."""
    with tarfile.open(layer) as tar:
        offset = tar.getmember(name).offset_data
    assert layer.stat().st_nlink == 1  # a copy of this test's own, shared with no other cache
    layer.chmod(0o644)
    with open(layer, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    layer.chmod(0o444)


def test_verify_rebuilds_a_pinned_base_environment_on_a_fresh_pull_or_on_the_checked_store(
    tmp_path: Path,
    registry: Registry,
    tiny_env: Environment,
    tiny_lock: Lock,
    env_layout: Layout,
    engine: Engine,
    private_cache: Path,
) -> None:
    project, env = _built_pinned_project(tmp_path, registry, tiny_env, tiny_lock, env_layout, engine)
    digests = {"image_id": env["image_id"], "manifest_digest": env["manifest_digest"]}

    messages: list[str] = []
    report = verify_project(project, engine, messages.append)
    assert report.ok, report.to_dict()
    assert (report.recorded, report.rebuilt) == (digests, digests)
    assert report.base.source == "registry" and "pulled again by digest" in report.base.detail
    assert [(x.role, x.stored, x.rebuilt) for x in report.layers] == [
        ("base", "ok", env["layers"][0]),
        ("libraries", "ok", env["layers"][1]),
    ]
    assert not any("mmdebstrap" in m for m in messages)  # a pinned base is fetched, never bootstrapped
    assert engine.inspect_image(f"harness-verify:{env['key'][:16]}") is None

    # Registry down: the stored copy stands in, and the report says it was checked, not fetched again.
    registry.stop()
    messages.clear()
    report = verify_project(project, engine, messages.append)
    assert report.ok, report.to_dict()
    assert report.rebuilt == digests
    assert report.to_dict()["base"]["source"] == "cache"
    assert "not fetched again" in report.base.detail and "digests recorded" in report.base.detail
    assert env["base"]["digest"] in report.base.detail  # ... and which claim was not checked
    assert any("not fetched again" in m for m in messages)
    assert not list((private_cache / "tmp").glob("verify-*"))


def test_verify_names_an_altered_stored_base_layer_and_its_file(
    tmp_path: Path,
    registry: Registry,
    tiny_env: Environment,
    tiny_lock: Lock,
    env_layout: Layout,
    engine: Engine,
    private_cache: Path,
) -> None:
    project, env = _built_pinned_project(tmp_path, registry, tiny_env, tiny_lock, env_layout, engine)
    base_layer = env["layers"][0]
    store = Store(private_cache / "objects")
    stored = store.path(base_layer.removeprefix("sha256:"))
    _alter_member(stored, "./etc/debian_version")
    record = private_cache / "images" / f"{env['key']}.json"
    recorded_before = record.read_bytes()

    # Registry up: a good copy is pulled, the environment rebuilds to the record, the stored layer is named.
    report = verify_project(project, engine)
    assert not report.ok
    assert report.recorded == report.rebuilt  # the base the digest names is intact; only the stored copy is not
    base, libraries = report.layers
    assert (base.role, base.stored, base.recorded, base.rebuilt) == ("base", "corrupt", base_layer, base_layer)
    assert [d.path for d in base.differences] == ["etc/debian_version"]
    assert base.differences[0].describe().startswith("etc/debian_version: sha256 ")
    assert f"pinned-{env['base']['digest'].removeprefix('sha256:')}.json" in base.note  # how to repair it
    assert libraries.ok

    # Registry down: no good copy to rebuild on; an error that names the layer and its file in the cache.
    registry.stop()
    with pytest.raises(EnvironmentBuildError) as raised:
        verify_project(project, engine)
    message, hint = raised.value.message, raised.value.hint or ""
    assert f"layer 0 (diff id {base_layer})" in message and str(stored) in message
    assert "altered" in message and "could not be pulled again" in message and "Nothing was rebuilt" in message
    assert "registry reachable" in hint and "pinned-" in hint
    assert not store.verify(base_layer.removeprefix("sha256:"))  # kept as found, for inspection
    assert record.read_bytes() == recorded_before


# -- harness lock on a pinned base -------------------------------------------------------------------------------

TRIXIE = """suite = "trixie"
variant = "apt"
packages = ["python3"]
python = "3.13"
platform = "manylinux_2_41_x86_64"
architecture = "amd64"
source_date_epoch = 1700000000
"""
LOCK_CONFIG = """name = "locked"
base = "{base}"
lock = "harness.lock"
requirements = "requirements.txt"
command = ["python", "-c", "import six"]
"""
NO_ENGINE = "unix:///nonexistent/docker.sock"


def _lock_project(root: Path, base: str) -> Path:
    make_repo(root, {"harness.toml": LOCK_CONFIG.format(base=base), "requirements.txt": "six==1.16.0\n"})
    return root


def _archived(layout: Layout, pinned: str) -> dict[str, Any]:
    return dict(json.loads((layout.images / f"pinned-{pinned.split('@sha256:')[1]}.json").read_text()))


def test_lock_resolves_for_the_pinned_images_own_python_and_platform(
    tmp_path: Path, registry: Registry, tiny_env: Environment, env_layout: Layout, engine: Engine
) -> None:
    pinned, _ = _push_base(registry, tiny_env.base["layer"], env_layout, engine)
    project = _lock_project(tmp_path / "locked", pinned)

    result = harness(project, "lock", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    archived = _archived(env_layout, pinned)  # what the image's own python3 said, on first use
    assert (outcome["python"], outcome["platform"]) == (archived["python"], archived["platform"])
    lock = read_lock(project / "harness.lock")
    assert (
        (lock.python, lock.platform) == ("3.11", "manylinux_2_36_x86_64") == (archived["python"], archived["platform"])
    )
    assert [p.name for p in lock.packages] == ["six"]

    # Later locks read the archive: no registry, and not even an engine.
    registry.stop()
    again = harness(project, "lock", "--json", env=cli_env(DOCKER_HOST=NO_ENGINE))
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["changes"] == [] and read_lock(project / "harness.lock") == lock

    # The lock fits the image: ensure_environment checks it against the resolved base before building on it.
    env = build_project(project, engine)
    assert env["python"].startswith("3.11.") and [p["name"] for p in env["packages"]] == ["six"]


def _trixie_rootfs(tmp_path: Path, layout: Layout, engine: Engine) -> str:
    """Debian 13's rootfs (CPython 3.13, glibc 2.41), bootstrapped like any recipe base: a Python the default
    base (3.11 on glibc 2.36) does not have, so a lock resolved for anything but the image shows."""
    (tmp_path / "recipes" / "images").mkdir(parents=True)
    (tmp_path / "recipes" / "images" / "trixie.toml").write_text(TRIXIE)
    recipe = load_recipe("trixie", tmp_path / "recipes")
    return ensure_base(recipe, layout, engine, Store(layout.cache_objects), lambda _message: None).layer.diff_id


def test_lock_targets_the_python_the_pinned_image_reports_not_the_default(
    tmp_path: Path, registry: Registry, env_layout: Layout, engine: Engine
) -> None:
    pinned, _ = _push_base(registry, _trixie_rootfs(tmp_path, env_layout, engine), env_layout, engine, "pytrixie")
    default = load_recipe("bookworm", tmp_path)
    project = _lock_project(tmp_path / "locked", pinned)

    result = harness(project, "lock", "--json")
    archived = _archived(env_layout, pinned)
    assert (archived["python"], archived["platform"]) == ("3.13", "manylinux_2_41_x86_64")
    assert archived["python"] != default.python
    # uv resolves for the image's Python and platform from any host, whatever Python harness runs on.
    assert result.returncode == 0, result.stdout + result.stderr
    assert (read_lock(project / "harness.lock").python, json.loads(result.stdout)["platform"]) == (
        "3.13",
        "manylinux_2_41_x86_64",
    )


def test_lock_on_a_base_not_yet_archived_says_why_it_needs_the_engine(tmp_path: Path) -> None:
    ref = f"127.0.0.1:9/pybase@sha256:{'1' * 64}"
    project = _lock_project(tmp_path / "locked", ref)
    env = cli_env(DOCKER_HOST=NO_ENGINE, HARNESS_CACHE=str(tmp_path / "cache"))
    result = harness(project, "lock", env=env)
    assert result.returncode == EngineUnavailable.exit_code, result.stdout + result.stderr
    assert f"`harness lock` needs it once for base {ref}" in result.stderr
    assert "the lock was not changed" in result.stderr
    assert not (project / "harness.lock").exists()
