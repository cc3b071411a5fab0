"""A run's outputs directory against its record: for `harness verify`, every file in runs/<id>/outputs that was
modified, replaced, removed or added since the run, and every mode that no longer keeps it read-only.

A file that is still its store object (the same inode) has the object's bytes, which verify re-hashes as an object;
any other file (an executable's copy, a copy where no hardlink was possible, or a replacement) is hashed here.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.digests import CHUNK
from harness.storage.outputs import DIR_MODE, EXEC_MODE, FILE_MODE, shown
from harness.storage.snapshot import Entry
from harness.storage.store import Store

# What an output written before outputs were stored read-only may still have, but never a group- or
# world-writable mode or a set-id bit: anyone could change it, or it runs as its owner.
_UNSAFE = stat.S_IWGRP | stat.S_IWOTH | stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_WORDS = {"file": "a file", "dir": "a directory", "symlink": "a symlink"}


@dataclass(frozen=True)
class Drift:
    path: str  # relative to the outputs directory, "." for the directory itself
    problem: str  # "modified" | "missing" | "added" | "mode"
    detail: str


def check_outputs(
    outputs: Path,
    store: Store,
    entries: Sequence[Entry] | None,
    files: Mapping[str, str],
    strict: bool,
    listed_all: bool = True,
) -> list[Drift]:
    """How ``outputs`` differs from the record. ``entries`` is the outputs manifest (None when it cannot be read:
    then only the recorded ``files`` are checked, and any file not among them, unless ``listed_all`` is false: the
    record lists only its first files, harness/runs/outputlist.py). ``strict``: the record says its
    outputs were stored read-only (exactly 0444 files, 0555 executables, 0755 directories, less group and other
    bits for a private project); older records are only held to no group/world write access and no set-id bits."""
    top = os.path.abspath(outputs)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return [Drift(".", "missing", "the outputs directory is gone")]
    if not stat.S_ISDIR(st.st_mode):
        return [Drift(".", "modified", f"is {_kind(st.st_mode)}, not the outputs directory")]
    known = entries is not None
    expected = (
        {e.path: e for e in entries}
        if entries is not None
        else {p: Entry(p, "file", sha256=s) for p, s in files.items()}
    )
    found = _mode(".", st.st_mode, (DIR_MODE,), strict)
    seen: set[str] = set()
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(f"{top}/{rel}" if rel else top) as it:
                listing = list(it)
        except OSError as exc:
            found.append(Drift(shown(rel or "."), "modified", f"cannot be listed: {exc.strerror or exc}"))
            continue
        for de in listing:
            path = f"{rel}/{de.name}" if rel else de.name
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we looked: reported as missing below if it is recorded
            want = expected.get(path)
            if want is None:
                if stat.S_ISDIR(st.st_mode) and not known:
                    stack.append(path)  # without the manifest, directories are only implied by the files
                elif known or (listed_all and stat.S_ISREG(st.st_mode)):
                    found.append(Drift(shown(path), "added", f"{_kind(st.st_mode)} the record does not name"))
                continue
            seen.add(path)
            found += _compare(de.path, path, st, want, store, strict, known)
            if want.kind == "dir" and stat.S_ISDIR(st.st_mode):
                stack.append(path)
    found += [
        Drift(p, "missing", f"the record names {_WORDS[e.kind]} here") for p, e in expected.items() if p not in seen
    ]
    return sorted(found, key=lambda d: (d.path, d.problem))


def _compare(
    abs_path: str, path: str, st: os.stat_result, want: Entry, store: Store, strict: bool, known: bool
) -> list[Drift]:
    kind = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}[want.kind]
    if not kind(st.st_mode):
        return [Drift(path, "modified", f"is now {_kind(st.st_mode)}, not {_WORDS[want.kind]}")]
    if want.kind == "symlink":
        target = os.readlink(abs_path)
        if target != want.target:
            return [Drift(path, "modified", f"now points to {shown(target)!r}, not {want.target!r}")]
        return []
    if want.kind == "dir":
        return _mode(path, st.st_mode, (DIR_MODE,), strict)
    modes = (EXEC_MODE if want.executable else FILE_MODE,) if known else (FILE_MODE, EXEC_MODE)
    found = _mode(path, st.st_mode, modes, strict)
    if known and st.st_size != want.size:
        found.append(Drift(path, "modified", f"is {st.st_size:,} bytes, the record says {want.size:,}"))
    elif not _same_bytes(abs_path, st, want.sha256 or "", store):
        found.append(Drift(path, "modified", f"its bytes no longer hash to {want.sha256}"))
    return found


def _same_bytes(abs_path: str, st: os.stat_result, sha256: str, store: Store) -> bool:
    try:
        obj = os.stat(store.path(sha256))
        if (obj.st_ino, obj.st_dev) == (st.st_ino, st.st_dev):
            return True  # the store object itself, whose bytes verify re-hashes as an object
    except OSError:
        pass
    hasher = hashlib.sha256()
    try:
        with open(abs_path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
    except OSError:
        return False
    return hasher.hexdigest() == sha256


def _mode(path: str, mode: int, allowed: tuple[int, ...], strict: bool) -> list[Drift]:
    bits = stat.S_IMODE(mode)
    if not ((strict and not any(_as_set(bits, m) for m in allowed)) or bits & _UNSAFE):
        return []
    why = [
        *(["writable"] if bits & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) else []),
        *(["set-id or sticky"] if bits & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX) else []),
    ]
    detail = f"mode {bits:04o}, not {' or '.join(f'{m:04o}' for m in allowed)}"
    return [Drift(path, "mode", detail + (f" ({', '.join(why)})" if why else ""))]


def _as_set(bits: int, mode: int) -> bool:
    """``bits`` is ``mode`` as harness sets it: the owner's part exactly, and no group or other bit beyond it (a
    private project's outputs lose those its run directory lacks, harness/files.py)."""
    return (bits & ~0o077) == (mode & ~0o077) and not bits & 0o077 & ~mode


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "a special file"
