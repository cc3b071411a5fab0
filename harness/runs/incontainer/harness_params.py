"""harness_params: the run's params, and a note of which ones the code actually read.

Inside a `harness run` this module is importable without installing anything (harness mounts it read-only at
/harness/lib and puts that on PYTHONPATH; the locked environment is untouched)::

    import harness_params

    params = harness_params.load()
    lr = params["lr"]                      # a read
    depth = params["model"]["depth"]       # a read of "model.depth"
    seed = params.get("seed", 0)           # a read, if seed is set

``load()`` returns a read-only mapping over the params. Each key whose value the code takes (``[]``, ``get``,
``items()``, ``values()``, ``to_dict()``, ``**params``) is noted, dotted for nesting; ``in``, ``keys()`` and
``len()`` are not reads. The note is written to $HARNESS_PARAMS_READ when a new key is read and at exit, and
harness records which params were set but never read: the classic "the flag was never passed to the model".
Nested mappings are returned as the same kind of mapping; use ``to_dict()`` for a plain dict (which reads all).

Plain Python 3.8+, standard library only, no harness imports: it runs in the user's environment. Outside
harness it reads $HARNESS_PARAMS (or the path given) and notes nothing.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import sys
import tempfile
from typing import Any, Iterator, Mapping  # noqa: UP035 (user code may run Python 3.8)

__all__ = ["Params", "load"]

PARAMS_ENV = "HARNESS_PARAMS"
READ_ENV = "HARNESS_PARAMS_READ"
DEFAULT_PATH = "/harness/params.json"
SCHEMA = "harness.params_read/1"

_loaded: dict[str, Params] = {}  # path -> Params, so every load() in one process shares one note


class _Note:
    """The set of dotted keys read so far, written through to a JSON file."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.read: set[str] = set()
        self.broken = False

    def mark(self, key: str) -> None:
        if key not in self.read:
            self.read.add(key)
            self.write()

    def write(self) -> None:
        if not self.path or self.broken:
            return
        data = json.dumps({"schema": SCHEMA, "read": sorted(self.read)}).encode()
        directory = os.path.dirname(self.path) or "."
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".params_read-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except OSError as exc:
            # Not fatal for the user's run: harness then records that it could not tell what was read.
            self.broken = True
            print(f"harness_params: cannot write {self.path}: {exc}", file=sys.stderr)


class Params(Mapping[str, Any]):
    """A read-only mapping over (part of) the params that notes every value taken from it."""

    def __init__(self, values: dict[str, Any], note: _Note, prefix: str = "") -> None:
        self._values = values
        self._note = note
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        dotted = self._prefix + str(key)
        if isinstance(value, dict) and value:
            return Params(value, self._note, dotted + ".")
        self._note.mark(dotted)
        return copy.deepcopy(value)  # a list handed out cannot change the params seen by later reads

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain (deep-copied) dict of these params; counts as reading every one of them."""
        return {key: (value.to_dict() if isinstance(value, Params) else value) for key, value in self.items()}


def load(path: str | None = None) -> Params:
    """The run's params (from ``path``, else $HARNESS_PARAMS, else /harness/params.json) as a :class:`Params`."""
    path = path or os.environ.get(PARAMS_ENV) or DEFAULT_PATH
    if path in _loaded:
        return _loaded[path]
    with open(path, encoding="utf-8") as fh:
        values = json.load(fh)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of params, got {type(values).__name__}")
    note = _Note(os.environ.get(READ_ENV))
    note.write()  # "the code loaded its params", even if it then reads none of them
    atexit.register(note.write)
    _loaded[path] = Params(values, note)
    return _loaded[path]
