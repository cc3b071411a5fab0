"""Acceptance for runs that travel: the bikes example rebuilt, identical, on a "second machine" (a fresh
HARNESS_HOME and HARNESS_CACHE, the environment image removed from the engine, no project or git repository, and
no network but the loopback registry), once through a registry and once from an exported file with no registry."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.projects import cli_env, harness
from tests.registry import Registry
from tests.test_examples import bikes  # noqa: F401 - the module's fixture: the example in its own git repository
from tests.tokenserver import TokenServer

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": "127.0.0.1"}


def machine(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / name
    (root / "cwd").mkdir(parents=True)
    env = cli_env(HARNESS_HOME=str(root / "home"), HARNESS_CACHE=str(root / "cache"), **NO_NETWORK)
    env.update({k.upper(): v for k, v in NO_NETWORK.items()})
    return root / "cwd", env


def remove_image(image_id: str) -> None:
    subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)
    gone = subprocess.run(["docker", "image", "inspect", image_id], capture_output=True)
    assert gone.returncode != 0


def test_bikes_rebuilds_identical_elsewhere_through_a_registry_and_from_a_file(
    bikes: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    ran = harness(bikes, "run", "-c", "linear_regression", "--json")
    assert ran.returncode == 0, ran.stderr
    record = json.loads(ran.stdout)
    run_id, image_id = record["id"], record["environment"]["image_id"]
    manifest_digest = record["environment"]["manifest_digest"]

    registry = Registry(tmp_path / "registry")
    try:
        remote = f"{registry.host}/team/bikes"
        pushed = harness(bikes, "push", run_id, "--remote", remote, "--json")
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout)["runs"][0]["image"] == manifest_digest

        # The image went up as an ordinary image: the engine pulls it by the recorded manifest digest, same id.
        remove_image(image_id)
        pulled_ref = f"{remote}@{manifest_digest}"
        subprocess.run(["docker", "pull", pulled_ref], check=True, capture_output=True)
        inspected = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", pulled_ref], capture_output=True, text=True
        )
        assert inspected.stdout.strip() == image_id
        remove_image(image_id)

        cwd, env = machine(tmp_path, "second")
        rebuilt = harness(cwd, "rebuild", run_id, "--remote", remote, "--json", env=env)
        assert rebuilt.returncode == 0, rebuilt.stderr
        # The engine pulled the image by its digest; nothing was built.
        assert "docker pull" in rebuilt.stderr and "rebuilding it from recipe" not in rebuilt.stderr
        report = json.loads(rebuilt.stdout)
        assert report["identical"] is True and report["original"] == run_id
        listed = harness(cwd, "ls", "--remote", remote, "--where", 'params.model == "linear_regression"', env=env)
        assert listed.returncode == 0 and run_id in listed.stdout
    finally:
        registry.stop()

    # The same through a registry that logs in as Docker Hub, GHCR and GitLab do (the token flow): harness's own
    # requests and the engine's pull both go with docker's stored login.
    tokens = TokenServer(tmp_path / "tokens", login=("ci", "s3cret"))
    registry = Registry(tmp_path / "token-registry", token=tokens)
    try:
        remote = f"{registry.host}/team/bikes"
        docker_config = tmp_path / "docker-login"
        docker_config.mkdir()
        auth = base64.b64encode(b"ci:s3cret").decode()
        (docker_config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        login = {"DOCKER_CONFIG": str(docker_config)}
        pushed = harness(bikes, "push", run_id, "--remote", remote, env=cli_env(**login))
        assert pushed.returncode == 0, pushed.stderr
        remove_image(image_id)
        cwd, env = machine(tmp_path, "third")
        rebuilt = harness(cwd, "rebuild", run_id, "--remote", remote, "--json", env={**env, **login})
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "docker pull" in rebuilt.stderr and "could not pull" not in rebuilt.stderr, rebuilt.stderr
        assert json.loads(rebuilt.stdout)["identical"] is True
    finally:
        registry.stop()
        tokens.stop()

    bundle = tmp_path / "bikes-run.tar"
    assert harness(bikes, "export", run_id, "-o", str(bundle)).returncode == 0
    remove_image(image_id)
    cwd, env = machine(tmp_path, "offline")
    imported = harness(cwd, "import", str(bundle), env=env)
    assert imported.returncode == 0, imported.stderr
    rebuilt = harness(cwd, "rebuild", run_id, "--json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "loading image" in rebuilt.stderr and "rebuilding it from recipe" not in rebuilt.stderr  # from the file
    assert json.loads(rebuilt.stdout)["identical"] is True
