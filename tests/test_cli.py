"""Every command has help text that teaches, and the CLI's error path prints a message and a hint, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import build_parser
from harness.cli.output import subcommands
from tests.projects import cli_env, harness

COMMANDS = list(subcommands(build_parser()))


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


def test_a_group_or_no_command_prints_help_and_fails(tmp_path: Path) -> None:
    for args in ((), ("data",), ("env",)):
        result = harness(tmp_path, *args)
        assert result.returncode == 2 and not result.stdout
        assert "Commands:" in result.stderr and "Usage: harness" in result.stderr


def test_usage_errors_name_the_command_and_its_help(tmp_path: Path) -> None:
    unknown = harness(tmp_path, "data", "snapshot", "d", "--bogus")
    assert unknown.returncode == 2
    assert "error: harness data snapshot: no such option: --bogus" in unknown.stderr
    assert "hint: see `harness data snapshot --help`" in unknown.stderr
    missing = harness(tmp_path, "rebuild")
    assert missing.returncode == 2 and "error: harness rebuild: missing argument 'RUN'" in missing.stderr
    bad = harness(tmp_path, "ls", "--limit", "many", "--json")
    assert bad.returncode == 2 and "not a count of runs: 'many'" in bad.stderr
    assert json.loads(bad.stdout)["error"] == "UsageError"
    assert "Traceback" not in unknown.stderr + missing.stderr + bad.stderr


def test_values_may_start_with_a_dash(tmp_path: Path) -> None:
    """`--sort -metrics.x`: the value goes on to the query checker, not taken for an option."""
    for args in (("--sort", "-metrics.x"), ("-s", "-metrics.x"), ("--sort=-metrics.x",)):
        result = harness(tmp_path, "ls", *args, "-C", str(tmp_path))
        assert "expected one argument" not in result.stderr, args
        assert result.returncode == 101 and "no harness config found" in result.stderr  # parsed; then no project


def test_a_command_imports_only_what_it_uses(tmp_path: Path) -> None:
    """Every command runs before an experiment or around a snapshot, so its start must stay quick: the command
    framework (typer, and the shellingham `import typer` imports, under 1 ms) but not what typer may bring along
    (pydantic from typer 0.29, rich for rich help), and no docker SDK, GitPython or YAML unless the command needs
    them."""
    script = (
        "import sys\nfrom harness.cli.main import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = {'docker', 'git', 'yaml', 'pydantic', 'rich', 'tomlkit', 'requests'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy), code)\n"
    )
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "harness.toml").write_text('name = "t"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["true"]\n')
    env = cli_env(HARNESS_HOME=str(tmp_path / ".harness"))
    for args in (["data", "snapshot", "d"], ["ls"], ["--help"], ["exit-codes"], ["show", "x"], ["diff", "x", "y"]):
        result = subprocess.run(
            [sys.executable, "-c", script, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        expected = "[] 108" if args[0] in ("show", "diff") else "[] 0"  # no such run; parsed and looked up
        assert result.stdout.splitlines()[-1] == expected, (args, result.stdout, result.stderr)


def test_run_outside_a_project_is_a_clear_error(tmp_path: Path) -> None:
    result = harness(tmp_path, "run")
    assert result.returncode == 101
    assert "error: no harness config found" in result.stderr
    assert "hint: run `harness init`" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_errors_are_machine_readable(tmp_path: Path) -> None:
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


def test_version(tmp_path: Path) -> None:
    from harness import __version__

    result = harness(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout == f"harness {__version__}\n"


def test_verbose_adds_the_traceback(tmp_path: Path) -> None:
    result = harness(tmp_path, "-v", "ls")
    assert result.returncode == 101 and "error: no harness config found" in result.stderr
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_an_option_missing_its_value_names_the_command(tmp_path: Path) -> None:
    result = harness(tmp_path, "ls", "--limit")
    assert result.returncode == 2
    assert "error: harness ls: option '--limit' requires an argument" in result.stderr
    assert "hint: see `harness ls --help`" in result.stderr


def test_run_passes_the_command_after_double_dash_untouched(tmp_path: Path) -> None:
    tokens = ["-p", "a=1", "--", "python", "train.py", "--json", "-v", "--commit", "x", "--"]
    params = subcommands(build_parser())["run"].make_context("run", tokens).params
    assert params["command"] == ("python", "train.py", "--json", "-v", "--commit", "x", "--")
    assert params["param"] == ("a=1",) and params["commit"] == "HEAD" and params["as_json"] is False
    # --json after -- belongs to the command: the error is text, not JSON
    result = harness(tmp_path, "run", "--", "python", "--json")
    assert result.returncode == 101 and not result.stdout


# typer detects the shell it runs under; this (typer's own switch for its tests) names it instead
EXPLICIT_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def test_show_completion_prints_a_script_for_harness(tmp_path: Path) -> None:
    bash = harness(tmp_path, "--show-completion", "bash", env=cli_env(**EXPLICIT_SHELL))
    assert bash.returncode == 0, bash.stderr
    assert "_HARNESS_COMPLETE=complete_bash" in bash.stdout
    assert "complete -o default -F _harness_completion harness" in bash.stdout
    zsh = harness(tmp_path, "--show-completion", "zsh", env=cli_env(**EXPLICIT_SHELL))
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef harness")


def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    result = harness(tmp_path, "--install-completion", "bash", env=cli_env(HOME=str(tmp_path), **EXPLICIT_SHELL))
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "harness.sh"
    assert "_harness_completion" in script.read_text()
    assert str(script.relative_to(tmp_path)) in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize(
    ("words", "expected"),
    [("harness da", "data"), ("harness data sn", "snapshot"), ("harness ls --so", "--sort"), ("harness e", "env")],
)
def test_completion_completes_commands_and_options(tmp_path: Path, words: str, expected: str) -> None:
    """What the installed bash script asks harness for on <Tab>."""
    env = cli_env(_HARNESS_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
    result = harness(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.split()
