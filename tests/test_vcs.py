from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import CodeError
from harness.project.vcs import CODE_MTIME, Repository
from tests.projects import GIT_ENV, commit_all, git, make_repo

REPO = Path(__file__).resolve().parent.parent


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
    assert repo.resolve("HEAD^{/fir}").commit == sha  # git's own rev syntax
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
    git(tmp_path, "config", "--add", "remote.origin.url", "https://example.invalid/mirror/proj.git")
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


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://user:ghp_secret@example.invalid/team/proj.git", "https://example.invalid/team/proj.git"),
        ("https://oauth2:tok@example.invalid:8443/proj.git", "https://example.invalid:8443/proj.git"),
        ("ssh://git@example.invalid/team/proj.git", "ssh://example.invalid/team/proj.git"),
        ("git@example.invalid:team/proj.git", "git@example.invalid:team/proj.git"),
        ("/srv/git/proj.git", "/srv/git/proj.git"),
    ],
)
def test_the_recorded_remote_has_no_credentials(tmp_path: Path, url: str, recorded: str) -> None:
    make_repo(tmp_path, {"a.py": "1\n"})
    git(tmp_path, "remote", "add", "origin", url)
    assert Repository.open(tmp_path).resolve("HEAD").remote == recorded


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


def test_a_commit_without_the_project_directory_is_named(tmp_path: Path) -> None:
    make_repo(tmp_path, {"other/x.py": "1\n"})
    (tmp_path / "proj").mkdir()
    with pytest.raises(CodeError, match="has no directory proj/"):
        Repository.open(tmp_path / "proj").resolve("HEAD")


def test_read_file_is_none_for_a_directory_or_an_unknown_commit(tmp_path: Path) -> None:
    sha = make_repo(tmp_path, {"pkg/a.py": "1\n"})
    repo = Repository.open(tmp_path)
    assert repo.read_file(sha, "pkg/a.py") == "1\n"
    assert repo.read_file(sha, "pkg") is None
    assert repo.read_file("0" * 40, "pkg/a.py") is None
    assert repo.read_file("HEAD", "pkg/a.py") == "1\n"


def add_submodule(root: Path, source: Path, path: str) -> str:
    """A real submodule of a local repository at path, committed; returns the commit it pins."""
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(source), path)
    commit_all(root, f"add submodule {path}")
    return git(source, "rev-parse", "HEAD").strip()


def test_code_with_a_submodule_is_refused_naming_it_not_exported_empty(tmp_path: Path) -> None:
    make_repo(tmp_path / "lib", {"helpers.py": "X = 1\n"})
    make_repo(tmp_path / "proj", {"main.py": "from vendor.lib import helpers\n"})
    pinned = add_submodule(tmp_path / "proj", tmp_path / "lib", "vendor/lib")
    repo = Repository.open(tmp_path / "proj")
    tree = repo.resolve("HEAD").tree
    assert repo.submodules(tree) == [("vendor/lib", pinned)]
    # What `git archive` alone makes of it: an empty directory where the submodule's files should be.
    plain = subprocess.run(["git", "archive", tree], cwd=tmp_path / "proj", capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        assert "vendor/lib" in tar.getnames() and not any(n.startswith("vendor/lib/") for n in tar.getnames())

    out = io.BytesIO()
    with pytest.raises(CodeError) as err:
        repo.export_tree(tree, out)
    assert f"submodule vendor/lib (commit {pinned[:12]})" in err.value.message
    assert "vendor/lib would be an empty directory" in err.value.message
    assert "git rm --cached vendor/lib" in (err.value.hint or "") and "package" in (err.value.hint or "")
    assert out.getvalue() == b"", "nothing was exported"


def test_submodules_are_named_relative_to_the_project_and_only_inside_it(tmp_path: Path) -> None:
    make_repo(tmp_path / "lib", {"helpers.py": "X = 1\n"})
    make_repo(tmp_path / "repo", {"proj/main.py": "1\n", "other/x.py": "2\n"})
    pinned = add_submodule(tmp_path / "repo", tmp_path / "lib", "other/lib")
    repo = Repository.open(tmp_path / "repo" / "proj")
    tree = repo.resolve("HEAD").tree
    assert repo.submodules(tree) == []  # a submodule elsewhere in the repository is not the project's code
    repo.export_tree(tree, io.BytesIO())
    add_submodule(tmp_path / "repo", tmp_path / "lib", "proj/ext/lib")
    tree = Repository.open(tmp_path / "repo" / "proj").resolve("HEAD").tree
    assert repo.submodules(tree) == [("ext/lib", pinned)]
    with pytest.raises(CodeError, match="submodule ext/lib"):
        repo.export_tree(tree, io.BytesIO())


def fixed_tree(root: Path) -> str:
    """A tree with what a tar of code can hold: an executable, a symlink, nested and non-ASCII names, a path longer
    than ustar's 100 bytes, an empty file, binary content. Its id depends on nothing but this content."""
    make_repo(
        root,
        {
            "a.py": "print(1)\n",
            "run.sh": "#!/bin/sh\necho run\n",
            "pkg/__init__.py": "",
            "pkg/data/\u00e9t\u00e9.txt": "\u00fcn\u00efcode\n",
            "deep/" + "d" * 70 + "/" + "f" * 70 + ".txt": "long path\n",
            "bin.dat": bytes(range(256)) * 4,
        },
    )
    (root / "run.sh").chmod(0o755)
    os.symlink("a.py", root / "link")
    commit_all(root, "fixed")
    return git(root, "rev-parse", "HEAD^{tree}").strip()


def test_export_tree_is_byte_identical_to_the_archives_stores_already_hold(tmp_path: Path) -> None:
    """Code archives are content-addressed: the archive of a tree must stay what harness wrote before GitPython,
    `git archive --format=tar --mtime=@315532800 <tree>`, byte for byte."""
    tree = fixed_tree(tmp_path)
    assert tree == "92fc47eed9e71bd412c66e549a97d05dc724ff53"
    exported = io.BytesIO()
    Repository.open(tmp_path).export_tree(tree, exported)
    command = ["git", "archive", "--format=tar", f"--mtime=@{CODE_MTIME}", tree]
    assert exported.getvalue() == subprocess.run(command, cwd=tmp_path, capture_output=True, check=True).stdout
    # The digest the implementation that ran the git command itself gave this tree (git 2.47).
    digest = hashlib.sha256(exported.getvalue()).hexdigest()
    assert digest == "a935eed1ca7baeb7667fa3260abee264cb939662c8d28385ae97e3069bd9f03d"


def test_a_users_git_settings_do_not_change_what_harness_sees(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_repo(root, {"caf\u00e9.py": "1\n", "b.py": "2\n"})
    (root / "caf\u00e9.py").write_text("changed\n")
    (root / "n\u00e9w.py").write_text("new\n")
    repo = Repository.open(root)
    plain_changes, plain_diff = repo.changes(), repo.diff_text()
    info = repo.resolve("HEAD")
    external = tmp_path / "external-diff"
    external.write_text("#!/bin/sh\necho EXTERNAL\n")
    external.chmod(0o755)
    settings = {
        "core.quotePath": "false",
        "status.showUntrackedFiles": "no",
        "status.branch": "true",
        "status.relativePaths": "true",
        "color.ui": "always",
        "color.status": "always",
        "color.diff": "always",
        "diff.external": str(external),
        "diff.noprefix": "true",
        "diff.mnemonicPrefix": "true",
        "log.showSignature": "true",
        "format.pretty": "oneline",
    }
    for key, value in settings.items():
        git(root, "config", key, value)
    repo = Repository.open(root)
    assert repo.changes() == plain_changes
    assert [(c.path, c.status) for c in plain_changes] == [("caf\u00e9.py", "modified"), ("n\u00e9w.py", "untracked")]
    diff = repo.diff_text()
    assert diff == plain_diff and b"EXTERNAL" not in diff
    assert b'--- "a/caf\\303\\251.py"' in diff  # git's default quoting, and a/ b/ prefixes
    subprocess.run(["git", "apply", "--check", "-R"], cwd=root, input=diff, check=True)
    assert repo.resolve("HEAD") == info


def test_git_runs_in_the_c_locale(tmp_path: Path) -> None:
    """git's messages are matched ("ambiguous") and shown: every git harness starts runs with LC_ALL=C."""
    sha = make_repo(tmp_path / "proj", {"a.py": "1\n"})
    (tmp_path / "proj" / "b.py").write_text("2\n")
    log = tmp_path / "git.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$LC_ALL $1" >> {log}\nexec git "$@"\n')
    wrapper.chmod(0o755)
    script = (
        "import io, sys\nfrom pathlib import Path\nfrom harness.project.vcs import Repository\n"
        "repo = Repository.open(Path(sys.argv[1]))\ninfo = repo.resolve('HEAD')\n"
        "repo.changes(); repo.diff_text(); repo.read_file(info.commit, 'a.py')\n"
        "repo.export_tree(info.tree, io.BytesIO())\n"
    )
    env = {**os.environ, **GIT_ENV, "GIT_PYTHON_GIT_EXECUTABLE": str(wrapper), "LC_ALL": "de_DE.UTF-8"}
    env["LANGUAGE"] = "de"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "proj")], cwd=REPO, env=env, check=True)
    calls = log.read_text().splitlines()
    assert {line.split()[1] for line in calls} >= {"rev-parse", "cat-file", "status", "-c", "archive"}, calls
    assert all(line.startswith("C ") for line in calls), calls
    assert sha


def git_children() -> list[str]:
    """The git processes this process started that still exist (running or not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and comm.startswith("git"):
            found.append(f"{entry.name} {comm} {fields[0]}")
    return found


def test_no_git_process_outlives_a_call(tmp_path: Path) -> None:
    """GitPython keeps `git cat-file` processes for reading objects until a repository is closed; harness holds a
    Repository for a whole run, so they must end with each call instead."""
    make_repo(tmp_path / "proj", {"a.py": "1\n"})
    repo = Repository.open(tmp_path / "proj")
    info = repo.resolve("HEAD")
    assert git_children() == []
    assert repo.read_file(info.commit, "a.py") == "1\n" and git_children() == []
    assert repo.read_file(info.commit, "missing.py") is None and git_children() == []
    repo.export_tree(info.tree, io.BytesIO())
    repo.changes()
    assert git_children() == []
    with Repository.open(tmp_path / "proj") as again:
        assert again.resolve("HEAD") == info


def test_importing_vcs_does_not_load_gitpython() -> None:
    script = "import sys, harness.project.vcs\nprint('git' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("refresh", [None, "quiet"])
def test_git_missing_is_a_clear_error(tmp_path: Path, refresh: str | None) -> None:
    """GitPython runs `git version` when imported and raises ImportError without git (GIT_PYTHON_REFRESH=quiet
    defers the failure to the first command): either way the user reads that git is not installed."""
    make_repo(tmp_path / "proj", {"a.py": "1\n"})
    (tmp_path / "empty").mkdir()
    script = (
        "import sys\nfrom pathlib import Path\nfrom harness.errors import CodeError\n"
        "from harness.project.vcs import Repository\ntry:\n    Repository.open(Path(sys.argv[1])).resolve('HEAD')\n"
        "except CodeError as exc:\n    print(exc.message, '|', exc.hint)\n"
    )
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)} | (
        {"GIT_PYTHON_REFRESH": refresh} if refresh else {}
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "proj")], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "git is not installed | install git (`apt-get install git`) and run again", done


def test_a_linked_worktree_with_packed_refs(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "main", {"proj/a.py": "1\n"})
    git(tmp_path / "main", "worktree", "add", "-q", "-b", "feature/x", str(tmp_path / "wt"))
    git(tmp_path / "main", "pack-refs", "--all")
    (tmp_path / "wt" / "proj" / "a.py").write_text("2\n")
    repo = Repository.open(tmp_path / "wt" / "proj")
    info = repo.resolve("HEAD")
    assert (info.commit, info.branch, info.is_head) == (sha, "feature/x", True)
    assert [(c.path, c.status) for c in repo.changes()] == [("a.py", "modified")]
    assert repo.read_file(sha, "a.py") == "1\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a repository owned by another user")
def test_a_repository_git_distrusts_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo(tmp_path / "proj", {"a.py": "1\n"})
    subprocess.run(["chown", "-R", "65534:65534", str(tmp_path / "proj")], check=True)
    monkeypatch.setenv("HOME", str(tmp_path))  # no safe.directory from the real user's config
    with pytest.raises(CodeError, match="dubious ownership"):
        Repository.open(tmp_path / "proj").resolve("HEAD")
