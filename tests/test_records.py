from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from harness.digests import sha256_json
from harness.errors import HarnessError, NotFound, StoreCorruption
from harness.runs.records import SCHEMA, Records
from harness.runs.sealing import record_digest


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


def _stored(records: Records, run_id: str, started: str = "2026-01-01T00:00:00.000Z", **changes: Any) -> dict:
    record = _record(run_id, started) | changes
    records.write(record)
    return record


def test_a_record_is_sealed_when_its_run_ends_and_not_before(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    running = _stored(records, run_id, status="running")
    assert records.check(run_id).state == "running" and not (tmp_path / "seals" / run_id).exists()
    records.write(running | {"status": "succeeded"})
    checked = records.check(run_id)
    assert checked.state == "sealed" and checked.seal == record_digest(checked.record)
    seal = tmp_path / "seals" / run_id
    assert json.loads(seal.read_text())["record"] == checked.seal
    assert not os.access(seal, os.W_OK) or os.getuid() == 0, "the seal is read-only"
    # The record as sealed is a store object: canonical JSON, named by the seal.
    obj = tmp_path / "objects" / checked.seal[:2] / checked.seal[2:]
    assert json.loads(obj.read_bytes()) == checked.record


def test_reindenting_a_record_keeps_its_seal_and_any_changed_value_breaks_it(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    _stored(records, run_id)
    path = records.paths(run_id).record
    path.write_text(json.dumps(json.loads(path.read_text())))  # same values, other whitespace and key order
    assert records.read(run_id)["metrics"] == {"rmse": 1.5}
    path.write_text(path.read_text().replace("1.5", "1.25"))
    with pytest.raises(StoreCorruption, match=r"changed after its run ended.*changed: metrics\.rmse") as caught:
        records.read(run_id)
    assert str(path) in caught.value.message and "cp " in (caught.value.hint or "")


def test_a_sealed_record_is_never_written_again(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    record = _stored(records, run_id)
    records.write(record)  # the same record again: nothing changes
    for changed in (record | {"metrics": {"rmse": 0.1}}, record | {"status": "running"}):
        with pytest.raises(HarnessError, match=f"refusing to rewrite the record of run {run_id}"):
            records.write(changed)
    assert records.read(run_id)["metrics"] == {"rmse": 1.5}


def test_a_seal_that_disagrees_with_the_index_is_not_trusted(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    _stored(records, run_id)
    seal = tmp_path / "seals" / run_id
    os.chmod(seal, 0o644)
    seal.write_text(json.dumps({"format": "harness.seal/1", "record": "0" * 64, "run": run_id}))
    checked = records.check(run_id)
    assert checked.state == "seal" and "the index holds" in checked.detail
    seal.write_text("{not a seal")
    assert records.check(run_id).state == "seal"
    with pytest.raises(StoreCorruption, match="is damaged"):
        records.read(run_id)


def test_an_index_from_before_seals_gets_the_seal_column(tmp_path: Path) -> None:
    old_columns = (
        "id TEXT PRIMARY KEY, name TEXT, status TEXT, exit_code INTEGER, started_at TEXT, finished_at TEXT, "
        "duration_s REAL, code_commit TEXT, dirty INTEGER, snapshot TEXT, image_id TEXT, params TEXT, metrics TEXT, "
        "rebuild_of TEXT, record TEXT"
    )
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as db, db:
        db.execute(f"CREATE TABLE runs ({old_columns})")
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    _stored(records, run_id)
    assert [r["id"] for r in records.list()] == [run_id]
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as db:
        [(seal,)] = db.execute("SELECT seal FROM runs").fetchall()
    assert seal == records.check(run_id).seal


def test_an_argv_that_is_not_utf8_is_sealed_and_checked(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    argv = ["python", os.fsdecode(b"caf\xe9.py")]  # as sys.argv holds a byte that is not UTF-8
    _stored(records, run_id, command=argv)
    assert records.read(run_id)["command"] == argv
    assert record_digest({"a": "ascii"}) == sha256_json({"a": "ascii"}), "otherwise exactly canonical_json"


def test_listing_never_fails_on_a_record_that_cannot_be_read(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    good, unsealed_bad = records.allocate().id, records.allocate().id
    _stored(records, good)
    records.paths(unsealed_bad).record.write_bytes(b'{"id": "\xff')  # no seal, no sealed copy, not even UTF-8
    assert {r["id"]: r["status"] for r in records.list()} == {good: "succeeded", unsealed_bad: "damaged"}
    [row] = [r for r in records.list() if r["id"] == unsealed_bad]
    assert "is not UTF-8" in row["error"]["message"]
    with pytest.raises(StoreCorruption, match=f"the record of run {unsealed_bad} cannot be read"):
        records.read(unsealed_bad)


def test_a_damaged_index_does_not_stop_a_record_being_checked(tmp_path: Path) -> None:
    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    run_id = records.allocate().id
    _stored(records, run_id)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    (tmp_path / "index.sqlite").write_bytes(b"not a database" * 100)
    assert records.check(run_id).state == "sealed"  # the seal in seals/ is the authority
