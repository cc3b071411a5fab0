"""Unpacking a code archive: what git archive writes unpacks as it was; anything that could write or point outside
the run's work directory is refused by name before a byte is written, on every Python pyproject allows."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from harness.errors import CodeError
from harness.project.unpack import unpack_code
from harness.project.vcs import Repository
from tests.projects import commit_all, harness, make_repo


def _archive(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def test_a_git_archive_unpacks_with_its_files_links_and_exec_bits(tmp_path: Path) -> None:
    project = tmp_path / "p"
    make_repo(project, {"a.py": "print(1)\n", "pkg/b.py": "x = 2\n", "run.sh": "#!/bin/sh\n"})
    (project / "run.sh").chmod(0o755)
    (project / "link.py").symlink_to("pkg/b.py")
    commit_all(project, "two")
    repo = Repository.open(project)
    with (tmp_path / "code.tar").open("wb") as out:
        repo.export_tree(repo.resolve("HEAD").tree, out)
    dest = tmp_path / "code"
    dest.mkdir()
    assert unpack_code(tmp_path / "code.tar", dest) == 3
    assert (dest / "pkg/b.py").read_text() == "x = 2\n"
    assert os.readlink(dest / "link.py") == "pkg/b.py"
    assert os.access(dest / "run.sh", os.X_OK) and not os.access(dest / "a.py", os.X_OK)


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("/etc/evil"), "is absolute"),
        (_member("../evil"), "leaves the code tree"),
        (_member("a/../../evil"), "leaves the code tree"),
        (_member("abs", tarfile.SYMTYPE, link="/etc/passwd"), "is absolute"),
        (_member("sub/up", tarfile.SYMTYPE, link="../../outside"), "leaves the code tree"),
        (_member("hard", tarfile.LNKTYPE, link="../outside"), "leaves the code tree"),
        (_member("dev", tarfile.CHRTYPE), "a device or FIFO"),
        (_member("fifo", tarfile.FIFOTYPE), "a device or FIFO"),
    ],
)
def test_a_member_that_could_reach_outside_is_refused_by_name_before_anything_is_written(
    tmp_path: Path, member: tarfile.TarInfo, why: str
) -> None:
    data = b"x" if member.isfile() else None
    archive = _archive(tmp_path / "bad.tar", (_member("first.py"), b"print(1)\n"), (member, data))
    dest = tmp_path / "work" / "code"
    dest.mkdir(parents=True)
    with pytest.raises(CodeError, match=why) as err:
        unpack_code(archive, dest)
    assert repr(member.name) in err.value.message and err.value.hint
    assert list(dest.iterdir()) == []  # not even the good member before it
    assert not (tmp_path / "evil").exists() and not (tmp_path / "work" / "evil").exists()


def test_setuid_sticky_and_group_write_bits_are_dropped(tmp_path: Path) -> None:
    archive = _archive(
        tmp_path / "modes.tar",
        (_member("d", tarfile.DIRTYPE, mode=0o1777), None),
        (_member("d/tool", mode=0o6775), b"#!/bin/sh\n"),
    )
    dest = tmp_path / "code"
    dest.mkdir()
    unpack_code(archive, dest)
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "d/tool").stat().st_mode) == 0o755


def test_a_run_of_a_commit_with_a_symlink_out_of_the_project_is_refused_naming_it(probe_project: Path) -> None:
    (probe_project / "hosts").symlink_to("/etc/hosts")
    commit_all(probe_project, "link out")
    result = harness(probe_project, "run", "--commit", "HEAD")
    assert result.returncode == 102, result.stderr
    assert "'hosts' is absolute (-> /etc/hosts)" in result.stderr
    assert "Traceback" not in result.stderr
