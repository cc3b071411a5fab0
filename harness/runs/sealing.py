"""Sealed run records: when a run ends, its record's digest is kept apart from it, and every reader checks it.

Sealing (Records.write, when the status becomes succeeded, failed or interrupted): the record's canonical JSON
(sorted keys, no whitespace, UTF-8) is stored as an object in the content store, and its sha256, the seal, is
written to ``seals/<id>`` in the project store (atomically, then read-only) and to the run's row in the index. The
record file stays indented for people to read: the digest is of its parsed value, so re-indenting it changes
nothing and changing any value does. A record still ``running`` has no seal yet.

Checking (show, verify, rebuild, diff, and the index when it is rebuilt): parse ``record.json``, hash it the same
way, compare. ``seals/<id>`` is the authority; the index's copy stands in when it is gone, and the two must agree.
A record with no seal anywhere that has finished was written by a harness that did not seal records: "unsealed",
readable, and a warning in `harness verify`. Harness never seals a record again, so an edit cannot be laundered
into a new seal; the sealed copy in the store is what restores one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.digests import sha256_bytes
from harness.errors import HarnessError, NotFound, StoreCorruption
from harness.files import withheld, write_atomic
from harness.storage.store import Store, is_digest

SEALS_DIRNAME = "seals"  # beside runs/ and objects/ in the project store
SEAL_FORMAT = "harness.seal/1"
GOOD = ("sealed", "unsealed", "running")  # the states a reader may use
MAX_NAMED_FIELDS = 8


def canonical_record(value: Any) -> bytes:
    """The bytes a seal is the sha256 of: harness.digests.canonical_json, except that a lone surrogate (an argv
    byte that was not UTF-8, which Python keeps as one and the record file holds as a ``\\udcXX`` escape) is
    encoded as itself instead of being refused. Every other string gives canonical_json's bytes exactly."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def record_digest(value: Any) -> str:
    return sha256_bytes(canonical_record(value))


class Seals:
    """``seals/<id>``: one small read-only JSON file per finished run, ``{"format", "run", "record": sha256}``;
    the record as sealed is the store object of that name."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def read(self, run_id: str) -> str | None:
        """The run's seal, None when it has none; ValueError naming the damage when the file is not a seal."""
        path = self.path(run_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"its seal {path} cannot be read ({exc.strerror})") from None
        try:
            seal = json.loads(data)
            digest = seal["record"]
            ok = seal.get("run") == run_id and isinstance(digest, str) and is_digest(digest)
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(f"its seal {path} is damaged (not a seal of run {run_id})")
        return str(digest)

    def seal(self, run_id: str, sealed: Mapping[str, Any]) -> str:
        """Store ``sealed`` (a record as readers will parse it) and write its seal; returns the digest."""
        canonical = canonical_record(sealed)
        digest = self.store.put_bytes(canonical)
        path = self.path(run_id)
        seal = json.dumps({"format": SEAL_FORMAT, "record": digest, "run": run_id}).encode() + b"\n"
        write_atomic(path, seal, inherit=True)
        # Like a store object: made once, never edited; and no more open than the seals directory.
        os.chmod(path, 0o444 & ~withheld(path.parent))
        return digest

    def sealed_copy(self, digest: str) -> dict[str, Any] | None:
        """The record as it was sealed, from the store; None when the object is gone or damaged."""
        try:
            value = json.loads(self.store.read_bytes(digest).decode("utf-8", "surrogatepass"))
        except (HarnessError, ValueError):
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Checked:
    """One record file checked against its seal."""

    run: str
    path: Path  # the record file
    state: str  # sealed | unsealed | running (usable); changed | unreadable | seal (not to be used)
    record: dict[str, Any] | None  # what the file holds; None when it cannot be read
    seal: str | None = None  # the digest the record was sealed with
    detail: str = ""  # what is wrong, for the states not to be used
    sealed: dict[str, Any] | None = None  # the record as sealed, from the store, when the file no longer is
    sealed_object: Path | None = None

    @property
    def ok(self) -> bool:
        return self.state in GOOD

    @property
    def trusted(self) -> dict[str, Any] | None:
        """The record harness stands behind: the file when it checks out, else the sealed copy, if any."""
        return self.record if self.ok else self.sealed

    def error(self) -> StoreCorruption:
        what = {
            "changed": f"was changed after its run ended: {self.path} no longer matches its seal"
            + (f" ({self.detail})" if self.detail else ""),
            "unreadable": f"cannot be read: {self.path} {self.detail}",
            "seal": f"cannot be trusted: {self.detail}",
        }[self.state]
        if self.sealed is not None:
            hint = (
                f"the record as sealed is kept in the store: `cp {self.sealed_object} {self.path}` puts it back. "
                "`harness verify` checks every record"
            )
        elif self.state == "seal":
            hint = (
                "restore the seal from a backup of the store; harness never seals a record again, since that would "
                "accept any edit. `harness verify` checks every record"
            )
        else:
            hint = (
                f"restore {self.path} from a backup (the record its seal was made from is accepted again). "
                "`harness verify` checks every record"
            )
        return StoreCorruption(f"the record of run {self.run} {what}; nothing was shown, compared or run with it", hint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "problem": self.state,
            "path": str(self.path),
            "detail": self.detail,
            "seal": self.seal,
            "sealed_copy": str(self.sealed_object) if self.sealed is not None else None,
        }


def check(run_id: str, path: Path, seals: Seals, indexed: str | None) -> Checked:
    """Read ``path`` (the run's record.json) and check it against the seal in ``seals/`` and the index's copy
    (``indexed``). Never raises for damage, only NotFound for a record file that is not there."""
    try:
        data: bytes | None = path.read_bytes()
        why = ""
    except FileNotFoundError:
        raise NotFound(f"run {run_id} has no record (it may still be starting)") from None
    except OSError as exc:
        data, why = None, f"({exc.strerror})"
    record, unparsed = _parse(data) if data is not None else (None, why)

    try:
        kept = seals.read(run_id)
    except ValueError as exc:
        return _bad(run_id, path, "seal", str(exc), indexed, seals, record)
    if kept is not None and indexed is not None and kept != indexed:
        detail = f"its seal {seals.path(run_id)} holds {kept[:16]}, the index holds {indexed[:16]}"
        return _bad(run_id, path, "seal", detail, kept, seals, record)
    seal = kept or indexed

    if record is None:
        return _bad(run_id, path, "unreadable", unparsed, seal, seals, None)
    if seal is None:
        return Checked(run_id, path, "running" if record.get("status") == "running" else "unsealed", record)
    if record_digest(record) == seal:
        return Checked(run_id, path, "sealed", record, seal)
    return _bad(run_id, path, "changed", "", seal, seals, record)


def _parse(data: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    if not isinstance(value, dict):
        return None, f"is not a JSON object (it holds a {type(value).__name__})"
    return value, ""


def _bad(
    run_id: str,
    path: Path,
    state: str,
    detail: str,
    seal: str | None,
    seals: Seals,
    record: dict[str, Any] | None,
) -> Checked:
    sealed = seals.sealed_copy(seal) if seal else None
    if state == "changed":
        fields = changed_fields(sealed, record) if sealed is not None and record is not None else []
        more = len(fields) - MAX_NAMED_FIELDS
        shown = ", ".join(fields[:MAX_NAMED_FIELDS]) + (f" and {more} more" if more > 0 else "")
        detail = f"changed: {shown}" if fields else ""
    return Checked(
        run_id,
        path,
        state,
        record,
        seal,
        detail,
        sealed,
        seals.store.path(seal) if sealed is not None and seal else None,
    )


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two records (``metrics.total``, ``command``)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{prefix}{key}.")
        elif a is _ABSENT or b is _ABSENT or canonical_record(a) != canonical_record(b):
            out.append(f"{prefix}{key}")
    return out


_ABSENT = object()
