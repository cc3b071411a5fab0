"""Runs whose harness process died: noticed by the next command that opens the store, and finished for it.

A harness killed by SIGKILL, the OOM killer or a reboot cannot record its own end: its record would stay
``running`` forever, its container would run on (and stay, stopped), its work directory would stay. So every
command that opens a project store (run, ls, show, rebuild, diff, verify, gc) first calls :func:`recover`:

1. One indexed query for the runs the index holds as running (a partial index: a handful of rows, whatever the
   number of runs), and for each one a lock probe (ownership.py). A run whose owner still holds its lock is
   alive and left alone.
2. For a run whose owner is gone, under its lock (so two commands never recover the same run): its containers,
   found by the run's and the store's labels, are removed; its work directory (code, data and params laid out for
   the container) is removed; its record is marked ``interrupted``, with the reason in ``error``, and sealed.
   Its outputs directory and log are left as they are: the record names no outputs, so verify makes no claim on
   them.
3. A run whose owner died after its record was final and sealed, but before the index said so, only has its index
   row brought up to date: it ended, and its record says how.

Without an engine (it is stopped, or unreachable), the record is marked all the same and the container is left
for `harness gc`, which says so. Objects and temp files a dead run stored are not touched here: they are what
`harness gc` frees.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import INTERRUPTED_EXIT_CODE, HarnessError, NotFound
from harness.paths import Layout
from harness.runs.records import Records

if TYPE_CHECKING:
    from harness.docker.interface import Engine
    from harness.runs.ownership import Owner

DIED = "HarnessDied"  # error.error of a run recorded as interrupted because its harness process died
TEMP_PREFIXES = (".record.json.", ".harness-replace")  # what a killed harness may leave in a run directory


@dataclass(frozen=True)
class Recovered:
    """A run found with its harness gone, and what was done about it."""

    run: str
    owner: str  # "harness (pid 4242)"
    container: str  # "removed", "none" (there was none left), "left" (the engine could not be asked), "failed"
    detail: str = ""  # why the container was left, or why the run could not be marked

    @property
    def marked(self) -> bool:
        return self.container != "failed"

    def message(self) -> str:
        if not self.marked:
            return f"run {self.run}: {self.owner} died, but the run could not be marked interrupted: {self.detail}"
        head = f"run {self.run} was interrupted: {self.owner} died"
        if self.container == "removed":
            return f"{head}; its container was removed"
        if self.container == "left":
            return f"{head}; its container could not be removed ({self.detail}): `harness gc` removes it later"
        return head


def recover(layout: Layout, connect_engine: Callable[[], Engine] | None = None) -> list[Recovered]:
    """Find the runs whose harness died and finish them (see the module's doc); what was found, each once."""
    records = Records(layout.runs, layout.index)
    ids = records.running()
    if not ids:
        return []
    # Only now: a store with no running run pays for one query, nothing more.
    from harness.runs import ownership
    from harness.storage.storelock import maybe_adding_objects

    engines = _Engines(connect_engine or _connect)
    found = []
    for run_id in ids:
        run_dir = layout.runs / run_id
        try:
            first = records.check(run_id)
        except NotFound:
            continue  # its directory is gone; the next listing re-indexes
        process = (first.record or {}).get("process")
        probe = ownership.probe(run_dir, process)
        if probe.alive:
            continue
        # Marking the run seals its record, which stores an object: not while a `harness gc` removes objects.
        with maybe_adding_objects(layout.store) as may_write:
            if not may_write:
                probe.release()  # the next command finishes it
                continue
            try:
                done = _finish(layout, records, run_id, probe.owner, engines)
            finally:
                probe.release(remove=True)
        if done is not None:
            found.append(done)
    return found


def _connect() -> Engine:
    from harness.docker.engine import connect  # only for a dead run: a listing with none never loads the SDK

    return connect()


class _Engines:
    """The engine, connected when a dead run first needs it."""

    def __init__(self, connect_engine: Callable[[], Engine]) -> None:
        self._connect = connect_engine
        self._engine: Engine | HarnessError | None = None

    def get(self) -> Engine | HarnessError:
        if self._engine is None:
            try:
                self._engine = self._connect()
            except HarnessError as exc:
                self._engine = exc
        return self._engine


def _finish(layout: Layout, records: Records, run_id: str, owner: Owner, engines: _Engines) -> Recovered | None:
    # Read again, under the run's lock: its owner may have finished between the index query and the probe.
    try:
        checked = records.check(run_id)
    except NotFound:
        return None
    record = checked.record
    if checked.state == "sealed" or record is None or checked.state not in ("running", "unsealed"):
        # Final and sealed (the index only lagged), or damaged: `harness verify` names a damaged record.
        with contextlib.suppress(HarnessError, OSError, sqlite3.Error):
            records.refresh(run_id)
        return None
    from harness.storage import snapshot

    who = owner.describe()
    try:
        container, detail = _remove_containers(layout, run_id, engines)
        run_dir = layout.runs / run_id
        snapshot.remove_materialized(layout.work / run_id)
        for name in os.listdir(run_dir):
            if name.startswith(TEMP_PREFIXES):
                _remove(run_dir / name)
        records.write(_interrupted(record, who, run_dir, container))
    except (HarnessError, OSError, sqlite3.Error) as exc:
        if isinstance(exc, HarnessError):
            message = exc.message
        elif isinstance(exc, OSError):
            message = f"{exc.strerror or exc} ({exc.filename})"
        else:
            message = f"the index {layout.index}: {exc}"
        return Recovered(run_id, who, "failed", message)
    return Recovered(run_id, who, container, detail)


def _remove_containers(layout: Layout, run_id: str, engines: _Engines) -> tuple[str, str]:
    """Remove the run's containers, found by its run id and this store's path: ("removed" | "none" | "left",
    why it was left)."""
    from harness.runs import ownership

    engine = engines.get()
    if isinstance(engine, HarnessError):
        return "left", engine.message
    try:
        found = engine.containers(ownership.labels(run_id, layout.store))
        for container in found:
            engine.remove(container["id"])
        if found and engine.containers(ownership.labels(run_id, layout.store)):
            return "left", "the engine did not remove it"
    except HarnessError as exc:
        return "left", exc.message
    return ("removed" if found else "none"), ""


def _interrupted(record: dict[str, Any], who: str, run_dir: Path, container: str) -> dict[str, Any]:
    """The record as interrupted: what it said so far, with the reason."""
    now = time.time()
    last = max((_mtime(run_dir / name) for name in ("record.json", "log.txt")), default=0.0)
    was = record.get("status")
    if was == "running":
        when = "while the run was running"
    else:
        when = f"after writing its record ({was}) but before sealing it, so harness does not stand behind that"
    left = " Its container could not be removed yet: `harness gc` removes it." if container == "left" else ""
    marked = dict(record)
    marked["status"] = "interrupted"
    marked["finished_at"] = _iso(now)
    marked["duration_s"] = None  # when it died is not known
    marked["error"] = {
        "error": DIED,
        "message": (
            f"{who} died {when} (last sign of life {_iso(last) if last else 'unknown'}; noticed {_iso(now)})." + left
        ),
        "hint": (
            f"its log up to then is in {run_dir / 'log.txt'}; run it again, or `harness rebuild {record['id']}` "
            "to re-execute it from this record"
        ),
        "exit_code": INTERRUPTED_EXIT_CODE,
    }
    return marked


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
