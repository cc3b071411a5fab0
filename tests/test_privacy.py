"""Nothing secret leaves the project: URLs lose their credentials before they are recorded, and the store is as
private as the project directory it lives in (objects, records and the index alike)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from harness.env.environment import Environment
from harness.files import make_dirs, make_file, write_atomic
from harness.paths import ENV_CACHE, cache_root
from harness.runs.hostinfo import ci_facts
from harness.runs.records import SCHEMA, Records
from harness.storage.snapshot import materialize, remove_materialized, snapshot_tree
from harness.storage.store import Store
from harness.ui.server import make_server
from harness.urls import without_credentials
from tests.projects import git, harness, valid_record

TOKEN = "SEKRET123"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://oauth2:SEKRET123@example.invalid/x.git", "https://example.invalid/x.git"),
        ("https://SEKRET123@example.invalid/x.git", "https://example.invalid/x.git"),
        ("git+https://user:p%40ss@example.invalid:8443/x.git", "git+https://example.invalid:8443/x.git"),
        ("ssh://git@example.invalid/team/x.git", "ssh://example.invalid/team/x.git"),
        ("http://[::1]:8080/x.git", "http://[::1]:8080/x.git"),
        ("git@example.invalid:team/x.git", "git@example.invalid:team/x.git"),  # scp-like: a user, no password
        ("oauth2:SEKRET123@example.invalid/x.git", "example.invalid/x.git"),  # not scp syntax: only a credential
        ("/srv/git/x.git", "/srv/git/x.git"),
        ("file:///srv/git/x.git", "file:///srv/git/x.git"),
        (
            "https://example.invalid/x.git?private_token=SEKRET123&ref=main&Access_Token=SEKRET123",
            "https://example.invalid/x.git?ref=main",
        ),
        (
            "https://bucket.invalid/deb?X-Amz-Credential=A%2FB&X-Amz-Signature=SEKRET123&X-Amz-Security-Token=T&v=1",
            "https://bucket.invalid/deb?v=1",
        ),
        ("https://a.invalid/p?sig=SEKRET123&key=SEKRET123&password=x&gh_token=y", "https://a.invalid/p"),
        ("https://a.invalid/p?path=%2Fa%20b&q=token", "https://a.invalid/p?path=%2Fa%20b&q=token"),  # kept as is
        ("http://[bad/x.git", None),  # does not parse, so it cannot be cleaned: not recorded
    ],
)
def test_a_url_loses_its_credentials_and_nothing_else(url: str, recorded: str | None) -> None:
    assert without_credentials(url) == recorded


def test_ci_urls_are_recorded_without_credentials() -> None:
    facts = ci_facts(
        {
            "GITLAB_CI": "true",
            "CI_SERVER_URL": "https://gitlab-ci-token:SEKRET123@gitlab.example.invalid",
            "CI_JOB_URL": "https://gitlab.example.invalid/p/-/jobs/7?token=SEKRET123",
            "CI_JOB_ID": "7",
        }
    )
    assert facts == {
        "provider": "gitlab-ci",
        "server_url": "https://gitlab.example.invalid",
        "job_url": "https://gitlab.example.invalid/p/-/jobs/7",
        "job_id": "7",
    }


def test_a_recipe_mirror_is_recorded_without_credentials_and_kept_for_the_build() -> None:
    mirror = f"https://apt:{TOKEN}@deb.example.invalid/debian"
    env = Environment(
        key="k" * 64,
        image_id="sha256:" + "1" * 64,
        manifest_digest="sha256:" + "2" * 64,
        image_ref="harness-env:k",
        base={"name": "private", "suite": "bookworm", "mirror": mirror},
        lock_digest="3" * 64,
        python="3.11.2",
        packages=(),
        layers=(),
    )
    assert env.to_record()["base"]["mirror"] == "https://deb.example.invalid/debian"
    assert env.base["mirror"] == env.to_dict()["base"]["mirror"] == mirror, "what finds and builds the image"


@pytest.mark.parametrize(
    ("project_mode", "obj", "directory", "file"),
    [(0o700, 0o400, 0o700, 0o600), (0o750, 0o440, 0o750, 0o640), (0o755, 0o444, 0o755, 0o644)],
    ids=["project-0700", "project-0750", "project-0755"],
)
def test_a_store_is_no_more_open_than_the_project_directory(
    tmp_path: Path, umask_022: None, project_mode: int, obj: int, directory: int, file: int
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(project_mode)
    store_dir = project / ".harness"
    store = Store(store_dir / "objects")
    digest = store.put_bytes(b"from a 0600 file")
    source = tmp_path / "data.bin"
    source.write_bytes(b"another file, streamed in")
    source.chmod(0o600)
    streamed, _ = store.put_file(source)
    records = Records(store_dir / "runs", store_dir / "index.sqlite")
    paths = records.allocate()
    records.write({"schema": SCHEMA, "id": paths.id, "status": "running"})
    assert records.list()[0]["id"] == paths.id  # the index holds the whole record again

    assert _mode(store.path(digest)) == _mode(store.path(streamed)) == obj
    for made in (store_dir, store_dir / "objects", store.path(digest).parent, store_dir / "runs", paths.root):
        assert _mode(made) == directory, made
    with closing(sqlite3.connect(store_dir / "index.sqlite")) as reader:  # the -wal and -shm files exist meanwhile
        assert reader.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        sqlite_files = sorted(store_dir.glob("index.sqlite*"))
        assert [p.name for p in sqlite_files] == ["index.sqlite", "index.sqlite-shm", "index.sqlite-wal"]
        assert {_mode(p) for p in [paths.record, *sqlite_files]} == {file}, "record and index readable by the same"


def test_files_and_directories_take_no_bit_their_directory_lacks(tmp_path: Path, umask_022: None) -> None:
    tmp_path.chmod(0o710)  # group may enter but not list; others nothing
    make_dirs(tmp_path / "a" / "b")
    make_file(tmp_path / "a" / "b" / "db")
    write_atomic(tmp_path / "a" / "c" / "record.json", b"{}", inherit=True)
    write_atomic(tmp_path / "a" / "plain.txt", b"x")  # without inherit: the umask alone, as for a user's file
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "b") == _mode(tmp_path / "a" / "c") == 0o710
    assert _mode(tmp_path / "a" / "b" / "db") == _mode(tmp_path / "a" / "c" / "record.json") == 0o600
    assert _mode(tmp_path / "a" / "plain.txt") == 0o644
    make_file(tmp_path / "a" / "b" / "db")  # an existing file is left as it is
    assert (tmp_path / "a" / "b" / "db").read_bytes() == b""


def test_data_another_user_must_read_is_copied_from_a_private_store_not_linked(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    store = Store(tmp_path / "store" / "objects")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("1,2\n")
    (tmp_path / "data" / "a.csv").chmod(0o600)
    snap = snapshot_tree(tmp_path / "data", store)
    obj = store.path(snap.entries[0].sha256 or "")
    assert _mode(obj) == 0o400

    materialize(store, snap.digest, tmp_path / "mine")
    assert os.path.samefile(tmp_path / "mine" / "a.csv", obj), "for harness's own user: a hardlink, no copy"
    materialize(store, snap.digest, tmp_path / "theirs", shared=True)
    theirs = tmp_path / "theirs" / "a.csv"
    assert not os.path.samefile(theirs, obj) and _mode(theirs) == 0o444 and theirs.read_text() == "1,2\n"
    assert _mode(obj) == 0o400, "the object keeps its mode"
    remove_materialized(tmp_path / "mine")
    remove_materialized(tmp_path / "theirs")


def test_the_cache_is_made_for_its_owner_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path.chmod(0o777)
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    old = os.umask(0)  # even a umask that takes nothing away
    try:
        root = cache_root()
    finally:
        os.umask(old)
    assert root == tmp_path / "cache" and _mode(root) == 0o700
    root.chmod(0o750)
    assert cache_root() == root and _mode(root) == 0o750, "an existing cache keeps the mode its owner gave it"


# -- end to end: a real project, git, engine and run ------------------------------------------------------------


def _all_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path, path.read_bytes()


def _ui_documents(store: Path, run_id: str) -> list[bytes]:
    ui = make_server(Records(store / "runs", store / "index.sqlite"))
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        bodies = []
        for path in ("api/runs", f"api/runs/{run_id}"):
            with urllib.request.urlopen(ui.url + path, timeout=10) as response:
                bodies.append(response.read())
        return bodies
    finally:
        ui.shutdown()
        ui.server_close()


@pytest.mark.docker
def test_a_token_in_the_remote_url_reaches_no_file_of_the_store_and_no_output(probe_project: Path) -> None:
    # The token in the userinfo (as an `https://oauth2:TOKEN@` clone URL holds it) and again in the query.
    url = f"https://oauth2:{TOKEN}@example.invalid/x.git?private_token={TOKEN}"
    git(probe_project, "remote", "add", "origin", url)
    result = harness(probe_project, "run", "--json")
    assert result.returncode == 0, result.stderr
    record = valid_record(json.loads(result.stdout))
    assert record["code"]["remote"] == "https://example.invalid/x.git"

    shown = harness(probe_project, "show", record["id"], "--json")
    listed = harness(probe_project, "ls", "--json")
    assert shown.returncode == listed.returncode == 0
    outputs = [result.stdout, result.stderr, shown.stdout, listed.stdout]
    assert json.loads(shown.stdout)["code"]["remote"] == "https://example.invalid/x.git"
    assert not [text for text in outputs if TOKEN in text]
    store = probe_project / ".harness"
    assert not [d for d in _ui_documents(store, record["id"]) if TOKEN.encode() in d]
    files = list(_all_bytes(store))
    assert any(p.name == "index.sqlite" for p, _ in files) and any(p.name == "record.json" for p, _ in files)
    assert [str(p) for p, data in files if TOKEN.encode() in data] == []


@pytest.mark.docker
@pytest.mark.parametrize("project_mode", [0o700, 0o750], ids=["project-0700", "project-0750"])
def test_a_private_project_gets_a_store_no_other_user_can_read(probe_project: Path, project_mode: int) -> None:
    probe_project.chmod(project_mode)
    values = probe_project / "data" / "numbers" / "values.txt"
    values.chmod(0o600)
    result = harness(probe_project, "run", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["metrics"]["total"] == 10, "the container read the data (as root, harness copies it for nobody)"

    store = probe_project / ".harness"
    entries = [store, *store.rglob("*")]
    opened = [f"{p} {oct(_mode(p))}" for p in entries if not p.is_symlink() and _mode(p) & 0o007]
    assert opened == [], "readable, writable or searchable by other users"
    assert not [p for p in entries if not p.is_symlink() and _mode(p) & ~project_mode & 0o070], "group beyond it"
    run_dir = store / "runs" / record["id"]
    assert _mode(run_dir / "record.json") == _mode(store / "index.sqlite") == 0o640 & project_mode
    data_object = store / "objects" / record["data"]["snapshot"][:2]
    assert data_object.is_dir() and _mode(data_object) == project_mode
    for rel, sha in record["outputs"]["files"].items():
        output = run_dir / "outputs" / rel
        assert os.path.samefile(output, store / "objects" / sha[:2] / sha[2:])  # still stored once
        assert _mode(output) == 0o444 & project_mode
