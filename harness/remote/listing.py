"""`harness ls --remote`: the runs a remote holds, as `harness ls` lists a store's.

Each ``run-<id>`` tag's manifest names the run's sealed record by digest; the record is fetched, checked against
that digest, and kept in the cache's objects (it is content-addressed), so listing the same remote again costs one
request per run and none for records already seen. A run whose record cannot be fetched or does not check out is
listed as ``damaged``, with the reason, never a crash.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.paths import cache_root
from harness.remote import reference
from harness.remote.artifact import RUN_TAG_PREFIX, RunManifest
from harness.runs.schema import SCHEMA
from harness.storage.store import Store


def list_remote(
    project_dir: Path, remote: str | None, where: str | None = None, sort: str | None = None, limit: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The remote's runs, newest first unless sorted, filtered like `harness ls`; and how many matched."""
    from harness.remote.client import connect
    from harness.runs.query import parse_sort, parse_where, select, unknown_names

    ref = reference.resolve(remote, project_dir)
    condition = parse_where(where) if where else None
    order = parse_sort(sort) if sort else None
    registry = connect(ref)
    tags = [t for t in registry.tags() if t.startswith(RUN_TAG_PREFIX)]
    cache = Store(cache_root() / "objects")

    def one(tag: str) -> dict[str, Any]:
        run_id = tag.removeprefix(RUN_TAG_PREFIX)
        try:
            found = registry.manifest(tag)
            if found is None:
                raise HarnessError("its tag has no manifest")
            seal = RunManifest.parse(found[0], tag).seal
            if cache.has(seal):
                data = cache.read_bytes(seal)
            else:
                with registry.blob(seal) as (chunks, _length):
                    data = b"".join(chunks)
                if hashlib.sha256(data).hexdigest() != seal:
                    raise HarnessError(f"its record (blob sha256:{seal}) arrived altered")
                cache.put_bytes(data)
            record = json.loads(data.decode("utf-8", "surrogatepass"))
            if not isinstance(record, dict):
                raise HarnessError("its record is not an object")
            return record
        except HarnessError as exc:
            return {"schema": SCHEMA, "id": run_id, "status": "damaged", "error": {"message": exc.message}}

    with ThreadPoolExecutor(4) as pool:
        records = list(pool.map(one, tags))
    records.sort(key=lambda r: (str(r.get("started_at") or ""), str(r.get("id"))), reverse=True)
    if condition is not None and records:
        unknown = unknown_names(condition, records)
        if unknown:
            from harness.runs.query import QueryError

            raise QueryError(f"--where {condition.text!r}: no run on {ref} has {', '.join(unknown)}")
    chosen = select(records, condition, order)
    return chosen[:limit] if limit is not None else chosen, len(chosen)
