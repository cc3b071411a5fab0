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
