"""Reading a Dockerfile base from a commit: the name rule, the instructions, the context files and the key (real git,
no engine; the builds are in tests/test_dockerfile_base.py)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from harness.env.dockerfile import DockerfileSource, instructions, is_dockerfile, load_dockerfile
from harness.env.recipe import load_recipe
from harness.errors import ConfigError
from harness.project.projectfiles import CommittedFiles, WorkingTreeFiles
from harness.project.vcs import Repository
from tests.projects import commit_all, make_repo

FROM = "FROM harness-base:0123456789abcdef\n"


def _committed(root: Path, files: dict[str, str | bytes], base: str = "Dockerfile.base") -> DockerfileSource:
    sha = make_repo(root, files) if not (root / ".git").exists() else _commit(root, files)
    return load_dockerfile(base, CommittedFiles(Repository.open(root), sha))


def _commit(root: Path, files: dict[str, str | bytes]) -> str:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return commit_all(root, "change")


def _refused(root: Path, dockerfile: str, extra: dict[str, str | bytes] | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        _committed(root, {"Dockerfile.base": FROM + dockerfile, **(extra or {})})
    return raised.value.message + " | " + (raised.value.hint or "")


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("Dockerfile", True),
        ("Dockerfile.base", True),
        ("docker/Dockerfile.gpu", True),
        ("gpu.Dockerfile", True),
        ("ci/train.dockerfile", True),
        ("bookworm", False),
        ("Dockerfiles", False),
        ("my-Dockerfile", False),
        ("registry.example/team/py@sha256:" + "0" * 64, False),
    ],
)
def test_which_base_values_name_a_dockerfile(base: str, expected: bool) -> None:
    assert is_dockerfile(base) is expected


def test_instructions_join_continuations_drop_comments_and_honour_the_escape_directive() -> None:
    text = "# escape=`\n# a comment\nFROM x\nRUN echo a `\n  # inside\n  && echo b\n\nCOPY a b /dst/\n"
    got = [(i.line, i.keyword, i.text) for i in instructions(text)]
    assert got == [(3, "FROM", "FROM x"), (4, "RUN", "RUN echo a   && echo b"), (8, "COPY", "COPY a b /dst/")]


def test_context_is_the_dockerfile_and_exactly_what_copy_and_add_take(tmp_path: Path) -> None:
    source = _committed(
        tmp_path,
        {
            "Dockerfile.base": FROM
            + "COPY requirements.txt /app/\n"
            + "COPY --chown=0:0 src/ /app/src/\n"
            + 'COPY ["conf/a b.ini", "/etc/"]\n'
            + "ADD scripts/*.sh tools/?.py /usr/local/bin/\n"
            + "COPY --from=builder /out /opt/out\n"
            + "ADD https://example.invalid/x.tar.gz /opt/\n"
            + "RUN cat /app/requirements.txt\n",
            "requirements.txt": "six\n",
            "src/pkg/__init__.py": "",
            "src/pkg/mod.py": "x = 1\n",
            "conf/a b.ini": "[a]\n",
            "scripts/run.sh": "#!/bin/sh\n",
            "scripts/notes.txt": "not a script\n",
            "tools/a.py": "",
            "tools/ab.py": "",
            "unrelated.txt": "never sent\n",
        },
    )
    assert [f.path for f in source.files] == [
        "conf/a b.ini",
        "requirements.txt",
        "scripts/run.sh",
        "src/pkg/__init__.py",
        "src/pkg/mod.py",
        "tools/a.py",
    ]
    req = next(f for f in source.files if f.path == "requirements.txt")
    assert req.sha256 == hashlib.sha256(b"six\n").hexdigest() and req.mode == "100644"
    assert source.digest == "sha256:" + hashlib.sha256((tmp_path / "Dockerfile.base").read_bytes()).hexdigest()

    buf = io.BytesIO()
    source.write_context(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(n for n, m in members.items() if m.isfile()) == sorted(
        ["Dockerfile.base", *(f.path for f in source.files)]
    )
    assert {m.mtime for m in members.values()} == {315532800} and {m.uid for m in members.values()} == {0}
    assert members["scripts"].isdir() and members["src/pkg"].isdir()


def test_the_key_moves_with_the_dockerfile_and_copied_files_only(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "Dockerfile.base": FROM + "COPY data/ /data/\n",
        "data/a.txt": "a\n",
        "README.md": "one\n",
    }
    first = _committed(tmp_path, files)
    assert _committed(tmp_path, {"README.md": "two\n"}).key == first.key
    changed = _committed(tmp_path, {"data/a.txt": "b\n"})
    assert changed.key != first.key and changed.digest == first.digest
    (tmp_path / "data" / "a.txt").chmod(0o755)
    executable = load_dockerfile(
        "Dockerfile.base", CommittedFiles(Repository.open(tmp_path), commit_all(tmp_path, "x"))
    )
    assert executable.key != changed.key and executable.files[0].mode == "100755"
    added = _committed(tmp_path, {"data/new.txt": "new\n"})
    assert added.key != executable.key
    edited = _committed(tmp_path, {"Dockerfile.base": FROM + "COPY data/ /data/\nRUN true\n"})
    assert edited.key != added.key and edited.context_digest == added.context_digest


def test_the_commit_is_read_not_the_working_tree(tmp_path: Path) -> None:
    sha = make_repo(tmp_path, {"Dockerfile.base": FROM + "COPY a.txt /\n", "a.txt": "committed\n"})
    (tmp_path / "a.txt").write_text("edited\n")
    (tmp_path / "Dockerfile.base").write_text(FROM + "COPY a.txt b.txt /\n")
    committed = load_dockerfile("Dockerfile.base", CommittedFiles(Repository.open(tmp_path), sha))
    assert committed.files[0].sha256 == hashlib.sha256(b"committed\n").hexdigest()
    with pytest.raises(ConfigError, match="b.txt is not in the build context"):
        load_dockerfile("Dockerfile.base", WorkingTreeFiles(tmp_path))  # the dirty working tree, as a dirty run


def test_a_dockerfile_in_a_subdirectory_has_that_directory_as_its_context(tmp_path: Path) -> None:
    source = _committed(
        tmp_path,
        {"docker/Dockerfile": FROM + "COPY . /ctx/\n", "docker/entry.sh": "#!/bin/sh\n", "top.txt": "x\n"},
        base="docker/Dockerfile",
    )
    assert (source.path, source.name, source.directory) == ("docker/Dockerfile", "Dockerfile", "docker")
    assert [f.path for f in source.files] == ["Dockerfile", "entry.sh"]  # `COPY .` takes the Dockerfile too
    recipe = load_recipe("docker/Dockerfile", tmp_path)  # the working tree, through the recipe loader
    assert recipe.dockerfile == "docker/Dockerfile" and recipe.dockerfile_key == source.key
    assert recipe.to_dict()["digest"] == "sha256:" + source.key


def test_a_missing_dockerfile_names_the_commit_and_the_rule(tmp_path: Path) -> None:
    sha = make_repo(tmp_path, {"harness.toml": 'base = "Dockerfile.base"\n'})
    with pytest.raises(ConfigError) as raised:
        load_dockerfile("Dockerfile.base", CommittedFiles(Repository.open(tmp_path), sha))
    assert f"Dockerfile.base is not in commit {sha[:12]}" in raised.value.message
    assert "file name is Dockerfile, starts with Dockerfile." in raised.value.message
    assert "git add Dockerfile.base" in (raised.value.hint or "")
    with pytest.raises(ConfigError, match="outside the project"):
        load_recipe("../Dockerfile", tmp_path)


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("COPY missing.txt /x/\n", "line 2 (COPY missing.txt /x/): missing.txt is not in the build context"),
        ("COPY *.md /x/\n", "*.md matches no file"),
        ("COPY ../secret /x/\n", "outside the build context"),
        ("COPY $SRC /x/\n", "variables in COPY/ADD sources are not expanded"),
        ("COPY [ab].txt /x/\n", "only * and ? are supported"),
        ("COPY <<EOF /x\nhi\nEOF\n", "heredocs are not supported"),
        ("COPY --parents a/b /x/\n", "--parents is not supported"),
        ("ADD ftp://example.invalid/f /x\n", "only http(s)"),
        ("COPY link /x\n", "link is a symlink"),
        ("COPY only-one\n", "needs a source and a destination"),
    ],
)
def test_sources_it_cannot_know_are_refused_naming_the_line(tmp_path: Path, dockerfile: str, expected: str) -> None:
    os.symlink("target", tmp_path / "link")  # committed as a symlink
    message = _refused(tmp_path, dockerfile, {"target": "t\n"})
    assert expected in message and "Dockerfile.base line 2" in message


def test_a_source_outside_the_project_says_so(tmp_path: Path) -> None:
    message = _refused(tmp_path, "COPY ../../etc/passwd /x\n", {"sub/keep": ""})
    assert "outside the build context" in message and "outside the project" in message


def test_dockerignore_is_refused_where_it_would_change_what_a_directory_sends(tmp_path: Path) -> None:
    message = _refused(tmp_path, "COPY src/ /src/\n", {".dockerignore": "src/*.pyc\n", "src/a.py": ""})
    assert "does not apply .dockerignore" in message
    ok = _committed(tmp_path / "b", {"Dockerfile.base": FROM + "COPY a.py /\n", ".dockerignore": "*\n", "a.py": ""})
    assert [f.path for f in ok.files] == ["a.py"]


def test_working_tree_files_skip_what_git_ignores(tmp_path: Path) -> None:
    make_repo(tmp_path, {"Dockerfile": FROM + "COPY . /ctx/\n", ".gitignore": "data/\n", "a.py": ""})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"x")
    (tmp_path / "untracked.py").write_text("")
    source = load_dockerfile("Dockerfile", WorkingTreeFiles(tmp_path))
    assert [f.path for f in source.files] == [".gitignore", "Dockerfile", "a.py", "untracked.py"]


def test_a_project_in_a_subdirectory_of_its_repository_reads_its_own_files(tmp_path: Path) -> None:
    sha = make_repo(
        tmp_path, {"proj/Dockerfile": FROM + "COPY . /ctx/\n", "proj/a.txt": "a\n", "other/b.txt": "not ours\n"}
    )
    committed = load_dockerfile("Dockerfile", CommittedFiles(Repository.open(tmp_path / "proj"), sha))
    working = load_dockerfile("Dockerfile", WorkingTreeFiles(tmp_path / "proj"))
    assert [f.path for f in committed.files] == ["Dockerfile", "a.txt"]
    assert committed.key == working.key
