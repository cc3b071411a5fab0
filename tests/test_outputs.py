"""A run's outputs are stored once: each file in the run directory becomes a hardlink to its store object."""

from __future__ import annotations

import os
from pathlib import Path

from harness.storage.outputs import store_outputs
from harness.storage.store import Store


def test_outputs_become_their_store_objects(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    (out / "model.bin").write_bytes(b"weights" * 1000)
    (out / "sub" / "copy.bin").write_bytes(b"weights" * 1000)  # same bytes: one object, two links
    (out / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(out / "run.sh", 0o755)
    os.symlink("model.bin", out / "latest")
    store = Store(tmp_path / "objects")

    snap = store_outputs(out, store)

    files = {e.path: e for e in snap.entries}
    obj = store.path(files["model.bin"].sha256 or "")
    assert os.path.samefile(out / "model.bin", obj) and os.path.samefile(out / "sub" / "copy.bin", obj)
    assert obj.stat().st_nlink == 3 and (out / "model.bin").read_bytes() == b"weights" * 1000
    # an executable keeps its own mode, so it stays a copy; a symlink stays a symlink
    assert not os.path.samefile(out / "run.sh", store.path(files["run.sh"].sha256 or ""))
    assert os.access(out / "run.sh", os.X_OK)
    assert os.readlink(out / "latest") == "model.bin"
    assert sorted(p.name for p in out.iterdir()) == ["latest", "model.bin", "run.sh", "sub"]
    # storing again changes nothing and names the same snapshot
    assert store_outputs(out, store).digest == snap.digest and obj.stat().st_nlink == 3
