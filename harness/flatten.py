"""Nested params and metrics as flat, dotted names: {"model": {"lr": 0.1}} -> {"model.lr": 0.1}.

The one spelling of a nested value everywhere a user names it: `-p model.lr=...`, `--where 'params.model.lr < 1'`,
table columns and HARNESS_PARAM_* variables.
"""

from __future__ import annotations

from typing import Any


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts under their dotted paths; an empty dict is a leaf."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
