"""Params: defaults (a flat defaults file such as DVC's params.yaml, then the config's [params] over it), then
named configs from the params file (``-c NAME``, later wins), then ``-p key=value`` overrides (YAML scalars, dotted
keys for nesting). The result keeps where each value came from.

Bounds: YAML aliases may add at most MAX_ALIAS_NODES nodes to what was written and nothing may nest deeper than
MAX_DEPTH (a 687-byte "billion laughs" file would otherwise expand to 10^9 values); a HARNESS_PARAM_* variable
longer than MAX_ENV_VALUE, or beyond MAX_ENV_TOTAL for all of them, is left out (the value is in params.json).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.digests import sha256_json
from harness.errors import ConfigError
from harness.flatten import flat

_ENV_SAFE = re.compile(r"[^A-Za-z0-9]+")
MAX_ALIAS_NODES = 100_000  # values YAML aliases may add beyond those written out
MAX_DEPTH = 100  # levels of nesting in a params file or a -p value
MAX_ENV_VALUE = 32 * 1024  # bytes of one HARNESS_PARAM_* variable (Linux refuses a single one over 128 KiB)
MAX_ENV_TOTAL = 256 * 1024  # bytes of all of them (with argv, under the kernel's 2 MiB at the usual stack limit)


@dataclass(frozen=True)
class Params:
    values: dict[str, Any]
    sources: dict[str, str]  # dotted key -> "default" | "config:NAME" | "override"
    configs: tuple[str, ...]

    @property
    def digest(self) -> str:
        return sha256_json(self.values)

    def env(self) -> dict[str, str]:
        """``HARNESS_PARAM_<KEY>`` for every leaf (nested keys joined by ``__``); JSON for lists. A variable over
        MAX_ENV_VALUE, or beyond MAX_ENV_TOTAL for all, is left out (see :meth:`env_omitted`)."""
        return self._env()[0]

    def env_omitted(self) -> list[str]:
        """The dotted params whose variable :meth:`env` leaves out for its size; the code finds them only in
        /harness/params.json (a process cannot start with a 3 MB variable: "argument list too long")."""
        return self._env()[1]

    def _env(self) -> tuple[dict[str, str], list[str]]:
        out: dict[str, str] = {}
        omitted: list[str] = []
        total = 0
        for key, value in flat(self.values).items():
            name = "HARNESS_PARAM_" + "__".join(_ENV_SAFE.sub("_", part).upper() for part in key.split("."))
            text = _env_value(value)
            size = len(name.encode()) + len(text.encode()) + 2  # "NAME=value\0"
            if size > MAX_ENV_VALUE or total + size > MAX_ENV_TOTAL:
                omitted.append(key)
                continue
            out[name] = text
            total += size
        return out, omitted


SWEEP_KEY = "sweep"  # the params file's sweep block (harness sweep), never a named config


def load_named_configs(text: str | None, where: str) -> dict[str, dict[str, Any]]:
    """The named configs of a params file, without its sweep block."""
    return load_params_file(text, where)[0]


def load_params_file(text: str | None, where: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """A params file: (named configs, its ``sweep:`` block or None). The block is checked by
    harness.project.sweepgrid, which knows what a sweep may hold."""
    if text is None:
        return {}, None
    yaml = _yaml()
    try:
        data = _safe_load(text, where)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if data is None:
        return {}, None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(
            f"{where}: expected a mapping of config names to param mappings",
            "for example:\nbaseline:\n  model: baseline\nlinear_regression:\n  model: linear_regression",
        )
    sweep = data.pop(SWEEP_KEY, None)
    return {str(k): v for k, v in data.items()}, sweep


def load_defaults(text: str | None, where: str) -> dict[str, Any]:
    """A flat params file, DVC's ``params.yaml`` layout: its top-level keys are the params themselves (sections
    like ``train:`` are nested params, ``-p train.lr=0.1``), not names of configs."""
    if text is None:
        return {}
    yaml = _yaml()
    try:
        data = _safe_load(text, where)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping of params, got {type(data).__name__}",
            "for example:\ntrain:\n  lr: 0.01\n  epochs: 10",
        )
    return {str(k): v for k, v in data.items()}


def layered(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``under`` (tables merge key by key; anything else replaces)."""
    out = copy.deepcopy(under)
    _apply(out, {}, over, "")
    return out


def write_defaults_file(code: Path, rel: str, values: dict[str, Any]) -> bool:
    """Where the run's params differ from what the committed defaults file holds, write them over that file in the
    run's copy of the code (``code``), as ``dvc exp run -S`` writes params.yaml: code that reads the file itself sees
    the run's params, -c and -p included. Returns whether it wrote; a file that already holds them is left as
    committed, byte for byte."""
    path = code / rel
    committed = load_defaults(path.read_text(encoding="utf-8"), rel) if path.is_file() else None
    if committed == values:
        return False
    yaml = _yaml()
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=True, allow_unicode=True), encoding="utf-8")
    os.chmod(path, 0o644)
    return True


def merge_params(
    defaults: dict[str, Any],
    named: dict[str, dict[str, Any]],
    selected: Sequence[str],
    overrides: Sequence[str],
    params_file: str | None,
    swept: Sequence[tuple[str, Any]] = (),
) -> Params:
    """Defaults, then the named configs selected, then the ``-p`` overrides, then ``swept``: one point of a sweep,
    (dotted key, value already parsed) pairs, recorded with the source "sweep"."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    _apply(values, sources, defaults, "default")
    for name in selected:
        if name not in named:
            known = ", ".join(sorted(named)) or "none"
            where = params_file or "the params file (no params_file is configured)"
            if name == SWEEP_KEY:
                known += f" ({SWEEP_KEY!r} is the sweep block, which `harness sweep` expands)"
            raise ConfigError(f"no named config {name!r} in {where}", f"known configs: {known}")
        _apply(values, sources, named[name], f"config:{name}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"-p {item!r}: expected key=value", "for example -p lr=0.01 or -p model.depth=3")
        yaml = _yaml()
        try:
            value = _safe_load(raw, f"-p {key}") if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _apply(values, sources, _nest(key, value), "override")
    for key, value in swept:
        _apply(values, sources, _nest(key, value), "sweep")
    return Params(values=values, sources=dict(sorted(sources.items())), configs=tuple(selected))


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    cursor = nested
    parts = dotted.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


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


def _safe_load(text: str, where: str) -> Any:
    """``yaml.safe_load``, but the document's size with every alias expanded, and its depth, are checked on the
    composed node graph (where an alias is one shared node, so this costs what the text costs) before any value
    is built: later steps (flattening, digests, the JSON file) walk the expanded values."""
    yaml = _yaml()
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise _too_deep(where) from None
        if node is None:
            return None
        _check_expansion(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: Any, where: str) -> None:
    """Count the nodes of the document as if every alias were written out, and its depth, without expanding it."""
    yaml = _yaml()
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    distinct = 0
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if finished:
            on_path.discard(key)
            parts = [sizes[id(child)] for child in children]
            sizes[key] = (1 + sum(n for n, _ in parts), 1 + max((d for _, d in parts), default=0))
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(
                f"{where}: a YAML alias refers to a value that contains it (a value without end)",
                "write the value out, or use an anchor only for a finished value",
            )
        on_path.add(key)
        distinct += 1
        stack.append((node, True))
        stack.extend((child, False) for child in children)
    expanded, depth = sizes[id(root)]
    if depth > MAX_DEPTH:
        raise _too_deep(where)
    if expanded - distinct > MAX_ALIAS_NODES:
        raise ConfigError(
            f"{where}: YAML aliases expand to {expanded:,} values from the {distinct:,} written, more than the "
            f"{MAX_ALIAS_NODES:,} extra values harness allows aliases to add",
            "write the values out, or use fewer aliases of aliases",
        )


def _too_deep(where: str) -> ConfigError:
    return ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep", "flatten the params")


def _yaml() -> Any:
    """PyYAML, imported where YAML is read (a params file, -p values): 10-15 ms a run without either need not pay."""
    import yaml

    return yaml


def parse_list(text: str, where: str) -> list[Any]:
    """``text`` as the items of a YAML flow sequence (``0.1, 0.01`` is two numbers, ``"a,b", c`` two strings,
    ``[1, 2], [3]`` two lists), under the same bounds as any params YAML; a ConfigError naming ``where``."""
    yaml = _yaml()
    try:
        value = _safe_load(f"[{text}]", where)
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc).strip()
        raise ConfigError(
            f"{where}: {text!r} is not a list of values ({problem})",
            "values are separated by commas and read as YAML: quote a value that holds a comma or a bracket "
            "(-p 'name=\"a,b\",c'), give a list value in brackets (-p 'layers=[64,64],[128]')",
        ) from None
    assert isinstance(value, list)
    return value
