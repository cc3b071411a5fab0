"""The image as a wheel target: which wheel tags it runs, which environment markers hold in it, which wheel is best.

A target is (CPython minor version, wheel platform tag), e.g. ("3.13", "manylinux_2_41_x86_64"), as a base recipe
declares it. Everything here is computed from the target alone, never from the host, so a lock made on a macOS
laptop or with another Python picks the same wheels the image will install. Tag order and marker evaluation are
`packaging`'s (the PyPA implementation that pip uses), not re-implemented.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_([a-z0-9_]+)$")
# PEP 600 legacy aliases: a glibc version that also has a pre-PEP-600 name.
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def compatible_platforms(platform: str) -> list[str]:
    """The platform tag and every older manylinux tag it can run, newest first.

    pip 23 expands only legacy names (manylinux2014) and newer pips expand ``manylinux_x_y`` but drop tags
    newer than the HOST's glibc; listing them ourselves makes the choice of wheels independent of the
    host, which is the whole point of a lock for the image.
    """
    match = _MANYLINUX_RE.match(platform)
    if not match:
        return [platform]
    major, minor, arch = int(match[1]), int(match[2]), match[3]
    if major != 2:
        return [platform]
    # PEP 600: x86 wheels go back to glibc 2.5 (manylinux1); other arches start at 2.17.
    oldest = 5 if arch in ("x86_64", "i686") else 17
    tags: list[str] = []
    for m in range(minor, oldest - 1, -1):
        tags.append(f"manylinux_2_{m}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((2, m))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    return tags


def manylinux(platform: str) -> tuple[int, str] | None:
    """(glibc minor version, machine) of a ``manylinux_2_NN_<arch>`` tag, else None."""
    match = _MANYLINUX_RE.match(platform)
    if not match or match[1] != "2":
        return None
    return int(match[2]), match[3]


@lru_cache(maxsize=16)
def target_tags(python: str, platform: str) -> dict[Tag, int]:
    """Every tag the target accepts -> its rank (0 is best), in pip's order of preference.

    For CPython 3.13: cp313-cp313-<platforms>, cp313-abi3, cp313-none, cp312-abi3 ... cp32-abi3, then
    py313/py3-none-<platforms>, then the pure ``*-none-any`` tags; within each, the newest platform first.
    """
    version = tuple(int(part) for part in python.split("."))
    interpreter = "cp" + "".join(str(part) for part in version)
    platforms = compatible_platforms(platform)
    ordered = [
        *cpython_tags(version, abis=[interpreter], platforms=platforms),
        *compatible_tags(version, interpreter=interpreter, platforms=platforms),
    ]
    ranks: dict[Tag, int] = {}
    for tag in ordered:
        ranks.setdefault(tag, len(ranks))
    return ranks


def target_environment(python: str, platform: str, groups: Iterable[str] = ()) -> dict[str, str | frozenset[str]]:
    """The PEP 508 marker environment of CPython ``python`` on Linux ``platform``.

    The patch version is unknown from a recipe; like uv's ``--python-version 3.13``, it is taken as ``.0``.
    ``platform_release``/``platform_version`` (the kernel) are unknowable for an image and left empty.
    """
    machine = manylinux(platform)
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": machine[1] if machine else "",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
        "extras": frozenset(),
        "dependency_groups": frozenset(groups),
    }


def marker_holds(marker: str, environment: Mapping[str, str | frozenset[str]]) -> bool:
    """Evaluate a lock file's marker (PEP 751 allows ``extras`` and ``dependency_groups`` in them)."""
    return Marker(marker).evaluate(dict(environment), context="lock_file")


def wheel_rank(filename: str, python: str, platform: str) -> int | None:
    """The rank of the best tag of a wheel file name for the target, or None if the target cannot install it."""
    try:
        _name, _version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    ranks = target_tags(python, platform)
    found = [ranks[tag] for tag in tags if tag in ranks]
    return min(found) if found else None


def best_wheel(filenames: Iterable[str], python: str, platform: str) -> str | None:
    """The wheel pip would install on the target, or None if none fits.

    Ties (the same best tag) go to the higher build number, then to the file name, so the choice never depends
    on the order a lock or an index lists the files in.
    """
    candidates = []
    for filename in filenames:
        rank = wheel_rank(filename, python, platform)
        if rank is not None:
            build = parse_wheel_filename(filename)[2]
            candidates.append((rank, -build[0] if build else 1, filename))
    return min(candidates)[2] if candidates else None
