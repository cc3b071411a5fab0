"""Work started in a thread now, its answer waited for later: :func:`soon`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def soon(work: Callable[[], T], name: str) -> Callable[[], T]:
    """Start ``work`` in a daemon thread; the function returned waits for it and returns its result, or raises
    what it raised, in the caller's thread. Meanwhile the caller does other things: what ``work`` waits on (the
    engine, a socket) is hidden behind them.

    The wait is on an Event, never ``Thread.join``: a Ctrl-C that lands in a join on CPython 3.11 can mark a
    thread that is still running as stopped (bpo-45274), and the wait comes back before the work ends. A daemon
    thread ends with the process: Ctrl-C is never held up by the work."""
    answer: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            answer["value"] = work()
        except BaseException as exc:  # raised again in the caller's thread, where it can be reported
            answer["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()

    def wait() -> T:
        done.wait()
        if "error" in answer:
            raise answer["error"]
        return answer["value"]  # type: ignore[no-any-return]

    return wait
