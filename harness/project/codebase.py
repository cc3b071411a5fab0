"""The code a run sees: the committed tree as a stored archive, plus, for a dirty run, the exact changes.

The archive of a tree is stored once (``code/<tree>`` names its object), so every run of a commit with that tree
shares it and a rebuild works even after the commit is gone from the repository. A dirty run's changes are a
manifest object: every changed or untracked file's content as an object, and the deleted paths.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CodeError
from harness.files import make_dirs, write_text_atomic
from harness.project.unpack import unpack_code
from harness.project.vcs import Change, Repository
from harness.storage.store import Store


@dataclass(frozen=True)
class DirtyPatch:
    manifest: str  # object id of {"files": {path: {sha256, executable}}, "deleted": [...]}
    diff: str  # object id of `git diff HEAD` text, for people
    changes: tuple[Change, ...]


def archive_tree(repo: Repository, tree: str, store: Store, index_dir: Path) -> str:
    """Object id of the tree's code archive, exporting and storing it on first use."""
    pointer = index_dir / tree
    if pointer.is_file():
        digest = pointer.read_text().strip()
        # Re-hashing a code archive is cheap, and a damaged one is then re-exported (which repairs the object)
        # instead of failing every later run of this tree.
        if store.verify(digest):
            return digest
    make_dirs(index_dir)
    tmp = index_dir / f".{tree}.{os.getpid()}.tar"
    try:
        with open(tmp, "wb") as fh:
            repo.export_tree(tree, fh)
        digest, _ = store.put_file(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(pointer, digest, inherit=True)
    return digest


def capture_dirty(repo: Repository, changes: list[Change], store: Store) -> DirtyPatch:
    """Store every changed and untracked file of the working tree, so the run can be re-created exactly."""
    files: dict[str, Any] = {}
    deleted: list[str] = []
    for change in changes:
        path = repo.project / change.path
        if change.status == "deleted" or not os.path.lexists(path):
            deleted.append(change.path)
            continue
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            files[change.path] = {"symlink": os.readlink(path)}
        elif stat.S_ISREG(info.st_mode):
            digest, size = store.put_file(path)
            files[change.path] = {"sha256": digest, "size": size, "executable": bool(info.st_mode & 0o111)}
        else:
            raise CodeError(f"{change.path}: not a regular file or symlink; cannot record it in a dirty run")
    manifest = store.put_json({"version": 1, "files": files, "deleted": sorted(deleted)})
    diff = store.put_bytes(repo.diff_text())
    return DirtyPatch(manifest=manifest, diff=diff, changes=tuple(changes))


def materialize_code(store: Store, archive: str, dest: Path, patch: str | None = None) -> int:
    """Unpack the archive into ``dest`` and apply a dirty run's patch manifest; returns the file count."""
    dest.mkdir(parents=True)
    count = unpack_code(store.require(archive), dest)
    if patch is not None:
        manifest = store.read_json(patch)
        for rel in manifest["deleted"]:
            target = dest / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for rel, entry in manifest["files"].items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if "symlink" in entry:
                os.symlink(entry["symlink"], target)
                continue
            shutil.copyfile(store.require(entry["sha256"]), target)
            os.chmod(target, 0o755 if entry["executable"] else 0o644)
            count += 1
    # Readable by the container's non-root user whatever the host umask was.
    for root, _dirs, names in os.walk(dest):
        os.chmod(root, 0o755)
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o755 if mode & 0o111 else 0o644)
    return count
