from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.project.params import load_named_configs, merge_params

NAMED = load_named_configs(
    "baseline:\n  model: baseline\nlinear:\n  model: linear\n  opt:\n    lr: 0.1\n    steps: 10\n", "params.yaml"
)


def test_layers_merge_in_order_and_remember_sources() -> None:
    params = merge_params(
        {"model": "none", "test_days": 28, "opt": {"lr": 1.0}},
        NAMED,
        ["baseline", "linear"],
        ["opt.lr=0.01", "test_days=14", "tag=hello world"],
        "params.yaml",
    )
    assert params.values == {"model": "linear", "test_days": 14, "opt": {"lr": 0.01, "steps": 10}, "tag": "hello world"}
    assert params.sources == {
        "model": "config:linear",
        "opt.lr": "override",
        "opt.steps": "config:linear",
        "tag": "override",
        "test_days": "override",
    }
    assert params.configs == ("baseline", "linear")


def test_override_values_are_yaml_scalars() -> None:
    params = merge_params({}, {}, [], ["a=1", "b=1.5", "c=true", "d=[1, 2]", "e=null", "f=text"], None)
    assert params.values == {"a": 1, "b": 1.5, "c": True, "d": [1, 2], "e": None, "f": "text"}


def test_env_vars_flatten_nested_keys() -> None:
    params = merge_params({"opt": {"learning-rate": 0.1}, "lags": [1, 24], "model": "x"}, {}, [], [], None)
    assert params.env() == {
        "HARNESS_PARAM_OPT__LEARNING_RATE": "0.1",
        "HARNESS_PARAM_LAGS": "[1, 24]",
        "HARNESS_PARAM_MODEL": "x",
    }


def test_digest_depends_on_values_only() -> None:
    a = merge_params({"x": 1, "y": 2}, {}, [], [], None)
    b = merge_params({"y": 2}, {}, [], ["x=1"], None)
    assert a.digest == b.digest
    assert a.digest != merge_params({"x": 2, "y": 2}, {}, [], [], None).digest


def test_unknown_named_config_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no named config 'linear_regresion'") as err:
        merge_params({}, NAMED, ["linear_regresion"], [], "params.yaml")
    assert "baseline, linear" in (err.value.hint or "")


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        merge_params({}, {}, [], ["novalue"], None)


def test_params_file_must_be_a_mapping_of_mappings() -> None:
    with pytest.raises(ConfigError, match="params.yaml: expected a mapping"):
        load_named_configs("- a\n- b\n", "params.yaml")
