"""A unix socket that plays a Docker engine for the failures a real one cannot produce on demand: a connection
dropped mid-answer, an engine that accepts and never answers."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

VERSION = b'{"ApiVersion": "1.41", "Version": "fake"}'


class FakeEngine:
    """Answers /version and /_ping like an engine (unless ``version`` is False) and ``answers[path]`` elsewhere, one
    connection per request; ``reset`` drops each answered connection with an RST instead of closing it. A request
    it has no answer for is read and never answered, its connection held open, as a hung dockerd does."""

    def __init__(
        self, path: Path, answers: dict[str, bytes] | None = None, reset: bool = True, version: bool = True
    ) -> None:
        self.path, self.answers, self.reset, self.version = path, answers or {}, reset, version
        self.held: list[socket.socket] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            request = b""
            while b"\r\n\r\n" not in request:
                piece = conn.recv(65536)
                if not piece:
                    break
                request += piece
            target = request.split(b" ")[1].decode().split("?")[0] if request else ""
            path = "/" + target.split("/", 2)[2] if target.startswith("/v1.") else target
            if self.version and path in ("/version", "/_ping"):
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
                    len(VERSION),
                    VERSION,
                )
            elif path in self.answers:
                answer = self.answers[path]
            else:
                self.held.append(conn)  # never answered, never closed: the client must give up by itself
                continue
            with conn:
                conn.sendall(answer)
                if self.reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()
