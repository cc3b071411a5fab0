"""Reading runs back: find the project's store and read or list its records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.project.config import project_layout
from harness.runs.records import Records
from harness.runs.schema import RunRecord
from harness.runs.sealing import Checked


def project_records(project_dir: Path) -> Records:
    layout = project_layout(project_dir)
    return Records(layout.runs, layout.index)


def read_record(project_dir: Path, ref: str) -> RunRecord:
    return project_records(project_dir).read(ref)


def check_record(project_dir: Path, ref: str) -> Checked:
    """The run's record and its seal, after checking one against the other (StoreCorruption when they differ)."""
    checked = project_records(project_dir).check(ref)
    if not checked.ok:
        raise checked.error()
    return checked


def query_runs(
    project_dir: Path,
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
    full: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """The runs `harness ls` shows, newest first unless sorted, and how many matched before the limit.

    Filter and sort run over just the fields they name, read by SQLite from the index (Records.scan); only a
    field the index lacks (code.branch, ...) makes them read full records. ``full`` returns full records."""
    from harness.runs.query import QueryError, parse_sort, parse_where, select, suggest, unknown_names

    records = project_records(project_dir)
    records.sync()
    condition = parse_where(where) if where else None
    order = parse_sort(sort) if sort else None
    paths = set(condition.names if condition else ()) | ({order.path} if order else set())
    if not paths:
        rows = records.summaries(limit)
        total = len(rows) if limit is None or len(rows) < limit else records.count()
    else:
        candidates = records.scan(paths)
        if candidates is None:
            candidates = records.list()
        if condition is not None:
            unknown = unknown_names(condition, candidates)
            if unknown and candidates:
                close = suggest(unknown[0], records.summaries(limit=200))
                raise QueryError(
                    f"--where {condition.text!r}: no run has {', '.join(unknown)}",
                    f"did you mean {' or '.join(close)}?" if close else "see the fields with `harness show RUN --json`",
                )
        chosen = select(candidates, condition, order)
        total = len(chosen)
        rows = records.summaries(ids=[r["id"] for r in chosen[:limit]])
    if full:
        rows = records.full([r["id"] for r in rows])
    return rows, total


def diff_runs(project_dir: Path, a: str, b: str) -> dict[str, Any]:
    """What differs between two runs' inputs and outputs: why two runs gave different results."""
    from harness.runs.compare import compare_inputs, compare_outputs
    from harness.storage.store import Store

    layout = project_layout(project_dir)
    records = Records(layout.runs, layout.index)
    old, new = records.read(a), records.read(b)
    store = Store(layout.objects)
    outputs = compare_outputs(old, new, store)
    inputs = compare_inputs(old, new, store)
    return {
        "a": old["id"],
        "b": new["id"],
        "identical": outputs.identical and inputs.identical,
        "inputs": inputs.to_dict(),
        "outputs": outputs.to_dict(),
    }
