"""A record lists its first 1,000 output files and counts them all; the rest are read from its outputs manifest
(harness/runs/outputlist.py), and a manifest that cannot be read is named, never taken for the full list."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import NotFound, StoreCorruption
from harness.runs.outputlist import MAX_LISTED, all_files, listed, truncated
from harness.storage.outputcheck import check_outputs
from harness.storage.outputs import store_outputs
from harness.storage.store import Store


def collect(tmp_path: Path, count: int) -> tuple[Store, dict[str, object], Path]:
    out = tmp_path / "outputs"
    out.mkdir()
    for i in range(count):
        (out / f"f{i:05d}.txt").write_text(f"{i}\n")
    store = Store(tmp_path / "objects")
    snap = store_outputs(out, store, tmp_path / "skipped").snapshot
    first, total = listed(snap)
    return store, {"manifest": snap.digest, "files": first, "file_count": total}, out


def test_up_to_1000_files_are_all_listed_and_read_without_the_store(tmp_path: Path) -> None:
    _, outputs, _ = collect(tmp_path, 3)
    assert not truncated(outputs) and outputs["file_count"] == 3
    nowhere = Store(tmp_path / "no-store")
    assert all_files(outputs, nowhere) == outputs["files"]
    older = {"manifest": outputs["manifest"], "files": outputs["files"]}  # before file_count existed
    assert not truncated(older) and all_files(older, nowhere) == outputs["files"]


def test_past_1000_the_rest_come_from_the_manifest_and_a_missing_or_damaged_one_is_named(tmp_path: Path) -> None:
    store, outputs, out = collect(tmp_path, MAX_LISTED + 7)
    files = outputs["files"]
    assert truncated(outputs) and isinstance(files, dict) and len(files) == MAX_LISTED
    every = all_files(outputs, store)
    assert len(every) == MAX_LISTED + 7 and every.items() >= files.items()

    manifest = store.path(str(outputs["manifest"]))
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b"f01006", b"f01066"))
    with pytest.raises(StoreCorruption, match=f"lists 1,000 of 1,007 output files.*{outputs['manifest']}"):
        all_files(outputs, store)
    # Without its manifest, verify checks the listed files and does not call the others added.
    assert check_outputs(out, store, None, files, strict=True, listed_all=False) == []
    manifest.unlink()
    with pytest.raises(NotFound, match="the rest are in its outputs manifest"):
        all_files(outputs, store)
