"""`harness lock` and the lock a project builds from, for each requirements kind and lock format (uv: metadata only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.env.catalog import project_environment
from harness.env.locking import lock_project
from harness.errors import ConfigError
from tests.projects import harness, write_files
from tests.test_pylock import MULTI

PYPROJECT = """[project]
name = "demo"
version = "0.1"
requires-python = ">=3.12"
dependencies = ['six==1.16.0; python_version >= "3.12"', 'PyYAML==6.0.2; sys_platform == "darwin"']

[tool.harness]
base = "trixie"
lock = "pylock.toml"
requirements = "pyproject.toml"
command = ["python", "main.py"]
"""


def test_pyproject_dependencies_locked_into_a_pylock_for_trixie(tmp_path: Path) -> None:
    write_files(tmp_path, {"pyproject.toml": PYPROJECT})
    outcome = lock_project(tmp_path)
    assert outcome["written"] and (outcome["python"], outcome["platform"]) == ("3.13", "manylinux_2_41_x86_64")
    assert [p["name"] for p in outcome["packages"]] == ["six"]
    text = (tmp_path / "pylock.toml").read_text()
    assert 'created-by = "harness"' in text and "six-1.16.0-py2.py3-none-any.whl" in text

    project = project_environment(tmp_path)
    assert project.lock.digest == outcome["digest"]
    assert lock_project(tmp_path)["changes"] == [] and (tmp_path / "pylock.toml").read_text() == text

    # Only [project] dependencies count: the same file's harness table may change, the dependencies may not.
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace('"main.py"', '"train.py"'))
    project_environment(tmp_path)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace("six==1.16.0", "six==1.17.0"))
    with pytest.raises(ConfigError, match=r"the lock is older than pyproject.toml"):
        project_environment(tmp_path)
    assert lock_project(tmp_path)["changes"] == ["~ six 1.16.0 -> 1.17.0"]

    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace('"trixie"', '"bookworm"'))
    with pytest.raises(ConfigError, match=r"requires-python is '>=3.12', and the image's Python is 3.11"):
        lock_project(tmp_path)


FOREIGN_CONFIG = """base = "trixie"
lock = "pylock.toml"
command = ["python", "main.py"]
"""


def test_a_pylock_from_another_tool_is_used_as_it_is_and_never_overwritten(tmp_path: Path) -> None:
    write_files(tmp_path, {"harness.toml": FOREIGN_CONFIG, "pylock.toml": MULTI})
    result = harness(tmp_path, "lock")
    assert result.returncode == 0, result.stderr
    assert "checked" in result.stdout and "3 packages for the image, unchanged" in result.stdout
    assert (tmp_path / "pylock.toml").read_text() == MULTI

    lock = project_environment(tmp_path).lock
    assert {p.name for p in lock.packages} == {"numpy", "cryptography", "six"}
    assert lock.package("numpy") is not None and "cp313-cp313-manylinux" in lock.package("numpy").filename  # type: ignore[union-attr]

    # With requirements configured as well, harness can neither rewrite it nor tell whether it is current.
    write_files(tmp_path, {"harness.toml": FOREIGN_CONFIG + 'requirements = "requirements.txt"\n'})
    write_files(tmp_path, {"requirements.txt": "six\n"})
    for attempt in (lambda: lock_project(tmp_path), lambda: project_environment(tmp_path)):
        with pytest.raises(ConfigError, match=r"pylock.toml was made by uv, not by `harness lock`"):
            attempt()
    assert (tmp_path / "pylock.toml").read_text() == MULTI
