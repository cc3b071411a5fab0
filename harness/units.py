"""Sizes as people write them ("8g", "512m", "1.5g", 1073741824) and as harness shows them ("8 GiB").

Suffixes are binary and case-insensitive, as Docker reads them: k = 1024, m = 1024**2, g = 1024**3, t = 1024**4;
an optional trailing "b" or "ib" is allowed ("8gb", "8GiB"). A bare number is bytes.
"""

from __future__ import annotations

import re

_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(value: str | int) -> int:
    """Bytes of ``value``; ValueError (with words for a message) when it is not a size."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size (a number of bytes, or one with k, m, g or t: 512m, 8g)")
    number, unit = match.groups()
    return int(float(number) * _FACTORS[unit.lower()])


def format_size(size: int) -> str:
    """``size`` bytes for people: "64 MiB", "20.6 GiB", "900 bytes"."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) or value >= 100 else f"{value:.1f} {unit}"
    return f"{size} bytes"
