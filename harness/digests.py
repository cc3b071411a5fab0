"""Canonical JSON and sha256 helpers: the one definition of "the digest of" a value."""

from __future__ import annotations

import hashlib
import json
from typing import Any

CHUNK = 1 << 20


def canonical_json(value: Any) -> bytes:
    """Bytes that depend only on the value: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_bytes(canonical_json(value))
