from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.project.config import find_config_file, load_config, parse_config

GOOD = """
name = "demo"
base = "bookworm"
lock = "harness.lock"
command = "python main.py --fast"
params_file = "params.yaml"
threads = 2

[data]
train = "data/train.csv"

[params]
lr = 0.1
"""


def test_harness_toml_parses_to_values(tmp_path: Path) -> None:
    (tmp_path / "harness.toml").write_text(GOOD)
    config = load_config(tmp_path)
    assert config.command == ("python", "main.py", "--fast")  # split once, recorded as a list
    assert config.data[0].name == "train" and config.data[0].path == tmp_path / "data/train.csv"
    assert config.data[0].mount == "/data/train"
    assert config.params == {"lr": 0.1} and config.threads == 2


def test_pyproject_table_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname="x"\n[tool.harness]\nbase="bookworm"\nlock="l"\ncommand=["python","a.py"]\n'
    )
    (tmp_path / "src").mkdir()
    assert find_config_file(tmp_path / "src") == tmp_path / "pyproject.toml"
    assert load_config(tmp_path / "src").prefix == "tool.harness"


def test_pyproject_without_table_is_not_a_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n')
    with pytest.raises(ConfigError, match="no harness config") as err:
        load_config(tmp_path)
    assert "harness init" in (err.value.hint or "")


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    text = '[tool.harness]\nbase="bookworm"\nlock="l"\ncommand=["x"]\ncomand=["y"]\n'
    with pytest.raises(ConfigError, match=r"pyproject.toml: tool.harness.comand: unknown key") as err:
        parse_config(text, tmp_path / "pyproject.toml", tmp_path)
    assert "did you mean 'command'" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("threads = 'two'", r"threads: expected int, got str"),
        ("command = 3", r"command: expected list or str"),
        ("command = []", r"command: must be a non-empty list"),
        ("data = 'x'", r"data: expected table"),
        ("lock = '../outside.lock'", r"lock: '../outside.lock' must be a path inside the project"),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, line: str, match: str) -> None:
    base = {"base": "base = 'bookworm'", "lock": "lock = 'l'", "command": "command = ['x']"}
    base[line.split()[0]] = line
    text = "\n".join(base.values()) + "\n"
    with pytest.raises(ConfigError, match=match):
        parse_config(text, tmp_path / "harness.toml", tmp_path)


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="harness.toml: command: missing"):
        parse_config('base="bookworm"\nlock="l"\n', tmp_path / "harness.toml", tmp_path)


def test_bad_toml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("base = \n", tmp_path / "harness.toml", tmp_path)


def test_data_entry_must_be_a_path(tmp_path: Path) -> None:
    text = 'base="b"\nlock="l"\ncommand=["x"]\n[data]\ntrain = 3\n'
    with pytest.raises(ConfigError, match=r"data.train: expected a path string"):
        parse_config(text, tmp_path / "harness.toml", tmp_path)
