"""What differs between two runs: their outputs (files, exit code, metrics) and their inputs (code, environment,
data, params, command, runtime). Used by `harness rebuild` (original vs re-execution) and `harness diff`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.runs.outputlist import all_files
from harness.runs.schema import RunRecord
from harness.storage import snapshot
from harness.storage.store import Store

TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".md", ".log", ".yaml", ".yml", ".html", ".svg")
MAX_DIFF_LINES = 40
MAX_TEXT_BYTES = 1 << 20


@dataclass(frozen=True)
class FileDifference:
    path: str
    status: str  # "changed" | "added" | "removed"
    old_sha256: str | None
    new_sha256: str | None
    old_size: int | None
    new_size: int | None
    diff: str | None = None  # a short unified diff for text outputs

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "old": {"sha256": self.old_sha256, "size": self.old_size},
            "new": {"sha256": self.new_sha256, "size": self.new_size},
            "diff": self.diff,
        }


@dataclass(frozen=True)
class OutputComparison:
    files: tuple[FileDifference, ...]
    same_files: int
    exit_code: tuple[Any, Any]
    metrics: tuple[tuple[str, Any, Any], ...]  # only the keys whose values differ

    @property
    def identical(self) -> bool:
        return not self.files and self.exit_code[0] == self.exit_code[1] and not self.metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "files": [f.to_dict() for f in self.files],
            "same_files": self.same_files,
            "exit_code": {"old": self.exit_code[0], "new": self.exit_code[1]},
            "metrics": [{"key": k, "old": a, "new": b} for k, a, b in self.metrics],
        }


@dataclass(frozen=True)
class InputComparison:
    differences: dict[str, Any] = field(default_factory=dict)  # section -> what differs

    @property
    def identical(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {"identical": self.identical, "differences": self.differences}


def compare_outputs(old: RunRecord, new: RunRecord, store: Store) -> OutputComparison:
    old_files = all_files(old["outputs"], store)
    new_files = all_files(new["outputs"], store)
    old_sizes = _sizes(store, old["outputs"].get("manifest"))
    new_sizes = _sizes(store, new["outputs"].get("manifest"))
    differences = []
    for path in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(path), new_files.get(path)
        if a == b:
            continue
        status = "changed" if a and b else ("added" if b else "removed")
        text_diff = _text_diff(store, path, a, b) if status == "changed" else None
        differences.append(FileDifference(path, status, a, b, old_sizes.get(path), new_sizes.get(path), text_diff))
    same = sum(1 for p in set(old_files) & set(new_files) if old_files[p] == new_files[p])
    return OutputComparison(
        files=tuple(differences),
        same_files=same,
        exit_code=(old.get("exit_code"), new.get("exit_code")),
        metrics=tuple(_dict_differences(old.get("metrics") or {}, new.get("metrics") or {})),
    )


def compare_inputs(old: RunRecord, new: RunRecord, store: Store) -> InputComparison:
    diffs: dict[str, Any] = {}
    oc, nc = old["code"], new["code"]
    keys = ("commit", "tree", "dirty", "patch")
    code: dict[str, Any] = {k: {"old": oc.get(k), "new": nc.get(k)} for k in keys if oc.get(k) != nc.get(k)}
    if code:
        if oc.get("tree") == nc.get("tree") and oc.get("patch") == nc.get("patch"):
            code["note"] = "different commits with the same tree: the code the container saw is identical"
        diffs["code"] = code
    oe, ne = old["environment"], new["environment"]
    if oe.get("image_id") != ne.get("image_id"):
        old_pk = {p["name"]: p["version"] for p in oe.get("packages", [])}
        new_pk = {p["name"]: p["version"] for p in ne.get("packages", [])}
        diffs["environment"] = {
            "image_id": {"old": oe.get("image_id"), "new": ne.get("image_id")},
            "python": {"old": oe.get("python"), "new": ne.get("python")},
            "packages": [
                {"name": n, "old": old_pk.get(n), "new": new_pk.get(n)}
                for n in sorted(set(old_pk) | set(new_pk))
                if old_pk.get(n) != new_pk.get(n)
            ],
            "base": {"old": (oe.get("base") or {}).get("image_id"), "new": (ne.get("base") or {}).get("image_id")},
        }
    od, nd = old["data"].get("snapshot"), new["data"].get("snapshot")
    if od != nd:
        section: dict[str, Any] = {"snapshot": {"old": od, "new": nd}}
        try:
            section.update(snapshot.diff(snapshot.load_snapshot(store, od), snapshot.load_snapshot(store, nd)))
        except HarnessError as exc:
            section["detail"] = f"file-level diff unavailable: {exc.message}"
        diffs["data"] = section
    params = _dict_differences(old.get("params") or {}, new.get("params") or {})
    if params:
        diffs["params"] = [{"key": k, "old": a, "new": b} for k, a, b in params]
    if old.get("command") != new.get("command"):
        diffs["command"] = {"old": old.get("command"), "new": new.get("command")}
    runtime = _runtime_differences(old.get("runtime") or {}, new.get("runtime") or {})
    if runtime:
        diffs["runtime"] = runtime
    return InputComparison(diffs)


def _runtime_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    # The run id always differs, and HARNESS_PARAM_* repeat the params, which are compared on their own.
    def keep(key: str) -> bool:
        return key != "HARNESS_RUN_ID" and not key.startswith("HARNESS_PARAM_")

    out = []
    old_env = {k: v for k, v in (old.get("env") or {}).items() if keep(k)}
    new_env = {k: v for k, v in (new.get("env") or {}).items() if keep(k)}
    for key, a, b in _dict_differences(old_env, new_env):
        out.append({"key": f"env.{key}", "old": a, "new": b})
    for key in ("network", "read_only_root", "cap_drop", "hostname", "workdir", "threads", "tmpfs", "params_helper"):
        if old.get(key) != new.get(key):
            out.append({"key": key, "old": old.get(key), "new": new.get(key)})
    out += _limit_differences(old.get("limits"), new.get("limits"))
    return out


def _limit_differences(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Limits both runs set; a default on both sides is the host's (free disk, memory), not an input."""
    if not old or not new:
        return []
    old_sources, new_sources = old.get("sources") or {}, new.get("sources") or {}
    return [
        {"key": f"limits.{key}", "old": old.get(key), "new": new.get(key)}
        for key in sorted(set(old_sources) | set(new_sources))
        if old.get(key) != new.get(key) and not (old_sources.get(key) == new_sources.get(key) == "default")
    ]


def _dict_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_dict_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _sizes(store: Store, manifest: str | None) -> dict[str, int]:
    if not manifest:
        return {}
    try:
        return {e.path: e.size for e in snapshot.load_snapshot(store, manifest).entries if e.kind == "file"}
    except HarnessError:
        return {}


def _text_diff(store: Store, path: str, old: str | None, new: str | None) -> str | None:
    if not (old and new and path.lower().endswith(TEXT_SUFFIXES)):
        return None
    try:
        a, b = store.read_bytes(old), store.read_bytes(new)
    except HarnessError:
        return None
    if len(a) > MAX_TEXT_BYTES or len(b) > MAX_TEXT_BYTES:
        return None
    try:
        a_text, b_text = a.decode("utf-8"), b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if path.lower().endswith(".json"):
        # Compare JSON by value, pretty-printed, so a one-field change is one line of diff.
        try:
            a_text = json.dumps(json.loads(a_text), indent=2, sort_keys=True) + "\n"
            b_text = json.dumps(json.loads(b_text), indent=2, sort_keys=True) + "\n"
        except ValueError:
            pass
    lines = list(
        difflib.unified_diff(a_text.splitlines(), b_text.splitlines(), f"a/{path}", f"b/{path}", lineterm="", n=1)
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)"]
    return "\n".join(lines)
