"""Text renderings of records for people: the run summary and `show` (the `ls` table is in table.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from harness.flatten import flat
from harness.units import format_size


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


SUMMARY_METRICS = 30  # the run summary names this many; `harness show` has them all


def _kv(values: dict[str, Any], limit: int | None = None) -> str:
    items = list(flat(values).items())
    shown = " ".join(f"{k}={_fmt_value(v)}" for k, v in items[:limit]) or "-"
    return shown + (f" ... and {len(items) - limit:,} more" if limit is not None and len(items) > limit else "")


def _status(record: Mapping[str, Any]) -> str:
    status = str(record["status"])
    if record["status"] == "failed" and record.get("exit_code") is not None:
        status += f"({record['exit_code']})"
    return status


def run_summary(record: Mapping[str, Any]) -> str:
    code = record["code"]
    lines = [
        f"run {record['id']} {_status(record)} in {record.get('duration_s') or 0:.1f}s"
        + ("  [DIRTY]" if code.get("dirty") else ""),
        f"  commit   {code['commit'][:12]}" + (" + uncommitted changes" if code.get("dirty") else ""),
        f"  image    {_short(record['environment']['image_id'])}",
        f"  data     {_short(record['data'].get('snapshot'))} ({record['data'].get('files', 0)} files)",
        f"  outputs  {record['outputs'].get('file_count', len(record['outputs']['files']))} files",
    ]
    if record.get("metrics"):
        lines.append(f"  metrics  {_kv(record['metrics'], SUMMARY_METRICS)}")
    if record.get("metrics_error"):
        lines.append(f"  warning  {record['metrics_error']}")
    skipped = record["outputs"].get("skipped") or []
    if skipped:
        names = ", ".join(s["path"] for s in skipped[:5]) + (
            f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        )
        lines.append(f"  warning  {len(skipped)} output(s) not recorded: {names} (why: harness show {record['id']})")
    if truncated := record.get("metrics_truncated"):
        lines.append(
            f"  warning  {truncated['total']:,} metrics: the record keeps the first {truncated['kept']:,}; "
            "all are in the metrics files in the outputs"
        )
    if omitted := (record.get("runtime") or {}).get("params_env_omitted"):
        lines.append(f"  warning  too long for HARNESS_PARAM_* variables, only in params.json: {', '.join(omitted)}")
    for warning in (record.get("mlflow") or {}).get("warnings") or []:
        lines.append(f"  warning  {warning}")
    if record.get("params_unread"):
        # Only known when the code loaded its params through harness_params (params_read is not null).
        unread = ", ".join(record["params_unread"])
        lines.append(f"  warning  params set but never read by the code: {unread} (is it passed to the model?)")
    if (record.get("log") or {}).get("dropped"):
        lines.append(f"  warning  {_log_dropped(record)}")
    error = record.get("error") or {}
    if error.get("reason"):  # a limit stopped the run; other errors are reported as errors
        lines.append(f"  error    {error['reason']}: {error.get('message')}")
        lines.append(f"  hint     {error.get('hint')}")
    lines.append(f"  details  harness show {record['id']}")
    return "\n".join(lines)


def _duration(record: Mapping[str, Any]) -> str:
    if record.get("duration_s") is not None:
        return f"{record['duration_s']} s"
    if record.get("status") == "running":
        return "running"
    return f"ended {record.get('finished_at')}, duration unknown" if record.get("finished_at") else "duration unknown"


def _log_dropped(record: Mapping[str, Any]) -> str:
    log = record["log"]
    return (
        f"log.txt dropped {log['dropped']:,} of the {log['bytes']:,} bytes the run printed (the middle: it keeps "
        "the head and the tail within the log limit)"
    )


LIMIT_NAMES = ("memory", "cpus", "pids", "outputs", "state", "log")


def _limits(limits: Mapping[str, Any]) -> str:
    shown = []
    sources = limits.get("sources") or {}
    for key in LIMIT_NAMES:
        value = limits.get(key)
        if value is None:
            text = "all" if key == "cpus" else "none"
        elif key in ("memory", "outputs", "state", "log"):
            text = format_size(int(value))
        else:
            text = f"{value:g}"
        shown.append(f"{key} {text}" + ("" if sources.get(key, "default") == "default" else f" ({sources[key]})"))
    return ", ".join(shown)


def _unread(record: Mapping[str, Any]) -> str:
    if record.get("params_read") is None:
        return "not known (the code did not load its params through harness_params)"
    return ", ".join(record.get("params_unread") or []) or "none: the code read every param"


SEAL_STATES = {
    "sealed": "unchanged since the run ended",
    "running": "not yet: sealed when the run ends",
    "unsealed": "no: recorded by a harness that did not seal records, so an edit could not be noticed",
}


def show_record(record: Mapping[str, Any], seal: str | None = None, seal_state: str | None = None) -> str:
    code, env, data, outputs = record["code"], record["environment"], record["data"], record["outputs"]
    rows: list[tuple[str, str]] = [
        ("run", f"{record['id']}  {record.get('name') or ''}"),
        ("status", _status(record) + ("  [DIRTY: ran uncommitted changes]" if code.get("dirty") else "")),
    ]
    if record.get("sweep"):
        where = record["sweep"]
        worker = f"  on worker {where['worker']}" if where.get("worker") else ""
        rows.append(("sweep", f"{where['id']}  run {where['index'] + 1} of {where['size']}{worker}"))
    if seal_state is not None:
        rows.append(("sealed", (f"sha256 {seal[:16]}, " if seal else "") + SEAL_STATES[seal_state]))
    rows += [
        ("started", f"{record.get('started_at')}  ({_duration(record)})"),
        ("command", " ".join(record["command"])),
    ]
    if record.get("command_params"):
        rows.append(("as written", " ".join(record.get("command_template") or [])))
    rows += [
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
        ("unread", _unread(record)),
        ("metrics", _kv(record.get("metrics") or {})),
    ]
    for run in (record.get("mlflow") or {}).get("runs") or []:
        models = ", ".join(m["path"] for m in run.get("models") or []) or "none"
        tags = " ".join(f"{k}={v}" for k, v in (run.get("tags") or {}).items())
        rows.append(
            (
                "mlflow",
                f"run {run['run_id']} ({run.get('run_name')}), {len(run.get('artifacts') or [])} artifacts, "
                f"models: {models}" + (f", tags: {tags}" if tags else ""),
            )
        )
    for warning in (record.get("mlflow") or {}).get("warnings") or []:
        rows.append(("warning", warning))
    limits = (record.get("runtime") or {}).get("limits")
    rows.append(("limits", _limits(limits) if limits else "not recorded (a run made before harness set limits)"))
    if (record.get("log") or {}).get("dropped"):
        rows.append(("log", _log_dropped(record)))
    text = "\n".join(f"{k:9} {v}" for k, v in rows)
    if outputs["files"]:
        text += "\noutputs\n" + "\n".join(f"  {sha[:16]}  {path}" for path, sha in sorted(outputs["files"].items()))
        more = outputs.get("file_count", 0) - len(outputs["files"])
        if more > 0:
            text += f"\n  ... and {more:,} more: `harness data show {outputs['manifest']}` lists every one"
    if outputs.get("skipped"):
        text += f"\nskipped   not recorded, kept in runs/{record['id']}/skipped/:\n" + "\n".join(
            f"  {s['path']}: {s['reason']}" for s in outputs["skipped"]
        )
    error = record.get("error")
    if error:
        reason = f"{error['reason']}: " if error.get("reason") else ""
        text += f"\nerror     {reason}{error.get('message')}"
        if error.get("hint"):
            text += f"\nhint      {error['hint']}"
    return text


def _value(value: Any) -> str:
    return "-" if value is None else _fmt_value(value)


def output_comparison(outputs: dict[str, Any], old_label: str, new_label: str) -> list[str]:
    lines: list[str] = []
    exit_code = outputs["exit_code"]
    if exit_code["old"] != exit_code["new"]:
        lines.append(f"exit code: {_value(exit_code['old'])} ({old_label}) vs {_value(exit_code['new'])} ({new_label})")
    for f in outputs["files"]:
        old, new = f["old"], f["new"]
        lines.append(
            f"{f['status']:8} {f['path']}  {old_label}: {_short(old['sha256'], 16)} ({_value(old['size'])} bytes)"
            f"  {new_label}: {_short(new['sha256'], 16)} ({_value(new['size'])} bytes)"
        )
        if f.get("diff"):
            lines.extend("    " + line for line in f["diff"].splitlines())
    if outputs["metrics"]:
        width = max(7, *(len(m["key"]) for m in outputs["metrics"]))
        lines.append(f"{'metrics':{width}}  {old_label:>14}  {new_label:>14}")
        for m in outputs["metrics"]:
            lines.append(f"{m['key']:{width}}  {_value(m['old']):>14}  {_value(m['new']):>14}")
    return lines


def input_comparison(inputs: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for section, detail in inputs["differences"].items():
        if section == "params":
            for p in detail:
                lines.append(f"params   {p['key']}: {_value(p['old'])} -> {_value(p['new'])}")
        elif section == "runtime":
            for r in detail:
                lines.append(f"runtime  {r['key']}: {_value(r['old'])} -> {_value(r['new'])}")
        elif section == "data":
            changed = {k: detail.get(k) for k in ("added", "removed", "changed") if detail.get(k)}
            files = "; ".join(f"{k}: {', '.join(v[:5])}" + (" ..." if len(v) > 5 else "") for k, v in changed.items())
            snap = detail["snapshot"]
            lines.append(f"data     {_short(snap['old'])} -> {_short(snap['new'])}" + (f"  ({files})" if files else ""))
        elif section == "environment":
            img = detail["image_id"]
            lines.append(f"image    {_short(img['old'])} -> {_short(img['new'])}")
            for p in detail["packages"]:
                lines.append(f"         {p['name']}: {_value(p['old'])} -> {_value(p['new'])}")
        elif section == "code":
            for key in ("commit", "tree", "dirty", "patch"):
                if key in detail:
                    lines.append(f"code     {key}: {_value(detail[key]['old'])} -> {_value(detail[key]['new'])}")
            if "note" in detail:
                lines.append(f"         ({detail['note']})")
        elif section == "command":
            lines.append(f"command  {' '.join(detail['old'])} -> {' '.join(detail['new'])}")
    return lines


def rebuild_report(result: dict[str, Any]) -> str:
    head = f"rebuild {result['rebuild']} of run {result['original']}: "
    outputs = result["outputs"]
    if result["status"] == "interrupted":
        return head + (
            "INTERRUPTED before its container ended: nothing was compared (it is recorded as an interrupted run); "
            f"`harness rebuild {result['original']}` starts again"
        )
    if result["identical"]:
        return head + f"IDENTICAL: {outputs['same_files']} output files, exit code and metrics match bit for bit"
    lines = [head + "DIFFERENT"]
    lines += ["  " + line for line in output_comparison(outputs, "original", "rebuild")]
    inputs = input_comparison(result["inputs"])
    if inputs:
        lines.append("  inputs that differ from the original run:")
        lines += ["    " + line for line in inputs]
    else:
        lines.append("  every recorded input was the same: the code itself is not deterministic")
        lines.append("  (wall-clock time, unseeded randomness, thread scheduling); fix the seed through a param")
    return "\n".join(lines)


def runs_diff(result: dict[str, Any]) -> str:
    a, b = result["a"], result["b"]
    if result["identical"]:
        return f"runs {a} and {b}: same inputs, same outputs"
    lines = [f"runs {a} -> {b}"]
    inputs = input_comparison(result["inputs"])
    lines.append("inputs:" if inputs else "inputs: identical")
    lines += ["  " + line for line in inputs]
    outputs = output_comparison(result["outputs"], a, b)
    lines.append("outputs:" if outputs else "outputs: identical")
    lines += ["  " + line for line in outputs]
    return "\n".join(lines)


def sweep_summary(result: Mapping[str, Any]) -> str:
    """The end of `harness sweep`: the counts, each run that did not succeed, and how to list the sweep."""
    counts = [f"{result['succeeded']} succeeded", f"{result['failed']} failed"]
    if result["interrupted_runs"]:
        counts.append(f"{result['interrupted_runs']} interrupted")
    if result["not_started"]:
        counts.append(f"{result['not_started']} not started")
    head = "stopped" if result["interrupted"] else "done"
    lines = [f"sweep {result['sweep']} {head}: {result['size']} runs, {', '.join(counts)}"]
    for run in result["runs"]:
        if run["status"] == "succeeded":
            continue
        params = " ".join(f"{k}={_fmt_value(v)}" for k, v in run["params"].items())
        status = _status(run).upper()
        lines.append(f"  {status:16} {run['run'] or '-':8} {params}" + (f"  {run['error']}" if run["error"] else ""))
    lines.append(f"list it:  harness ls --where 'sweep == \"{result['sweep']}\"'")
    return "\n".join(lines)
