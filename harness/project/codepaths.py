"""``[paths]``: paths in the run's code that lead to its data or outputs, so code written for a DVC workspace
(``open("data/train.csv")``, ``json.dump(..., open("metrics.json", "w"))``) runs unchanged in a read-only /code.

Each entry becomes a symlink in the run's copy of the code, made before the container starts: ``"data/train.csv" =
"/data/train.csv"`` reads the snapshot; ``"metrics.json" = "/outputs/metrics.json"`` writes an output (opening a
dangling symlink for writing creates its target); a target ending in ``/`` is a directory made in /outputs first.
A path the commit already has is refused: harness adds, it never replaces, the committed code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from harness.errors import ConfigError

TARGET_ROOTS = ("/data/", "/outputs/")


def check_paths(table: Mapping[str, object], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel, target in table.items():
        path = PurePosixPath(rel)
        if not rel or path.is_absolute() or ".." in path.parts or str(path) == ".":
            raise ConfigError(f"{where}.{rel}: must be a path inside the code", 'for example "data/train.csv"')
        if not isinstance(target, str) or not target.startswith(TARGET_ROOTS) or ".." in PurePosixPath(target).parts:
            raise ConfigError(
                f"{where}.{rel}: {target!r} must be a path under /data/ or /outputs/",
                f'for example "{rel}" = "/outputs/{rel}" (a trailing / makes a directory)',
            )
        out[str(path)] = target
    return out


def place(code: Path, outputs: Path, paths: Mapping[str, str], shared: bool = False) -> None:
    """Make the symlinks in ``code`` (the run's copy) and the output directories they need in ``outputs``
    (``shared``: writable by the container's other user)."""
    for rel, target in paths.items():
        link = code / rel
        if os.path.lexists(link):
            raise ConfigError(
                f"[paths] {rel}: the commit has this path already",
                "remove it from the commit (git rm --cached; it is data or an output), or drop the entry",
            )
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"[paths] {rel}: cannot make its directory in the code: {exc.strerror}",
                "a file of the commit is where a directory is needed: rename one of them",
            ) from None
        os.chmod(link.parent, 0o755)
        if target.startswith("/outputs/"):
            inside = outputs / target[len("/outputs/") :]
            directory = inside if target.endswith("/") else inside.parent
            directory.mkdir(parents=True, exist_ok=True)
            while shared and directory != outputs:
                os.chmod(directory, 0o777)
                directory = directory.parent
        os.symlink(target.rstrip("/"), link)
