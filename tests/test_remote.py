"""Runs that travel: push, pull, rebuild --remote, ls --remote, export and import, against Debian's docker-registry
on loopback and the real engine. A "second machine" is a fresh HARNESS_HOME and HARNESS_CACHE in a directory that
is no project and no git repository."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.remote.client import connect
from harness.remote.reference import parse
from tests.projects import cli_env, harness
from tests.registry import TLS, Registry
from tests.tokenserver import TokenServer

pytestmark = [pytest.mark.docker]


@pytest.fixture()
def ran(probe_project: Path) -> tuple[Path, str]:
    result = harness(probe_project, "run", "--json")
    assert result.returncode == 0, result.stderr
    return probe_project, json.loads(result.stdout)["id"]


def elsewhere(tmp_path: Path, name: str = "second") -> tuple[Path, dict[str, str]]:
    """A second machine: its own store and cache, working in a directory that is no project."""
    root = tmp_path / name
    (root / "cwd").mkdir(parents=True)
    return root / "cwd", cli_env(HARNESS_HOME=str(root / "home"), HARNESS_CACHE=str(root / "cache"))


def test_push_then_rebuild_on_a_second_machine(ran: tuple[Path, str], registry: Registry, tmp_path: Path) -> None:
    project, run_id = ran
    remote = f"{registry.host}/team/probe"
    pushed = harness(project, "push", run_id, "--remote", remote, "--json")
    assert pushed.returncode == 0, pushed.stderr
    first = json.loads(pushed.stdout)["runs"][0]
    assert first["run"] == run_id and first["sent"] > 0 and not first["already"]

    # Asked first, nothing sent again: a second push is one or two requests.
    client = connect(parse(remote))
    from harness.paths import Layout
    from harness.remote.push import push_run

    layout = Layout.for_project(project)
    started = time.monotonic()
    again = push_run(layout, run_id, client, lambda _m: None)
    took = time.monotonic() - started
    assert again.already and again.sent == 0
    assert client.requests <= 3, client.requests
    assert took < 0.5, took

    cwd, env = elsewhere(tmp_path)
    rebuilt = harness(cwd, "rebuild", run_id, "--remote", remote, "--json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    report = json.loads(rebuilt.stdout)
    assert report["identical"] and report["original"] == run_id
    verified = harness(cwd, "verify", "--json", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = harness(cwd, "show", run_id, "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == run_id

    listed = harness(cwd, "ls", "--remote", remote, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    none = harness(cwd, "ls", "--remote", remote, "--where", "params.scale == 99", "--json", env=env)
    assert json.loads(none.stdout) == []


def test_a_tampered_blob_is_named_and_nothing_is_stored(
    ran: tuple[Path, str], registry: Registry, tmp_path: Path
) -> None:
    project, run_id = ran
    remote = f"{registry.host}/team/probe"
    assert harness(project, "push", run_id, "--remote", remote).returncode == 0
    manifest = json.loads(connect(parse(remote)).manifest(f"run-{run_id}")[0])  # type: ignore[index]
    pack = next(layer for layer in manifest["layers"] if layer["mediaType"].endswith("pack.v1.tar"))
    digest = pack["digest"].removeprefix("sha256:")
    blob = registry.blob_path(digest)
    original = blob.read_bytes()
    altered = bytearray(original)
    altered[len(altered) // 2] ^= 0xFF
    blob.write_bytes(bytes(altered))

    cwd, env = elsewhere(tmp_path)
    pulled = harness(cwd, "pull", run_id, "--remote", remote, env=env)
    assert pulled.returncode == 107, pulled.stderr
    assert f"sha256:{digest}" in pulled.stderr and "altered or truncated" in pulled.stderr
    home = Path(env["HARNESS_HOME"])
    assert not (home / "runs" / run_id).exists()
    assert not list((home / "objects" / "tmp" / "remote").glob("*"))

    blob.write_bytes(original[: len(original) // 2])  # cut short
    truncated = harness(cwd, "pull", run_id, "--remote", remote, env=env)
    assert truncated.returncode == 107 and f"sha256:{digest}" in truncated.stderr, truncated.stderr

    blob.write_bytes(original)  # repaired: the retry takes what is still missing
    retried = harness(cwd, "pull", run_id, "--remote", remote, "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    assert (home / "runs" / run_id / "record.json").is_file()


def test_export_import_rebuild_with_no_registry(ran: tuple[Path, str], tmp_path: Path) -> None:
    project, run_id = ran
    bundle = tmp_path / "run.tar"
    exported = harness(project, "export", run_id, "-o", str(bundle), "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["runs"][0]["run"] == run_id
    import tarfile

    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert "oci-layout" in names
    refs = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert f"run-{run_id}" in refs and any(r.startswith("env-") for r in refs)

    cwd, env = elsewhere(tmp_path)
    imported = harness(cwd, "import", str(bundle), env=env)
    assert imported.returncode == 0, imported.stderr
    rebuilt = harness(cwd, "rebuild", run_id, "--json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["identical"]


def test_login_and_tls_refusals_are_clear(ran: tuple[Path, str], tmp_path: Path) -> None:
    project, run_id = ran
    tls = TLS(tmp_path / "tls")
    registry = Registry(tmp_path / "secure", login=("ci", "s3cret"), tls=tls)
    try:
        remote = f"{registry.host}/team/probe"

        def with_login(password: str, ca: Path | None) -> dict[str, str]:
            config = tmp_path / f"docker-{password}"
            config.mkdir(exist_ok=True)
            auth = base64.b64encode(f"ci:{password}".encode()).decode()
            (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
            extra = {"DOCKER_CONFIG": str(config)}
            if ca is not None:
                extra["REQUESTS_CA_BUNDLE"] = str(ca)
            return cli_env(**extra)

        untrusted = harness(project, "push", run_id, "--remote", remote, env=with_login("s3cret", None))
        assert untrusted.returncode == 109, untrusted.stderr
        assert "does not trust" in untrusted.stderr and "certs.d" in untrusted.stderr

        wrong = harness(project, "push", run_id, "--remote", remote, env=with_login("wrong", tls.ca))
        assert wrong.returncode == 109, wrong.stderr
        assert "refused the login" in wrong.stderr and "docker login" in wrong.stderr

        good = harness(project, "push", run_id, "--remote", remote, "--json", env=with_login("s3cret", tls.ca))
        assert good.returncode == 0, good.stderr
        listed = harness(project, "ls", "--remote", remote, "--json", env=with_login("s3cret", tls.ca))
        assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    finally:
        registry.stop()


def test_token_login_as_hosted_registries_ask_for_it(ran: tuple[Path, str], tmp_path: Path) -> None:
    """The token flow of Docker Hub, GHCR, GitLab and Harbor: the registry sends the client to a token server with
    the scope it needs; the client gets a signed token there with docker's stored login and shows it. One token per
    scope, not one per request or per blob; a wrong login and no login are refused before anything is written."""
    project, run_id = ran
    tokens = TokenServer(tmp_path / "tokens", login=("ci", "s3cret"))
    registry = Registry(tmp_path / "token-registry", token=tokens)
    try:
        remote = f"{registry.host}/team/probe"

        def login(password: str | None, env: dict[str, str] | None = None) -> dict[str, str]:
            """``env`` (else the project's) with docker's config.json holding this password for the registry."""
            config = tmp_path / f"docker-{password}"
            config.mkdir(exist_ok=True)
            auths = {}
            if password is not None:
                auths[registry.host] = {"auth": base64.b64encode(f"ci:{password}".encode()).decode()}
            (config / "config.json").write_text(json.dumps({"auths": auths}))
            return {**(env if env is not None else cli_env()), "DOCKER_CONFIG": str(config)}

        repositories = registry.root / "data" / "docker" / "registry" / "v2" / "repositories"
        wrong = harness(project, "push", run_id, "--remote", remote, env=login("wrong"))
        assert wrong.returncode == 109, wrong.stderr
        assert "refused the login" in wrong.stderr and "docker login" in wrong.stderr, wrong.stderr
        assert wrong.stderr.startswith("error: "), wrong.stderr  # harness's words only, not oras's log lines
        assert tokens.asked and all(asked.refused for asked in tokens.asked)
        none = harness(project, "push", run_id, "--remote", remote, env=login(None))
        assert none.returncode == 109, none.stderr
        assert "docker has none stored" in none.stderr and "docker login" in none.stderr, none.stderr
        assert not repositories.exists()  # nothing reached the registry

        tokens.asked.clear()
        pushed = harness(project, "push", run_id, "--remote", remote, "--json", env=login("s3cret"))
        assert pushed.returncode == 0, pushed.stderr
        sent = json.loads(pushed.stdout)["runs"][0]["sent"]
        asked = list(tokens.asked)
        assert all(one.account == "ci" and not one.refused for one in asked), asked
        # /v2/ (the login proved), the pull scope (asked first), the push scope: not one per blob
        granted = [{frozenset(scope.rpartition(":")[2].split(",")) for scope in one.scopes} for one in asked]
        assert granted == [set(), {frozenset({"pull"})}, {frozenset({"pull", "push"})}], asked
        assert all(scope.startswith("repository:team/probe:") for one in asked for scope in one.scopes), asked
        assert sent > len(asked), sent

        cwd, env = elsewhere(tmp_path)
        refused = harness(cwd, "pull", run_id, "--remote", remote, env=login("wrong", env))
        assert refused.returncode == 109 and "refused the login" in refused.stderr, refused.stderr
        home = Path(env["HARNESS_HOME"])
        assert not (home / "runs" / run_id).exists()
        assert not list((home / "objects").rglob("*.partial"))

        tokens.asked.clear()
        pulled = harness(cwd, "pull", run_id, "--remote", remote, "--json", env=login("s3cret", env))
        assert pulled.returncode == 0, pulled.stderr
        assert (home / "runs" / run_id / "record.json").is_file()
        assert len(tokens.asked) == 2, tokens.asked  # /v2/ and the pull scope
        verified = harness(cwd, "verify", "--json", env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        listed = harness(cwd, "ls", "--remote", remote, "--json", env=login("s3cret", env))
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    finally:
        registry.stop()
        tokens.stop()


def test_references_are_checked() -> None:
    from harness.errors import UsageError

    assert parse("127.0.0.1:5000/team/bikes").registry == "127.0.0.1:5000"
    assert parse("registry.example/a/b").repository == "a/b"
    for bad in ("team/bikes", "127.0.0.1:5000/Team", "127.0.0.1:5000/team/bikes:v1", "127.0.0.1:5000"):
        with pytest.raises(UsageError):
            parse(bad)
    assert os.environ.get("HARNESS_REMOTE") is None


def test_a_pull_cut_short_resumes_where_it_stopped(ran: tuple[Path, str], tmp_path: Path) -> None:
    """A connection that drops mid-blob (a failure no real registry gives on demand: the only fake here) keeps
    what arrived; the next pull asks for the rest (from an offset) and checks the blob whole."""
    from contextlib import contextmanager

    from harness.errors import RemoteError
    from harness.paths import Layout
    from harness.remote.layout import LayoutReader
    from harness.remote.pull import pull_run

    project, run_id = ran
    bundle = tmp_path / "run.tar"
    assert harness(project, "export", run_id, "-o", str(bundle)).returncode == 0
    reader = LayoutReader(bundle)
    offsets: list[int] = []

    class Dropping:
        def __init__(self, cut: int | None) -> None:
            self.cut = cut

        def manifest(self, reference: str) -> tuple[bytes, str] | None:
            return reader.manifest(reference)

        @contextmanager
        def blob(self, digest: str, offset: int = 0) -> Iterator[tuple[Iterator[bytes], int]]:
            offsets.append(offset)
            with reader.blob(digest, offset) as (chunks, length):
                if self.cut is None or length < 4 * self.cut:
                    yield chunks, length
                    return

                def cut_short() -> Iterator[bytes]:
                    sent = 0
                    for chunk in chunks:
                        yield chunk[: self.cut - sent]
                        sent += min(len(chunk), self.cut - sent)
                        if sent >= self.cut:
                            raise RemoteError("connection dropped (test)")

                yield cut_short(), length

    layout = Layout(project=tmp_path, store=tmp_path / "home", cache=tmp_path / "cache")
    with pytest.raises(RemoteError):
        pull_run(layout, run_id, Dropping(cut=1 << 20), str(bundle), lambda _m: None)
    partial = list((layout.objects / "tmp" / "remote").glob("*.partial")) + list(
        (layout.cache_objects / "tmp" / "remote").glob("*.partial")
    )
    assert len(partial) == 1 and partial[0].stat().st_size == 1 << 20
    assert not (layout.runs / run_id).exists()
    offsets.clear()
    pulled = pull_run(layout, run_id, Dropping(cut=None), str(bundle), lambda _m: None)
    assert pulled.run == run_id and (1 << 20) in offsets
    assert (layout.runs / run_id / "record.json").is_file()
    reader.close()
