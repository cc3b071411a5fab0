"""``harness verify``: check run records against their seals, re-hash store objects, and name what uses any
that no longer match.

Two scopes: the whole project store (every object present, plus every object a run record or a registered
snapshot refers to, so a deleted object is reported too), or the objects one run uses (its data snapshot and
files, code archive, uncommitted changes, lock, outputs). What uses an object is read from the run records and the
snapshot registry, so a damaged object is reported with the data paths, outputs or runs that depend on it.
Each run's outputs directory (runs/<id>/outputs) is also compared with its record: a file modified, replaced,
removed or added there, or made writable, is named too (:func:`check_run_outputs`).

Records come first (sealing.py): each one that was changed after its run ended, or cannot be read, is named and the
rest are checked all the same; what such a run uses is read from its sealed copy when the store still has it.
Finished records with no seal (written before harness sealed records) are listed as unsealed: a warning.

Verification only reads, with one exception: the stat cache forgets the files whose objects are damaged, so the
next snapshot of the original data re-reads them and the store replaces the damaged objects (see Store._intact).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from harness.digests import CHUNK
from harness.errors import HarnessError, NotFound, StoreCorruption
from harness.paths import Layout
from harness.runs.outputlist import all_files, truncated
from harness.runs.records import Records
from harness.runs.sealing import Checked
from harness.storage.datasets import known
from harness.storage.outputcheck import check_outputs
from harness.storage.snapshot import Entry, Progress, forget_hashes, load_snapshot
from harness.storage.store import Store, is_digest

_WORKERS = min(8, (os.cpu_count() or 1) + 2)


@dataclass(frozen=True)
class Problem:
    digest: str
    problem: str  # "changed": bytes no longer hash to the name; "missing": referred to but absent
    path: str
    used_by: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.digest, "problem": self.problem, "path": self.path, "used_by": list(self.used_by)}


@dataclass(frozen=True)
class OutputProblem:
    """A file in runs/<id>/outputs that no longer matches the run's record."""

    run: str
    path: str  # relative to the run's outputs directory
    problem: str  # "modified" | "missing" | "added" | "mode"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "path": self.path, "problem": self.problem, "detail": self.detail}


@dataclass(frozen=True)
class Report:
    scope: str  # "store" or "run <id>"
    checked: int
    bytes: int
    problems: tuple[Problem, ...]
    records: int = 0  # run records checked against their seals
    damaged_records: tuple[Checked, ...] = ()  # changed after their run ended, unreadable, or with a bad seal
    unsealed: tuple[str, ...] = ()  # finished runs whose records have no seal (a warning)
    outputs: tuple[OutputProblem, ...] = ()
    output_dirs: int = 0  # run outputs directories compared with their records

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damaged_records and not self.outputs

    @property
    def exit_code(self) -> int:
        if self.damaged_records or self.outputs or any(p.problem == "changed" for p in self.problems):
            return StoreCorruption.exit_code
        return NotFound.exit_code if self.problems else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "ok": self.ok,
            "checked": self.checked,
            "bytes": self.bytes,
            "problems": [p.to_dict() for p in self.problems],
            "records": {
                "checked": self.records,
                "problems": [c.to_dict() for c in self.damaged_records],
                "unsealed": list(self.unsealed),
            },
            "output_dirs": self.output_dirs,
            "outputs": [p.to_dict() for p in self.outputs],
            "exit_code": self.exit_code,
        }


@dataclass
class _Uses:
    store: Store
    by_object: dict[str, list[str]] = field(default_factory=dict)
    # Runs whose record lists only its first outputs and whose outputs manifest cannot be read: what the rest
    # of their outputs use is not known.
    unlisted: list[str] = field(default_factory=list)

    def add(self, digest: object, label: str) -> None:
        if isinstance(digest, str) and is_digest(digest):
            self.by_object.setdefault(digest, []).append(label)

    def run(self, record: Mapping[str, Any], seal: str | None) -> None:
        rid = record.get("id")
        self.add(seal, f"sealed record of run {rid}")
        code = record.get("code") or {}
        self.add(code.get("archive"), f"code archive of run {rid}")
        self.add(code.get("diff"), f"diff text of run {rid}")
        patch = code.get("patch")
        self.add(patch, f"uncommitted changes of run {rid}")
        if isinstance(patch, str) and is_digest(patch):
            try:
                files = self.store.read_json(patch)["files"]
                for path, entry in files.items():
                    self.add(entry.get("sha256"), f"uncommitted file {path} of run {rid}")
            except (HarnessError, ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged or missing patch manifest is reported as itself
        self.add((record.get("environment") or {}).get("lock_object"), f"lock of run {rid}")
        self.add((record.get("runtime") or {}).get("params_helper"), f"params helper module of run {rid}")
        outputs = record.get("outputs") or {}
        self.add(outputs.get("manifest"), f"outputs manifest of run {rid}")
        try:
            files = all_files(outputs, self.store)
        except HarnessError:  # the manifest is reported as itself; the files the record lists are still known
            files = outputs.get("files") if isinstance(outputs.get("files"), dict) else {}
            self.unlisted.append(str(rid))
        for path, sha in files.items():
            self.add(sha, f"output {path} of run {rid}")

    def snapshot(self, digest: str, runs: Iterable[str]) -> None:
        users = sorted(set(runs))
        who = f"; runs {', '.join(users)}" if users else ""
        self.add(digest, f"manifest of data snapshot {digest[:12]}{who}")
        try:
            snap = load_snapshot(self.store, digest)
        except HarnessError:
            return  # a damaged or missing manifest is reported as itself
        for e in snap.entries:
            if e.kind == "file":
                self.add(e.sha256, f"data {e.path} (snapshot {digest[:12]}{who})")


def _snapshot_runs(records: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    by_snapshot: dict[str, list[str]] = {}
    for r in records:
        digest = (r.get("data") or {}).get("snapshot")
        if isinstance(digest, str) and is_digest(digest):
            by_snapshot.setdefault(digest, []).append(str(r.get("id")))
    return by_snapshot


def _uses(layout: Layout, store: Store, run: str | None) -> tuple[str, _Uses, list[Checked]]:
    records = Records(layout.runs, layout.index)
    uses = _Uses(store)
    checked = [records.check(run)] if run is not None else list(records.check_all())
    trusted = []
    for each in checked:
        record = each.trusted
        if record is not None:
            uses.run(record, each.seal)
            trusted.append(record)
        elif each.seal:
            uses.add(each.seal, f"sealed record of run {each.run}")
    if run is not None:
        for digest, runs in _snapshot_runs(trusted).items():
            uses.snapshot(digest, runs)
        return f"run {checked[0].run}", uses, checked
    by_snapshot = _snapshot_runs(trusted)
    for k in known(layout):
        by_snapshot.setdefault(k.digest, [])
    for digest, runs in by_snapshot.items():
        uses.snapshot(digest, runs)
    return "store", uses, checked


def referenced(layout: Layout, store: Store) -> tuple[dict[str, list[str]], list[Checked], list[str]]:
    """Every object the project store's records, seals and known snapshots name, with what uses each; every
    record as checked; and the runs whose outputs are not all known (their record lists only the first ones and
    their outputs manifest cannot be read). A record changed since its run ended counts twice: as sealed and as
    its file now says."""
    _scope, uses, checked = _uses(layout, store, None)
    for each in checked:
        if not each.ok and each.record is not None:
            uses.run(each.record, None)
            snap = (each.record.get("data") or {}).get("snapshot")
            if isinstance(snap, str) and is_digest(snap) and snap not in uses.by_object:
                uses.snapshot(snap, [each.run])
    return uses.by_object, checked, sorted(set(uses.unlisted))


def _hash(path: str, counter: list[int]) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
            counter.append(len(chunk))  # list.append is atomic; the caller sums
    return hasher.hexdigest()


def _rehash(store: Store, digests: list[str], progress: Progress | None) -> tuple[dict[str, str], int, int]:
    """digest -> "changed" | "missing" for the bad ones; also (checked, bytes)."""
    bad: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for d in digests:
        try:
            sizes[d] = os.stat(store.path(d)).st_size
        except FileNotFoundError:
            bad[d] = "missing"
    total = sum(sizes.values())
    counter: list[int] = []
    pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="harness-verify")
    try:
        futures: dict[Future[str], str] = {pool.submit(_hash, str(store.path(d)), counter): d for d in sizes}
        pending: set[Future[str]] = set(futures)
        while pending:
            pending = wait(pending, timeout=0.1).not_done
            if progress:
                progress(min(sum(counter), total), total)
        for future, d in futures.items():
            try:
                if future.result() != d:
                    bad[d] = "changed"
            except FileNotFoundError:
                bad[d] = "missing"  # removed while we looked
            except OSError:
                bad[d] = "changed"  # unreadable: it cannot be used either
    finally:
        pool.shutdown(cancel_futures=True)
    if progress:
        progress(total, total)
    return bad, len(sizes), total


def verify(layout: Layout, run: str | None = None, progress: Progress | None = None) -> Report:
    """Check the run records against their seals (all, or one run's), re-hash every object of the project store
    (or the objects one run uses) and name what uses the bad ones."""
    store = Store(layout.objects)
    scope, uses, records = _uses(layout, store, run)
    digests = sorted(uses.by_object) if run is not None else sorted(set(store) | set(uses.by_object))
    bad, checked, size = _rehash(store, digests, progress)
    # Their files are read again by the next snapshot, which stores them again and so replaces the damaged objects.
    forget_hashes(layout.stat_cache, [d for d, what in bad.items() if what == "changed"])
    problems = tuple(
        Problem(d, what, str(store.path(d)), tuple(sorted(set(uses.by_object.get(d, [])))))
        for d, what in sorted(bad.items())
    )
    # Only records that check out (or their sealed copies) say what a run's outputs directory must hold.
    trusted = [t for c in records if (t := c.trusted) is not None]
    dirs, outputs = check_run_outputs(store, Records(layout.runs, layout.index), trusted)
    return Report(
        scope=scope,
        checked=checked,
        bytes=size,
        problems=problems,
        records=len(records),
        damaged_records=tuple(c for c in records if not c.ok),
        unsealed=tuple(c.run for c in records if c.state == "unsealed"),
        outputs=outputs,
        output_dirs=dirs,
    )


def check_run_outputs(
    store: Store, records: Records, chosen: Iterable[Mapping[str, Any]]
) -> tuple[int, tuple[OutputProblem, ...]]:
    """Each chosen run's runs/<id>/outputs against its record: (directories checked, problems). A run that
    recorded no outputs manifest (it never got that far) makes no claim about the directory."""
    checked, found = 0, []
    for record in chosen:
        rid, outputs = record.get("id"), record.get("outputs") or {}
        manifest = outputs.get("manifest")
        if not (isinstance(rid, str) and isinstance(manifest, str) and is_digest(manifest)):
            continue
        try:
            entries: tuple[Entry, ...] | None = load_snapshot(store, manifest).entries
        except HarnessError:
            entries = None  # a damaged or missing manifest is reported as itself; the files are still checked
        files = outputs.get("files")
        strict = outputs.get("read_only") is True
        drift = check_outputs(
            records.paths(rid).outputs,
            store,
            entries,
            files if isinstance(files, dict) else {},
            strict,
            listed_all=not truncated(outputs),
        )
        checked += 1
        found += [OutputProblem(rid, d.path, d.problem, d.detail) for d in drift]
    return checked, tuple(found)
