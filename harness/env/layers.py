"""Deterministic image layers: any tar stream in, one canonical tar out.

An image id is only a function of its inputs if every layer's bytes are. Whatever produced the files (the engine's
archive API, a build on another day), the normalized layer depends only on names, contents, modes and link
targets: entries sorted by path, mtime = SOURCE_DATE_EPOCH, owner root (uid/gid 0, no user or group names), PAX
format, no extended headers from the source (atime, ctime, xattrs), uncompressed so that the layer digest is
also its diff id. Permission bits, setuid/setgid/sticky included, are kept exactly: they are part of what the
files are, and they are already deterministic when the inputs are.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO, cast

from harness.storage.store import Store

DIR_MODE = 0o755


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through (tarfile needs write and tell)."""

    def __init__(self, dest: IO[bytes]) -> None:
        self._dest = dest
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._dest.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _clean(name: str) -> str:
    """'./a/b/' -> 'a/b'; '.' or './' -> ''."""
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    return "" if name == "." else name


def reroot(name: str, strip: str | None, prefix: str | None) -> str | None:
    """Move an entry from under ``strip`` to under ``prefix``; None for entries outside ``strip``.

    The engine's archive of ``/opt/venv`` holds ``venv/...``; the layer needs ``opt/venv/...``.
    """
    name = _clean(name)
    if strip:
        strip = _clean(strip)
        if name == strip:
            name = ""
        elif name.startswith(strip + "/"):
            name = name[len(strip) + 1 :]
        else:
            return None
    if prefix:
        prefix = _clean(prefix)
        name = f"{prefix}/{name}" if name else prefix
    return name or None


def _sort_key(name: str) -> tuple[str, ...]:
    # By path components, so a directory's entries stay together and always follow the directory itself.
    return tuple(name.split("/"))


def write_normalized(
    source: IO[bytes],
    dest: IO[bytes],
    source_date_epoch: int,
    *,
    strip: str | None = None,
    prefix: str | None = None,
) -> tuple[str, int]:
    """Write the normalized form of the (seekable) tar ``source`` to ``dest``; returns (sha256 hex, size)."""
    writer = _HashingWriter(dest)
    with tarfile.open(fileobj=source, mode="r:") as src:
        members: dict[str, tarfile.TarInfo] = {}
        for member in src.getmembers():
            name = reroot(member.name, strip, prefix)
            if name is not None:
                # A later entry for the same path wins, as it would when the tar is extracted.
                members[name] = member
        # Parents the source did not list (the "opt" above "opt/venv") get plain root-owned directories.
        for name in list(members):
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in members:
                    members[parent] = _directory(parent)
        links = _hard_links(members, strip, prefix)
        # PAX with UTF-8 names: tarfile then adds an extended header only when a name or size needs one.
        out_file = cast(IO[bytes], writer)  # tarfile needs only write() and tell()
        with tarfile.open(fileobj=out_file, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as out:
            for name in sorted(members, key=_sort_key):
                _copy_member(src, members[name], name, links.get(name), out, source_date_epoch)
    return writer.hexdigest(), writer.size


def _hard_links(
    members: dict[str, tarfile.TarInfo], strip: str | None, prefix: str | None
) -> dict[str, tuple[str, tarfile.TarInfo]]:
    """name -> (what it becomes, the member holding the data) for every name in a hard-link group.

    A hard link must follow the entry it names, and sorting can put it first. So in each group the first name in
    sort order carries the data (it maps to itself) and every other name links to it; which name the source
    happened to write first no longer matters.
    """
    groups: dict[str, list[str]] = {}
    for name, member in members.items():
        if member.islnk():
            target = reroot(member.linkname, strip, prefix)
            if target is None or target not in members or members[target].islnk():
                raise ValueError(f"hard link {member.name} -> {member.linkname}: target is not a file in the tar")
            groups.setdefault(target, [target]).append(name)
    result: dict[str, tuple[str, tarfile.TarInfo]] = {}
    for target, names in groups.items():
        first = min(names, key=_sort_key)
        for name in names:
            result[name] = (first, members[target])
    return result


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = DIR_MODE
    return info


def _copy_member(
    src: tarfile.TarFile,
    member: tarfile.TarInfo,
    name: str,
    link: tuple[str, tarfile.TarInfo] | None,
    out: tarfile.TarFile,
    source_date_epoch: int,
) -> None:
    if link is not None:
        first, member = link  # every name of a hard-link group takes the data member's metadata
    info = tarfile.TarInfo(name)
    info.type = member.type
    info.mode = member.mode & 0o7777
    info.mtime = int(source_date_epoch)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if link is not None and first != name:
        info.type = tarfile.LNKTYPE
        info.linkname = first
        out.addfile(info)
        return
    if member.issym():
        info.linkname = member.linkname
    elif member.ischr() or member.isblk():
        info.devmajor, info.devminor = member.devmajor, member.devminor
    if member.isreg():
        info.size = member.size
        out.addfile(info, src.extractfile(member))
    else:
        out.addfile(info)


def normalize_layer(
    source: IO[bytes],
    store: Store,
    source_date_epoch: int,
    *,
    strip: str | None = None,
    prefix: str | None = None,
) -> tuple[str, int]:
    """Normalize ``source`` into a layer object of ``store``; returns (sha256 hex = diff id, size).

    The layer is written to a temp file inside the store while it is hashed (one pass), then adopted under its
    digest; an identical layer already in the store is kept and the new copy dropped.
    """
    # The store's own temp directory: same filesystem as the objects, so adopting is a rename.
    tmp_dir = store.root / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="layer-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as dest:
            digest, size = write_normalized(source, dest, source_date_epoch, strip=strip, prefix=prefix)
        store.adopt(tmp, digest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest, size


def adopt_file(path: Path, store: Store) -> tuple[str, int]:
    """Hash a file that is already a deterministic layer and move it into the store; returns (digest, size)."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    digest = hasher.hexdigest()
    store.adopt(path, digest)
    return digest, size
