"""``{name}`` placeholders in the configured command, filled from the run's params as MLflow's MLproject does.

``command = "python train.py --alpha {alpha} --depth {model.depth}"``: each placeholder names a param (dotted for
nested ones) and is replaced by its value, inside the one argument it is written in: a value with spaces stays
one argument, since the command is an argv list and no shell re-splits it. A string value goes in as it is,
anything else as JSON (``true``, ``0.5``, ``[1, 2]``), as the ``HARNESS_PARAM_*`` variables have it. ``{{`` and
``}}`` are a literal brace. A placeholder whose param is not set is a config error naming it.

Each substituted param counts as read by the code (``params_read``): the command is how it reached the code.
Only the configured command is filled in; a command given after ``--`` on the command line is run untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.flatten import flat

_MISSING = object()


@dataclass(frozen=True)
class Filled:
    """The argv as run, and the dotted params it took (in the order first used)."""

    argv: tuple[str, ...]
    params: tuple[str, ...]


def parse_argument(argument: str, where: str) -> list[str | tuple[str]]:
    """``argument`` as pieces: literal text (str) and placeholders (a 1-tuple of the param's dotted name)."""
    pieces: list[str | tuple[str]] = []
    text: list[str] = []
    i = 0
    while i < len(argument):
        char = argument[i]
        if char in "{}" and argument[i : i + 2] == char * 2:
            text.append(char)
            i += 2
            continue
        if char == "}":
            raise ConfigError(
                f"{where}: a '}}' without its '{{' in {argument!r}",
                "write a literal brace twice ('{{' or '}}'); a placeholder is {name}",
            )
        if char == "{":
            end = argument.find("}", i + 1)
            name = argument[i + 1 : end] if end != -1 else ""
            if end == -1 or not name.strip() or "{" in name:
                raise ConfigError(
                    f"{where}: an unfinished placeholder in {argument!r}",
                    "a placeholder is {name} or {section.name}; write a literal brace twice ('{{' or '}}')",
                )
            if text:
                pieces.append("".join(text))
                text = []
            pieces.append((name.strip(),))
            i = end + 1
            continue
        text.append(char)
        i += 1
    if text:
        pieces.append("".join(text))
    return pieces


def placeholders(command: Iterable[str], where: str) -> list[str]:
    """The dotted param names the command's placeholders use, each once, in order."""
    names: list[str] = []
    for argument in command:
        for piece in parse_argument(argument, where):
            if isinstance(piece, tuple) and piece[0] not in names:
                names.append(piece[0])
    return names


def fill(command: Iterable[str], params: Mapping[str, Any], where: str) -> Filled:
    """The argv with every placeholder replaced by its param's value; a placeholder without a param is a
    ConfigError naming it."""
    argv: list[str] = []
    used: list[str] = []
    for argument in command:
        out: list[str] = []
        for piece in parse_argument(argument, where):
            if isinstance(piece, str):
                out.append(piece)
                continue
            name = piece[0]
            value = lookup(params, name)
            if value is _MISSING:
                known = ", ".join(_dotted_keys(params)) or "none"
                raise ConfigError(
                    f"{where}: placeholder {{{name}}} names no param",
                    f"set it under [params] or with -p {name}=VALUE (params of this run: {known}); "
                    "write a literal brace twice ('{{' or '}}')",
                )
            out.append(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
            if name not in used:
                used.append(name)
        argv.append("".join(out))
    return Filled(tuple(argv), tuple(used))


def lookup(params: Mapping[str, Any], name: str) -> Any:
    """The value of dotted ``name`` (a key that itself holds dots is found too), or _MISSING."""
    if name in params:
        return params[name]
    head, sep, rest = name.partition(".")
    while sep:
        value = params.get(head, _MISSING)
        if isinstance(value, Mapping):
            found = lookup(value, rest)
            if found is not _MISSING:
                return found
        more, sep, rest = rest.partition(".")
        head = f"{head}.{more}"
    return _MISSING


def read_leaves(params: Mapping[str, Any], names: Iterable[str]) -> set[str]:
    """The dotted leaf params that substituting ``names`` read (a table substituted reads all its leaves)."""
    leaves = set(flat(dict(params)))
    read: set[str] = set()
    for name in names:
        read |= {leaf for leaf in leaves if leaf == name or leaf.startswith(name + ".")}
    return read


def _dotted_keys(params: Mapping[str, Any]) -> list[str]:
    return sorted(flat(dict(params)))
