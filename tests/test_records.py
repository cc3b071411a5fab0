from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness.errors import NotFound
from harness.runs.records import SCHEMA, Records


def _record(run_id: str, started: str, status: str = "succeeded") -> dict:
    return {
        "schema": SCHEMA,
        "id": run_id,
        "name": "demo",
        "status": status,
        "exit_code": 0,
        "started_at": started,
        "code": {"commit": "c" * 40, "dirty": False},
        "data": {"snapshot": "d" * 64},
        "environment": {"image_id": "sha256:" + "e" * 64},
        "params": {"lr": 0.1},
        "metrics": {"rmse": 1.5},
    }


def test_ids_are_unique_under_concurrent_allocation(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    ids: list[str] = []
    lock = threading.Lock()

    def allocate() -> None:
        for _ in range(25):
            run_id = records.allocate().id
            with lock:
                ids.append(run_id)

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == 200
    # No id is a prefix of another, so any full id is also an unambiguous prefix.
    assert not any(a != b and b.startswith(a) for a in ids for b in ids)


def test_write_read_list_and_prefix_resolution(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    first, second = records.allocate().id, records.allocate().id
    records.write(_record(first, "2026-01-01T00:00:00.000Z"))
    records.write(_record(second, "2026-01-02T00:00:00.000Z", status="failed"))
    assert records.read(first[:4])["id"] == first
    assert [r["id"] for r in records.list()] == [second, first]
    assert [r["id"] for r in records.list(limit=1)] == [second]
    with pytest.raises(NotFound, match="no run 'zzzz'"):
        records.read("zzzz")


def test_index_is_rebuilt_from_records_when_lost(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    records.write(_record(run_id, "2026-01-01T00:00:00.000Z"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "index.sqlite") + suffix).unlink(missing_ok=True)
    assert [r["id"] for r in Records(tmp_path / "runs", tmp_path / "index.sqlite").list()] == [run_id]
