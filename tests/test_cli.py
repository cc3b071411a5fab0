"""Every command has help text that teaches, and the CLI's error path prints a message and a hint, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import app
from tests.projects import harness

COMMANDS = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]


def test_every_command_is_listed_in_help(tmp_path: Path) -> None:
    result = harness(tmp_path, "--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(tmp_path: Path, command: str) -> None:
    result = harness(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) > 3


def test_run_outside_a_project_is_a_clear_error(tmp_path: Path) -> None:
    result = harness(tmp_path, "run")
    assert result.returncode == 101
    assert "error: no harness config found" in result.stderr
    assert "hint: run `harness init`" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_errors_are_machine_readable(tmp_path: Path) -> None:
    import json

    result = harness(tmp_path, "ls", "--json")
    assert result.returncode == 101
    assert json.loads(result.stdout)["error"] == "ConfigError"


def test_init_keeps_every_line_of_pyproject(tmp_path: Path) -> None:
    original = '[project]\nname = "x"  # keep me\n\n[tool.black]\nline-length = 100\n'
    (tmp_path / "pyproject.toml").write_text(original)
    result = harness(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "pyproject.toml").read_text()
    assert text.startswith(original)
    assert "[tool.harness]" in text and ".harness/" in (tmp_path / ".gitignore").read_text()
    again = harness(tmp_path, "init")
    assert again.returncode == 101 and "already has a harness config" in again.stderr
    assert (tmp_path / "pyproject.toml").read_text() == text


def test_init_without_pyproject_writes_harness_toml(tmp_path: Path) -> None:
    assert harness(tmp_path, "init").returncode == 0
    assert 'base = "bookworm"' in (tmp_path / "harness.toml").read_text()


def test_exit_codes_are_documented(tmp_path: Path) -> None:
    out = harness(tmp_path, "exit-codes").stdout
    for code in ("101", "103", "106", "130"):
        assert code in out
