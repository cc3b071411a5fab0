"""The project's files as one commit holds them, or as the working tree holds them: listed with their modes and
read as bytes. A run reads the commit being run (a dirty run, the working tree), so an uncommitted edit of a file
that decides the environment (a Dockerfile and what it copies) cannot leak into a clean run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from harness.errors import CodeError
from harness.project.vcs import Repository

# Git's modes, the one vocabulary for both sources.
FILE, EXECUTABLE, SYMLINK, SUBMODULE = "100644", "100755", "120000", "160000"


class ProjectFiles(Protocol):
    @property
    def where(self) -> str:
        """Where the files come from, for messages: "commit 1a2b3c4d5e6f", "the working tree (/path)"."""
        ...

    def listing(self, under: str = "") -> dict[str, str]:
        """Every file under ``under`` (a project-relative directory, "" for the whole project): path -> mode."""
        ...

    def read(self, paths: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of each listed path, in order; a symlink's bytes are its target."""
        ...


class CommittedFiles:
    """The project directory as commit ``commit`` holds it."""

    def __init__(self, repo: Repository, commit: str) -> None:
        self._repo = repo
        self._commit = commit
        self._oids: dict[str, str] = {}

    @property
    def where(self) -> str:
        return f"commit {self._commit[:12]}"

    def listing(self, under: str = "") -> dict[str, str]:
        found = self._repo.tree_files(self._commit, under)
        self._oids.update((path, oid) for path, (_mode, oid) in found.items())
        return {path: mode for path, (mode, _oid) in found.items()}

    def read(self, paths: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if any(p not in self._oids for p in paths):
            self.listing()
        unknown = [p for p in paths if p not in self._oids]
        if unknown:
            raise CodeError(f"{', '.join(unknown)}: not in {self.where}")
        oids = [self._oids[p] for p in paths]
        for path, (_oid, data) in zip(paths, self._repo.read_objects(oids), strict=True):
            yield path, data


class WorkingTreeFiles:
    """The project directory on disk: the files git would commit (tracked or untracked, not ignored); outside a
    git repository, every file but ``.git`` and the store."""

    def __init__(self, root: Path, skip: Sequence[Path] = ()) -> None:
        self._root = root
        self._skip = [p.resolve() for p in skip]

    @property
    def where(self) -> str:
        return f"the working tree ({self._root})"

    def listing(self, under: str = "") -> dict[str, str]:
        try:
            with Repository.open(self._root) as repo:
                paths = repo.working_files(under)
        except CodeError:
            paths = self._walk(under)
        return {p: _mode(self._root / p) for p in paths}

    def _walk(self, under: str) -> list[str]:
        found = []
        for directory, dirs, files in os.walk(self._root / under):
            here = Path(directory)
            dirs[:] = sorted(d for d in dirs if d != ".git" and (here / d).resolve() not in self._skip)
            found += [(here / f).relative_to(self._root).as_posix() for f in files]
        return sorted(found)

    def read(self, paths: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        for path in paths:
            full = self._root / path
            try:
                yield path, os.readlink(full).encode() if full.is_symlink() else full.read_bytes()
            except OSError as exc:
                raise CodeError(f"cannot read {path} in {self.where}: {exc.strerror}") from None


def _mode(path: Path) -> str:
    if path.is_symlink():
        return SYMLINK
    if path.is_dir():
        return SUBMODULE  # a directory git lists as one entry: a nested repository
    return EXECUTABLE if path.stat().st_mode & 0o100 else FILE  # git's rule: the owner's execute bit
