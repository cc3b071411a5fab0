"""`harness env ls|show|build|verify`: help, the catalogue, and verify against a real rebuild (mmdebstrap included)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from harness.cli.env import VERIFY_MISMATCH_EXIT_CODE, _render_verify
from harness.cli.main import build_parser
from harness.cli.output import subcommands
from harness.docker.engine import connect
from harness.env.environment import Environment
from harness.env.lockfile import Lock
from harness.env.verify import diff_layers
from harness.paths import Layout
from harness.storage.store import Store
from tests.projects import cli_env, harness

ENV_COMMANDS = list(subcommands(subcommands(build_parser())["env"]))
SIX_PY = "opt/venv/lib/python3.11/site-packages/six.py"
docker = pytest.mark.docker


def test_env_commands_have_help(tmp_path: Path) -> None:
    assert sorted(ENV_COMMANDS) == ["build", "ls", "show", "verify"]
    top = harness(tmp_path, "env", "--help")
    assert top.returncode == 0 and all(name in top.stdout for name in ENV_COMMANDS)
    for name in ENV_COMMANDS:
        result = harness(tmp_path, "env", name, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout and len(result.stdout.strip().splitlines()) > 6


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_diff_layers_names_the_first_differing_files(tmp_path: Path) -> None:
    old = {"a/1.py": (b"one", 0o644), "a/2.py": (b"two", 0o644), "a/3.py": (b"x", 0o644), "b": (b"", 0o644)}
    new = {**old, "a/2.py": (b"TWO", 0o644), "a/3.py": (b"x", 0o755), "c": (b"new", 0o644)}
    del new["b"]
    (tmp_path / "old.tar").write_bytes(_tar(old))
    (tmp_path / "new.tar").write_bytes(_tar(new))
    diffs = diff_layers(tmp_path / "old.tar", tmp_path / "new.tar")
    assert [d.path for d in diffs] == ["a/2.py", "a/3.py", "b", "c"]
    assert diffs[0].describe().startswith("a/2.py: sha256 ") and diffs[1].describe() == "a/3.py: mode 0o644 -> 0o755"
    assert diffs[2].describe() == "b: only in the recorded layer" and diffs[3].describe() == "c: only in the rebuild"
    assert [d.path for d in diff_layers(tmp_path / "old.tar", tmp_path / "new.tar", limit=1)] == ["a/2.py"]
    assert diff_layers(tmp_path / "old.tar", tmp_path / "old.tar") == ()


def test_show_unknown_environment_is_a_clear_error(tmp_path: Path) -> None:
    result = harness(tmp_path, "env", "show", "deadbeef", env=cli_env(HARNESS_CACHE=str(tmp_path / "cache")))
    assert result.returncode == 108
    assert "error: no recorded environment matches 'deadbeef'" in result.stderr and "harness env ls" in result.stderr
    as_json = harness(tmp_path, "env", "show", "deadbeef", "--json", env=cli_env(HARNESS_CACHE=str(tmp_path / "c")))
    assert as_json.returncode == 108 and json.loads(as_json.stdout)["error"] == "NotFound"
    outside = harness(tmp_path, "env", "build", "--json")
    assert outside.returncode == 101 and json.loads(outside.stdout)["error"] == "ConfigError"


def test_verify_before_build_says_to_build(tmp_path: Path, tiny_lock: Lock) -> None:
    from tests.projects import make_probe_project

    project = make_probe_project(tmp_path / "probe", tiny_lock)
    result = harness(project, "env", "verify", env=cli_env(HARNESS_CACHE=str(tmp_path / "empty-cache")))
    assert result.returncode == 108, result.stderr
    assert "no environment is recorded" in result.stderr and "harness env build" in result.stderr


@docker
def test_build_ls_show(probe_project: Path, tiny_env: Environment) -> None:
    built = harness(probe_project, "env", "build", "--json")
    assert built.returncode == 0, built.stderr
    result = json.loads(built.stdout)
    assert result["action"] == "reused" and result["image_id"] == tiny_env.image_id
    assert result["manifest_digest"] == tiny_env.manifest_digest

    listed = json.loads(harness(probe_project, "env", "ls", "--json").stdout)
    mine = [row for row in listed if row["key"] == tiny_env.key]
    assert len(mine) == 1 and mine[0]["present"] is True and mine[0]["stored"] is True
    assert (mine[0]["packages"], mine[0]["python"], mine[0]["image_id"]) == (1, tiny_env.python, tiny_env.image_id)
    assert mine[0]["size"] > 100_000_000  # the Debian base is most of it
    assert tiny_env.key[:16] in harness(probe_project, "env", "ls").stdout

    for query in (tiny_env.key[:8], tiny_env.image_id, tiny_env.manifest_digest[7:19], tiny_env.image_ref):
        shown = harness(probe_project, "env", "show", query, "--json")
        assert shown.returncode == 0, (query, shown.stderr)
        info = json.loads(shown.stdout)
        assert info["key"] == tiny_env.key and [x["diff_id"] for x in info["layers"]] == list(tiny_env.layers)
        assert [x["role"] for x in info["layers"]] == ["base", "libraries"]
        assert info["package_list"] == [dict(p) for p in tiny_env.packages] and info["base"]["suite"] == "bookworm"
    text = harness(probe_project, "env", "show", tiny_env.key[:8]).stdout
    assert "six" in text and tiny_env.layers[1] in text


def _private_cache(env_layout: Layout, env: Environment, cache: Path) -> Store:
    """The environment's record and layers copied into a cache of the test's own, safe to tamper with."""
    (cache / "images").mkdir(parents=True)
    shutil.copy(env_layout.images / f"{env.key}.json", cache / "images" / f"{env.key}.json")
    old, new = Store(env_layout.cache_objects), Store(cache / "objects")
    for digest in (*env.parts.layers, env.parts.config_digest, env.parts.manifest_digest):
        new.put_file(old.path(digest))
    return new


def _tamper(path: Path, member_name: str) -> None:
    """Flip one byte of one file inside a layer tar, keeping its size and every other member."""
    original = path.read_bytes()
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(original)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if member.name == member_name and data:
                data = bytes([data[0] ^ 1]) + data[1:]
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    path.chmod(0o644)
    path.write_bytes(out.getvalue())


@docker
@pytest.mark.slow
def test_verify_passes_then_names_a_tampered_layer(
    probe_project: Path, tiny_env: Environment, env_layout: Layout, tmp_path: Path
) -> None:
    """Two clean rebuilds (mmdebstrap, downloads, install: about 40 s each) against a private copy of the cache,
    so the layer tampered with is nobody else's."""
    cache = tmp_path / "cache"
    store = _private_cache(env_layout, tiny_env, cache)
    env = cli_env(HARNESS_CACHE=str(cache))

    passed = harness(probe_project, "env", "verify", env=env)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.startswith(f"verified: the rebuild of {tiny_env.key[:16]} is the recorded image")
    assert tiny_env.image_id in passed.stdout and tiny_env.manifest_digest in passed.stdout
    assert "mmdebstrap" in passed.stderr and "downloading" in passed.stderr  # clean: nothing reused
    assert not list((cache / "tmp").iterdir())  # the clean cache is gone
    assert not any(t.startswith("harness-verify:") for t in _tags(probe_project, tiny_env))

    _tamper(store.path(tiny_env.parts.layers[1]), SIX_PY)
    failed = harness(probe_project, "env", "verify", "--json", env=env)
    assert failed.returncode == VERIFY_MISMATCH_EXIT_CODE, failed.stderr
    report = json.loads(failed.stdout)
    assert report["ok"] is False and report["rebuilt"]["image_id"] == tiny_env.image_id
    base, libraries = report["layers"]
    assert base["ok"] is True and (libraries["ok"], libraries["stored"]) == (False, "corrupt")
    assert libraries["recorded"] == libraries["rebuilt"] == tiny_env.layers[1]
    assert [d["path"] for d in libraries["differences"]] == [SIX_PY]
    difference = libraries["differences"][0]
    assert difference["recorded"]["size"] == difference["rebuilt"]["size"]
    assert difference["recorded"]["sha256"] != difference["rebuilt"]["sha256"]

    text = _render_verify(report)  # what the same verify prints without --json
    assert text.startswith("MISMATCH") and "layer 1 (libraries)" in text and "no longer hashes to its name" in text
    assert f"{SIX_PY}: sha256 " in text and f"images/{report['key']}.json" in text
    assert "base      recipe 'bookworm' bootstrapped again with mmdebstrap" in text


def _tags(project: Path, env: Environment) -> list[str]:

    info = connect().inspect_image(env.image_id)
    assert info is not None
    return list(info.get("RepoTags") or [])
