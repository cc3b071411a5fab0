"""Environment images: recipes, deterministic layers and archives, and the real build/reuse/load paths."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import statistics
import tarfile
import threading
import time
from pathlib import Path

import pytest

from harness.docker.engine import connect
from harness.docker.interface import ContainerSpec, Engine
from harness.env import oci
from harness.env.baselayer import base_key
from harness.env.build import freeze_problems
from harness.env.environment import Environment, environment_key
from harness.env.images import ensure_environment
from harness.env.layers import write_normalized
from harness.env.lockfile import Lock, LockedPackage, requirements_digest
from harness.env.recipe import load_recipe
from harness.errors import ConfigError, EnvironmentBuildError
from harness.paths import Layout
from harness.storage.store import Store
from tests.projects import session_owned

EPOCH = 1700000000
docker = pytest.mark.docker


def _layout(root: Path, cache: Path | None = None) -> Layout:
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    return Layout(project=project, store=project / ".harness", cache=cache or root / "cache")


def _built_files(cache: Path) -> list[str]:
    """Everything a build leaves in a cache, apart from wheels and lock files."""
    return sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.is_file() and not {"wheels", "locks"} & set(p.relative_to(cache).parts)
    )


# -- recipes and keys (no engine) -------------------------------------------------------------------------------


def test_builtin_recipe_and_project_override(tmp_path: Path) -> None:
    recipe = load_recipe("bookworm", tmp_path)
    assert (recipe.suite, recipe.variant, recipe.python, recipe.architecture) == ("bookworm", "apt", "3.11", "amd64")
    assert recipe.packages == ("python3", "ca-certificates") and recipe.mirror is None
    (tmp_path / "images").mkdir()
    text = (Path(__file__).parent.parent / "harness" / "env" / "recipes" / "bookworm.toml").read_text()
    (tmp_path / "images" / "bookworm.toml").write_text(text.replace("# mirror = ", "mirror = "))
    assert load_recipe("bookworm", tmp_path).mirror == "http://<your-mirror>/debian"


def test_recipe_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as unknown:
        load_recipe("trixie-nope", tmp_path)
    assert "no recipe named 'trixie-nope'" in unknown.value.message and "bookworm" in str(unknown.value.hint)
    # A digest-pinned image is a base (tests/test_pinned_base.py); a tag alone is refused.
    assert load_recipe("debian@sha256:" + "a" * 64, tmp_path).pinned == "debian@sha256:" + "a" * 64
    with pytest.raises(ConfigError, match="pinned by digest"):
        load_recipe("debian:bookworm", tmp_path)
    with pytest.raises(ConfigError, match="pinned by digest"):
        load_recipe("debian@sha256:abc", tmp_path)
    with pytest.raises(ConfigError):
        load_recipe("../etc/passwd", tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "odd.toml").write_text('suite = "bookworm"\nsuit = "x"\n')
    with pytest.raises(ConfigError, match=r"odd.toml: suit: unknown key"):
        load_recipe("odd", tmp_path)
    (tmp_path / "images" / "nopy.toml").write_text(
        'suite = "bookworm"\nvariant = "apt"\npackages = ["bash"]\npython = "3.11"\n'
        'platform = "manylinux_2_36_x86_64"\narchitecture = "amd64"\nsource_date_epoch = 1\n'
    )
    with pytest.raises(ConfigError, match="packages: must include python3"):
        load_recipe("nopy", tmp_path)


def test_project_recipe_is_read_from_the_commit_being_run(tmp_path: Path) -> None:
    """Two commits with different recipes, and an uncommitted third version: each commit gets its own."""
    from harness.project.vcs import Repository
    from tests.projects import commit_all, make_repo, write_files

    text = (Path(__file__).parent.parent / "harness" / "env" / "recipes" / "bookworm.toml").read_text()
    root = tmp_path / "proj"
    first = make_repo(root, {"images/mine.toml": text.replace("1700000000", "1700000001")})
    write_files(root, {"images/mine.toml": text.replace("1700000000", "1700000002")})
    second = commit_all(root, "second")
    write_files(root, {"images/mine.toml": text.replace("1700000000", "1700000003"), "images/new.toml": text})
    repo = Repository.open(root)
    for commit, epoch in ((first, 1700000001), (second, 1700000002)):

        def at(rel: str, commit: str = commit) -> str | None:
            return repo.read_file(commit, rel)

        recipe = load_recipe("mine", root, read=at)
        assert (recipe.name, recipe.source_date_epoch) == ("mine", epoch)
        assert load_recipe("bookworm", root, read=at).source_date_epoch == 1700000000  # built-in, not committed
        with pytest.raises(ConfigError, match=r"no recipe named 'new' \(looked in images/ in the commit being run"):
            load_recipe("new", root, read=at)  # only in the working tree
    assert load_recipe("mine", root).source_date_epoch == 1700000003  # without a reader: the working tree


def test_environment_key_follows_inputs_not_names(tmp_path: Path, tiny_lock: Lock) -> None:
    recipe = load_recipe("bookworm", tmp_path)
    key = environment_key(recipe, tiny_lock)
    assert environment_key(dataclasses.replace(recipe, name="copy"), tiny_lock) == key
    assert environment_key(dataclasses.replace(recipe, packages=("python3",)), tiny_lock) != key
    assert environment_key(recipe, dataclasses.replace(tiny_lock, requirements=("six",))) != key
    # python and platform describe the base; they do not change its bytes, so they share the base layer.
    assert base_key(dataclasses.replace(recipe, python="3.12")) == base_key(recipe)


def test_freeze_problems_names_extra_missing_and_mismatched(tiny_lock: Lock) -> None:
    assert freeze_problems(tiny_lock, {"python": "3.11.2", "packages": [["six", "1.16.0"]]}) == []
    problems = freeze_problems(tiny_lock, {"python": "3.12.1", "packages": [["Six", "1.17.0"], ["attrs", "23.1.0"]]})
    assert problems == [
        "Python is 3.12.1, the lock is for 3.11",
        "extra attrs 23.1.0",
        "six is 1.17.0, the lock says 1.16.0",
    ]
    assert freeze_problems(tiny_lock, {"python": "3.11.2", "packages": []}) == ["missing six 1.16.0"]


# -- layers and archives (no engine) ----------------------------------------------------------------------------


def _tar(entries: list[tuple[str, str, bytes | str, int]], mtime: int, owner: int, pax: bool) -> io.BytesIO:
    """entries: (name, kind, data or link target, mode); kind is file, dir, sym or hard."""
    buf = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid = mode, mtime, owner, owner
            info.uname = info.gname = f"user{owner}"
            if pax:
                info.pax_headers = {"atime": str(mtime + 7), "SCHILY.xattr.user.x": "1"}
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(data)
                tar.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_normalized_layer_depends_only_on_names_contents_and_modes() -> None:
    entries: list[tuple[str, str, bytes | str, int]] = [
        ("venv", "dir", b"", 0o755),
        ("venv/bin", "dir", b"", 0o755),
        ("venv/bin/python", "sym", "/usr/bin/python3", 0o777),
        ("venv/z.py", "file", b"print('z')\n", 0o644),
        ("venv/a.py", "hard", "venv/z.py", 0o644),  # a hard link that sorts before the file it names
        ("venv/bin/tool", "file", b"#!/bin/sh\n", 0o4755),
        ("venv/lib/x.txt", "file", "é".encode() * 10, 0o600),  # its parent directory is not listed
    ]
    first = io.BytesIO()
    digest1, size1 = write_normalized(_tar(entries, 1, 1000, pax=True), first, EPOCH, strip="venv", prefix="/opt/venv")
    second = io.BytesIO()
    shuffled = [entries[i] for i in (6, 5, 3, 4, 2, 1, 0)]  # a hard link must still follow its target
    digest2, size2 = write_normalized(
        _tar(shuffled, 2_000_000_000, 0, pax=False), second, EPOCH, strip="venv/", prefix="opt/venv"
    )
    assert first.getvalue() == second.getvalue()
    assert (digest1, size1) == (hashlib.sha256(first.getvalue()).hexdigest(), len(first.getvalue())) == (digest2, size2)

    first.seek(0)
    with tarfile.open(fileobj=first) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
        assert names == [
            "opt", "opt/venv", "opt/venv/a.py", "opt/venv/bin", "opt/venv/bin/python", "opt/venv/bin/tool",
            "opt/venv/lib", "opt/venv/lib/x.txt", "opt/venv/z.py",
        ]  # fmt: skip
        assert all(
            m.mtime == EPOCH and m.uid == 0 and m.gid == 0 and m.uname == "" == m.gname for m in members.values()
        )
        assert all(not m.pax_headers for m in members.values() if m.name != "opt/venv/lib/x.txt")
        assert members["opt/venv/a.py"].isreg() and tar.extractfile("opt/venv/a.py").read() == b"print('z')\n"  # type: ignore[union-attr]
        assert members["opt/venv/z.py"].islnk() and members["opt/venv/z.py"].linkname == "opt/venv/a.py"
        assert members["opt/venv/bin/python"].linkname == "/usr/bin/python3"
        assert members["opt/venv/bin/tool"].mode == 0o4755 and members["opt/venv/lib/x.txt"].mode == 0o600


def test_archive_is_deterministic_and_carries_both_formats(tmp_path: Path) -> None:
    store = Store(tmp_path / "objects")
    layer_bytes = _tar([("hello.txt", "file", b"hi\n", 0o644)], EPOCH, 0, pax=False).getvalue()
    layer = oci.LayerRef(store.put_bytes(layer_bytes), len(layer_bytes), "test layer")
    config = oci.image_config([layer], source_date_epoch=EPOCH, env={"PATH": "/bin"}, labels={"b": "2", "a": "1"})
    parts = oci.store_image(store, config, [layer])
    assert parts.image_id == "sha256:" + hashlib.sha256(store.read_bytes(parts.config_digest)).hexdigest()
    assert store.read_json(parts.config_digest)["created"] == "2023-11-14T22:13:20Z"

    archives = []
    for _ in range(2):
        buf = io.BytesIO()
        oci.write_archive(store, parts, ["harness-test:1"], buf, EPOCH)
        archives.append(buf.getvalue())
    assert archives[0] == archives[1]
    with tarfile.open(fileobj=io.BytesIO(archives[0])) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["manifests"][0]["digest"] == "sha256:" + parts.manifest_digest
    manifest = json.loads(files[f"blobs/sha256/{parts.manifest_digest}"])
    assert manifest["config"]["digest"] == parts.image_id and manifest["layers"][0]["digest"] == layer.diff_id
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": f"blobs/sha256/{parts.config_digest}",
            "RepoTags": ["harness-test:1"],
            "Layers": [f"blobs/sha256/{layer.digest}"],
        }
    ]


# -- the real engine --------------------------------------------------------------------------------------------


@docker
def test_image_id_is_sha256_of_config(tiny_env: Environment, env_layout: Layout, engine: Engine) -> None:
    store = Store(env_layout.cache_objects)
    config_bytes = store.read_bytes(tiny_env.image_id.removeprefix("sha256:"))
    assert tiny_env.image_id == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    manifest_bytes = store.read_bytes(tiny_env.manifest_digest.removeprefix("sha256:"))
    assert json.loads(manifest_bytes)["config"]["digest"] == tiny_env.image_id
    info = engine.inspect_image(tiny_env.image_id)
    assert info is not None and info["Id"] == tiny_env.image_id
    assert tiny_env.image_ref in info["RepoTags"]
    assert info["RootFS"]["Layers"] == list(tiny_env.layers)
    assert info["Config"]["Env"][0].startswith("PATH=/opt/venv/bin:")
    assert info["Config"]["Labels"]["org.harness.key"] == tiny_env.key
    assert info["Config"]["Labels"]["org.harness.lock"] == tiny_env.lock_digest
    assert tiny_env.python.startswith("3.11.") and info["Config"]["Labels"]["org.harness.python"] == tiny_env.python
    assert tiny_env.packages == ({"name": "six", "version": "1.16.0", "sha256": tiny_env.packages[0]["sha256"]},)
    assert set(tiny_env.to_dict()) == {
        "key", "image_id", "manifest_digest", "image_ref", "base", "lock_digest", "python", "packages", "layers",
    }  # fmt: skip


@docker
def test_present_image_is_reused_without_work(
    tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine
) -> None:
    recipe = load_recipe("bookworm", env_layout.project)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        env = ensure_environment(recipe, tiny_lock, env_layout, engine)
        times.append(time.perf_counter() - start)
        assert (env.built, env.loaded, env.image_id) == (False, False, tiny_env.image_id)
    assert statistics.median(times) < 0.05, times


@docker
def test_removed_image_is_loaded_back_from_the_store(
    tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine
) -> None:
    engine.remove_image(tiny_env.image_id)
    assert not engine.has_image(tiny_env.image_id)
    env = ensure_environment(load_recipe("bookworm", env_layout.project), tiny_lock, env_layout, engine)
    assert (env.built, env.loaded, env.image_id) == (False, True, tiny_env.image_id)
    info = engine.inspect_image(tiny_env.image_ref)
    assert info is not None and info["Id"] == tiny_env.image_id


@docker
def test_concurrent_calls_load_once(tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine) -> None:
    engine.remove_image(tiny_env.image_id)
    recipe = load_recipe("bookworm", env_layout.project)
    results: list[Environment] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(ensure_environment(recipe, tiny_lock, env_layout, connect()))
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(env.loaded for env in results) == [False, True]
    assert {env.image_id for env in results} == {tiny_env.image_id} and not any(env.built for env in results)


@docker
def test_container_imports_six_with_network_off(tiny_env: Environment, engine: Engine) -> None:
    chunks: list[bytes] = []
    spec = ContainerSpec(
        image=tiny_env.image_ref,
        command=(
            "python",
            "-c",
            "import os, six, sys; print(six.__version__, sys.prefix, sorted(os.listdir('/sys/class/net')))",
        ),
        network=False,
    )
    code, _ = engine.run(spec, lambda _stream, chunk: chunks.append(chunk))
    assert code == 0, b"".join(chunks)
    assert b"".join(chunks).decode().split(" ", 2) == ["1.16.0", "/opt/venv", "['lo']\n"]


@docker
def test_freeze_check_catches_an_interpreter_that_is_not_the_locked_one(
    tiny_env: Environment, tiny_lock: Lock, harness_cache: Path, engine: Engine, tmp_path: Path
) -> None:
    """A recipe that claims Python 3.12 on bookworm: pip installs fine, the freeze check in the container refuses."""
    layout = _layout(tmp_path, cache=harness_cache)
    (layout.project / "images").mkdir()
    text = (Path(__file__).parent.parent / "harness" / "env" / "recipes" / "bookworm.toml").read_text()
    (layout.project / "images" / "claims312.toml").write_text(text.replace('python = "3.11"', 'python = "3.12"'))
    recipe = load_recipe("claims312", layout.project)
    lock = dataclasses.replace(tiny_lock, python="3.12")
    with pytest.raises(
        EnvironmentBuildError, match=r"does not match the lock: Python is 3\.11\.\d+, the lock is for 3\.12"
    ):
        ensure_environment(recipe, lock, layout, engine)
    assert not (layout.images / f"{environment_key(recipe, lock)}.json").exists()
    assert not list((harness_cache / "tmp").iterdir())


@docker
def test_lock_naming_another_version_than_its_wheel_is_refused(
    tiny_env: Environment, tiny_lock: Lock, harness_cache: Path, engine: Engine, tmp_path: Path
) -> None:
    """Right file and hash (so the cached wheel is used), wrong version: refused before any build."""
    wrong = dataclasses.replace(tiny_lock.packages[0], version="1.16.1")
    lock = dataclasses.replace(tiny_lock, packages=(wrong,))
    layout = _layout(tmp_path, cache=harness_cache)
    recipe = load_recipe("bookworm", layout.project)
    start = time.perf_counter()
    with pytest.raises(
        EnvironmentBuildError, match=r"the lock says six 1\.16\.1, but six-1\.16\.0-\S+ is six 1\.16\.0"
    ):
        ensure_environment(recipe, lock, layout, engine)
    assert time.perf_counter() - start < 5
    assert not (layout.images / f"{environment_key(recipe, lock)}.json").exists()


@docker
def test_wrong_wheel_hash_builds_nothing(tiny_lock: Lock, engine: Engine, tmp_path: Path) -> None:
    wrong = dataclasses.replace(tiny_lock.packages[0], sha256="0" * 64)
    lock = dataclasses.replace(tiny_lock, packages=(wrong,))
    layout = _layout(tmp_path)
    with pytest.raises(EnvironmentBuildError, match="does not match the lock"):
        ensure_environment(load_recipe("bookworm", layout.project), lock, layout, engine)
    assert _built_files(layout.cache) == []
    assert not (layout.wheels / ("0" * 64)).exists()


@docker
def test_mmdebstrap_errors_are_explained(
    tiny_env: Environment,
    tiny_lock: Lock,
    engine: Engine,
    env_layout: Layout,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = _layout(tmp_path)
    shutil.copytree(env_layout.wheels, layout.wheels)  # no download needed: the failure is the point
    (layout.project / "images").mkdir()
    text = (Path(__file__).parent.parent / "harness" / "env" / "recipes" / "bookworm.toml").read_text()
    (layout.project / "images" / "nosuite.toml").write_text(text.replace('suite = "bookworm"', 'suite = "nosuchsuite"'))
    with pytest.raises(EnvironmentBuildError, match=r"(?s)mmdebstrap failed \(exit \d+\).*nosuchsuite") as failed:
        ensure_environment(load_recipe("nosuite", layout.project), tiny_lock, layout, engine)
    assert "mirror" in str(failed.value.hint)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EnvironmentBuildError, match="mmdebstrap is not installed") as missing:
        ensure_environment(load_recipe("bookworm", layout.project), tiny_lock, layout, engine)
    assert "apt-get install mmdebstrap" in str(missing.value.hint)
    assert list((layout.cache / "tmp").iterdir()) == []


@docker
@pytest.mark.slow
def test_cold_rebuild_gives_the_same_image(
    tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine, tmp_path: Path
) -> None:
    """Empty wheel cache, new cache dir, image removed: the library layer is rebuilt and the id does not move.

    The base layer is carried over (record + objects) as another machine would carry it: bootstrapping it again
    would add 20 s and test mmdebstrap rather than harness.
    """
    layout = _layout(tmp_path)
    old, new = Store(env_layout.cache_objects), Store(layout.cache_objects)
    base_record = next(env_layout.images.glob("base-*.json"))
    (layout.images).mkdir(parents=True)
    shutil.copy(base_record, layout.images / base_record.name)
    base = json.loads(base_record.read_bytes())
    for digest in (base["layer"]["digest"], base["config"], base["manifest"]):
        new.put_file(old.path(digest))
    engine.remove_image(tiny_env.image_id)

    env = ensure_environment(load_recipe("bookworm", layout.project), tiny_lock, layout, engine)
    assert env.built and env.image_id == tiny_env.image_id and env.manifest_digest == tiny_env.manifest_digest
    assert env.layers == tiny_env.layers
    assert env.to_dict() == tiny_env.to_dict()


@docker
@pytest.mark.slow
def test_changing_one_pinned_version_changes_image_id_and_manifest_digest(
    tiny_env: Environment, tiny_lock: Lock, env_layout: Layout, engine: Engine, tmp_path: Path
) -> None:
    """six 1.16.0 -> 1.17.0 (its real wheel and hash): same base layer, another library layer, another image."""
    six117 = LockedPackage(
        name="six",
        version="1.17.0",
        filename="six-1.17.0-py2.py3-none-any.whl",
        sha256="4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274",
    )
    requirements = (session_owned("six==1.17.0"),)
    lock = dataclasses.replace(
        tiny_lock, requirements=requirements, requirements_digest=requirements_digest(requirements), packages=(six117,)
    )
    env = ensure_environment(load_recipe("bookworm", env_layout.project), lock, env_layout, engine)
    try:
        assert env.built and env.key != tiny_env.key
        assert env.image_id != tiny_env.image_id and env.manifest_digest != tiny_env.manifest_digest
        assert env.layers[0] == tiny_env.layers[0] and env.layers[1] != tiny_env.layers[1]
        assert env.packages == ({"name": "six", "version": "1.17.0", "sha256": six117.sha256},)
    finally:
        engine.remove_image(env.image_ref)  # this session's own key; the session's tiny image is untouched
