"""`harness export RUN --format F -o PATH`: one finished run, its record checked against its seal, written in a
standard provenance format by the module that knows it (crate.py: a Workflow Run RO-Crate; provjson.py: W3C
PROV-JSON). What is written goes to a temporary name next to PATH and is renamed into place when complete, so PATH
is either the whole export or absent; an existing PATH is never touched."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError
from harness.project.config import project_layout
from harness.provenance.sources import Sources
from harness.runs.history import check_record
from harness.storage.store import Store

# Each format: what PATH is, and the writer (record, its run's stores, PATH) -> files written.
FORMATS: dict[str, str] = {
    "ro-crate": "a directory: ro-crate-metadata.json, the outputs, params.json and the sealed record",
    "prov": "a file: W3C PROV-JSON",
}


@dataclass(frozen=True)
class Exported:
    run: str
    format: str
    path: Path
    files: int  # files written, the metadata included

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "format": self.format, "path": str(self.path), "files": self.files}


def _writer(fmt: str) -> Callable[[dict[str, Any], Sources, Path], int]:
    if fmt == "ro-crate":
        from harness.provenance.crate import write_crate

        return write_crate
    if fmt == "prov":
        from harness.provenance.provjson import write_prov

        return write_prov
    raise UsageError(f"unknown export format {fmt!r}", f"choose one of: {', '.join(FORMATS)}")


def export_run(project_dir: Path, ref: str, fmt: str, dest: Path) -> Exported:
    writer = _writer(fmt)
    checked = check_record(project_dir, ref)
    record = checked.record or {}
    run_id = str(record.get("id") or ref)
    if record.get("status") == "running":
        raise HarnessError(
            f"run {run_id} is still running: its outputs are not recorded yet",
            f"export it when it has ended (`harness show {run_id}` says its status)",
        )
    dest = dest.absolute()
    if dest.exists() or dest.is_symlink():
        raise UsageError(
            f"{dest} already exists: nothing was written",
            "give -o a path that does not exist yet; harness never writes over what is there",
        )
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent} is not a directory: nothing was written", "create it first")
    sources = Sources(Store(project_layout(project_dir).objects), checked.seal)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        target = work / "export"
        files = writer(record, sources, target)
        os.rename(target, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Exported(run_id, fmt, dest, files)
