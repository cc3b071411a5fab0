"""The only module that talks to git, through GitPython (imported on first use: importing it takes 50-90 ms, and
commands that need no repository never load it).

Resolves revs, checks whether the project's part of the working tree is dirty, and exports the code of a commit
as a deterministic tar (keyed by the git tree, so every commit with the same tree shares one archive).

Commits, trees and committed files are read with GitPython's object API (``Commit``, ``tree / path``,
``blob.data_stream``), which neither a user's log or color settings nor a locale can reach. Rev parsing, status,
diff and archive are git's own commands run through GitPython (``repo.git``): git's full rev syntax and ambiguity
rules, its dirty check, and archive bytes exactly as ``git archive`` writes them, as before (code archives are
content-addressed, so existing stores hold them). GitPython runs git with ``LC_ALL=C``, so its messages, some of
which are matched here, are in English.

GitPython reads objects through ``git cat-file`` processes that it keeps running until the repository is closed;
here they end with each call that started them, so no git process outlives a call into this module.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType, TracebackType
from typing import IO, TYPE_CHECKING, Any

from harness.errors import CodeError
from harness.urls import without_credentials

if TYPE_CHECKING:
    import git

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
    """A git working tree, seen from the project directory inside it.

    Holds no git process between calls; ``close()`` (or ``with``) drops GitPython's caches too, as dropping the
    last reference does."""

    def __init__(self, repo: git.Repo, project: Path) -> None:
        assert repo.working_tree_dir is not None
        self._repo = repo
        self.root = Path(repo.working_tree_dir).resolve()
        self.project = project.resolve()
        rel = self.project.relative_to(self.root)
        self.subdir = "" if str(rel) == "." else rel.as_posix()

    @classmethod
    def open(cls, project: Path) -> Repository:
        git = _gitpython()
        try:
            repo = git.Repo(project, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise CodeError(
                f"{project} is not inside a git repository",
                "harness runs committed code: `git init && git add -A && git commit -m 'first run'`, then run again",
            ) from None
        except configparser.Error as exc:
            detail = " ".join(str(exc).split())
            raise CodeError(f"cannot read the git config of the repository at {project}: {detail}") from None
        if repo.bare or repo.working_tree_dir is None:
            repo.close()
            raise CodeError(f"{project} is in a bare git repository", "run harness from a working tree")
        return cls(repo, project)

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _objects(self) -> Iterator[git.Repo]:
        """The object API for one call: the `git cat-file` processes GitPython starts for it end with the call."""
        try:
            with _no_git_is_a_code_error():
                yield self._repo
        finally:
            self._repo.git.clear_cache()

    def _run(self, *args: str, text: bool = True, output_stream: IO[bytes] | None = None) -> tuple[int, Any, str]:
        """git <args> in the working tree, through GitPython: (exit status, stdout as git wrote it, stderr)."""
        with _no_git_is_a_code_error():
            status, out, err = self._repo.git.execute(
                [self._repo.git.GIT_PYTHON_GIT_EXECUTABLE, *args],
                with_extended_output=True,
                with_exceptions=False,
                strip_newline_in_stdout=False,
                stdout_as_string=text,
                output_stream=output_stream,
                max_chunk_size=1 << 20,
            )
        return int(status), out, str(err)

    def resolve(self, rev: str) -> CommitInfo:
        if not rev or rev.startswith("-"):
            raise CodeError(f"not a revision: {rev!r}", "give a commit, branch or tag, e.g. --commit HEAD")
        # git's own rev parser, not GitPython's: all of git's rev syntax (HEAD@{upstream}, HEAD^{/message}, ...) and
        # its rules and messages for ambiguous ids.
        status, out, err = self._run("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        if status != 0:
            detail = _oneline(err, status)
            if "ambiguous" in detail:
                raise CodeError(
                    f"revision {rev!r} is ambiguous: {detail}",
                    "give more characters of the commit id, or a full branch/tag name",
                )
            if self._head_sha() is None:
                raise CodeError(
                    "the repository has no commits yet",
                    "commit your project first: `git add -A && git commit -m 'first run'`",
                )
            if "Needed a single revision" in detail:
                raise CodeError(
                    f"unknown revision {rev!r} in {self.root}",
                    "check it with `git log --oneline`; any rev git understands works (HEAD~1, a tag, a commit id)",
                )
            raise CodeError(f"git rev-parse {rev} failed: {detail}")  # e.g. git distrusting the repository's owner
        sha = str(out).strip()
        with self._objects() as repo:
            commit = _commit(repo, sha)
            tree = self._subtree(commit) if self.subdir else commit.tree.hexsha
            committed, message = int(commit.committed_date), commit.message
        head_sha = self._head_sha()
        # HEAD and its branch are files GitPython reads itself; no process for them.
        branch = self._repo.head.reference.name if head_sha == sha and not self._repo.head.is_detached else None
        if isinstance(message, bytes):  # a message GitPython could not decode with the commit's encoding
            message = message.decode("utf-8", "replace")
        return CommitInfo(
            commit=sha,
            tree=tree,
            time=committed,
            branch=branch,
            remote=self._first_remote(),
            subject=message.split("\n", 1)[0],
            is_head=head_sha == sha,
        )

    def _head_sha(self) -> str | None:
        """The commit HEAD points at, read from the refs without reading an object; None before the first commit."""
        git = _gitpython()
        try:
            return str(git.SymbolicReference.dereference_recursive(self._repo, "HEAD"))
        except ValueError:
            return None

    def _subtree(self, commit: git.Commit) -> str:
        try:
            found = commit.tree / self.subdir
        except KeyError:
            found = None
        if found is None or found.type != "tree":
            raise CodeError(
                f"commit {commit.hexsha[:12]} has no directory {self.subdir}/ (the project is not committed there yet)",
                f"commit the project: `git add {self.subdir} && git commit`",
            )
        return str(found.hexsha)

    def _first_remote(self) -> str | None:
        """The first URL of the first remote in the repository's config, without credentials (harness/urls.py),
        for the record; None without one."""
        try:
            config = self._repo.config_reader("repository")
            for section in config.sections():
                if section.startswith('remote "') and config.has_option(section, "url"):
                    # get_values: all of a remote's urls in file order, as git lists them (remote.url is the last)
                    return without_credentials(str(config.get_values(section, "url")[0]))
        except (configparser.Error, ValueError, TypeError):
            pass  # a config GitPython cannot read must not stop a run: the remote is only recorded
        return None

    def changes(self, exclude: list[Path] | None = None) -> list[Change]:
        """Uncommitted changes in the project directory: tracked edits and untracked files git does not ignore."""
        pathspec = [self.subdir or "."]
        for path in exclude or []:
            try:
                rel = path.resolve().relative_to(self.root).as_posix()
            except ValueError:
                continue
            pathspec.append(f":(exclude){rel}")
        # git's own status, one process (GitPython's index.diff and untracked_files would take three and detect
        # renames). Porcelain v1 with -z is a format no setting changes: no color, no quoting (core.quotePath), no
        # relative paths; the options override status.showUntrackedFiles and status.renames.
        args = ("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", *pathspec)
        status, out, err = self._run(*args)
        if status != 0:
            raise CodeError(f"git {' '.join(args)} failed: {_oneline(err, status)}")
        changes = []
        for item in str(out).split("\0"):
            if not item:
                continue
            code, repo_path = item[:2], item[3:]
            if code == "??":
                change = "untracked"
            elif "D" in code:
                change = "deleted"
            elif "A" in code:
                change = "added"
            elif "T" in code:
                change = "typechange"
            else:
                change = "modified"
            changes.append(Change(path=self._project_relative(repo_path), status=change))
        return sorted(changes, key=lambda c: c.path)

    def _project_relative(self, repo_path: str) -> str:
        if not self.subdir:
            return repo_path
        return PurePosixPath(repo_path).relative_to(self.subdir).as_posix()

    def diff_text(self) -> bytes:
        """``git diff HEAD`` of the project directory (binary-safe), for people to read."""
        # Options in place of settings a user may have: no external diff program (diff.external) or textconv filter,
        # so the text stays a patch git can apply; no color; a/ and b/ prefixes; non-ASCII paths quoted, git's default.
        status, out, err = self._run(
            *("-c", "core.quotePath=true", "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"),
            *("--src-prefix=a/", "--dst-prefix=b/", "--", self.subdir or "."),
            text=False,
        )
        if status != 0:
            raise CodeError(f"git diff HEAD failed: {_oneline(err, status)}")
        return bytes(out)

    def read_file(self, commit: str, path: str) -> str | None:
        """A file of the project directory as committed, or None if the commit does not have it."""
        git = _gitpython()
        full = f"{self.subdir}/{path}" if self.subdir else path
        with self._objects() as repo:
            try:
                found = _commit(repo, commit).tree / full
            except (KeyError, ValueError, git.BadName, git.BadObject):
                return None
            if found.type != "blob":
                return None
            data: bytes = found.data_stream.read()
        return data.decode("utf-8", "replace")

    def tree_files(self, commit: str, under: str = "") -> dict[str, tuple[str, str]]:
        """Every file under ``under`` (a directory of the project, "" for all of it) as committed: project-relative
        path -> (git mode, object id). Modes: 100644, 100755, 120000 (a symlink), 160000 (a submodule)."""
        full = "/".join(p for p in (self.subdir, under) if p)
        # One `git ls-tree`, however many files: its -z format is fixed (no quoting, no color, full paths).
        args = ("ls-tree", "-r", "-z", "--full-tree", commit, "--", *([full] if full else []))
        status, out, err = self._run(*args)
        if status != 0:
            raise CodeError(f"git {' '.join(args)} failed: {_oneline(err, status)}")
        found = {}
        for item in str(out).split("\0"):
            if not item:
                continue
            info, _, repo_path = item.partition("\t")
            mode, _kind, oid = info.split(" ")
            found[self._project_relative(repo_path)] = (mode, oid)
        return found

    def read_objects(self, oids: list[str]) -> Iterator[tuple[str, bytes]]:
        """(object id, bytes) of each blob, through one `git cat-file` process for all of them."""
        with self._objects() as repo:
            for oid in oids:
                yield oid, bytes(repo.odb.stream(bytes.fromhex(oid)).read())

    def working_files(self, under: str = "") -> list[str]:
        """The files under ``under`` that a commit of the working tree would hold: tracked and untracked, not
        ignored, present on disk; project-relative paths."""
        full = "/".join(p for p in (self.subdir, under) if p) or "."
        args = ("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--full-name", "--", full)
        status, out, err = self._run(*args)
        if status != 0:
            raise CodeError(f"git {' '.join(args)} failed: {_oneline(err, status)}")
        found = {self._project_relative(p) for p in str(out).split("\0") if p}
        return sorted(p for p in found if (self.project / p).is_symlink() or (self.project / p).exists())

    def submodules(self, tree: str) -> list[tuple[str, str]]:
        """The git submodules in a tree (gitlinks, mode 160000): (path in the tree, the commit it pins), sorted."""
        args = ("ls-tree", "-r", "-z", "--", tree)
        status, out, err = self._run(*args)
        if status != 0:
            raise CodeError(f"git {' '.join(args)} failed: {_oneline(err, status)}")
        found = []
        for item in str(out).split("\0"):
            if item.startswith("160000 "):
                info, _, path = item.partition("\t")
                found.append((path, info.split(" ")[2]))
        return sorted(found)

    def export_tree(self, tree: str, dest: IO[bytes]) -> None:
        """Write the tree as a tar: git's own archive of a tree, with a fixed mtime (no commit id, no time).

        A tree with a submodule is refused: `git archive` writes a submodule as an empty directory, so the code
        would lack what the commit names, silently."""
        subs = self.submodules(tree)
        if subs:
            named = ", ".join(f"{path} (commit {commit[:12]})" for path, commit in subs)
            first = subs[0][0]
            empty = f"{first} would be an empty directory" if len(subs) == 1 else "they would be empty directories"
            raise CodeError(
                f"the code has git submodule{'s' if len(subs) > 1 else ''} {named}: a run's /code holds only this "
                f"repository's own committed files, so {empty}",
                f"put its files in this repository (`git rm --cached {first} && rm -rf {first}/.git && git add "
                f"{first}`, drop its entry from .gitmodules, commit), or install it as a package through the lock; "
                "nothing was run",
            )
        # `git archive` through GitPython rather than Repo.archive, whose errors carry git's message only reformatted.
        status, _, err = self._run("archive", "--format=tar", f"--mtime=@{CODE_MTIME}", "--", tree, output_stream=dest)
        if status != 0:
            raise CodeError(f"git archive of tree {tree} failed: {_oneline(err, status)}")


def _commit(repo: git.Repo, rev: str) -> git.Commit:
    """The commit ``rev`` names; a full id becomes a Commit directly, without a `git cat-file --batch-check`."""
    git = _gitpython()
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return git.Commit(repo, bytes.fromhex(rev))
    return repo.commit(rev)


def _gitpython() -> ModuleType:
    """GitPython, imported on first use. Importing it runs `git version`, and fails if that cannot run (unless
    GIT_PYTHON_REFRESH=quiet, when the first command fails instead)."""
    try:
        import git
    except ImportError as exc:
        if exc.name == "git":
            raise CodeError("GitPython is not installed", "reinstall harness (`pip install harness`)") from None
        if "Bad git executable" in str(exc):
            raise _git_missing() from None
        raise
    return git


@contextmanager
def _no_git_is_a_code_error() -> Iterator[None]:
    git = _gitpython()
    try:
        yield
    except git.GitCommandNotFound:
        raise _git_missing() from None


def _git_missing() -> CodeError:
    return CodeError("git is not installed", "install git (`apt-get install git`) and run again")


def _oneline(stderr: str, status: int) -> str:
    return " ".join(stderr.split()) or f"exit code {status}"
