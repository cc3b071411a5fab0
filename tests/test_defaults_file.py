"""A flat defaults file (DVC's params.yaml: top-level keys are params) next to harness's named configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.project.config import parse_config
from harness.project.params import layered, load_defaults, merge_params, write_defaults_file
from tests.projects import commit_all, harness, valid_record

DVC_PARAMS = "train:\n  lr: 0.1\n  epochs: 3\nseed: 7\n"


def test_a_flat_file_is_the_defaults_and_the_config_table_and_p_apply_over_it(tmp_path: Path) -> None:
    defaults = layered(load_defaults(DVC_PARAMS, "params.yaml"), {"train": {"epochs": 5}})
    assert defaults == {"train": {"lr": 0.1, "epochs": 5}, "seed": 7}
    params = merge_params(defaults, {"fast": {"train": {"epochs": 1}}}, ["fast"], ["train.lr=0.01"], "configs.yaml")
    assert params.values == {"train": {"lr": 0.01, "epochs": 1}, "seed": 7}
    assert params.sources == {"seed": "default", "train.epochs": "config:fast", "train.lr": "override"}
    with pytest.raises(ConfigError, match="params.yaml: expected a mapping of params, got list"):
        load_defaults("- 1\n", "params.yaml")


def test_the_defaults_file_is_written_over_only_where_the_params_differ(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("# comments stay\n" + DVC_PARAMS)
    same = load_defaults(DVC_PARAMS, "params.yaml")
    assert write_defaults_file(tmp_path, "params.yaml", same) is False
    assert (tmp_path / "params.yaml").read_text().startswith("# comments stay")
    changed = {"train": {"lr": 0.01, "epochs": 3}, "seed": 7}
    assert write_defaults_file(tmp_path, "params.yaml", changed) is True
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == changed


def test_one_file_cannot_be_both_layouts(tmp_path: Path) -> None:
    text = 'base = "bookworm"\nlock = "x.lock"\ncommand = ["true"]\nparams_file = "p.yaml"\ndefaults_file = "p.yaml"\n'
    with pytest.raises(ConfigError, match="defaults_file: 'p.yaml' is also the params_file"):
        parse_config(text, tmp_path / "harness.toml", tmp_path)


# DVC-style code: reads params.yaml itself (no PyYAML in the probe's environment: the file is simple enough).
READER = r"""
import json, os, pathlib
text = pathlib.Path("params.yaml").read_text()
pathlib.Path(os.environ["HARNESS_OUTPUTS"], "seen.txt").write_text(text)
"""


@pytest.mark.docker
def test_a_run_reads_defaults_from_params_yaml_and_the_code_sees_overrides(probe_project: Path) -> None:
    config = probe_project / "harness.toml"
    text = config.read_text().replace('params_file = "params.yaml"', 'params_file = "configs.yaml"')
    text = text.replace('command = ["python", "main.py"]', 'command = ["python", "reader.py"]')
    config.write_text(text.replace("[params]\nscale = 1\n", "[params]\n"))
    config.write_text(config.read_text().replace('name = "probe"', 'name = "probe"\ndefaults_file = "dvcparams.yaml"'))
    (probe_project / "params.yaml").rename(probe_project / "configs.yaml")
    (probe_project / "dvcparams.yaml").write_text("scale: 3\ntrain:\n  lr: 0.1\n")
    (probe_project / "reader.py").write_text(READER.replace("params.yaml", "dvcparams.yaml"))
    commit_all(probe_project, "dvc layout")

    plain = harness(probe_project, "run", "--json")
    assert plain.returncode == 0, plain.stderr
    record = valid_record(json.loads(plain.stdout))
    assert record["params"] == {"scale": 3, "train": {"lr": 0.1}, "exit": 0, "sleep": 0}
    assert record["params_sources"]["train.lr"] == "default"
    # [params] adds exit and sleep, so the code's copy holds all the run's params.
    assert record["runtime"]["defaults_file_written"] == "dvcparams.yaml"

    tuned = harness(probe_project, "run", "-c", "double", "-p", "train.lr=0.01", "--json")
    assert tuned.returncode == 0, tuned.stderr
    record = valid_record(json.loads(tuned.stdout))
    assert record["params"]["scale"] == 2 and record["params"]["train"] == {"lr": 0.01}
    seen = harness(probe_project, "show", record["id"], "--json")
    files = json.loads(seen.stdout)["outputs"]["files"]
    seen_text = (probe_project / ".harness" / "runs" / record["id"] / "outputs" / "seen.txt").read_text()
    assert yaml.safe_load(seen_text) == record["params"] and "seen.txt" in files

    rebuilt = harness(probe_project, "rebuild", record["id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert json.loads(rebuilt.stdout)["identical"] is True
