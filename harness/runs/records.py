"""Run records: one directory per run (``runs/<id>/record.json`` + ``log.txt`` + ``outputs/``) and an SQLite
index over them for listing.

The record file is the truth; the index is rebuilt from the records whenever it is missing or behind.
Run ids are short random hex allocated with an atomic ``mkdir``, so concurrent runs never share one.

A record is sealed when its run ends (sealing.py): its digest goes to ``seals/<id>`` beside ``runs/`` and to its
index row, and its canonical bytes to the content store. :meth:`Records.read` checks the seal, so show, verify,
rebuild and diff never use an edited or unreadable record; listing reads the index alone and checks nothing.
Run directories, records and the index are no more open than the directory they are in (harness/files.py):
the record and the index, which holds every record again, are readable by the same people.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from harness.errors import HarnessError, NotFound
from harness.files import make_dirs, make_file, withheld, write_atomic
from harness.runs.schema import SCHEMA, STATUSES, RunRecord
from harness.runs.sealing import SEALS_DIRNAME, Checked, Seals, check, record_digest
from harness.storage.store import Store

ID_BYTES = 3  # 6 hex digits; collisions are retried by the atomic mkdir

_COLUMNS = (
    "id TEXT PRIMARY KEY, name TEXT, status TEXT, exit_code INTEGER, started_at TEXT, finished_at TEXT, "
    "duration_s REAL, code_commit TEXT, dirty INTEGER, snapshot TEXT, image_id TEXT, params TEXT, metrics TEXT, "
    "rebuild_of TEXT, record TEXT, seal TEXT"
)
DAMAGED = "damaged"  # the status of an index row for a record that can be neither read nor recovered


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
        store_dir = runs_dir.parent  # the project store (harness.paths.Layout): runs/ beside seals/ and objects/
        self.seals = Seals(store_dir / SEALS_DIRNAME, Store(store_dir / "objects"))

    # -- allocation and writing ---------------------------------------------------------------------------
    def allocate(self) -> RunPaths:
        make_dirs(self.runs_dir)
        mode = 0o777 & ~withheld(self.runs_dir)
        for _ in range(100):
            run_id = secrets.token_hex(ID_BYTES)
            if self._prefix_taken(run_id):
                continue
            try:
                (self.runs_dir / run_id).mkdir(mode)
            except FileExistsError:
                continue
            return RunPaths(self.runs_dir / run_id)
        raise RuntimeError("could not allocate a run id after 100 tries")  # pragma: no cover

    def _prefix_taken(self, run_id: str) -> bool:
        # An id must not be a prefix of, or prefixed by, an existing one: `harness show 3fa` stays unambiguous.
        return any(name.startswith(run_id) or run_id.startswith(name) for name in os.listdir(self.runs_dir))

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs_dir / run_id)

    def write(self, record: Mapping[str, Any]) -> None:
        """Write the record (all at once) and index it. A record harness cannot stand behind is refused."""
        problems = []
        if record.get("schema") != SCHEMA:
            problems.append(f"schema {record.get('schema')!r} is not {SCHEMA}")
        if record.get("status") not in STATUSES:
            problems.append(f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}")
        if not self._allocated(record.get("id")):
            problems.append(f"id {record.get('id')!r} is not a run allocated in {self.runs_dir}")
        if problems:
            raise HarnessError(
                f"refusing to write a run record: {'; '.join(problems)}", "this is a bug in harness; please report it"
            )
        run_id = record["id"]
        data = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
        final = record["status"] != "running"
        sealed = json.loads(data) if final else None  # exactly what every reader will parse back
        try:
            existing = self.seals.read(run_id)
        except ValueError:
            existing = "damaged"
        if existing is not None and (sealed is None or record_digest(sealed) != existing):
            raise HarnessError(
                f"refusing to rewrite the record of run {run_id}: it was sealed when the run ended",
                "this is a bug in harness; please report it",
            )
        write_atomic(self.paths(run_id).record, data, inherit=True)
        seal = existing if existing is not None or sealed is None else self.seals.seal(run_id, sealed)
        self._index([_row(record, seal)])

    def _allocated(self, run_id: Any) -> bool:
        return isinstance(run_id, str) and bool(run_id) and "/" not in run_id and (self.runs_dir / run_id).is_dir()

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

    def read(self, ref: str) -> RunRecord:
        """The run's record, checked against its seal: StoreCorruption (exit 107) naming the run and the file
        when it was changed after its run ended or cannot be read."""
        checked = self.check(ref)
        if not checked.ok:
            raise checked.error()
        return cast(RunRecord, checked.record)

    def check(self, ref: str) -> Checked:
        """The run's record file checked against its seal (in seals/ and in the index), without raising for
        damage; NotFound for an unknown run or one that has no record yet."""
        run_id = self.resolve(ref)
        return check(run_id, self.paths(run_id).record, self.seals, self._index_seals(run_id).get(run_id))

    def check_all(self) -> Iterator[Checked]:
        """Every run that has a record file, checked, in id order; damage is reported, never raised."""
        if not self.runs_dir.is_dir():
            return
        indexed = self._index_seals()
        for name in sorted(os.listdir(self.runs_dir)):
            path = self.runs_dir / name / "record.json"
            if path.is_file():
                try:
                    yield check(name, path, self.seals, indexed.get(name))
                except NotFound:
                    continue  # removed while we looked

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """The records harness stands behind: each file that matches its seal (or has none yet), else its
        sealed copy; a record that is neither is left out."""
        for checked in self.check_all():
            if checked.trusted is not None:
                yield checked.trusted

    # -- index ----------------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        make_file(self.index_path)  # with the record's mode, which SQLite gives its -wal and -shm files too
        conn = sqlite3.connect(self.index_path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({_COLUMNS})")
        # Newest first is every listing's order: with this, `ls --limit 50` reads 50 rows, not all of them.
        conn.execute("CREATE INDEX IF NOT EXISTS runs_newest ON runs (started_at DESC, id)")
        # The runs still running, for the check every command makes for runs whose harness died (recovery.py):
        # a partial index, so that check reads a handful of rows whatever the number of runs. An index this user
        # may only read goes without it (the check then reads every row).
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("CREATE INDEX IF NOT EXISTS runs_running ON runs (id) WHERE status = 'running'")
        return conn

    def _connect_seals(self) -> sqlite3.Connection:
        """A connection for the paths that touch the seal column (writing rows, reading seals), which an index
        written before records were sealed lacks; listing never does, so it pays nothing for the check."""
        conn = self._connect()
        if not any(row[1] == "seal" for row in conn.execute("PRAGMA table_info(runs)")):
            with contextlib.suppress(sqlite3.OperationalError):  # another process may add it first
                conn.execute("ALTER TABLE runs ADD COLUMN seal TEXT")
        return conn

    def _index(self, rows: Iterable[tuple[Any, ...]]) -> None:
        with closing(self._connect_seals()) as conn, conn:
            conn.executemany(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * 16)})", rows)

    def _index_seals(self, run_id: str | None = None) -> dict[str, str]:
        """Seals the index holds (of one run, or of all); nothing when there is no index yet, or one SQLite cannot
        read: these are the stand-ins, the seals in seals/ are the authority."""
        if not self.index_path.exists():
            return {}
        query = "SELECT id, seal FROM runs WHERE seal IS NOT NULL"
        args: tuple[str, ...] = ()
        if run_id is not None:
            query, args = query + " AND id = ?", (run_id,)
        try:
            with closing(self._connect_seals()) as conn:
                return dict(conn.execute(query, args).fetchall())
        except sqlite3.DatabaseError:
            return {}

    def reindex(self) -> int:
        """Index every record again from its file. The seal comes from seals/ (or the old index), never from the
        file, so an edited record is not laundered: its row holds the record as sealed, or, when no sealed copy is
        left, a row with status "damaged" (as is one for a record that cannot be read)."""
        rows = []
        for checked in self.check_all():
            record = checked.trusted
            if record is None:
                record = {"schema": SCHEMA, "id": checked.run, "status": DAMAGED, "error": checked.error().to_dict()}
            rows.append(_row(record, checked.seal))
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM runs")
        self._index(rows)
        return len(rows)

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records, newest first, from the index (rebuilt first if it misses runs that have records)."""
        self.sync()
        query = "SELECT record FROM runs ORDER BY started_at DESC, id"
        with closing(self._connect()) as conn:
            if limit is not None:
                rows = conn.execute(query + " LIMIT ?", (limit,)).fetchall()
            else:
                rows = conn.execute(query).fetchall()
        return [json.loads(row[0]) for row in rows]

    def sync(self) -> None:
        """Rebuild the index when it and the run directories disagree (a run added or removed by hand, an index
        deleted or written by an older harness). One directory listing and one indexed column: cheap at 10,000."""
        on_disk = set(os.listdir(self.runs_dir)) if self.runs_dir.is_dir() else set()
        with closing(self._connect()) as conn:
            indexed = {row[0] for row in conn.execute("SELECT id FROM runs")}
        if indexed - on_disk or any((self.runs_dir / n / "record.json").is_file() for n in on_disk - indexed):
            self.reindex()

    def summaries(self, limit: int | None = None, ids: Sequence[str] | None = None) -> builtins.list[dict[str, Any]]:
        """What the runs table shows, newest first (or in the order of ``ids``), from the index's columns alone:
        each a record cut down to id, name, status, exit_code, times, code.commit/dirty, data.snapshot,
        environment.image_id, params, metrics, rebuild_of. Call :meth:`sync` first."""
        query = f"SELECT {_SUMMARY} FROM runs"
        with closing(self._connect()) as conn:
            if ids is not None:
                rows: builtins.list[tuple[Any, ...]] = []
                for start in range(0, len(ids), 500):
                    chunk = builtins.list(ids[start : start + 500])
                    marks = ", ".join("?" * len(chunk))
                    rows += conn.execute(f"{query} WHERE id IN ({marks})", chunk).fetchall()
                order = {run_id: i for i, run_id in enumerate(ids)}
                rows.sort(key=lambda r: order[r[0]])
            else:
                query += " ORDER BY started_at DESC, id"
                bound = (limit,) if limit is not None else ()
                rows = conn.execute(query + (" LIMIT ?" if limit is not None else ""), bound).fetchall()
        return [_summary(r) for r in rows]

    def scan(self, paths: Iterable[tuple[str, ...]]) -> builtins.list[dict[str, Any]] | None:
        """Every run, newest first, as a dict holding only ``id`` and the given dotted paths, read by SQLite
        (``json_type``/``json_extract`` into the params and metrics columns), so filtering 10,000 runs parses
        no JSON in Python. A path absent from a run is absent from its dict. None when a path is not in the
        index (the caller then reads full records)."""
        selects: builtins.list[str] = ["id"]
        args: builtins.list[str] = []  # JSON paths are bound, never spliced into the SQL
        plan: builtins.list[tuple[tuple[str, ...], str]] = []
        for path in sorted(set(paths)):
            column = _SCALAR_PATHS.get(path)
            if column is not None:
                selects.append(column)
                plan.append((path, "bool" if path == ("code", "dirty") else "scalar"))
            elif path[0] in ("params", "metrics") and len(path) == 1:
                selects.append(path[0])
                plan.append((path, "json"))
            elif path[0] in ("params", "metrics") and all('"' not in p and "\\" not in p for p in path[1:]):
                json_path = "$" + "".join(f'."{p}"' for p in path[1:])
                selects += [f"json_type({path[0]}, ?)", f"json_extract({path[0]}, ?)"]
                args += [json_path, json_path]
                plan.append((path, "typed"))
            else:
                return None
        query = f"SELECT {', '.join(selects)} FROM runs ORDER BY started_at DESC, id"
        out: builtins.list[dict[str, Any]] = []
        with closing(self._connect()) as conn:
            for row in conn.execute(query, args):
                found: dict[str, Any] = {"id": row[0]}
                i = 1
                for path, kind in plan:
                    if kind == "typed":
                        present, value = _typed(row[i], row[i + 1])
                        i += 2
                    else:
                        present, value = True, row[i]
                        i += 1
                        if kind == "json":
                            value = json.loads(value) if value else {}
                        elif kind == "bool":
                            value = bool(value)
                    if present:
                        _put(found, path, value)
                out.append(found)
        return out

    def running(self) -> builtins.list[str]:
        """The ids of the runs the index holds as running; none when there is no index, or one SQLite cannot
        read (then nothing can be listed either, and `harness verify` says why)."""
        if not self.index_path.exists():
            return []
        try:
            with closing(self._connect()) as conn:
                return [row[0] for row in conn.execute("SELECT id FROM runs WHERE status = 'running'")]
        except sqlite3.DatabaseError:
            return []

    def refresh(self, run_id: str) -> None:
        """Index one run again from its record file, as :meth:`reindex` does for all (its seal from seals/)."""
        checked = self.check(run_id)
        record = checked.trusted
        if record is None:
            record = {"schema": SCHEMA, "id": checked.run, "status": DAMAGED, "error": checked.error().to_dict()}
        self._index([_row(record, checked.seal)])

    def count(self) -> int:
        with closing(self._connect()) as conn:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])

    def full(self, ids: Sequence[str]) -> builtins.list[dict[str, Any]]:
        """Full records for these ids from the index, in the order given."""
        found: dict[str, dict[str, Any]] = {}
        with closing(self._connect()) as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for run_id, text in conn.execute(f"SELECT id, record FROM runs WHERE id IN ({marks})", chunk):
                    found[run_id] = json.loads(text)
        return [found[i] for i in ids if i in found]


def _row(record: Mapping[str, Any], seal: str | None) -> tuple[Any, ...]:
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
        seal,
    )


_SUMMARY = (
    "id, name, status, exit_code, started_at, finished_at, duration_s, code_commit, dirty, snapshot, image_id, "
    "params, metrics, rebuild_of"
)
_SCALAR_PATHS = {
    ("id",): "id",
    ("name",): "name",
    ("status",): "status",
    ("exit_code",): "exit_code",
    ("started_at",): "started_at",
    ("finished_at",): "finished_at",
    ("duration_s",): "duration_s",
    ("rebuild_of",): "rebuild_of",
    ("code", "commit"): "code_commit",
    ("code", "dirty"): "dirty",
    ("data", "snapshot"): "snapshot",
    ("environment", "image_id"): "image_id",
    # A sweep's fields are no column of their own: SQLite reads them from the record, parsing no JSON in Python.
    ("sweep", "id"): "json_extract(record, '$.sweep.id')",
    ("sweep", "index"): "json_extract(record, '$.sweep.index')",
    ("sweep", "size"): "json_extract(record, '$.sweep.size')",
}


def _summary(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0],
        "name": r[1],
        "status": r[2],
        "exit_code": r[3],
        "started_at": r[4],
        "finished_at": r[5],
        "duration_s": r[6],
        "code": {"commit": r[7], "dirty": bool(r[8])},
        "data": {"snapshot": r[9]},
        "environment": {"image_id": r[10]},
        "params": json.loads(r[11]),
        "metrics": json.loads(r[12]),
        "rebuild_of": r[13],
    }


def _typed(kind: str | None, value: Any) -> tuple[bool, Any]:
    """A JSON value from SQLite's json_type + json_extract: booleans and null as Python's, containers parsed."""
    if kind is None:
        return False, None
    if kind in ("true", "false"):
        return True, kind == "true"
    if kind in ("array", "object"):
        return True, json.loads(value)
    return True, value


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
