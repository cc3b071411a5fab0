"""A digest-pinned registry image as the base: a real registry on loopback, pulled once, then only the store."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import images, oci
from harness.engine import Engine
from harness.errors import ConfigError, EnvironmentBuildError
from harness.images import Environment
from harness.lockfile import Lock
from harness.paths import Layout
from harness.store import Store
from tests.projects import PROBE_CONFIG, commit_all, harness, make_probe_project

pytestmark = pytest.mark.docker


class Registry:
    """Debian's docker-registry serving on 127.0.0.1 (docker allows plain http to 127.0.0.0/8)."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.fail("docker-registry is not installed; run ./scripts/setup", pytrace=False)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [binary, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}", pytrace=False)
            time.sleep(0.1)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
            self.log.close()


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


def _push_base(registry: Registry, tiny_env: Environment, layout: Layout, engine: Engine) -> tuple[str, str]:
    """Push a base of our own (the session's bookworm layer, with its own Env and Entrypoint) to the registry.

    A config of its own gives it an image id of its own, so removing it cannot disturb the session's images.
    Returns (digest-pinned reference, image id); the image is removed from the engine afterwards.
    """
    store = Store(layout.cache_objects)
    diff_id = tiny_env.base["layer"].removeprefix("sha256:")
    layer = oci.LayerRef(diff_id, store.path(diff_id).stat().st_size, "bookworm rootfs")
    env = {"PATH": oci.DEFAULT_PATH, "LANG": "C.UTF-8", "PYBASE": "1"}
    config = oci.image_config(
        [layer], source_date_epoch=1700000000, env=env, labels={"org.harness.test": "pinned-base"}
    )
    config["config"]["Entrypoint"] = ["/usr/bin/env"]  # harmless for any command, and visible when carried over
    parts = oci.store_image(store, config, [layer])
    tagged = f"{registry.host}/pybase:1"
    images.load_image(store, parts, tagged, layout, engine, 1700000000)
    engine.push_image(tagged)
    info = engine.inspect_image(tagged)
    assert info is not None
    pinned = next(d for d in info["RepoDigests"] if d.startswith(f"{registry.host}/pybase@sha256:"))
    engine.remove_image(parts.image_id)  # so the first run has to pull it
    assert engine.inspect_image(pinned) is None
    return pinned, parts.image_id


def _run(project: Path) -> dict:
    result = harness(project, "run", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_pinned_base_is_pulled_once_then_loaded_from_the_store(
    tmp_path: Path, registry: Registry, tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine
) -> None:
    pinned, base_id = _push_base(registry, tiny_env, env_layout, engine)
    project = tmp_path / "pinned"
    config = PROBE_CONFIG.replace('base = "bookworm"', f'base = "{pinned}"')
    assert config != PROBE_CONFIG
    make_probe_project(project, tiny_lock)
    (project / "harness.toml").write_text(config)
    commit_all(project, "pinned base")

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
        images.load_recipe("127.0.0.1:5000/pybase:1", tmp_path)
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
    recipe = images.load_recipe(ref, tmp_path)
    with pytest.raises(EnvironmentBuildError) as raised:
        images.ensure_environment(recipe, tiny_lock, layout, engine)
    assert ref in raised.value.message and "nothing was built or kept" in raised.value.message
    assert "registry" in (raised.value.hint or "")
    assert not list(layout.images.glob("pinned-*.json"))
