"""PEP 751 pylock.toml as a lock: the wheel picked for the image's target, markers for the target, clear refusals,
and what `harness lock` writes. No network: the files are written here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.env.lockfile import LockedPackage, is_pylock, read_lock, requirements_digest, write_lock
from harness.env.pylock import format_pylock, read_pylock, write_pylock
from harness.env.wheels import uv_binary
from harness.env.wheeltags import best_wheel, target_tags
from harness.errors import EnvironmentBuildError
from tests.test_lockfile import SIX, make_lock

TRIXIE = ("3.13", "manylinux_2_41_x86_64")
BOOKWORM = ("3.11", "manylinux_2_36_x86_64")


def sha(char: str) -> str:
    return char * 64


def wheel(filename: str, char: str = "a") -> str:
    return f'{{ name = "{filename}", url = "https://files.example/{filename}", hashes = {{ sha256 = "{sha(char)}" }} }}'


def package(name: str, version: str, *wheels: str, extra: str = "") -> str:
    return f'[[packages]]\nname = "{name}"\nversion = "{version}"\n{extra}wheels = [{", ".join(wheels)}]\n\n'


HEAD = 'lock-version = "1.0"\ncreated-by = "uv"\nrequires-python = ">=3.11"\n\n'

# Like `uv export --format pylock.toml`: every platform's wheels, and packages for other platforms behind markers.
MULTI = (
    HEAD
    + package(
        "numpy",
        "2.3.4",
        wheel("numpy-2.3.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "1"),
        wheel("numpy-2.3.4-cp313-cp313-macosx_14_0_arm64.whl", "2"),
        wheel("numpy-2.3.4-cp313-cp313-musllinux_1_2_x86_64.whl", "3"),
        wheel("numpy-2.3.4-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "4"),
        wheel("numpy-2.3.4-cp313-cp313t-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "5"),
        wheel("numpy-2.3.4-cp313-cp313-win_amd64.whl", "6"),
    )
    + package(
        "cryptography",
        "46.0.1",
        wheel("cryptography-46.0.1-cp39-abi3-manylinux_2_34_x86_64.whl", "7"),
        wheel("cryptography-46.0.1-cp311-abi3-manylinux_2_28_x86_64.whl", "8"),
        wheel("cryptography-46.0.1-cp311-abi3-manylinux_2_34_x86_64.whl", "9"),
        wheel("cryptography-46.0.1-cp311-abi3-manylinux_2_42_x86_64.whl", "b"),  # newer than trixie's glibc
    )
    + package("six", "1.17.0", wheel("six-1.17.0-py2.py3-none-any.whl", "c"))
    + package("appnope", "0.1.4", wheel("appnope-0.1.4-py2.py3-none-any.whl", "d"),
              extra="marker = \"sys_platform == 'darwin'\"\n")
    + package("tomli", "2.3.0", wheel("tomli-2.3.0-py3-none-any.whl", "e"),
              extra="marker = \"python_version < '3.12'\"\n")
    + package("pytest", "9.0.0", wheel("pytest-9.0.0-py3-none-any.whl", "f"),
              extra="marker = \"'dev' in dependency_groups\"\n")
)  # fmt: skip


def files(text: str, target: tuple[str, str]) -> dict[str, str]:
    lock = read_pylock(text, "pylock.toml", *target).lock
    return {p.name: p.filename for p in lock.packages}


def test_reads_the_wheel_the_image_installs_and_the_packages_its_markers_keep() -> None:
    assert files(MULTI, TRIXIE) == {
        "numpy": "numpy-2.3.4-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        # pip's order: the newest abi3 interpreter tag first, then the newest manylinux the image runs (not 2_42).
        "cryptography": "cryptography-46.0.1-cp311-abi3-manylinux_2_34_x86_64.whl",
        "six": "six-1.17.0-py2.py3-none-any.whl",
    }
    bookworm = files(MULTI, BOOKWORM)
    assert bookworm["numpy"] == "numpy-2.3.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    assert "tomli" in bookworm and "appnope" not in bookworm and "pytest" not in bookworm
    lock = read_pylock(MULTI, "pylock.toml", *TRIXIE).lock
    assert (lock.python, lock.platform, lock.requirements) == (*TRIXIE, ())
    assert lock.package("six") == LockedPackage("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", sha("c"))
    # Default groups are installed, like PEP 751 installers do.
    with_dev = MULTI.replace('requires-python = ">=3.11"', 'requires-python = ">=3.11"\ndefault-groups = ["dev"]')
    assert "pytest" in files(with_dev, TRIXIE)


def test_the_choice_does_not_depend_on_listing_order() -> None:
    names = [
        "x-1-py3-none-any.whl",
        "x-1-cp313-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "x-1-cp313-cp313-manylinux_2_5_x86_64.manylinux1_x86_64.whl",
    ]
    assert best_wheel(names, *TRIXIE) == best_wheel(reversed(names), *TRIXIE) == names[2]
    assert best_wheel(["x-1-cp312-cp312-manylinux_2_17_x86_64.whl"], *TRIXIE) is None
    ranks = target_tags(*TRIXIE)
    assert min(ranks.items(), key=lambda item: item[1])[0].platform == "manylinux_2_41_x86_64"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + package("numpy", "2.3.4", wheel("numpy-2.3.4-cp313-cp313-macosx_14_0_arm64.whl"),
                        wheel("numpy-2.3.4-cp312-cp312-manylinux_2_17_x86_64.whl")),
         "pylock.toml: packages[0]: no wheel of numpy 2.3.4 for CPython 3.13 on manylinux_2_41_x86_64 (it lists "
         "numpy-2.3.4-cp312-cp312-manylinux_2_17_x86_64.whl, numpy-2.3.4-cp313-cp313-macosx_14_0_arm64.whl)"),
        (HEAD + '[[packages]]\nname = "pkg"\nversion = "1.0"\nsdist = { name = "pkg-1.0.tar.gz", url = "u", '
                'hashes = { sha256 = "' + sha("a") + '" } }\n',
         "pylock.toml: packages[0]: no wheel of pkg 1.0 for CPython 3.13 on manylinux_2_41_x86_64 (only an sdist)"),
        (HEAD + package("six", "1.17.0", '{ url = "https://x/six-1.17.0-py3-none-any.whl", hashes = { md5 = "ab" } }'),
         "pylock.toml: packages[0].wheels[0].hashes.sha256: missing for six-1.17.0-py3-none-any.whl "
         "(hashes given: md5)"),
        (HEAD + '[[packages]]\nname = "mine"\nvcs = { type = "git", url = "u", commit-id = "c" }\n',
         "pylock.toml: packages[0]: mine comes from a vcs, not a wheel"),
        (HEAD.replace('"1.0"', '"2.0"'), "pylock.toml: lock-version: unsupported version '2.0'"),
        (HEAD.replace(">=3.11", "<3.13"), "pylock.toml: requires-python: '<3.13' excludes the image's Python 3.13"),
        (HEAD + "environments = [\"sys_platform == 'darwin'\"]\n", "pylock.toml: environments: none of"),
        (HEAD + package("six", "1.17.0", wheel("six-1.17.0-py3-none-any.whl"))
              + package("six", "1.16.0", wheel("six-1.16.0-py3-none-any.whl")),
         "pylock.toml: packages[1].name: 'six' is listed twice for CPython 3.13 on manylinux_2_41_x86_64"),
        (HEAD + package("six", "1.17.0", wheel("six-1.16.0-py3-none-any.whl")),
         "pylock.toml: packages[0].version: '1.17.0', but the wheel six-1.16.0-py3-none-any.whl is version 1.16.0"),
        ("lock-version = ", "pylock.toml: syntax"),
    ],
)  # fmt: skip
def test_refusals_name_the_file_the_key_and_the_target(text: str, expected: str) -> None:
    if text.startswith(HEAD) and "environments" in text:
        text = text.replace(HEAD, HEAD.replace("\n\n", "\n"), 1)  # top-level keys before any table
    with pytest.raises(EnvironmentBuildError) as info:
        read_pylock(text, Path("pylock.toml"), *TRIXIE)
    assert expected in info.value.message


def test_names_pep_751_gives_lock_files() -> None:
    assert is_pylock("pylock.toml") and is_pylock("locks/pylock.trixie.toml")
    assert not is_pylock("harness.lock") and not is_pylock("pylock.a.b.toml") and not is_pylock("my-pylock.toml")


def test_written_pylock_reads_back_as_the_same_lock_with_the_same_digest(tmp_path: Path) -> None:
    numpy = LockedPackage(
        "numpy", "2.3.4", "numpy-2.3.4-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", sha("4"),
        url="https://files.example/numpy-2.3.4-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    )  # fmt: skip
    six = LockedPackage(SIX.name, SIX.version, SIX.filename, SIX.sha256, url=f"https://files.example/{SIX.filename}")
    requirements = ("numpy>=2", 'six; python_version >= "3.12"')
    lock = make_lock(numpy, six, requirements=requirements)
    lock = lock.__class__(*TRIXIE, lock.requirements, requirements_digest(requirements), lock.packages)
    path = tmp_path / "pylock.toml"
    write_pylock(path, lock)
    text = path.read_text()
    assert text.startswith("# generated by `harness lock`; do not edit\n")
    assert text == format_pylock(read_pylock(text, path, *BOOKWORM).lock)  # same bytes when written again

    again = read_pylock(text, path, *BOOKWORM)  # its own [tool.harness] target wins over the one asked for
    assert again.by_harness and again.created_by == "harness"
    assert again.lock == lock
    # The digest runs record is the lock's, whichever format holds it: converting rebuilds no image.
    write_lock(tmp_path / "harness.lock", lock)
    assert again.lock.digest == read_lock(tmp_path / "harness.lock").digest == lock.digest

    edited = text.replace('requirements = ["numpy>=2"', 'requirements = ["numpy>=3"')
    with pytest.raises(EnvironmentBuildError, match=r"tool.harness.requirements_digest: does not match"):
        read_pylock(edited, path, *TRIXIE)


def test_uv_installs_from_the_pylock_harness_writes(tmp_path: Path) -> None:
    """The written file is standard: another installer (uv) reads it and picks the same file (no download)."""
    six = LockedPackage(SIX.name, SIX.version, SIX.filename, SIX.sha256, url=f"https://files.example/{SIX.filename}")
    lock = make_lock(six, requirements=("six==1.16.0",))
    write_pylock(tmp_path / "pylock.toml", lock)
    proc = subprocess.run(
        [uv_binary(), "pip", "install", "--dry-run", "--offline", "--no-config", "--target", str(tmp_path / "t"),
         "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_36", "-r", "pylock.toml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and "+ six==1.16.0" in proc.stderr, proc.stderr
