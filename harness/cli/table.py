"""The runs table of `harness ls`: column groups Meta | Provenance | Params | Metrics, as text or CSV.

Params and metrics are flattened to dotted keys (``optim.lr``). By default only the param and metric columns
whose values differ across the listed runs are shown; the constant ones are summed up in one line under the
table, so nothing is hidden without saying so. Failed and interrupted runs show their status in capitals and
dirty runs a ``DIRTY`` mark next to the commit, so neither can pass unnoticed.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from harness.flatten import flat
from harness.runs.query import varying

GROUP_SEP = " | "


@dataclass(frozen=True)
class Column:
    group: str
    title: str
    key: str  # dotted path into the record, for CSV headers


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _short(digest: str | None, n: int = 8) -> str:
    return digest.split(":", 1)[-1][:n] if digest else "-"


def status_cell(record: dict[str, Any]) -> str:
    status = str(record.get("status"))
    if status == "failed":
        code = record.get("exit_code")
        return "FAILED" + (f"({code})" if code is not None else "")
    if status in ("interrupted", "damaged"):  # damaged: a record that can be neither read nor recovered
        return status.upper()
    return status


def _meta_cells(record: dict[str, Any]) -> list[str]:
    code = record.get("code") or {}
    commit = (code.get("commit") or "-")[:8]
    return [
        (record.get("started_at") or "")[:16].replace("T", " "),
        record["id"],
        record.get("name") or "",
        status_cell(record),
        commit + (" DIRTY" if code.get("dirty") else ""),
        _short((record.get("data") or {}).get("snapshot")),
        _short((record.get("environment") or {}).get("image_id")),
    ]


_META = [
    Column("Meta", "time", "started_at"),
    Column("Meta", "id", "id"),
    Column("Meta", "name", "name"),
    Column("Meta", "status", "status"),
    Column("Provenance", "commit", "code.commit"),
    Column("Provenance", "data", "data.snapshot"),
    Column("Provenance", "image", "environment.image_id"),
]


def columns(records: list[dict[str, Any]], all_columns: bool) -> tuple[list[Column], dict[str, dict[str, Any]]]:
    """The columns to show, and per group the constant values left out."""
    cols = list(_META)
    left_out: dict[str, dict[str, Any]] = {}
    for group, title in (("params", "Params"), ("metrics", "Metrics")):
        if all_columns or len(records) < 2:
            keys = sorted({k for r in records for k in flat(r.get(group) or {})})
            constant: dict[str, Any] = {}
        else:
            keys, constant = varying(records, group)
        cols += [Column(title, key, f"{group}.{key}") for key in keys]
        if constant:
            left_out[group] = constant
    return cols, left_out


def _cells(record: dict[str, Any], cols: list[Column]) -> list[str]:
    meta = _meta_cells(record)
    params, metrics = flat(record.get("params") or {}), flat(record.get("metrics") or {})
    out = meta[:]
    for col in cols[len(_META) :]:
        values = params if col.group == "Params" else metrics
        out.append(_fmt(values[col.title]) if col.title in values else "")
    return out


def render_table(
    records: list[dict[str, Any]], all_columns: bool = False, total: int | None = None, where: str | None = None
) -> str:
    """The grouped text table; ``total`` is how many runs matched before --limit, for the footer."""
    if not records:
        return f"no runs match --where {where!r}" if where else "no runs yet: start one with `harness run`"
    cols, left_out = columns(records, all_columns)
    rows = [[c.title for c in cols]] + [_cells(r, cols) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    # Numbers read best right-aligned; everything else left-aligned.
    numeric = [i >= len(_META) and all(_is_number(row[i]) for row in rows[1:]) for i in range(len(cols))]

    groups: list[tuple[str, int, int]] = []  # (title, first column, last column)
    for i, col in enumerate(cols):
        if groups and groups[-1][0] == col.group:
            groups[-1] = (col.group, groups[-1][1], i)
        else:
            groups.append((col.group, i, i))
    # A group title may be wider than its columns: widen the group's last column.
    for title, first, last in groups:
        span = sum(widths[first : last + 1]) + 2 * (last - first)
        if len(title) > span:
            widths[last] += len(title) - span

    def line(cells: list[str]) -> str:
        parts = []
        for title, first, last in groups:
            del title
            parts.append(
                "  ".join(
                    cells[i].rjust(widths[i]) if numeric[i] and cells is not rows[0] else cells[i].ljust(widths[i])
                    for i in range(first, last + 1)
                )
            )
        return GROUP_SEP.join(parts).rstrip()

    header = GROUP_SEP.join(
        title.ljust(sum(widths[first : last + 1]) + 2 * (last - first)) for title, first, last in groups
    ).rstrip()
    rule = GROUP_SEP.join("-" * (sum(widths[first : last + 1]) + 2 * (last - first)) for _, first, last in groups)
    lines = [header, line(rows[0]), rule] + [line(row) for row in rows[1:]]
    for group, constant in left_out.items():
        lines.append(f"same in every run shown: {group} " + " ".join(f"{k}={_fmt(v)}" for k, v in constant.items()))
    if total is not None and total > len(records):
        lines.append(f"{len(records)} of {total} matching runs shown (--limit)")
    return "\n".join(lines)


def _is_number(cell: str) -> bool:
    if cell in ("", "-"):
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def render_csv(records: list[dict[str, Any]]) -> str:
    """Every param and metric as its own column (stable headers for spreadsheets), one row per run."""
    param_keys = sorted({k for r in records for k in flat(r.get("params") or {})})
    metric_keys = sorted({k for r in records for k in flat(r.get("metrics") or {})})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    meta = ["id", "started_at", "name", "status", "exit_code", "commit", "dirty", "data", "image"]
    writer.writerow(meta + [f"params.{k}" for k in param_keys] + [f"metrics.{k}" for k in metric_keys])
    for r in records:
        code = r.get("code") or {}
        params, metrics = flat(r.get("params") or {}), flat(r.get("metrics") or {})
        writer.writerow(
            [
                r["id"],
                r.get("started_at") or "",
                r.get("name") or "",
                r.get("status") or "",
                "" if r.get("exit_code") is None else r["exit_code"],
                code.get("commit") or "",
                "true" if code.get("dirty") else "false",
                (r.get("data") or {}).get("snapshot") or "",
                (r.get("environment") or {}).get("image_id") or "",
            ]
            + [_csv_value(params, k) for k in param_keys]
            + [_csv_value(metrics, k) for k in metric_keys]
        )
    return buffer.getvalue()


def _csv_value(values: dict[str, Any], key: str) -> str:
    if key not in values or values[key] is None:
        return ""
    value = values[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, sort_keys=True)
