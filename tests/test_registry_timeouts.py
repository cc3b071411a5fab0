"""A registry that stops answering is an error within harness's timeout, never a hang: also after a login, where
requests go through oras's session, which sets no timeout of its own."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.errors import RemoteError
from harness.remote import client
from harness.remote.reference import parse

LOGIN = "Basic " + base64.b64encode(b"ci:s3cret").decode()
HOLD_S = 20.0  # how long the registry sits on a request after the login: longer than the test allows


class _AnswersOnlyTheLogin(BaseHTTPRequestHandler):
    """Basic auth on /v2/, as docker-registry with htpasswd asks for it; every other request is held unanswered."""

    def do_GET(self) -> None:
        if self.path != "/v2/":
            time.sleep(HOLD_S)
            return
        self.send_response(200 if self.headers.get("Authorization") == LOGIN else 401)
        self.send_header("WWW-Authenticate", 'Basic realm="harness-test"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture()
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The registry's address, with docker's config.json holding its login."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersOnlyTheLogin)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    (tmp_path / "config.json").write_text(json.dumps({"auths": {host: {"auth": LOGIN.removeprefix("Basic ")}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_that_stops_answering_after_the_login_is_an_error_not_a_hang(
    held: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "TIMEOUT", (2, 1))  # (connect, read) seconds; 30 and 600 in use
    registry = client.connect(parse(f"{held}/team/probe"))  # asked for the login, logged in through oras
    started = time.monotonic()
    with pytest.raises(RemoteError, match=f"cannot reach registry {held}") as raised:
        registry.manifest("run-abc123")
    # three tries of a 1 s read and the pauses between them; without a timeout, three of the registry's 20 s holds
    assert time.monotonic() - started < 10
    assert "running the same command again resumes" in (raised.value.hint or "")
