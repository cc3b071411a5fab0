"""A record's output files: the first MAX_LISTED of them in the record itself, every one in its outputs manifest.

A run that wrote 100,000 files made a 9 MB record, which every `harness ls`, seal check, push and UI page read
again. So ``outputs.files`` holds at most MAX_LISTED entries (path -> sha256, the first paths in sorted order) and
``outputs.file_count`` how many files the run recorded; the full list is the outputs manifest (``outputs.manifest``),
an object in the store that the sealed record names by its digest, and that rebuild, verify, gc and push need
anyway. Everything that needs every output goes through :func:`all_files`; a record that lists every file (all
records up to 1,000 outputs, and those written before ``file_count`` existed) is used as it is, without reading the
store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.errors import DataError, HarnessError, NotFound, StoreCorruption
from harness.storage.snapshot import Snapshot, load_snapshot
from harness.storage.store import Store

MAX_LISTED = 1000


def listed(snapshot: Snapshot) -> tuple[dict[str, str], int]:
    """What a record holds of these outputs: (the first MAX_LISTED files by path, how many files there are)."""
    files = [(e.path, e.sha256) for e in snapshot.entries if e.kind == "file" and e.sha256]  # sorted by path
    return dict(files[:MAX_LISTED]), len(files)


def truncated(outputs: Mapping[str, Any]) -> bool:
    """Whether the record lists fewer files than the run recorded (the rest are in its manifest)."""
    count, files = outputs.get("file_count"), outputs.get("files")
    return isinstance(count, int) and count > len(files if isinstance(files, dict) else {})


def all_files(outputs: Mapping[str, Any], store: Store) -> dict[str, str]:
    """Every output file of a record's ``outputs`` (path -> sha256), from its manifest when the record lists only
    the first ones. NotFound, StoreCorruption or DataError, naming the manifest, when it is needed and cannot be
    read; the record's own list is never passed off as complete."""
    files = outputs.get("files")
    files = dict(files) if isinstance(files, dict) else {}
    if not truncated(outputs):
        return files
    manifest = outputs.get("manifest")
    shown = f"{len(files):,} of {outputs.get('file_count'):,}"
    hint = (
        "`harness verify` names what is damaged or missing in the store; `harness pull RUN` brings a pushed run's "
        "objects back"
    )
    if not isinstance(manifest, str):
        raise DataError(f"the record lists {shown} output files and names no outputs manifest for the rest", hint)
    try:
        entries = load_snapshot(store, manifest).entries
    except HarnessError as exc:
        kind = type(exc) if isinstance(exc, NotFound | StoreCorruption) else DataError
        raise kind(
            f"the record lists {shown} output files; the rest are in its outputs manifest {manifest}, which cannot "
            f"be read: {exc.message}",
            hint,
        ) from None
    return {e.path: e.sha256 for e in entries if e.kind == "file" and e.sha256}
