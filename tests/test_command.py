"""{name} placeholders in the configured command (harness/project/command.py), and a real run of one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.project.command import fill, placeholders, read_leaves
from harness.project.config import parse_config
from tests.projects import commit_all, harness, valid_record

PARAMS = {"alpha": 0.5, "name": "two words", "flag": True, "model": {"depth": 3, "kind": "tree"}, "a.b": 1}


def test_placeholders_are_filled_inside_their_argument() -> None:
    filled = fill(
        ["python", "train.py", "{alpha}", "--name={name}", "{flag}", "{model.depth}", "{a.b}", "{model}"],
        PARAMS,
        "command",
    )
    assert filled.argv == (
        "python",
        "train.py",
        "0.5",
        "--name=two words",  # one argument: no shell re-splits it
        "true",
        "3",
        "1",
        '{"depth": 3, "kind": "tree"}',
    )
    assert filled.params == ("alpha", "name", "flag", "model.depth", "a.b", "model")
    assert read_leaves(PARAMS, filled.params) == {"alpha", "name", "flag", "model.depth", "model.kind", "a.b"}


def test_a_doubled_brace_is_a_literal_brace() -> None:
    filled = fill(["python", "-c", "print({{'a': {alpha}}})"], PARAMS, "command")
    assert filled.argv[2] == "print({'a': 0.5})" and filled.params == ("alpha",)
    assert fill(["echo", "{{alpha}}"], PARAMS, "command").argv == ("echo", "{alpha}")


def test_a_placeholder_without_a_param_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        fill(["python", "train.py", "{l1_ratio}"], PARAMS, "harness.toml: command")
    assert "harness.toml: command: placeholder {l1_ratio} names no param" in caught.value.message
    assert "-p l1_ratio=VALUE" in (caught.value.hint or "") and "model.depth" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match=r"placeholder \{model.width\} names no param"):
        fill(["{model.width}"], PARAMS, "command")


@pytest.mark.parametrize("argument", ["{alpha", "alpha}", "{}", "{ }", "{a{b}"])
def test_a_malformed_placeholder_is_named_when_the_config_is_read(argument: str, tmp_path: Path) -> None:
    text = f'base = "bookworm"\nlock = "harness.lock"\ncommand = ["python", "{argument}"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "harness.toml", tmp_path)
    assert caught.value.message.startswith("harness.toml: command: ")
    assert "{{" in (caught.value.hint or "")
    assert placeholders(["x{{y}}", "{a}{b}", "{a}"], "command") == ["a", "b"]


@pytest.mark.docker
def test_a_run_fills_the_command_and_counts_its_params_as_read(probe_project: Path) -> None:
    config = probe_project / "harness.toml"
    config.write_text(
        config.read_text().replace(
            'command = ["python", "main.py"]', "command = \"python show.py {scale} --label='{label} x' {{literal}}\""
        )
        + 'label = "a b"\n'
    )
    (probe_project / "show.py").write_text("import sys\nprint(sys.argv[1:])\n")
    commit_all(probe_project, "placeholders")
    result = harness(probe_project, "run", "-p", "scale=7")
    assert result.returncode == 0, result.stderr
    assert "['7', '--label=a b x', '{literal}']" in result.stdout
    run_id = result.stderr.split("harness: run ", 1)[1].split()[0]
    record = valid_record(json.loads(harness(probe_project, "show", run_id, "--json").stdout))
    assert record["command"] == ["python", "show.py", "7", "--label=a b x", "{literal}"]
    assert record["command_template"] == ["python", "show.py", "{scale}", "--label={label} x", "{{literal}}"]
    assert record["command_params"] == ["scale", "label"]
    # The code never loaded harness_params: the command is how its params reached it.
    assert record["params_read"] == ["label", "scale"]
    assert record["params_unread"] == ["exit", "sleep"]
    assert "params set but never read by the code: exit, sleep" in result.stderr
    log = (probe_project / ".harness" / "runs" / record["id"] / "log.txt").read_text()
    assert "['7', '--label=a b x', '{literal}']" in log

    rebuilt = harness(probe_project, "rebuild", record["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    again = json.loads(harness(probe_project, "show", json.loads(rebuilt.stdout)["rebuild"], "--json").stdout)
    assert again["command"] == record["command"] and again["params_read"] == record["params_read"]

    missing = harness(probe_project, "run", "--", "python", "-c", "print({})")  # after --: untouched
    assert missing.returncode == 0, missing.stderr
    config.write_text(config.read_text().replace("{scale}", "{scael}"))
    commit_all(probe_project, "typo")
    typo = harness(probe_project, "run")
    assert typo.returncode != 0
    assert "placeholder {scael} names no param" in typo.stderr
