"""Run records: one directory per run (``runs/<id>/record.json`` + ``log.txt`` + ``outputs/``) and an SQLite
index over them for listing.

The record file is the truth; the index is rebuilt from the records whenever it is missing or behind.
Run ids are short random hex allocated with an atomic ``mkdir``, so concurrent runs never share one.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NotFound

SCHEMA = "harness.run/1"
STATUSES = ("running", "succeeded", "failed", "interrupted")
ID_BYTES = 3  # 6 hex digits; collisions are retried by the atomic mkdir

_COLUMNS = (
    "id TEXT PRIMARY KEY, name TEXT, status TEXT, exit_code INTEGER, started_at TEXT, finished_at TEXT, "
    "duration_s REAL, code_commit TEXT, dirty INTEGER, snapshot TEXT, image_id TEXT, params TEXT, metrics TEXT, "
    "rebuild_of TEXT, record TEXT"
)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def record(self) -> Path:
        return self.root / "record.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"


class Records:
    def __init__(self, runs_dir: Path, index_path: Path) -> None:
        self.runs_dir = runs_dir
        self.index_path = index_path

    # -- allocation and writing ---------------------------------------------------------------------------
    def allocate(self) -> RunPaths:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            run_id = secrets.token_hex(ID_BYTES)
            if self._prefix_taken(run_id):
                continue
            try:
                (self.runs_dir / run_id).mkdir()
            except FileExistsError:
                continue
            return RunPaths(self.runs_dir / run_id)
        raise RuntimeError("could not allocate a run id after 100 tries")  # pragma: no cover

    def _prefix_taken(self, run_id: str) -> bool:
        # An id must not be a prefix of, or prefixed by, an existing one: `harness show 3fa` stays unambiguous.
        return any(name.startswith(run_id) or run_id.startswith(name) for name in os.listdir(self.runs_dir))

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs_dir / run_id)

    def write(self, record: dict[str, Any]) -> None:
        assert record["schema"] == SCHEMA and record["status"] in STATUSES
        paths = self.paths(record["id"])
        data = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
        fd, tmp = tempfile.mkstemp(dir=paths.root, prefix=".record-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, paths.record)
        self._index([record])

    # -- reading ------------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """A full run id from an id or a unique prefix of one."""
        if not self.runs_dir.is_dir():
            raise NotFound(f"no runs yet in {self.runs_dir}", "start one with `harness run`")
        if (self.runs_dir / ref / "record.json").is_file():
            return ref
        matches = [n for n in os.listdir(self.runs_dir) if n.startswith(ref) and (self.runs_dir / n).is_dir()]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(f"no run {ref!r} in {self.runs_dir}", "list runs with `harness ls`")
        raise NotFound(f"run id {ref!r} is ambiguous: {', '.join(sorted(matches))}", "give more characters")

    def read(self, ref: str) -> dict[str, Any]:
        run_id = self.resolve(ref)
        try:
            return dict(json.loads(self.paths(run_id).record.read_text()))
        except FileNotFoundError:
            raise NotFound(f"run {run_id} has no record (it may still be starting)") from None

    def iter_records(self) -> Iterator[dict[str, Any]]:
        if not self.runs_dir.is_dir():
            return
        for name in sorted(os.listdir(self.runs_dir)):
            path = self.runs_dir / name / "record.json"
            if path.is_file():
                yield json.loads(path.read_text())

    # -- index ----------------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.index_path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({_COLUMNS})")
        return conn

    def _index(self, records: list[dict[str, Any]]) -> None:
        rows = [_row(r) for r in records]
        with closing(self._connect()) as conn, conn:
            conn.executemany(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * 15)})", rows)

    def reindex(self) -> int:
        records = list(self.iter_records())
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM runs")
        self._index(records)
        return len(records)

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records, newest first, from the index (rebuilt first if it misses runs that have records)."""
        with closing(self._connect()) as conn:
            indexed = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        on_disk = sum(1 for _ in self.runs_dir.glob("*/record.json")) if self.runs_dir.is_dir() else 0
        if indexed != on_disk:
            self.reindex()
        query = "SELECT record FROM runs ORDER BY started_at DESC, id"
        with closing(self._connect()) as conn:
            if limit is not None:
                rows = conn.execute(query + " LIMIT ?", (limit,)).fetchall()
            else:
                rows = conn.execute(query).fetchall()
        return [json.loads(row[0]) for row in rows]


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    code = record.get("code") or {}
    return (
        record["id"],
        record.get("name"),
        record["status"],
        record.get("exit_code"),
        record.get("started_at"),
        record.get("finished_at"),
        record.get("duration_s"),
        code.get("commit"),
        int(bool(code.get("dirty"))),
        (record.get("data") or {}).get("snapshot"),
        (record.get("environment") or {}).get("image_id"),
        json.dumps(record.get("params") or {}, sort_keys=True),
        json.dumps(record.get("metrics") or {}, sort_keys=True),
        record.get("rebuild_of"),
        json.dumps(record, sort_keys=True),
    )
