"""A project's own Dockerfile as the base: built once per key, archived in the cache, then only the archive.

The Dockerfiles start FROM the session's harness base (tiny_env's, `harness-base:<key16>`): no registry is
reachable here, and the build never pulls. Every image a test builds is removed by id afterwards; nothing else is.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.docker.interface import Engine
from harness.env.baselayer import ensure_base
from harness.env.dockerfile import load_dockerfile
from harness.env.environment import Environment
from harness.env.lockfile import Lock, write_lock
from harness.env.recipe import load_recipe
from harness.env.verify import verify_project
from harness.errors import ConfigError, EnvironmentBuildError, NotFound
from harness.paths import Layout
from harness.project.projectfiles import WorkingTreeFiles
from harness.storage.store import Store
from tests.projects import cli_env, commit_all, git, harness, make_repo, valid_record

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CONFIG = """name = "dfb"
base = "Dockerfile.base"
lock = "harness.lock"
requirements = "requirements.txt"
command = ["python", "main.py"]
"""
MAIN = """import json, os, pathlib, six
here = pathlib.Path("/opt/greeting")
seen = {p.name: p.read_text() for p in sorted(here.iterdir())}
pathlib.Path(os.environ["HARNESS_OUTPUTS"], "seen.json").write_text(json.dumps(seen, sort_keys=True))
"""
BUILDING = "building base image from Dockerfile.base"


@pytest.fixture(scope="module")
def base_ref(tiny_env: Environment, env_layout: Layout, engine: Engine) -> str:
    """The session's harness base image, in the engine (loaded back from the cache if something removed it)."""
    recipe = load_recipe("bookworm", env_layout.project)
    base = ensure_base(recipe, env_layout, engine, Store(env_layout.cache_objects), lambda _message: None)
    assert base.layer.diff_id == tiny_env.base["layer"]
    return base.image_ref


@pytest.fixture()
def own_images(engine: Engine) -> Iterator[set[str]]:
    """The Dockerfile keys a test builds bases for. Afterwards the bases built from them (by their tags) and the
    environments on them (by the base label harness gives them) are removed, and no other image."""
    keys: set[str] = set()
    yield keys
    for key in sorted(keys):
        listed = subprocess.run(
            ["docker", "images", "--quiet", "--no-trunc", "--filter", f"label=org.harness.base=sha256:{key}"],
            capture_output=True,
            text=True,
            check=True,
        )
        for image_id in sorted(set(listed.stdout.split())):  # the environments on the base built from it
            engine.remove_image(image_id)
        engine.remove_image(f"harness-base:dockerfile-{key[:16]}")  # the base, built or loaded back


def _own(project: Path, keys: set[str]) -> str:
    """The key of the project's Dockerfile base as committed now, registered for removal after the test."""
    key = load_dockerfile("Dockerfile.base", WorkingTreeFiles(project)).key
    keys.add(key)
    return key


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    """A file served over http on loopback, where the engine's ADD <url> can fetch it."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "remote.txt").write_text("fetched by the engine\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
    finally:
        server.shutdown()
        server.server_close()


def _project(root: Path, lock: Lock, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    root.mkdir(parents=True)
    write_lock(root / "harness.lock", lock)
    make_repo(
        root,
        {
            "harness.toml": CONFIG,
            "main.py": MAIN,
            "requirements.txt": "\n".join(lock.requirements) + "\n",
            ".gitignore": ".harness/\n",
            "Dockerfile.base": dockerfile,
            **(files or {}),
        },
    )
    return root


def _run(project: Path, *args: str) -> tuple[dict[str, Any], str]:
    result = harness(project, "run", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return valid_record(json.loads(result.stdout)), result.stderr


def _seen(project: Path, record: dict[str, Any]) -> dict[str, str]:
    return dict(json.loads((project / ".harness" / "runs" / record["id"] / "outputs" / "seen.json").read_text()))


def test_a_dockerfile_base_is_built_once_archived_and_then_only_loaded(
    tmp_path: Path,
    base_ref: str,
    tiny_env: Environment,
    tiny_lock: Lock,
    env_layout: Layout,
    engine: Engine,
    own_images: set[str],
    served: str,
) -> None:
    token = uuid.uuid4().hex
    dockerfile = (
        f"FROM {base_ref}\n"
        "COPY greeting.txt /opt/greeting/\n"
        f"ADD {served} /opt/greeting/remote.txt\n"
        # docker gives a file ADDed from a URL mode 600; runs are not root
        "RUN chmod 644 /opt/greeting/remote.txt && cp /opt/greeting/greeting.txt /opt/greeting/copied.txt \\\n"
        f"  && echo {token} > /opt/greeting/step.txt\n"
    )
    project = _project(tmp_path / "dfb", tiny_lock, dockerfile, {"greeting.txt": f"hello {token}\n"})
    key = _own(project, own_images)

    first, stderr = _run(project)
    env = dict(first["environment"])
    assert BUILDING in stderr and "Step 2/4 : COPY greeting.txt /opt/greeting/" in stderr
    assert _seen(project, first) == {
        "greeting.txt": f"hello {token}\n",
        "copied.txt": f"hello {token}\n",
        "step.txt": f"{token}\n",
        "remote.txt": "fetched by the engine\n",
    }
    base = env["base"]
    source = load_dockerfile("Dockerfile.base", WorkingTreeFiles(project))
    assert source.key == key
    assert base["dockerfile"] == "Dockerfile.base" and base["name"] == "Dockerfile.base"
    assert base["dockerfile_digest"] == "sha256:" + hashlib.sha256(dockerfile.encode()).hexdigest()
    assert (base["context_digest"], base["digest"]) == (source.context_digest, "sha256:" + source.key)
    assert base["diff_ids"][0] == tiny_env.base["layer"] and len(base["diff_ids"]) == 4  # FROM + COPY, ADD, RUN
    assert env["layers"] == [*base["diff_ids"], env["layers"][-1]]
    assert (base["python"], base["platform"]) == ("3.11", "manylinux_2_36_x86_64")
    built = engine.inspect_image(f"harness-base:dockerfile-{source.key[:16]}")
    assert built is not None and built["Id"] == base["image_id"]
    archived = json.loads((env_layout.images / f"dockerfile-{source.key}.json").read_text())
    assert archived["source"] == "dockerfile" and archived["build"]["image_id"] == base["image_id"]
    assert [f["path"] for f in archived["build"]["context"]] == ["greeting.txt"]

    # Again, and after a commit that changes nothing the Dockerfile takes: nothing is built.
    second, stderr = _run(project)
    assert BUILDING not in stderr and second["environment"]["image_id"] == env["image_id"]
    (project / "README.md").write_text("unrelated\n")
    commit_all(project, "an unrelated file")
    third, stderr = _run(project)
    assert BUILDING not in stderr and "loading" not in stderr
    assert third["environment"]["key"] == env["key"] and third["environment"]["base"] == base

    # Both images gone from the engine: loaded back from the cache with the same ids, nothing built, no server.
    engine.remove_image(env["image_id"])
    engine.remove_image(base["image_id"])
    assert engine.inspect_image(base["image_id"]) is None
    fourth, stderr = _run(project)
    assert BUILDING not in stderr and "loading environment" in stderr
    assert (fourth["environment"]["image_id"], fourth["environment"]["manifest_digest"]) == (
        env["image_id"],
        env["manifest_digest"],
    )
    assert _seen(project, fourth) == _seen(project, first)

    # `harness rebuild` of the first run is bit for bit the same, from the archive.
    engine.remove_image(env["image_id"])
    rebuilt = harness(project, "rebuild", first["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert json.loads(rebuilt.stdout)["identical"] is True

    # `harness env verify`: archived, not rebuildable bit for bit; the stored layers re-hashed, the library rebuilt.
    messages: list[str] = []
    report = verify_project(project, engine, messages.append)
    assert report.ok, report.to_dict()
    assert (report.base.kind, report.base.source) == ("dockerfile", "cache")
    assert "archived, not rebuildable bit for bit" in report.base.detail and base["image_id"] in report.base.detail
    assert [layer.role for layer in report.layers] == ["base"] * 4 + ["libraries"]
    assert not any(BUILDING in m for m in messages)
    shown = harness(project, "env", "show", env["key"][:12])
    assert shown.returncode == 0, shown.stderr
    assert "Dockerfile Dockerfile.base" in shown.stdout and "not rebuildable bit for bit" in shown.stdout

    # `harness lock` reads the image's Python and platform from the archive: no engine needed.
    locked = harness(project, "lock", "--json", env=cli_env(DOCKER_HOST="unix:///nonexistent/docker.sock"))
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert (json.loads(locked.stdout)["python"], json.loads(locked.stdout)["platform"]) == (
        "3.11",
        "manylinux_2_36_x86_64",
    )

    # The archive gone too (this build's own COPY layer removed from the cache): rebuild names it and stops.
    engine.remove_image(env["image_id"])
    engine.remove_image(base["image_id"])
    Store(env_layout.cache_objects).path(base["diff_ids"][1].removeprefix("sha256:")).unlink()
    refused = harness(project, "rebuild", first["id"])
    assert refused.returncode == NotFound.exit_code, refused.stdout + refused.stderr
    assert f"layer 1 ({base['diff_ids'][1]})" in refused.stderr
    assert "cannot be rebuilt bit for bit from its Dockerfile" in refused.stderr
    assert "harness env build" in refused.stderr and f"harness run --commit {first['code']['commit'][:12]}" in (
        refused.stderr
    )


def test_only_a_change_to_what_the_dockerfile_takes_builds_it_again(
    tmp_path: Path, base_ref: str, tiny_lock: Lock, engine: Engine, own_images: set[str]
) -> None:
    token = uuid.uuid4().hex
    dockerfile = f"FROM {base_ref}\nCOPY greeting.txt /opt/greeting/\n"
    project = _project(tmp_path / "dfb", tiny_lock, dockerfile, {"greeting.txt": f"one {token}\n"})
    _own(project, own_images)

    # The first lock builds and archives the base to ask its python3; the first run then builds nothing more.
    locked = harness(project, "lock", "--json")
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert BUILDING in locked.stderr and json.loads(locked.stdout)["python"] == "3.11"
    if git(project, "status", "--porcelain"):
        commit_all(project, "lock")
    first, stderr = _run(project)
    env = dict(first["environment"])
    assert BUILDING not in stderr and _seen(project, first) == {"greeting.txt": f"one {token}\n"}

    (project / "notes.txt").write_text("not copied\n")
    commit_all(project, "unrelated")
    unrelated, stderr = _run(project)
    assert BUILDING not in stderr and unrelated["environment"]["image_id"] == env["image_id"]

    (project / "greeting.txt").write_text(f"two {token}\n")
    commit_all(project, "the copied file")
    _own(project, own_images)
    changed, stderr = _run(project)
    new = dict(changed["environment"])
    assert BUILDING in stderr and _seen(project, changed) == {"greeting.txt": f"two {token}\n"}
    assert new["base"]["dockerfile_digest"] == env["base"]["dockerfile_digest"]
    assert new["base"]["context_digest"] != env["base"]["context_digest"]
    assert new["base"]["image_id"] != env["base"]["image_id"] and new["image_id"] != env["image_id"]

    # An older commit runs on its own archived base, not on the working tree's Dockerfile context.
    older, stderr = _run(project, "--commit", first["code"]["commit"])
    assert BUILDING not in stderr and older["environment"]["image_id"] == env["image_id"]


def test_a_dockerfile_missing_from_the_commit_is_a_config_error_that_names_the_rule(
    tmp_path: Path, tiny_lock: Lock
) -> None:
    project = tmp_path / "dfb"
    project.mkdir()
    write_lock(project / "harness.lock", tiny_lock)
    sha = make_repo(project, {"harness.toml": CONFIG, "main.py": MAIN, "requirements.txt": "six==1.16.0\n"})
    result = harness(project, "run")
    assert result.returncode == ConfigError.exit_code, result.stdout + result.stderr
    assert f"Dockerfile.base is not in commit {sha[:12]}" in result.stderr
    assert "file name is Dockerfile, starts with Dockerfile. or ends with .Dockerfile or .dockerfile" in result.stderr


def test_a_copy_source_missing_from_the_commit_names_the_line_and_builds_nothing(
    tmp_path: Path, base_ref: str, tiny_lock: Lock, env_layout: Layout
) -> None:
    dockerfile = f"FROM {base_ref}\nCOPY greeting.txt /opt/\nCOPY missing.txt /opt/\n"
    ignored = {"greeting.txt": "hi\n", ".gitignore": ".harness/\nmissing.txt\n"}
    project = _project(tmp_path / "dfb", tiny_lock, dockerfile, ignored)
    (project / "missing.txt").write_text("in the working tree, ignored by git: not in the commit\n")
    result = harness(project, "run")
    assert result.returncode == ConfigError.exit_code, result.stdout + result.stderr
    assert "Dockerfile.base line 3 (COPY missing.txt /opt/): missing.txt is not in the build context" in result.stderr
    assert BUILDING not in result.stderr


def test_a_failing_run_step_names_the_step_and_the_engines_words_and_records_nothing(
    tmp_path: Path, base_ref: str, tiny_lock: Lock, env_layout: Layout, engine: Engine, own_images: set[str]
) -> None:
    token = uuid.uuid4().hex
    # The failing step comes right after FROM, so the build commits no intermediate image to clean up.
    dockerfile = f"FROM {base_ref}\n# {token}\nRUN echo about to fail {token} && exit 3\n"
    project = _project(tmp_path / "dfb", tiny_lock, dockerfile)
    key = _own(project, own_images)

    result = harness(project, "run")
    assert result.returncode == EnvironmentBuildError.exit_code, result.stdout + result.stderr
    assert f"at step 2, Dockerfile.base line 3 (RUN echo about to fail {token} && exit 3)" in result.stderr
    assert "returned a non-zero code: 3" in result.stderr  # the engine's own words
    assert f"about to fail {token}" in result.stderr and "nothing was recorded as a base" in result.stderr
    assert not (env_layout.images / f"dockerfile-{key}.json").exists()
    assert engine.inspect_image(f"harness-base:dockerfile-{key[:16]}") is None
