"""Atomic writes: whole files or none, no temp files left behind, the user's umask, an existing file's mode kept."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness.env.lockfile import Lock, write_lock
from harness.errors import HarnessError
from harness.files import write_atomic, write_json_atomic
from harness.runs.records import SCHEMA, Records


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a" / "b.txt", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"x"
    assert _mode(tmp_path / "a" / "b.txt") == 0o640


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("old")
    path.chmod(0o600)
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"not json": object()})
    with pytest.raises(TypeError):
        write_atomic(path, "text, not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_lock_and_record_are_readable_like_any_other_file(tmp_path: Path, umask_022: None) -> None:
    """They used to be 0600 (mkstemp) while every other file harness writes was 0644."""
    tmp_path.chmod(0o755)  # a record is no more open than its directory (see the privacy tests)
    write_lock(tmp_path / "harness.lock", Lock("3.11", "manylinux_2_36_x86_64", (), "0" * 64, ()))
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    paths = records.allocate()
    records.write({"schema": SCHEMA, "id": paths.id, "status": "running"})
    assert _mode(tmp_path / "harness.lock") == 0o644
    assert _mode(paths.record) == 0o644
    assert sorted(p.name for p in paths.root.iterdir()) == ["record.json"]


def test_a_record_harness_cannot_stand_behind_is_refused(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    paths = records.allocate()
    for bad, named in (
        ({"schema": "harness.run/0", "id": paths.id, "status": "running"}, "schema"),
        ({"schema": SCHEMA, "id": paths.id, "status": "done"}, "status"),
        ({"schema": SCHEMA, "id": "../elsewhere", "status": "running"}, "id"),
    ):
        with pytest.raises(HarnessError, match=f"refusing to write a run record: {named}"):
            records.write(bad)
    assert list(paths.root.iterdir()) == []
