"""Size limits on the directories a run writes (/outputs, /harness/state), enforced while it runs.

Docker cannot limit the size of a bind mount, so a thread watches each directory and calls back when one holds
more than its limit. Walking a directory is the exact measure. A small one is walked every ``interval``: that
costs little. A big one costs (about 0.3 s of CPU for 100,000 files here), so every ``interval`` the thread first
asks the filesystem how much of the disk is used (one statvfs, microseconds): whatever the run wrote since the
last walk is part of that growth, so while the disk grew by less than the room left under the limit, the
directory cannot be over it and is not walked. It is walked when it could be over; also whenever walks cost less
than ``idle_share`` of one CPU at that rate (what other processes free on the same disk, or a sparse file, hides
growth from statvfs), and never more often than keeps them under ``max_share``. A run can overshoot by what it
writes in one interval and one walk.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Watched:
    key: str  # the limit's name in [limits]: "outputs", "state"
    path: Path
    limit: int  # bytes


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (their sizes, symlinks not followed); what vanishes while it is
    walked counts as nothing."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _disk_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@dataclass
class _State:
    watched: Watched
    size: int = 0  # at the last walk
    used_then: int = 0  # the disk's used bytes when that walk started
    walked_at: float = 0.0  # monotonic time that walk ended
    walk_cost: float = 0.0  # the CPU time it took


class SizeWatch:
    """Watches directories in a thread; calls ``on_over(watched, size)`` once, for the first one over its limit,
    and stops. Use as a context manager around the run."""

    def __init__(
        self,
        watched: list[Watched],
        on_over: Callable[[Watched, int], None],
        interval: float = 0.5,
        idle_share: float = 0.02,
        max_share: float = 0.1,
    ) -> None:
        self._states = [_State(w) for w in watched]
        self._on_over = on_over
        self._interval = interval
        self._idle_share = idle_share
        self._max_share = max_share
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.over: tuple[Watched, int] | None = None
        self.walks = 0

    def __enter__(self) -> SizeWatch:
        for state in self._states:
            self._walk(state, _disk_used(state.watched.path))  # a run's directories start empty: no cost
        if self._states:
            self._thread = threading.Thread(target=self._watch, name="harness-size-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            for state in self._states:
                try:
                    size = self._check(state)
                except OSError:
                    continue  # the directory went away: the run is over, or being cleaned up
                if size is not None and size > state.watched.limit:
                    self.over = (state.watched, size)
                    self._on_over(state.watched, size)
                    return

    def _check(self, state: _State) -> int | None:
        """The directory's size if it was walked now, else None."""
        now = time.monotonic()
        if now - state.walked_at < state.walk_cost / self._max_share:
            return None  # the last walk was costly: wait, so that walking stays a small share of one CPU
        used = _disk_used(state.watched.path)
        room = state.watched.limit - state.size
        # a small directory is walked on every tick; idle_share 0 walks only when the disk says it could be over
        cheap_again = max(self._interval, state.walk_cost / self._idle_share) if self._idle_share else math.inf
        if used - state.used_then <= room and now - state.walked_at < cheap_again:
            return None
        self._walk(state, used)
        self.walks += 1
        return state.size

    @staticmethod
    def _walk(state: _State, used: int) -> None:
        started = time.thread_time()  # CPU, not wall time: the shares are of a CPU, whatever else the host does
        state.used_then = used
        state.size = tree_size(state.watched.path)
        state.walked_at = time.monotonic()
        state.walk_cost = time.thread_time() - started
