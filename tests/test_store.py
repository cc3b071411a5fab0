from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from pathlib import Path

import pytest

from harness.errors import NotFound, StoreCorruption
from harness.storage.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    tmp_path.chmod(0o755)  # a store others may read (pytest's 0700 would make a private one: objects 0400)
    return Store(tmp_path / "objects")


def corrupt(store: Store, digest: str) -> None:
    """Flip one byte of an object in place, the way a disk error or a careless edit would."""
    path = store.path(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_put_file_names_object_by_sha256_and_makes_it_read_only(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(b"hello\n" * 1000)
    digest, size = store.put_file(src)
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert size == 6000
    path = store.path(digest)
    assert path == store.root / digest[:2] / digest[2:]
    assert path.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.has(digest) and store.verify(digest)
    assert store.require(digest) == path
    assert list(store) == [digest]
    assert not _temp_files(store), "no temp file is left behind"
    assert src.read_bytes() == b"hello\n" * 1000  # the source is untouched


def test_put_stream_is_chunked_and_existing_object_is_not_rewritten(store: Store) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several CHUNKs plus a tail
    digest, size = store.put_stream(io.BytesIO(data))
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    before = store.path(digest).stat()
    assert store.put_stream(io.BytesIO(data)) == (digest, size)
    after = store.path(digest).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_put_bytes_and_json_round_trip(store: Store) -> None:
    digest = store.put_json({"b": 1, "a": [1, 2]})
    assert store.path(digest).read_bytes() == b'{"a":[1,2],"b":1}'
    assert store.read_json(digest) == {"a": [1, 2], "b": 1}
    assert store.put_bytes(b"") == hashlib.sha256(b"").hexdigest()


def test_adopt_moves_a_hashed_temp_file_in(store: Store, tmp_path: Path) -> None:
    store.root.mkdir(parents=True)
    tmp = store.root / "tmp-file"
    tmp.write_bytes(b"adopted")
    digest = hashlib.sha256(b"adopted").hexdigest()
    assert store.adopt(tmp, digest) == store.path(digest)
    assert not tmp.exists()
    assert store.verify(digest)


def test_missing_and_malformed_ids_are_not_found(store: Store) -> None:
    missing = "0" * 64
    assert not store.has(missing) and not store.verify(missing)
    with pytest.raises(NotFound):
        store.require(missing)
    with pytest.raises(NotFound):
        store.read_bytes(missing)
    with pytest.raises(NotFound):
        store.path("not-a-digest")


def test_corrupted_object_is_named_and_kept(store: Store) -> None:
    digest = store.put_bytes(b"precious bytes")
    corrupt(store, digest)
    assert store.has(digest)
    assert not store.verify(digest)
    with pytest.raises(StoreCorruption, match=digest):
        store.require(digest)
    with pytest.raises(StoreCorruption):
        store.read_bytes(digest)
    assert store.path(digest).exists(), "the damaged object is kept for inspection"


class _ReadOnlyStream:
    """A source with read() but no readinto(), in small pieces, the way a pipe or socket gives them."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.data.read(min(n, 100_003))


def test_put_stream_over_several_buffers_with_and_without_readinto(store: Store, tmp_path: Path) -> None:
    data = os.urandom(9 * (1 << 20) + 5)  # more than two of the store's copy buffers
    expected = (hashlib.sha256(data).hexdigest(), len(data))
    assert store.put_stream(io.BytesIO(data)) == expected
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store.path(expected[0]).unlink()
    assert store.put_file(src) == expected
    store.path(expected[0]).unlink()
    assert store.put_stream(_ReadOnlyStream(data)) == expected  # type: ignore[arg-type]
    assert store.path(expected[0]).read_bytes() == data
    assert stat.S_IMODE(store.path(expected[0]).stat().st_mode) == 0o444
    assert not _temp_files(store)


def test_a_store_keeps_working_when_its_directories_are_removed(store: Store) -> None:
    first = store.put_bytes(b"one")
    os.chmod(store.path(first), 0o644)
    store.path(first).unlink()
    store.path(first).parent.rmdir()
    shutil.rmtree(store.root / "tmp")
    assert store.put_bytes(b"one") == first and store.verify(first)


class _FailingStream(io.BytesIO):
    """Gives a few chunks, then fails the way a disk read error would."""

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self.tell() >= 2 * (1 << 20):
            raise OSError(5, "Input/output error")
        return super().readinto(buf)


def test_a_read_error_mid_stream_is_raised_and_leaves_no_temp_file(store: Store) -> None:
    with pytest.raises(OSError, match="Input/output error"):
        store.put_stream(_FailingStream(os.urandom(5 * (1 << 20))))
    assert not _temp_files(store)
    assert list(store) == []


def _temp_files(store: Store) -> list[Path]:
    return [p for p in (store.root / "tmp").rglob("*") if not p.is_dir()]


def test_each_thread_writes_its_temp_files_in_its_own_directory(store: Store) -> None:
    """Threads creating files in one directory serialize on its lock; one directory per thread does not."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    together = threading.Barrier(4)  # four threads at once, each storing ten objects

    def put_ten(i: int) -> list[str]:
        together.wait(timeout=10)
        return [store.put_bytes(os.urandom(100_000) + bytes([i])) for _ in range(10)]

    with ThreadPoolExecutor(4) as pool:
        digests = [d for ten in pool.map(put_ten, range(4)) for d in ten]
    assert sorted(store) == sorted(digests) and not _temp_files(store)
    slots = [p.name for p in (store.root / "tmp").iterdir()]
    assert len(slots) == 4 and all(p.startswith("t") for p in slots)
