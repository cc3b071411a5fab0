"""The only module that talks to git (through GitPython, imported lazily).

Resolves revs, checks whether the project's part of the working tree is dirty, and exports the code of a commit
as a deterministic tar (keyed by the git tree, so every commit with the same tree shares one archive).
"""

from __future__ import annotations

import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import CodeError

# Files in exported code get this mtime (1980-01-01, the earliest a zip can hold), so the archive depends on the
# tree alone and not on which commit or when it was exported.
CODE_MTIME = 315532800


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

    def __init__(self, repo: Any, project: Path) -> None:
        self._repo = repo
        self.root = Path(repo.working_tree_dir).resolve()
        self.project = project.resolve()
        rel = self.project.relative_to(self.root)
        self.subdir = "" if str(rel) == "." else rel.as_posix()

    @classmethod
    def open(cls, project: Path) -> Repository:
        import git

        try:
            repo = git.Repo(project, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise CodeError(
                f"{project} is not inside a git repository",
                "harness runs committed code: `git init && git add -A && git commit -m 'first run'`, then run again",
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise CodeError(f"{project} is in a bare git repository", "run harness from a working tree")
        return cls(repo, project)

    def _git(self, *args: str) -> str:
        import git

        try:
            return str(self._repo.git.execute(["git", *args], strip_newline_in_stdout=False))
        except git.GitCommandError as exc:
            raise CodeError(f"git {' '.join(args)} failed: {_stderr(exc)}") from None

    def resolve(self, rev: str) -> CommitInfo:
        import git

        if not rev or rev.startswith("-"):
            raise CodeError(f"not a revision: {rev!r}", "give a commit, branch or tag, e.g. --commit HEAD")
        try:
            sha = self._repo.git.rev_parse("--verify", "--end-of-options", f"{rev}^{{commit}}").strip()
        except git.GitCommandError as exc:
            detail = _stderr(exc)
            if "ambiguous" in detail:
                raise CodeError(
                    f"revision {rev!r} is ambiguous: {detail}",
                    "give more characters of the commit id, or a full branch/tag name",
                ) from None
            if not self._repo.head.is_valid():
                raise CodeError(
                    "the repository has no commits yet",
                    "commit your project first: `git add -A && git commit -m 'first run'`",
                ) from None
            raise CodeError(
                f"unknown revision {rev!r} in {self.root}",
                "check it with `git log --oneline`; any rev git understands works (HEAD~1, a tag, a commit id)",
            ) from None
        commit = self._repo.commit(sha)
        tree = commit.tree if not self.subdir else _subtree(commit.tree, self.subdir, sha)
        head_sha = self._repo.head.commit.hexsha if self._repo.head.is_valid() else None
        branch = None
        if not self._repo.head.is_detached and head_sha == sha:
            branch = self._repo.active_branch.name
        remote = None
        try:
            remote = next(iter(self._repo.remotes)).url if self._repo.remotes else None
        except Exception:  # a broken remote config must not stop a run
            remote = None
        return CommitInfo(
            commit=sha,
            tree=tree.hexsha,
            time=int(commit.committed_date),
            branch=branch,
            remote=remote,
            subject=commit.summary if isinstance(commit.summary, str) else commit.summary.decode(),
            is_head=head_sha == sha,
        )

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
        import git

        full = f"{self.subdir}/{path}" if self.subdir else path
        try:
            return str(self._repo.git.show(f"{commit}:{full}", strip_newline_in_stdout=False))
        except git.GitCommandError:
            return None

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


def _subtree(tree: Any, subdir: str, sha: str) -> Any:
    try:
        return tree / subdir
    except KeyError:
        raise CodeError(
            f"commit {sha[:12]} has no directory {subdir}/ (the project is not committed there yet)",
            f"commit the project: `git add {subdir} && git commit`",
        ) from None


def _stderr(exc: Any) -> str:
    text = getattr(exc, "stderr", "") or str(exc)
    text = str(text).strip().strip("'").strip()
    if text.startswith("stderr:"):
        text = text[len("stderr:") :].strip().strip("'").strip()
    return " ".join(text.split())
