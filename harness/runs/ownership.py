"""Which harness process owns a run, and whether it is still alive.

A run's process holds an exclusive flock on ``runs/<id>/.lock`` from the moment its id is allocated until its
record is final (:func:`hold`). The kernel drops the lock when the process dies, whatever kills it (SIGKILL, the
OOM killer, a reboot), so a later process that can take the lock without waiting knows the owner is gone
(:func:`probe`). The lock file also names the owner (pid, boot id, host) for messages, and so does the running
record (``process``), in case the lock file itself is lost.

The containers a run starts carry its id and the store's path as labels (:func:`labels`), so what a dead run
left behind is found by label and never confused with another store's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.files import withheld

LOCK_NAME = ".lock"
RUN_LABEL = "org.harness.run"
STORE_LABEL = "org.harness.store"


def labels(run_id: str, store: Path) -> dict[str, str]:
    """The labels of a run's container: its run id and the absolute path of the store that records it."""
    return {RUN_LABEL: run_id, STORE_LABEL: os.path.realpath(store)}


def boot_id() -> str | None:
    """This boot of the kernel (a reboot changes it); None where the kernel does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def this_process() -> dict[str, Any]:
    """What a running record says about the harness process that runs it (``process``)."""
    return {"pid": os.getpid(), "boot_id": boot_id(), "hostname": os.uname().nodename}


@dataclass(frozen=True)
class Owner:
    pid: int | None
    boot_id: str | None
    hostname: str | None

    @classmethod
    def from_dict(cls, value: Any) -> Owner:
        value = value if isinstance(value, Mapping) else {}
        pid = value.get("pid")
        return cls(
            pid if isinstance(pid, int) else None,
            value.get("boot_id") if isinstance(value.get("boot_id"), str) else None,
            value.get("hostname") if isinstance(value.get("hostname"), str) else None,
        )

    def describe(self) -> str:
        """ "harness (pid 4242 on host-a)" as far as it is known."""
        where = f" on {self.hostname}" if self.hostname and self.hostname != os.uname().nodename else ""
        return f"harness (pid {self.pid}{where})" if self.pid is not None else "the harness process that ran it"

    def here_and_alive(self) -> bool:
        """This machine, this boot, and a process with that pid exists (which may be another one by now)."""
        here = self.hostname == os.uname().nodename and self.boot_id is not None and self.boot_id == boot_id()
        if self.pid is None or not here:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by someone else
        return True


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Own the run at ``run_dir`` until the block ends: the lock file is made, locked and filled with this
    process's facts; at the end it is removed and the lock released."""
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~withheld(run_dir))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh run directory: nobody else has it
        os.write(fd, json.dumps(this_process(), sort_keys=True).encode() + b"\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: whoever opened it before sees a finished record
        os.close(fd)


@dataclass
class Probe:
    """A run's lock, looked at: ``alive`` when its owner still holds it. When not, this probe holds it until
    :meth:`release`, so no other process recovers the same run at the same time."""

    alive: bool
    owner: Owner
    _fd: int | None = None
    _path: Path | None = None

    def release(self, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove and self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        os.close(self._fd)
        self._fd = None


def probe(run_dir: Path, recorded: Any = None) -> Probe:
    """Is the harness process that owns the run at ``run_dir`` alive? ``recorded`` is the running record's
    ``process`` (pid, boot id, host), used when the lock file is gone: a record with no lock and no live
    process behind it, or written by a harness that kept no lock, has no owner left."""
    path = run_dir / LOCK_NAME
    owner = Owner.from_dict(recorded)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return Probe(owner.here_and_alive(), owner)
    except OSError:
        return Probe(True, owner)  # not ours to open (another user's store): not ours to judge either
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return Probe(True, _owner_in(path) or owner)
    except BaseException:
        os.close(fd)
        raise
    return Probe(False, _owner_in(path) or owner, fd, path)


def _owner_in(path: Path) -> Owner | None:
    try:
        return Owner.from_dict(json.loads(path.read_bytes() or b"null"))
    except (OSError, ValueError):
        return None
