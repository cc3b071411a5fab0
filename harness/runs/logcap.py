"""A run's log.txt with a size limit: its head and its tail, and a line saying how much was dropped between.

Up to the limit, every chunk is written and flushed as it comes (``tail -f`` follows the run). Past it, the file
is cut back to the first half of the limit, a line says the rest is held, and the last half of the limit is kept
in memory (at most that much, whatever the run prints); when the run ends it is written after a line naming the
bytes dropped. A harness killed in that phase leaves the head and the line, never a torn file.
"""

from __future__ import annotations

import collections
from typing import BinaryIO

from harness.units import format_size

HOLDING = b"[harness: the log is over its limit; its last %s are written here when the run ends]\n"
DROPPED = b"[harness: %s bytes of output dropped here: log.txt keeps the first %s and the last %s (limit log = %s)]\n"


class CappedLog:
    """Writes a container's output to ``file`` (opened for appending, empty), keeping at most ``limit`` bytes of
    it (None: all of it). :meth:`close` writes the tail; :attr:`total` and :attr:`dropped` count bytes."""

    def __init__(self, file: BinaryIO, limit: int | None) -> None:
        self._file = file
        self._limit = limit
        self._head = (limit or 0) // 2
        self._tail = (limit or 0) - self._head
        self._held: collections.deque[bytes] | None = None  # the tail, once over the limit
        self._held_bytes = 0
        self._last = b"\n"  # the last byte of the head, to start the marker on a line of its own
        self.total = 0

    @property
    def dropped(self) -> int:
        return max(0, self.total - (self._limit or 0)) if self._limit is not None else 0

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        if self._held is not None:
            self._hold(chunk)
            return
        if self._limit is None or self.total <= self._limit:
            self._file.write(chunk)
            self._file.flush()
            return
        # This chunk takes the log over its limit: from here on the head is fixed and the tail is held.
        before = self.total - len(chunk)
        self._file.write(chunk[: self._limit - before])
        self._file.flush()
        self._held = collections.deque()
        self._file.seek(self._head)
        self._hold(self._file.read(self._limit - self._head))  # what was written past the head, back to memory
        self._hold(chunk[self._limit - before :])
        self._file.seek(self._head)
        self._file.truncate()
        self._last = self._last_head_byte()
        self._file.write(self._line(HOLDING % format_size(self._tail).encode()))
        self._file.flush()

    def close(self) -> None:
        """Write the held tail, if the log went over its limit. The file stays open: it is the caller's."""
        if self._held is None:
            return
        tail = b"".join(self._held)[-self._tail :] if self._tail else b""
        self._file.seek(self._head)
        self._file.truncate()
        size = format_size(self._head).encode()
        end = format_size(self._tail).encode()
        limit = format_size(self._limit or 0).encode()
        self._file.write(self._line(DROPPED % (f"{self.dropped:,}".encode(), size, end, limit)))
        self._file.write(tail)
        self._file.flush()
        self._held = None

    def _hold(self, chunk: bytes) -> None:
        assert self._held is not None
        self._held.append(chunk)
        self._held_bytes += len(chunk)
        while self._held and self._held_bytes - len(self._held[0]) >= self._tail:
            self._held_bytes -= len(self._held.popleft())

    def _last_head_byte(self) -> bytes:
        if self._head == 0:
            return b"\n"
        self._file.seek(self._head - 1)
        last = self._file.read(1)
        self._file.seek(self._head)
        return last

    def _line(self, text: bytes) -> bytes:
        return text if self._last == b"\n" else b"\n" + text
