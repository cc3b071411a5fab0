"""Reading runs back: find the project's store and read or list its records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import find_config_file
from .paths import Layout
from .records import Records


def project_layout(project_dir: Path) -> Layout:
    return Layout.for_project(find_config_file(project_dir.resolve()).parent)


def project_records(project_dir: Path) -> Records:
    layout = project_layout(project_dir)
    return Records(layout.runs, layout.index)


def read_record(project_dir: Path, ref: str) -> dict[str, Any]:
    return project_records(project_dir).read(ref)


def list_records(project_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    return project_records(project_dir).list(limit)


def diff_runs(project_dir: Path, a: str, b: str) -> dict[str, Any]:
    """What differs between two runs' inputs and outputs: why two runs gave different results."""
    from .compare import compare_inputs, compare_outputs
    from .store import Store

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
