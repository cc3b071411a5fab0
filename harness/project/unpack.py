"""Unpack an exported code archive into a run's work directory, safely on every Python that pyproject allows.

``TarFile.extractall(filter=...)`` exists only from Python 3.11.4 (and 3.10.12, 3.12); Debian 12's own Python is
3.11.2. So every member is checked here, the same way on every version, before tarfile writes it: no absolute name,
no ``..``, no link whose target leaves the tree, nothing but files, directories and links (no devices, FIFOs), and no
setuid, setgid, sticky or group/other write bit. Where the interpreter has extraction filters, tarfile's own
``"tar"`` filter is applied as well (and 3.14's stricter default is not left to decide).

An archive comes from ``git archive`` of the user's commit, so the links are the user's committed symlinks: one that
points outside the project (``data -> /home/me/data``) would dangle in the container, and is refused with its name.
"""

from __future__ import annotations

import copy
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import CodeError

_KEEP_MODE = 0o755  # rwx for the owner, r-x for others: no setuid/setgid/sticky, no group or other write
_FILTER: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}


def unpack_code(archive: Path, dest: Path) -> int:
    """Unpack ``archive`` into the existing directory ``dest``; returns the number of regular files."""
    with tarfile.open(archive) as tar:
        members = list(_checked(tar))
        tar.extractall(dest, members=members, **_FILTER)
    return sum(1 for m in members if m.isfile())


def _checked(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        name = _inside(member.name, member.name, "its name")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise _refused(member.name, "is not a file, directory or link (a device or FIFO)")
        if member.issym():
            _inside(posixpath.join(posixpath.dirname(name), member.linkname), member.name, f"-> {member.linkname}")
        elif member.islnk():
            _inside(member.linkname, member.name, f"hard link to {member.linkname}")
        safe = copy.copy(member)
        safe.mode = member.mode & _KEEP_MODE
        yield safe


def _inside(path: str, member: str, what: str) -> str:
    """``path`` normalized, if it stays inside the tree; else the member is refused, naming ``what`` leaves it."""
    if path.startswith("/"):
        raise _refused(member, f"is absolute ({what})")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise _refused(member, f"leaves the code tree ({what})")
    return normal


def _refused(member: str, why: str) -> CodeError:
    return CodeError(
        f"the code archive's member {member!r} {why}; nothing was unpacked",
        hint="commit files, directories and symlinks that point inside the project only "
        "(copy an outside file in, or declare a directory outside the project as data)",
    )
