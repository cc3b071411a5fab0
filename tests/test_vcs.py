from __future__ import annotations

import io
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import CodeError
from harness.project.vcs import CODE_MTIME, Repository
from tests.projects import commit_all, git, make_repo


def test_not_a_git_repository(tmp_path: Path) -> None:
    with pytest.raises(CodeError, match="is not inside a git repository") as err:
        Repository.open(tmp_path)
    assert "git init" in (err.value.hint or "")


def test_resolve_head_and_unknown_rev(tmp_path: Path) -> None:
    sha = make_repo(tmp_path, {"a.py": "print(1)\n"})
    repo = Repository.open(tmp_path)
    info = repo.resolve("HEAD")
    assert info.commit == sha and info.is_head and info.branch == "main"
    assert repo.resolve(sha[:10]).commit == sha
    with pytest.raises(CodeError, match="unknown revision 'nope'"):
        repo.resolve("nope")
    with pytest.raises(CodeError, match="not a revision"):
        repo.resolve("--all")


def test_commit_facts_for_the_record(tmp_path: Path) -> None:
    first = make_repo(tmp_path, {"a.py": "1\n"})
    (tmp_path / "a.py").write_text("2\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-q", "-m", "Tune lr\nwrapped\n\nbody")
    git(tmp_path, "remote", "add", "origin", "https://example.invalid/team/proj.git")
    git(tmp_path, "remote", "add", "backup", "/srv/backup.git")
    git(tmp_path, "config", "log.showSignature", "true")  # a user's settings must not reach what harness parses
    git(tmp_path, "config", "color.ui", "always")
    repo = Repository.open(tmp_path)
    head = repo.resolve("HEAD")
    assert head.subject == "Tune lr" and head.remote == "https://example.invalid/team/proj.git"
    assert head.time == int(git(tmp_path, "log", "-1", "--format=%ct").strip())
    assert head.tree == git(tmp_path, "rev-parse", "HEAD^{tree}").strip()
    older = repo.resolve("HEAD~1")
    assert older.commit == first and not older.is_head and older.branch is None
    git(tmp_path, "checkout", "-q", "--detach", "HEAD")
    assert Repository.open(tmp_path).resolve("HEAD").branch is None


def test_bare_repository_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare")
    with pytest.raises(CodeError, match="bare git repository"):
        Repository.open(tmp_path)


def test_ambiguous_short_id_is_reported(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "x\n"})
    # 1,500 commits in one fast-import stream: some two of them always share a 4-digit prefix.
    stream = []
    for i in range(1500):
        message = f"commit {i}\n".encode()
        stream.append(f"commit refs/heads/many\ncommitter t <t@e.invalid> {1700000000 + i} +0000\n")
        stream.append(f"data {len(message)}\n{message.decode()}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=tmp_path, input="".join(stream), text=True, check=True)
    commits = git(tmp_path, "rev-list", "many").split()
    prefix, count = Counter(c[:4] for c in commits).most_common(1)[0]
    assert count > 1
    with pytest.raises(CodeError, match="ambiguous"):
        Repository.open(tmp_path).resolve(prefix)


def test_empty_repository(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(CodeError, match="no commits yet"):
        Repository.open(tmp_path).resolve("HEAD")


def test_changes_name_tracked_and_untracked_files_but_not_ignored(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "1\n", "b.py": "2\n", ".gitignore": "*.log\n.harness/\n"})
    (tmp_path / "a.py").write_text("changed\n")
    (tmp_path / "b.py").unlink()
    (tmp_path / "new.py").write_text("new\n")
    (tmp_path / "debug.log").write_text("ignored\n")
    (tmp_path / ".harness").mkdir()
    (tmp_path / ".harness" / "x").write_text("store\n")
    changes = Repository.open(tmp_path).changes()
    assert [(c.path, c.status) for c in changes] == [("a.py", "modified"), ("b.py", "deleted"), ("new.py", "untracked")]


def test_project_in_a_subdirectory_sees_only_its_own_tree(tmp_path: Path) -> None:
    make_repo(tmp_path, {"proj/main.py": "1\n", "other/x.py": "2\n"})
    (tmp_path / "other" / "x.py").write_text("changed elsewhere\n")
    repo = Repository.open(tmp_path / "proj")
    assert repo.subdir == "proj"
    assert repo.changes() == []
    info = repo.resolve("HEAD")
    assert info.tree == git(tmp_path, "rev-parse", "HEAD:proj").strip()
    assert repo.read_file(info.commit, "main.py") == "1\n"
    assert repo.read_file(info.commit, "missing.py") is None


def test_export_tree_is_deterministic_and_holds_only_committed_files(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "1\n", "run.sh": "#!/bin/sh\n"})
    (tmp_path / "run.sh").chmod(0o755)
    commit_all(tmp_path, "exec bit")
    (tmp_path / "untracked.txt").write_text("not committed\n")
    repo = Repository.open(tmp_path)
    tree = repo.resolve("HEAD").tree
    first, second = io.BytesIO(), io.BytesIO()
    repo.export_tree(tree, first)
    repo.export_tree(tree, second)
    assert first.getvalue() == second.getvalue()
    first.seek(0)
    with tarfile.open(fileobj=first) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"a.py", "run.sh"}
    assert members["run.sh"].mode & 0o111 and members["a.py"].mtime == CODE_MTIME
