"""The only module that talks to git (the git command; a few calls per run, about 3 ms each).

Resolves revs, checks whether the project's part of the working tree is dirty, and exports the code of a commit
as a deterministic tar (keyed by the git tree, so every commit with the same tree shares one archive).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from harness.errors import CodeError

# Files in exported code get this mtime (1980-01-01, the earliest a zip can hold), so the archive depends on the
# tree alone and not on which commit or when it was exported.
CODE_MTIME = 315532800
# git's messages in English whatever the user's locale: some are matched ("ambiguous"), all end up in errors.
_GIT_ENV = {**os.environ, "LC_ALL": "C", "LANGUAGE": ""}


@dataclass(frozen=True)
class Change:
    path: str  # relative to the project directory, posix
    status: str  # "modified" | "added" | "deleted" | "untracked" | "renamed" | "typechange"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "status": self.status}


@dataclass(frozen=True)
class CommitInfo:
    commit: str
    tree: str  # the tree of the project directory at that commit
    time: int  # committer time, used as SOURCE_DATE_EPOCH
    branch: str | None
    remote: str | None
    subject: str
    is_head: bool


class Repository:
    """A git working tree, seen from the project directory inside it."""

    def __init__(self, root: Path, project: Path) -> None:
        self.root = root.resolve()
        self.project = project.resolve()
        rel = self.project.relative_to(self.root)
        self.subdir = "" if str(rel) == "." else rel.as_posix()

    @classmethod
    def open(cls, project: Path) -> Repository:
        if project.is_dir():
            found = _run(project, "rev-parse", "--show-toplevel")
            if found.returncode == 0:
                return cls(Path(found.stdout.decode().rstrip("\n")), project)
            bare = _run(project, "rev-parse", "--is-bare-repository")
            if bare.returncode == 0 and bare.stdout.strip() == b"true":
                raise CodeError(f"{project} is in a bare git repository", "run harness from a working tree")
        raise CodeError(
            f"{project} is not inside a git repository",
            "harness runs committed code: `git init && git add -A && git commit -m 'first run'`, then run again",
        )

    def _git(self, *args: str) -> str:
        done = _run(self.root, *args)
        if done.returncode != 0:
            raise CodeError(f"git {' '.join(args)} failed: {_stderr(done)}")
        return done.stdout.decode("utf-8", "surrogateescape")

    def _maybe(self, *args: str) -> str | None:
        """The output of a git query that may rightly fail (no HEAD, detached HEAD, no remote), else None."""
        done = _run(self.root, *args)
        return done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else None

    def resolve(self, rev: str) -> CommitInfo:
        if not rev or rev.startswith("-"):
            raise CodeError(f"not a revision: {rev!r}", "give a commit, branch or tag, e.g. --commit HEAD")
        found = _run(self.root, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        if found.returncode != 0:
            detail = _stderr(found)
            if "ambiguous" in detail:
                raise CodeError(
                    f"revision {rev!r} is ambiguous: {detail}",
                    "give more characters of the commit id, or a full branch/tag name",
                )
            if self._maybe("rev-parse", "--verify", "-q", "HEAD") is None:
                raise CodeError(
                    "the repository has no commits yet",
                    "commit your project first: `git add -A && git commit -m 'first run'`",
                )
            raise CodeError(
                f"unknown revision {rev!r} in {self.root}",
                "check it with `git log --oneline`; any rev git understands works (HEAD~1, a tag, a commit id)",
            )
        sha = found.stdout.decode().strip()
        # --no-show-signature and --no-color: a user's log.showSignature or color.ui=always must not reach the parse
        shown = self._git("show", "-s", "--no-show-signature", "--no-color", "--format=%T%x00%ct%x00%B", sha)
        root_tree, committed, message = shown.split("\0", 2)
        tree = self._subtree(sha) if self.subdir else root_tree
        head_sha = self._maybe("rev-parse", "--verify", "-q", "HEAD")
        branch = self._maybe("symbolic-ref", "-q", "--short", "HEAD") if head_sha == sha else None
        return CommitInfo(
            commit=sha,
            tree=tree,
            time=int(committed),
            branch=branch,
            remote=self._first_remote(),
            subject=message.split("\n", 1)[0],
            is_head=head_sha == sha,
        )

    def _subtree(self, sha: str) -> str:
        # "<mode> tree <id>\t<path>" when the commit has the directory; nothing when it has not
        listed = (self._maybe("ls-tree", "-d", "--full-tree", sha, "--", self.subdir) or "").split()
        tree = listed[2] if len(listed) >= 3 and listed[1] == "tree" else None
        if tree is None:
            raise CodeError(
                f"commit {sha[:12]} has no directory {self.subdir}/ (the project is not committed there yet)",
                f"commit the project: `git add {self.subdir} && git commit`",
            )
        return tree

    def _first_remote(self) -> str | None:
        """The URL of the first remote in the config, for the record; None without one."""
        urls = self._maybe("config", "--get-regexp", r"^remote\..*\.url$")
        return urls.splitlines()[0].split(" ", 1)[-1] if urls else None

    def changes(self, exclude: list[Path] | None = None) -> list[Change]:
        """Uncommitted changes in the project directory: tracked edits and untracked files git does not ignore."""
        pathspec = [self.subdir or "."]
        for path in exclude or []:
            try:
                rel = path.resolve().relative_to(self.root).as_posix()
            except ValueError:
                continue
            pathspec.append(f":(exclude){rel}")
        out = self._git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", *pathspec)
        changes = []
        for item in out.split("\0"):
            if not item:
                continue
            code, repo_path = item[:2], item[3:]
            if code == "??":
                status = "untracked"
            elif "D" in code:
                status = "deleted"
            elif "A" in code:
                status = "added"
            elif "T" in code:
                status = "typechange"
            else:
                status = "modified"
            changes.append(Change(path=self._project_relative(repo_path), status=status))
        return sorted(changes, key=lambda c: c.path)

    def _project_relative(self, repo_path: str) -> str:
        if not self.subdir:
            return repo_path
        return PurePosixPath(repo_path).relative_to(self.subdir).as_posix()

    def diff_text(self) -> bytes:
        """``git diff HEAD`` of the project directory (binary-safe), for people to read."""
        args = ["git", "diff", "HEAD", "--binary", "--no-color", "--", self.subdir or "."]
        return subprocess.run(args, cwd=self.root, capture_output=True, check=False).stdout

    def read_file(self, commit: str, path: str) -> str | None:
        """A file of the project directory as committed, or None if the commit does not have it."""
        full = f"{self.subdir}/{path}" if self.subdir else path
        done = _run(self.root, "cat-file", "blob", f"{commit}:{full}")
        return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None

    def export_tree(self, tree: str, dest: IO[bytes]) -> None:
        """Write the tree as a tar: git's own archive of a tree, with a fixed mtime (no commit id, no time)."""
        proc = subprocess.Popen(
            ["git", "archive", "--format=tar", f"--mtime=@{CODE_MTIME}", tree],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        while chunk := proc.stdout.read(1 << 20):
            dest.write(chunk)
        stderr = proc.stderr.read()
        if proc.wait() != 0:
            raise CodeError(f"git archive of tree {tree} failed: {stderr.decode(errors='replace').strip()}")


def extract_code(archive: Path, dest: Path) -> int:
    """Unpack an exported code archive; returns the number of files."""
    count = 0
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="tar")
        count = sum(1 for m in tar.getmembers() if m.isfile())
    return count


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, env=_GIT_ENV, check=False)
    except FileNotFoundError:
        raise CodeError("git is not installed", "install git (`apt-get install git`) and run again") from None


def _stderr(done: subprocess.CompletedProcess[bytes]) -> str:
    text = done.stderr.decode("utf-8", "replace").strip()
    return " ".join(text.split()) or f"exit code {done.returncode}"
