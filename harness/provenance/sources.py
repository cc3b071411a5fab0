"""What a format's writer may read besides the record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.storage.store import Store


@dataclass(frozen=True)
class Sources:
    """What a writer may read besides the record: the store holding the run's objects and its seal."""

    store: Store
    seal: str | None

    def output(self, digest: str) -> Path:
        """An output file's object, after checking its bytes (StoreCorruption / NotFound otherwise)."""
        return self.store.require(digest)

    def sealed_record(self) -> bytes | None:
        """The record's canonical bytes as sealed (their sha256 is the seal), or None for an unsealed record."""
        return self.store.read_bytes(self.seal) if self.seal and self.store.has(self.seal) else None
