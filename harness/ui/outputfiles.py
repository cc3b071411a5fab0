"""A run's output files for the browser: which the page shows inline, and how each is served safely.

Only a path the run's (sealed) record names is ever served, and its bytes come from the store object named by the
record's digest, checked against it before they are sent; no path from a URL is joined onto a directory. Where
the store lacks the object, the run directory's copy (``runs/<id>/outputs/<path>``, a hardlink of the object)
is used if it is a regular file inside the outputs directory, reached without following a symlink, whose bytes
hash to that digest.

What a browser makes of a file is decided here, never sniffed (``X-Content-Type-Options: nosniff``):
- png, jpg, gif and webp as images, svg as ``image/svg+xml``; the page shows them with <img>, where an SVG's
  scripts never run, and every file is served with a CSP whose ``sandbox`` and ``default-src 'none'`` stop them
  when the file is opened on its own;
- text (by suffix) as ``text/plain; charset=utf-8``, an HTML output included, so it is shown as its source;
- anything else as ``application/octet-stream``, as a download.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from harness.errors import NotFound, StoreCorruption
from harness.runs.outputlist import all_files, truncated
from harness.storage.store import Store, is_digest

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
# fmt: off
TEXT_SUFFIXES = frozenset((
    ".txt", ".csv", ".tsv", ".json", ".jsonl", ".md", ".rst", ".log", ".yaml", ".yml", ".toml", ".ini", ".cfg",
    ".html", ".htm", ".xml", ".py", ".r", ".sql", ".sh", ".tex",
))
# fmt: on
# Scripts and plugins in a served file never run, whatever it is, and it may not load anything.
FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
CHUNK = 1 << 20
# Whole output lists read from outputs manifests, kept by (store, manifest digest): a manifest is named by its
# content, so a kept list is never stale, and paging through a run of 100,000 outputs reads its manifest once.
MANIFESTS_KEPT = 2  # a run paged through, and a second (100,000 paths take about 15 MB)
_kept: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
_kept_lock = threading.Lock()  # the server answers requests in threads
PAGE = 200  # output files listed per request (GET /api/runs/<id>/outputs?limit=)
MAX_PAGE = 1000


@dataclass(frozen=True)
class OutputFile:
    path: str
    sha256: str
    size: int | None  # None: the object is in neither the store nor the run directory
    kind: str  # "image" | "text" | "file"

    @property
    def content_type(self) -> str:
        return content_type(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "kind": self.kind}


def kind_of(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in IMAGE_TYPES:
        return "image"
    return "text" if suffix in TEXT_SUFFIXES else "file"


def content_type(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    kind = kind_of(path)
    if kind == "image":
        return IMAGE_TYPES[suffix]
    return "text/plain; charset=utf-8" if kind == "text" else "application/octet-stream"


def disposition(path: str) -> str:
    """Inline for what the browser shows (images, text), a download for the rest; the name RFC 6266-encoded."""
    name = PurePosixPath(path).name
    how = "attachment" if kind_of(path) == "file" else "inline"
    return f"{how}; filename*=UTF-8''{quote(name, safe='')}"


def _named(record: Mapping[str, Any], store: Store, path: str | None = None) -> dict[str, str]:
    """The record's output files (from its outputs manifest when it lists only the first ones, unless ``path``
    is among those)."""
    outputs = record.get("outputs") or {}
    files = outputs.get("files") or {}
    if (path is not None and path in files) or not truncated(outputs):
        return _valid(files)
    key = (str(store.root), str(outputs.get("manifest")))
    with _kept_lock:
        if key in _kept:
            _kept.move_to_end(key)
            return _kept[key]
    named = _valid(all_files(outputs, store))  # names the manifest when it cannot be read: nothing is kept
    with _kept_lock:
        _kept[key] = named
        while len(_kept) > MANIFESTS_KEPT:
            _kept.popitem(last=False)
    return named


def _valid(files: Mapping[Any, Any]) -> dict[str, str]:
    return {p: d for p, d in files.items() if isinstance(p, str) and isinstance(d, str) and is_digest(d)}


@dataclass(frozen=True)
class OutputPage:
    """A page of a run's output files, in path order, starting at ``offset``; ``total`` counts them all."""

    files: tuple[OutputFile, ...]
    total: int
    offset: int
    limit: int

    def to_dict(self) -> dict[str, Any]:
        files = [f.to_dict() for f in self.files]
        return {"files": files, "total": self.total, "offset": self.offset, "limit": self.limit}


def list_outputs(
    record: Mapping[str, Any], store: Store, outputs_dir: Path, offset: int = 0, limit: int = PAGE
) -> OutputPage:
    """The files the record names, sorted by path, ``limit`` of them from ``offset`` on, each with its size (from
    the store object, else the run dir). Only the page is looked at on disk: a run may have 100,000 outputs."""
    named = _named(record, store)
    listed = []
    for path in sorted(named)[offset : offset + limit]:
        digest = named[path]
        size: int | None = None
        for candidate in (store.path(digest), _in_outputs(outputs_dir, path)):
            if candidate is None:
                continue
            try:
                size = candidate.stat().st_size
                break
            except OSError:
                continue
        listed.append(OutputFile(path, digest, size, kind_of(path)))
    return OutputPage(tuple(listed), len(named), offset, limit)


def _in_outputs(outputs_dir: Path, path: str) -> Path | None:
    """The run directory's copy of a recorded path, if the path is plainly relative (no '..', no absolute)."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return None
    return outputs_dir.joinpath(*parts)


def open_output(record: Mapping[str, Any], store: Store, outputs_dir: Path, path: str) -> tuple[OutputFile, Path]:
    """The recorded output ``path`` and a file holding exactly its recorded bytes. NotFound when the record
    names no such file or neither copy exists; StoreCorruption when the bytes found do not match the record."""
    run_id = record.get("id")
    digest = _named(record, store, path).get(path)
    if digest is None:
        raise NotFound(f"run {run_id} has no output {path!r}", "the run page lists its outputs")
    found = OutputFile(path, digest, None, kind_of(path))
    obj = store.path(digest)
    if obj.is_file():
        if _sha256(obj) != digest:
            raise StoreCorruption(
                f"output {path} of run {run_id}: object {digest} in the store does not match its name",
                "`harness verify` names what changed; nothing was served",
            )
        return OutputFile(path, digest, obj.stat().st_size, found.kind), obj
    copy = _in_outputs(outputs_dir, path)
    if copy is not None and _regular_inside(outputs_dir, copy):
        if _sha256(copy) != digest:
            raise StoreCorruption(
                f"output {path} of run {run_id} in {outputs_dir} does not match its recorded digest",
                "`harness verify` names what changed; nothing was served",
            )
        return OutputFile(path, digest, copy.stat().st_size, found.kind), copy
    raise NotFound(
        f"output {path} of run {run_id} (object {digest}) is in neither the store nor the run directory",
        "`harness verify` checks the store against the records",
    )


def _regular_inside(root: Path, path: Path) -> bool:
    """A regular file under ``root`` reached through no symlink."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    current = root
    for part in relative.parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return stat.S_ISREG(mode)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk
