"""Params: config defaults, then named configs from the params file (``-c NAME``, later wins), then
``-p key=value`` overrides (YAML scalars, dotted keys for nesting). The result keeps where each value came from.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.digests import sha256_json
from harness.errors import ConfigError
from harness.flatten import flat

_ENV_SAFE = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class Params:
    values: dict[str, Any]
    sources: dict[str, str]  # dotted key -> "default" | "config:NAME" | "override"
    configs: tuple[str, ...]

    @property
    def digest(self) -> str:
        return sha256_json(self.values)

    def env(self) -> dict[str, str]:
        """``HARNESS_PARAM_<KEY>`` for every leaf (nested keys joined by ``__``); JSON for lists."""
        out: dict[str, str] = {}
        for key, value in flat(self.values).items():
            name = "HARNESS_PARAM_" + "__".join(_ENV_SAFE.sub("_", part).upper() for part in key.split("."))
            out[name] = _env_value(value)
        return out


def load_named_configs(text: str | None, where: str) -> dict[str, dict[str, Any]]:
    if text is None:
        return {}
    yaml = _yaml()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(
            f"{where}: expected a mapping of config names to param mappings",
            "for example:\nbaseline:\n  model: baseline\nlinear_regression:\n  model: linear_regression",
        )
    return {str(k): v for k, v in data.items()}


def merge_params(
    defaults: dict[str, Any],
    named: dict[str, dict[str, Any]],
    selected: Sequence[str],
    overrides: Sequence[str],
    params_file: str | None,
) -> Params:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    _apply(values, sources, defaults, "default")
    for name in selected:
        if name not in named:
            known = ", ".join(sorted(named)) or "none"
            where = params_file or "the params file (no params_file is configured)"
            raise ConfigError(f"no named config {name!r} in {where}", f"known configs: {known}")
        _apply(values, sources, named[name], f"config:{name}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"-p {item!r}: expected key=value", "for example -p lr=0.01 or -p model.depth=3")
        yaml = _yaml()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        nested: dict[str, Any] = {}
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _apply(values, sources, nested, "override")
    return Params(values=values, sources=dict(sorted(sources.items())), configs=tuple(selected))


def _apply(
    values: dict[str, Any], sources: dict[str, str], layer: dict[str, Any], source: str, prefix: str = ""
) -> None:
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            _apply(values[key], sources, value, source, dotted + ".")
            continue
        # A scalar replacing a table (or the reverse) drops the old leaves' sources.
        for old in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
            del sources[old]
        values[key] = copy.deepcopy(value)
        for leaf in flat({key: value}, prefix):
            sources[leaf] = source


def _env_value(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _yaml() -> Any:
    """PyYAML, imported where YAML is read (a params file, -p values): 10-15 ms a run without either need not pay."""
    import yaml

    return yaml
