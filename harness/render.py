"""Text renderings of records for people: the run summary, `show`, and the `ls` table."""

from __future__ import annotations

import json
from typing import Any


def _short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "-"
    return digest.split(":", 1)[-1][:n]


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _kv(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt_value(v)}" for k, v in _flat(values).items()) or "-"


def _status(record: dict[str, Any]) -> str:
    status = str(record["status"])
    if record["status"] == "failed" and record.get("exit_code") is not None:
        status += f"({record['exit_code']})"
    return status


def run_summary(record: dict[str, Any]) -> str:
    code = record["code"]
    lines = [
        f"run {record['id']} {_status(record)} in {record.get('duration_s') or 0:.1f}s"
        + ("  [DIRTY]" if code.get("dirty") else ""),
        f"  commit   {code['commit'][:12]}" + (" + uncommitted changes" if code.get("dirty") else ""),
        f"  image    {_short(record['environment']['image_id'])}",
        f"  data     {_short(record['data'].get('snapshot'))} ({record['data'].get('files', 0)} files)",
        f"  outputs  {len(record['outputs']['files'])} files",
    ]
    if record.get("metrics"):
        lines.append(f"  metrics  {_kv(record['metrics'])}")
    if record.get("metrics_error"):
        lines.append(f"  warning  {record['metrics_error']}")
    lines.append(f"  details  harness show {record['id']}")
    return "\n".join(lines)


def show_record(record: dict[str, Any]) -> str:
    code, env, data, outputs = record["code"], record["environment"], record["data"], record["outputs"]
    rows: list[tuple[str, str]] = [
        ("run", f"{record['id']}  {record.get('name') or ''}"),
        ("status", _status(record) + ("  [DIRTY: ran uncommitted changes]" if code.get("dirty") else "")),
        ("started", f"{record.get('started_at')}  ({record.get('duration_s')} s)"),
        ("command", " ".join(record["command"])),
        ("commit", f"{code['commit']}  {code.get('subject') or ''}"),
        ("tree", code["tree"] + (f"  (project path {code['project_path']})" if code.get("project_path") else "")),
    ]
    if code.get("dirty"):
        rows.append(("changes", ", ".join(f"{c['status']} {c['path']}" for c in code.get("changes", []))))
        rows.append(("diff", f"object {code.get('diff')}"))
    rows += [
        ("image", f"{env['image_id']}  (python {env.get('python')}, {len(env.get('packages', []))} packages)"),
        ("manifest", str(env.get("manifest_digest"))),
        ("lock", str(env.get("lock_digest"))),
        ("data", f"{data.get('snapshot')}  {data.get('files', 0)} files, {data.get('bytes', 0):,} bytes at /data"),
        ("params", _kv(record.get("params") or {})),
        ("metrics", _kv(record.get("metrics") or {})),
    ]
    text = "\n".join(f"{k:9} {v}" for k, v in rows)
    if outputs["files"]:
        text += "\noutputs\n" + "\n".join(f"  {sha[:16]}  {path}" for path, sha in sorted(outputs["files"].items()))
    if record.get("error"):
        text += f"\nerror     {record['error'].get('message')}"
    return text


COLUMNS = ("time", "id", "name", "status", "commit", "dirty", "data", "image", "params", "metrics")


def runs_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no runs yet: start one with `harness run`"
    rows = [COLUMNS]
    for r in records:
        rows.append(
            (
                (r.get("started_at") or "")[:19].replace("T", " "),
                r["id"],
                r.get("name") or "",
                _status(r),
                r["code"]["commit"][:8],
                "DIRTY" if r["code"].get("dirty") else "",
                _short(r["data"].get("snapshot"), 8),
                _short(r["environment"].get("image_id"), 8),
                _kv(r.get("params") or {}),
                _kv(r.get("metrics") or {}),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
